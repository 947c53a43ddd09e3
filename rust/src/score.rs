//! Scoring the CTR model's rows in one native call (`rtrec.models.CTRModel`'s forward pass,
//! without gradients).
//!
//! `logit = bias + sum_i w_i + FM(v) + MLP([sum_i v_i, dense, text]) + dense . u`, with the
//! hashed table's rows `[w_i, v_i]` summed per row (CSR `indices` / `offsets`), the FM term
//! `(|sum v|^2 - sum |v|^2) / 2` (`norm2` holds each table row's `|v|^2`), an optional text
//! projection `text = P item_text + p`, and the MLP's linear layers with a ReLU between them.
//!
//! A request ranks a few hundred rows: the arithmetic takes tens of microseconds. The
//! binding runs it without letting the interpreter go, so a recommend does not hand the
//! interpreter to another thread, and wait for it back, at each of the twenty-odd tensor
//! operations the same pass costs in torch.

use crate::error::{Error, Result};

/// A row-major matrix.
#[derive(Debug, Clone, Copy)]
pub struct Matrix<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
}

impl<'a> Matrix<'a> {
    pub fn new(data: &'a [f32], rows: usize, cols: usize, name: &str) -> Result<Self> {
        if data.len() != rows * cols {
            return Err(Error::invalid(
                name,
                format!("{} values for a {rows} x {cols} matrix", data.len()),
            ));
        }
        Ok(Matrix { data, rows, cols })
    }

    fn row(&self, r: usize) -> &'a [f32] {
        &self.data[r * self.cols..(r + 1) * self.cols]
    }
}

/// A linear layer `y = W x + b` (`W`: out x in).
#[derive(Debug, Clone, Copy)]
pub struct Linear<'a> {
    pub weight: Matrix<'a>,
    pub bias: &'a [f32],
}

impl Linear<'_> {
    fn apply(&self, x: &[f32], out: &mut Vec<f32>) {
        out.clear();
        for (o, b) in self.bias.iter().enumerate() {
            let w = self.weight.row(o);
            out.push(b + w.iter().zip(x).map(|(a, c)| a * c).sum::<f32>());
        }
    }
}

/// The model's parameters, borrowed.
#[derive(Debug, Clone)]
pub struct CtrParams<'a> {
    /// The hashed table: column 0 the first-order weight, the rest the factor.
    pub table: Matrix<'a>,
    /// `|factor|^2` of each table row.
    pub norm2: &'a [f32],
    /// Projection of the item text (None: the model has none).
    pub text: Option<Linear<'a>>,
    /// The MLP's linear layers, in order; a ReLU follows each but the last.
    pub layers: Vec<Linear<'a>>,
    /// Weights of the dense features' linear term (None: none).
    pub dense_lin: Option<&'a [f32]>,
    pub bias: f32,
}

impl CtrParams<'_> {
    fn check(&self, dense_cols: usize, text_cols: Option<usize>) -> Result<()> {
        if self.norm2.len() != self.table.rows || self.table.cols < 1 {
            return Err(Error::invalid("norm2", "needs one value per table row"));
        }
        let mut width = self.table.cols - 1 + dense_cols;
        match (&self.text, text_cols) {
            (Some(p), Some(c)) => {
                if p.weight.cols != c || p.bias.len() != p.weight.rows {
                    return Err(Error::invalid("text", "the projection does not fit the item text"));
                }
                width += p.weight.rows;
            }
            (None, None) => {}
            _ => return Err(Error::invalid("item_text", "given without a projection, or missing")),
        }
        for (k, l) in self.layers.iter().enumerate() {
            if l.weight.cols != width || l.bias.len() != l.weight.rows {
                return Err(Error::invalid(
                    "layers",
                    format!("layer {k} takes {} inputs, not {width}", l.weight.cols),
                ));
            }
            width = l.weight.rows;
        }
        if width != 1 {
            return Err(Error::invalid("layers", "the last layer must have one output"));
        }
        if self.dense_lin.is_some_and(|u| u.len() != dense_cols) {
            return Err(Error::invalid("dense_lin", "needs one weight per dense column"));
        }
        Ok(())
    }
}

/// The logit of each row (see the module's doc). `dense` has one row per CSR row, and so has
/// `item_text` when the model projects text.
pub fn ctr_logits(
    p: &CtrParams<'_>,
    indices: &[i64],
    offsets: &[i64],
    dense: Matrix<'_>,
    item_text: Option<Matrix<'_>>,
) -> Result<Vec<f32>> {
    let rows = offsets
        .len()
        .checked_sub(1)
        .ok_or_else(|| Error::invalid("offsets", "must not be empty"))?;
    if offsets[0] != 0 || offsets[rows] as usize != indices.len() || offsets.windows(2).any(|w| w[1] < w[0]) {
        return Err(Error::invalid("offsets", "must rise from 0 to the number of indices"));
    }
    if indices.iter().any(|&i| i < 0 || i as usize >= p.table.rows) {
        return Err(Error::invalid("indices", format!("must be in 0..{}", p.table.rows)));
    }
    if dense.rows != rows || item_text.is_some_and(|t| t.rows != rows) {
        return Err(Error::invalid("dense", "needs one row per CSR row"));
    }
    p.check(dense.cols, item_text.map(|t| t.cols))?;
    let mut sums = vec![0f32; p.table.cols];
    let (mut h, mut next) = (Vec::new(), Vec::new());
    let mut out = Vec::with_capacity(rows);
    for r in 0..rows {
        sums.iter_mut().for_each(|s| *s = 0.0);
        let mut norms = 0f32;
        for &i in &indices[offsets[r] as usize..offsets[r + 1] as usize] {
            let w = p.table.row(i as usize);
            sums.iter_mut().zip(w).for_each(|(s, v)| *s += v);
            norms += p.norm2[i as usize];
        }
        let sum_v = &sums[1..];
        let fm = 0.5 * (sum_v.iter().map(|v| v * v).sum::<f32>() - norms);
        let d = dense.row(r);
        h.clear();
        h.extend_from_slice(sum_v);
        h.extend_from_slice(d);
        if let (Some(proj), Some(t)) = (&p.text, item_text) {
            proj.apply(t.row(r), &mut next);
            h.extend_from_slice(&next);
        }
        let last = p.layers.len().saturating_sub(1);
        for (k, l) in p.layers.iter().enumerate() {
            l.apply(&h, &mut next);
            if k < last {
                next.iter_mut().for_each(|x| *x = x.max(0.0));
            }
            std::mem::swap(&mut h, &mut next);
        }
        let mut deep = h.first().copied().unwrap_or(0.0);
        if let Some(u) = p.dense_lin {
            deep += u.iter().zip(d).map(|(a, b)| a * b).sum::<f32>();
        }
        out.push(p.bias + sums[0] + fm + deep);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_row_by_hand() {
        // Table rows [w, v1, v2]; features 0 and 1 in row 0, none in row 1.
        let table = [0.5f32, 1.0, 0.0, -0.25, 0.0, 2.0];
        let norm2 = [1.0f32, 4.0];
        let l = [1.0f32, 1.0, 1.0]; // one layer over [v1, v2, dense]
        let p = CtrParams {
            table: Matrix::new(&table, 2, 3, "table").unwrap(),
            norm2: &norm2,
            text: None,
            layers: vec![Linear {
                weight: Matrix::new(&l, 1, 3, "w").unwrap(),
                bias: &[0.5],
            }],
            dense_lin: Some(&[2.0]),
            bias: 0.1,
        };
        let dense = [3.0f32, 0.0];
        let got = ctr_logits(&p, &[0, 1], &[0, 2, 2], Matrix::new(&dense, 2, 1, "d").unwrap(), None).unwrap();
        // Row 0: linear 0.25, sum_v (1, 2), FM (5 - 5) / 2 = 0, MLP 1 + 2 + 3 + 0.5, dense term 6.
        assert!((got[0] - (0.1 + 0.25 + 0.0 + 6.5 + 6.0)).abs() < 1e-6, "{got:?}");
        // Row 1: nothing hashed, dense 0: bias + the MLP's bias.
        assert!((got[1] - 0.6).abs() < 1e-6, "{got:?}");
    }

    #[test]
    fn rejects_what_does_not_fit() {
        let table = [0f32; 6];
        let l = [0f32; 3];
        let p = CtrParams {
            table: Matrix::new(&table, 2, 3, "table").unwrap(),
            norm2: &[0.0, 0.0],
            text: None,
            layers: vec![Linear {
                weight: Matrix::new(&l, 1, 3, "w").unwrap(),
                bias: &[0.0],
            }],
            dense_lin: None,
            bias: 0.0,
        };
        let d = [0f32; 1];
        let dense = Matrix::new(&d, 1, 1, "d").unwrap();
        assert!(
            ctr_logits(&p, &[2], &[0, 1], dense, None).is_err(),
            "index out of the table"
        );
        assert!(
            ctr_logits(&p, &[0], &[0, 2], dense, None).is_err(),
            "offsets past the indices"
        );
        assert!(
            ctr_logits(&p, &[0], &[1, 1], dense, None).is_err(),
            "offsets not from 0"
        );
        let wide = [0f32; 2];
        assert!(ctr_logits(&p, &[0], &[0, 1], Matrix::new(&wide, 1, 2, "d").unwrap(), None).is_err());
        assert!(Matrix::new(&d, 2, 1, "d").is_err());
    }
}
