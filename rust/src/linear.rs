//! Per-example online logistic regression over hashed features (Adagrad), as Vowpal Wabbit
//! learns: each row is scored with the weights left by every earlier row, then learned.
//!
//! The mini-batch CTR model reads this model's logit as a feature, so that per-event
//! adaptation (a user's burst of feedback, a new item's first clicks) reaches it at once.

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq)]
pub struct OnlineLinear {
    weights: Vec<f32>,
    sq_sum: Vec<f32>,
    bias: f32,
    bias_sq: f32,
    lr: f32,
    mask: usize,
}

#[inline]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

fn check_rows(indices: &[i64], offsets: &[i64]) -> Result<usize> {
    if offsets.is_empty() || offsets[0] != 0 || offsets.windows(2).any(|w| w[1] < w[0]) {
        return Err(Error::invalid("offsets", "must start at 0 and never decrease"));
    }
    if *offsets.last().unwrap_or(&0) as usize != indices.len() {
        return Err(Error::invalid(
            "offsets",
            "last offset must equal the number of indices",
        ));
    }
    if indices.iter().any(|&i| i < 0) {
        return Err(Error::invalid("indices", "must not be negative"));
    }
    Ok(offsets.len() - 1)
}

impl OnlineLinear {
    pub fn new(bits: u32, lr: f32) -> Result<Self> {
        if !(1..=30).contains(&bits) {
            return Err(Error::invalid("bits", format!("must be between 1 and 30, got {bits}")));
        }
        if !(lr.is_finite() && lr > 0.0) {
            return Err(Error::invalid("lr", format!("must be a positive number, got {lr}")));
        }
        let n = 1usize << bits;
        Ok(OnlineLinear {
            weights: vec![0.0; n],
            sq_sum: vec![0.0; n],
            bias: 0.0,
            bias_sq: 0.0,
            lr,
            mask: n - 1,
        })
    }

    fn logit(&self, feats: &[i64]) -> f32 {
        self.bias + feats.iter().map(|&i| self.weights[i as usize & self.mask]).sum::<f32>()
    }

    /// Logits of each row without learning.
    pub fn predict(&self, indices: &[i64], offsets: &[i64]) -> Result<Vec<f32>> {
        let n = check_rows(indices, offsets)?;
        Ok((0..n)
            .map(|r| self.logit(&indices[offsets[r] as usize..offsets[r + 1] as usize]))
            .collect())
    }

    /// For each row in order: its logit before learning it, then one Adagrad step on it.
    pub fn predict_learn(
        &mut self,
        indices: &[i64],
        offsets: &[i64],
        labels: &[f32],
        weights: &[f32],
    ) -> Result<Vec<f32>> {
        let n = check_rows(indices, offsets)?;
        if labels.len() != n || weights.len() != n {
            return Err(Error::invalid(
                "labels",
                format!("need one label and one weight per row ({n} rows)"),
            ));
        }
        let mut out = Vec::with_capacity(n);
        for r in 0..n {
            let feats = &indices[offsets[r] as usize..offsets[r + 1] as usize];
            let z = self.logit(feats);
            out.push(z);
            let g = (sigmoid(z) - labels[r]) * weights[r];
            if g == 0.0 || !g.is_finite() {
                continue;
            }
            let g2 = g * g;
            self.bias_sq += g2;
            self.bias -= self.lr * g / self.bias_sq.sqrt();
            for &i in feats {
                let i = i as usize & self.mask;
                self.sq_sum[i] += g2;
                self.weights[i] -= self.lr * g / self.sq_sum[i].sqrt();
            }
        }
        Ok(out)
    }

    /// Scale the accumulated squared gradients by `factor` in (0, 1]: later steps grow, so the
    /// model moves faster after a change (Adagrad otherwise only ever slows down).
    pub fn forget(&mut self, factor: f32) -> Result<()> {
        if !(factor > 0.0 && factor <= 1.0) {
            return Err(Error::invalid("factor", format!("must be in (0, 1], got {factor}")));
        }
        self.sq_sum.iter_mut().for_each(|s| *s *= factor);
        self.bias_sq *= factor;
        Ok(())
    }

    pub fn state(&self) -> (&[f32], &[f32], f32, f32, f32) {
        (&self.weights, &self.sq_sum, self.bias, self.bias_sq, self.lr)
    }

    pub fn from_state(weights: Vec<f32>, sq_sum: Vec<f32>, bias: f32, bias_sq: f32, lr: f32) -> Result<Self> {
        let n = weights.len();
        if n == 0 || !n.is_power_of_two() || sq_sum.len() != n {
            return Err(Error::Corrupt(
                "linear model state: tables must have the same power-of-two size".into(),
            ));
        }
        Ok(OnlineLinear {
            weights,
            sq_sum,
            bias,
            bias_sq,
            lr,
            mask: n - 1,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_row_is_scored_before_it_is_learned() {
        let mut m = OnlineLinear::new(8, 0.5).unwrap();
        // The same row three times: the first prediction is 0, later ones move towards the label.
        let idx = [3i64, 3, 3];
        let off = [0i64, 1, 2, 3];
        let z = m.predict_learn(&idx, &off, &[1.0, 1.0, 1.0], &[1.0, 1.0, 1.0]).unwrap();
        assert_eq!(z[0], 0.0);
        assert!(z[1] > z[0] && z[2] > z[1], "{z:?}");
        assert_eq!(m.predict(&[3], &[0, 1]).unwrap()[0], m.logit(&[3]));
    }

    #[test]
    fn learns_a_separable_pattern() {
        let mut m = OnlineLinear::new(10, 0.5).unwrap();
        let mut last = Vec::new();
        for _ in 0..50 {
            last = m
                .predict_learn(&[1, 2, 3, 4], &[0, 1, 2, 3, 4], &[1.0, 0.0, 1.0, 0.0], &[1.0; 4])
                .unwrap();
        }
        assert!(
            last[0] > 1.0 && last[2] > 1.0 && last[1] < -1.0 && last[3] < -1.0,
            "{last:?}"
        );
    }

    #[test]
    fn state_round_trips_and_bad_input_is_an_error() {
        let mut m = OnlineLinear::new(6, 0.3).unwrap();
        m.predict_learn(&[1, 5], &[0, 2], &[1.0], &[1.0]).unwrap();
        let (w, s, b, bs, lr) = m.state();
        let back = OnlineLinear::from_state(w.to_vec(), s.to_vec(), b, bs, lr).unwrap();
        assert_eq!(back, m);
        assert!(OnlineLinear::from_state(vec![0.0; 3], vec![0.0; 3], 0.0, 0.0, 0.1).is_err());
        assert!(m.predict(&[1], &[0, 2]).is_err());
        assert!(m.predict_learn(&[1], &[0, 1], &[1.0, 0.0], &[1.0]).is_err());
        assert!(OnlineLinear::new(0, 0.1).is_err());
        assert!(m.forget(0.0).is_err());
        let before = m.state().1[1];
        m.forget(0.5).unwrap();
        assert_eq!(m.state().1[1], before * 0.5);
        assert!(OnlineLinear::new(8, -1.0).is_err());
    }
}
