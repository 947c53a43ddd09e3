//! The replay ring buffer: a fixed-capacity store of already-hashed training rows.
//!
//! Rows are written at `head`; once the ring is full each push overwrites the oldest row.
//! A row holds its feature indices (any count), a label, a weight, the event time in
//! seconds, an optional dense row id (for example an item index, `-1` for none) and a
//! fixed-width block of dense floats.

use crate::error::{Error, Result};
use crate::rng::Rng;

/// How `sample` picks rows. All draws are with replacement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Strategy {
    Uniform,
    /// Weight `0.5^(age / half_life)` where age counts pushes since the row was written.
    RecencyEvents(f64),
    /// Weight `0.5^(age / half_life)` where age is seconds before the newest row's time.
    RecencySeconds(f64),
    /// Half the draws among rows with label >= 0.5, half among the rest (all from one class
    /// when the other is absent).
    Balanced,
}

#[derive(Debug, Clone, PartialEq)]
struct Row {
    seq: u64,
    label: f32,
    weight: f32,
    ts: f64,
    row_id: i64,
    feats: Vec<u32>,
}

/// A batch of rows, as pushed and as sampled. `offsets` has one more entry than there are
/// rows; `dense` is row-major with `dense_dim` columns.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Rows {
    pub indices: Vec<i64>,
    pub offsets: Vec<i64>,
    pub labels: Vec<f32>,
    pub weights: Vec<f32>,
    pub ts: Vec<f64>,
    pub row_ids: Vec<i64>,
    pub dense: Vec<f32>,
    /// Push sequence number of each row (0 for the first row ever pushed).
    pub seqs: Vec<u64>,
}

impl Rows {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// Borrowed input of [`Ring::push`].
pub struct PushBatch<'a> {
    pub indices: &'a [i64],
    pub offsets: &'a [i64],
    pub labels: &'a [f32],
    pub weights: &'a [f32],
    pub ts: &'a [f64],
    pub row_ids: Option<&'a [i64]>,
    pub dense: Option<&'a [f32]>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Ring {
    capacity: usize,
    dense_dim: usize,
    slots: Vec<Row>,
    dense: Vec<f32>,
    head: usize,
    pushed: u64,
    rng: Rng,
}

const MAGIC: &[u8; 8] = b"RTRECRB\0";
const VERSION: u32 = 1;

impl Ring {
    pub fn new(capacity: usize, dense_dim: usize, seed: u64) -> Result<Self> {
        if capacity == 0 {
            return Err(Error::invalid("capacity", "must be at least 1"));
        }
        if capacity > (1 << 31) {
            return Err(Error::invalid("capacity", "must be at most 2^31 rows"));
        }
        Ok(Ring {
            capacity,
            dense_dim,
            slots: Vec::new(),
            dense: Vec::new(),
            head: 0,
            pushed: 0,
            rng: Rng::new(seed),
        })
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn dense_dim(&self) -> usize {
        self.dense_dim
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Rows pushed since creation, overwritten ones included.
    pub fn pushed(&self) -> u64 {
        self.pushed
    }

    /// Count of rows with label >= 0.5.
    pub fn positives(&self) -> usize {
        self.slots.iter().filter(|r| r.label >= 0.5).count()
    }

    pub fn push(&mut self, b: &PushBatch<'_>) -> Result<()> {
        let n = b.labels.len();
        if b.offsets.len() != n + 1 {
            return Err(Error::invalid(
                "offsets",
                format!("needs {} entries (rows + 1), got {}", n + 1, b.offsets.len()),
            ));
        }
        if b.weights.len() != n {
            return Err(Error::invalid(
                "weights",
                format!("has {} entries for {n} rows", b.weights.len()),
            ));
        }
        if b.ts.len() != n {
            return Err(Error::invalid("ts", format!("has {} entries for {n} rows", b.ts.len())));
        }
        if let Some(ids) = b.row_ids {
            if ids.len() != n {
                return Err(Error::invalid(
                    "row_ids",
                    format!("has {} entries for {n} rows", ids.len()),
                ));
            }
        }
        match b.dense {
            Some(d) if d.len() != n * self.dense_dim => {
                return Err(Error::invalid(
                    "dense",
                    format!("has {} values for {n} rows of width {}", d.len(), self.dense_dim),
                ));
            }
            None if self.dense_dim > 0 && n > 0 => {
                return Err(Error::invalid(
                    "dense",
                    format!("is required: the buffer stores {} dense values a row", self.dense_dim),
                ));
            }
            _ => {}
        }
        if b.offsets.first().copied().unwrap_or(0) != 0 || b.offsets.windows(2).any(|w| w[1] < w[0]) {
            return Err(Error::invalid("offsets", "must start at 0 and never decrease"));
        }
        if b.offsets.last().copied().unwrap_or(0) as usize != b.indices.len() {
            return Err(Error::invalid(
                "offsets",
                "last offset must equal the number of indices",
            ));
        }
        if let Some(bad) = b.indices.iter().find(|&&i| !(0..=u32::MAX as i64).contains(&i)) {
            return Err(Error::invalid("indices", format!("{bad} is outside [0, 2^32)")));
        }
        if let Some(i) = b.labels.iter().position(|l| !l.is_finite()) {
            return Err(Error::invalid("labels", format!("row {i} is not finite")));
        }
        if let Some(i) = b.weights.iter().position(|w| !w.is_finite() || *w < 0.0) {
            return Err(Error::invalid("weights", format!("row {i} is negative or not finite")));
        }
        if let Some(i) = b.ts.iter().position(|t| !t.is_finite()) {
            return Err(Error::invalid("ts", format!("row {i} is not finite")));
        }
        // Only the last `capacity` rows of an oversized batch survive; skip the rest.
        let start = n.saturating_sub(self.capacity);
        self.pushed += start as u64;
        for r in start..n {
            let (s, e) = (b.offsets[r] as usize, b.offsets[r + 1] as usize);
            let row_id = b.row_ids.map_or(-1, |ids| ids[r]);
            let d = self.dense_dim;
            if self.slots.len() < self.capacity {
                self.slots.push(Row {
                    seq: self.pushed,
                    label: b.labels[r],
                    weight: b.weights[r],
                    ts: b.ts[r],
                    row_id,
                    feats: b.indices[s..e].iter().map(|&i| i as u32).collect(),
                });
                if let Some(dv) = b.dense {
                    self.dense.extend_from_slice(&dv[r * d..(r + 1) * d]);
                }
            } else {
                let slot = &mut self.slots[self.head];
                slot.seq = self.pushed;
                slot.label = b.labels[r];
                slot.weight = b.weights[r];
                slot.ts = b.ts[r];
                slot.row_id = row_id;
                slot.feats.clear();
                slot.feats.extend(b.indices[s..e].iter().map(|&i| i as u32));
                if let Some(dv) = b.dense {
                    self.dense[self.head * d..(self.head + 1) * d].copy_from_slice(&dv[r * d..(r + 1) * d]);
                }
            }
            self.head = (self.head + 1) % self.capacity;
            self.pushed += 1;
        }
        Ok(())
    }

    /// Remove every row holding feature index `feature` (for example one user's id feature),
    /// keeping the others in push order; returns how many rows were removed. The ring then
    /// holds fewer rows and fills up again from the newest.
    pub fn forget_feature(&mut self, feature: u32) -> usize {
        let d = self.dense_dim;
        let order: Vec<usize> = (0..self.len()).rev().map(|a| self.slot_of_age(a)).collect();
        let keep: Vec<usize> = order
            .iter()
            .copied()
            .filter(|&s| !self.slots[s].feats.contains(&feature))
            .collect();
        let removed = order.len() - keep.len();
        if removed == 0 {
            return 0;
        }
        let mut slots = Vec::with_capacity(keep.len());
        let mut dense = Vec::with_capacity(keep.len() * d);
        for &s in &keep {
            slots.push(std::mem::replace(
                &mut self.slots[s],
                Row {
                    seq: 0,
                    label: 0.0,
                    weight: 0.0,
                    ts: 0.0,
                    row_id: -1,
                    feats: Vec::new(),
                },
            ));
            dense.extend_from_slice(&self.dense[s * d..(s + 1) * d]);
        }
        self.head = slots.len() % self.capacity;
        self.slots = slots;
        self.dense = dense;
        removed
    }

    /// Physical slot of the row `age` pushes old (0 is the newest).
    fn slot_of_age(&self, age: usize) -> usize {
        (self.head + self.capacity - 1 - age) % self.capacity
    }

    /// Rows in push order, oldest first.
    pub fn rows(&self) -> Rows {
        let ages: Vec<usize> = (0..self.len()).rev().map(|a| self.slot_of_age(a)).collect();
        self.gather(&ages)
    }

    /// Draw `n` rows. With `seed` the draw uses a fresh generator from that seed and leaves
    /// the buffer's own generator untouched; without, it advances the buffer's generator.
    pub fn sample(&mut self, n: usize, strategy: Strategy, seed: Option<u64>) -> Result<Rows> {
        if self.is_empty() {
            return Ok(self.gather(&[]));
        }
        let mut local = seed.map(Rng::new);
        let rng = match local.as_mut() {
            Some(r) => r,
            None => &mut self.rng,
        };
        let len = self.slots.len();
        let picks: Vec<usize> = match strategy {
            Strategy::Uniform => (0..n).map(|_| rng.below(len as u64) as usize).collect(),
            Strategy::RecencyEvents(h) => {
                if !(h.is_finite() && h > 0.0) {
                    return Err(Error::invalid(
                        "half_life",
                        format!("must be a positive number, got {h}"),
                    ));
                }
                // Truncated geometric over ages 0..len, drawn by inverting its CDF.
                let ln_r = -std::f64::consts::LN_2 / h;
                let total = 1.0 - (ln_r * len as f64).exp();
                (0..n)
                    .map(|_| {
                        let u = rng.next_f64();
                        let age = ((1.0 - u * total).ln() / ln_r).floor();
                        let age = if age.is_finite() {
                            (age as usize).min(len - 1)
                        } else {
                            len - 1
                        };
                        (self.head + self.capacity - 1 - age) % self.capacity
                    })
                    .collect()
            }
            Strategy::RecencySeconds(h) => {
                if !(h.is_finite() && h > 0.0) {
                    return Err(Error::invalid(
                        "half_life",
                        format!("must be a positive number, got {h}"),
                    ));
                }
                let newest = self.slots.iter().map(|r| r.ts).fold(f64::NEG_INFINITY, f64::max);
                let mut cum = Vec::with_capacity(len);
                let mut acc = 0.0f64;
                for r in &self.slots {
                    acc += (-(newest - r.ts) / h * std::f64::consts::LN_2).exp();
                    cum.push(acc);
                }
                (0..n)
                    .map(|_| {
                        let x = rng.next_f64() * acc;
                        cum.partition_point(|&c| c <= x).min(len - 1)
                    })
                    .collect()
            }
            Strategy::Balanced => {
                let (pos, neg): (Vec<usize>, Vec<usize>) = (0..len).partition(|&i| self.slots[i].label >= 0.5);
                (0..n)
                    .map(|k| {
                        let class = if pos.is_empty() {
                            &neg
                        } else if neg.is_empty() || k % 2 == 0 {
                            &pos
                        } else {
                            &neg
                        };
                        class[rng.below(class.len() as u64) as usize]
                    })
                    .collect()
            }
        };
        Ok(self.gather(&picks))
    }

    fn gather(&self, picks: &[usize]) -> Rows {
        let d = self.dense_dim;
        let mut out = Rows {
            indices: Vec::with_capacity(picks.len() * 8),
            offsets: Vec::with_capacity(picks.len() + 1),
            labels: Vec::with_capacity(picks.len()),
            weights: Vec::with_capacity(picks.len()),
            ts: Vec::with_capacity(picks.len()),
            row_ids: Vec::with_capacity(picks.len()),
            dense: Vec::with_capacity(picks.len() * d),
            seqs: Vec::with_capacity(picks.len()),
        };
        out.offsets.push(0);
        for &p in picks {
            let r = &self.slots[p];
            out.indices.extend(r.feats.iter().map(|&i| i as i64));
            out.offsets.push(out.indices.len() as i64);
            out.labels.push(r.label);
            out.weights.push(r.weight);
            out.ts.push(r.ts);
            out.row_ids.push(r.row_id);
            out.seqs.push(r.seq);
            out.dense.extend_from_slice(&self.dense[p * d..(p + 1) * d]);
        }
        out
    }

    /// Serialise the whole state, generator included, so that a restored buffer samples
    /// exactly what this one would have.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Vec::with_capacity(64 + self.len() * (40 + 4 * 8 + 4 * self.dense_dim));
        w.extend_from_slice(MAGIC);
        w.extend_from_slice(&VERSION.to_le_bytes());
        w.extend_from_slice(&(self.capacity as u64).to_le_bytes());
        w.extend_from_slice(&(self.dense_dim as u64).to_le_bytes());
        w.extend_from_slice(&(self.head as u64).to_le_bytes());
        w.extend_from_slice(&self.pushed.to_le_bytes());
        for s in self.rng.state() {
            w.extend_from_slice(&s.to_le_bytes());
        }
        w.extend_from_slice(&(self.slots.len() as u64).to_le_bytes());
        for r in &self.slots {
            w.extend_from_slice(&r.seq.to_le_bytes());
            w.extend_from_slice(&r.label.to_le_bytes());
            w.extend_from_slice(&r.weight.to_le_bytes());
            w.extend_from_slice(&r.ts.to_le_bytes());
            w.extend_from_slice(&r.row_id.to_le_bytes());
            w.extend_from_slice(&(r.feats.len() as u64).to_le_bytes());
            for f in &r.feats {
                w.extend_from_slice(&f.to_le_bytes());
            }
        }
        for v in &self.dense {
            w.extend_from_slice(&v.to_le_bytes());
        }
        let sum = fnv1a64(&w);
        w.extend_from_slice(&sum.to_le_bytes());
        w
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        if bytes.len() < MAGIC.len() + 12 || &bytes[..MAGIC.len()] != MAGIC {
            return Err(Error::Corrupt("not an rtrec replay buffer (bad magic bytes)".into()));
        }
        let (body, tail) = bytes.split_at(bytes.len() - 8);
        let mut sum = [0u8; 8];
        sum.copy_from_slice(tail);
        let mut r = Reader {
            buf: body,
            pos: MAGIC.len(),
        };
        let version = r.u32()?;
        if version != VERSION {
            return Err(Error::Corrupt(format!(
                "format version {version} is not supported (this build reads {VERSION})"
            )));
        }
        if fnv1a64(body) != u64::from_le_bytes(sum) {
            return Err(Error::Corrupt("checksum mismatch: the blob is damaged".into()));
        }
        let capacity = r.u64()? as usize;
        let dense_dim = r.u64()? as usize;
        let head = r.u64()? as usize;
        let pushed = r.u64()?;
        let state = [r.u64()?, r.u64()?, r.u64()?, r.u64()?];
        let len = r.u64()? as usize;
        if capacity == 0
            || capacity > (1 << 31)
            || len > capacity
            || head >= capacity
            || (len < capacity && head != len % capacity)
        {
            return Err(Error::Corrupt("inconsistent header".into()));
        }
        // Every row takes at least 40 bytes: refuse a count the blob cannot hold before allocating.
        if len > r.remaining() / 40 {
            return Err(Error::Corrupt("row count exceeds the blob size".into()));
        }
        let mut slots = Vec::with_capacity(len);
        for _ in 0..len {
            let seq = r.u64()?;
            let label = f32::from_le_bytes(r.take::<4>()?);
            let weight = f32::from_le_bytes(r.take::<4>()?);
            let ts = f64::from_le_bytes(r.take::<8>()?);
            let row_id = r.u64()? as i64;
            let nf = r.u64()? as usize;
            if nf > r.remaining() / 4 {
                return Err(Error::Corrupt("feature count exceeds the blob size".into()));
            }
            let mut feats = Vec::with_capacity(nf);
            for _ in 0..nf {
                feats.push(r.u32()?);
            }
            slots.push(Row {
                seq,
                label,
                weight,
                ts,
                row_id,
                feats,
            });
        }
        let n_dense = len
            .checked_mul(dense_dim)
            .ok_or_else(|| Error::Corrupt("dense size overflows".into()))?;
        if n_dense > r.remaining() / 4 + 1 && n_dense != 0 {
            return Err(Error::Corrupt("dense block exceeds the blob size".into()));
        }
        let mut dense = Vec::with_capacity(n_dense);
        for _ in 0..n_dense {
            dense.push(f32::from_le_bytes(r.take::<4>()?));
        }
        if r.remaining() != 0 {
            return Err(Error::Corrupt(format!("{} unexpected trailing bytes", r.remaining())));
        }
        Ok(Ring {
            capacity,
            dense_dim,
            slots,
            dense,
            head,
            pushed,
            rng: Rng::from_state(state),
        })
    }
}

fn fnv1a64(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N]> {
        if self.remaining() < N {
            return Err(Error::Corrupt("blob ends early".into()));
        }
        let mut out = [0u8; N];
        out.copy_from_slice(&self.buf[self.pos..self.pos + N]);
        self.pos += N;
        Ok(out)
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take::<4>()?))
    }

    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take::<8>()?))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn forget_feature_removes_only_rows_holding_it_and_keeps_order() {
        let mut ring = Ring::new(4, 1, 0).unwrap();
        let push = |ring: &mut Ring, feats: &[i64], label: f32| {
            let offsets = [0, feats.len() as i64];
            ring.push(&PushBatch {
                indices: feats,
                offsets: &offsets,
                labels: &[label],
                weights: &[1.0],
                ts: &[0.0],
                row_ids: None,
                dense: Some(&[label]),
            })
            .unwrap();
        };
        for (k, f) in [[1, 7], [2, 8], [1, 9], [3, 7], [4, 8], [1, 8]].iter().enumerate() {
            push(&mut ring, f, k as f32);
        }
        // the ring holds rows 2..6 (labels 2, 3, 4, 5); rows 2 and 5 hold feature 1
        assert_eq!(ring.forget_feature(1), 2);
        let rows = ring.rows();
        assert_eq!(rows.labels, vec![3.0, 4.0]);
        assert_eq!(rows.dense, vec![3.0, 4.0]);
        assert_eq!(ring.forget_feature(1), 0);
        push(&mut ring, &[5, 5], 6.0);
        push(&mut ring, &[6, 6], 7.0);
        push(&mut ring, &[7, 6], 8.0);
        assert_eq!(ring.rows().labels, vec![4.0, 6.0, 7.0, 8.0]);
        let back = Ring::from_bytes(&ring.to_bytes()).unwrap();
        assert_eq!(back.rows(), ring.rows());
    }

    use super::*;

    /// Push rows 0..n, each with one feature equal to its number, label `label(i)`, ts = i.
    fn fill(ring: &mut Ring, range: std::ops::Range<usize>, label: impl Fn(usize) -> f32) {
        let idx: Vec<i64> = range.clone().map(|i| i as i64).collect();
        let offsets: Vec<i64> = (0..=idx.len() as i64).collect();
        let labels: Vec<f32> = range.clone().map(&label).collect();
        let weights = vec![1.0; idx.len()];
        let ts: Vec<f64> = range.clone().map(|i| i as f64).collect();
        let dense: Vec<f32> = range.clone().flat_map(|i| vec![i as f32; ring.dense_dim()]).collect();
        ring.push(&PushBatch {
            indices: &idx,
            offsets: &offsets,
            labels: &labels,
            weights: &weights,
            ts: &ts,
            row_ids: Some(&idx),
            dense: Some(&dense),
        })
        .unwrap();
    }

    #[test]
    fn wraps_around_and_overwrites_oldest_first() {
        let mut ring = Ring::new(5, 2, 0).unwrap();
        fill(&mut ring, 0..3, |_| 0.0);
        assert_eq!(ring.rows().indices, vec![0, 1, 2]);
        fill(&mut ring, 3..8, |_| 0.0);
        assert_eq!(ring.len(), 5);
        assert_eq!(ring.pushed(), 8);
        let rows = ring.rows();
        assert_eq!(rows.indices, vec![3, 4, 5, 6, 7]);
        assert_eq!(rows.seqs, vec![3, 4, 5, 6, 7]);
        assert_eq!(rows.dense, vec![3.0, 3.0, 4.0, 4.0, 5.0, 5.0, 6.0, 6.0, 7.0, 7.0]);
        // A batch larger than the ring keeps only its newest rows.
        fill(&mut ring, 100..112, |_| 1.0);
        assert_eq!(ring.rows().indices, vec![107, 108, 109, 110, 111]);
        assert_eq!(ring.pushed(), 20);
    }

    #[test]
    fn uniform_covers_every_row() {
        let mut ring = Ring::new(100, 0, 1).unwrap();
        fill(&mut ring, 0..100, |_| 0.0);
        let s = ring.sample(20_000, Strategy::Uniform, None).unwrap();
        let mut counts = [0u32; 100];
        for &i in &s.indices {
            counts[i as usize] += 1;
        }
        assert!(counts.iter().all(|&c| c > 120 && c < 290), "{counts:?}");
    }

    #[test]
    fn recency_favours_recent_rows() {
        let mut ring = Ring::new(1000, 0, 2).unwrap();
        fill(&mut ring, 0..1000, |_| 0.0);
        for strategy in [Strategy::RecencyEvents(100.0), Strategy::RecencySeconds(100.0)] {
            let s = ring.sample(20_000, strategy, None).unwrap();
            let newest = s.indices.iter().filter(|&&i| i >= 900).count() as f64 / 20_000.0;
            let oldest = s.indices.iter().filter(|&&i| i < 100).count() as f64 / 20_000.0;
            // Half-life 100: the newest 100 rows hold half the mass, the oldest ~0.1%.
            assert!((newest - 0.5).abs() < 0.03, "{strategy:?}: newest share {newest}");
            assert!(oldest < 0.01, "{strategy:?}: oldest share {oldest}");
            let median_age = {
                let mut ages: Vec<i64> = s.indices.iter().map(|&i| 999 - i).collect();
                ages.sort();
                ages[ages.len() / 2]
            };
            assert!(
                (90..=110).contains(&median_age),
                "{strategy:?}: median age {median_age}"
            );
        }
    }

    #[test]
    fn balanced_really_balances() {
        let mut ring = Ring::new(1000, 0, 3).unwrap();
        // 2% positives.
        fill(&mut ring, 0..1000, |i| if i % 50 == 0 { 1.0 } else { 0.0 });
        let s = ring.sample(10_000, Strategy::Balanced, None).unwrap();
        let pos = s.labels.iter().filter(|&&l| l >= 0.5).count();
        assert_eq!(pos, 5_000);
        let u = ring.sample(10_000, Strategy::Uniform, None).unwrap();
        let upos = u.labels.iter().filter(|&&l| l >= 0.5).count();
        assert!(upos < 400, "{upos}");
        // With one class only, every draw comes from it.
        let mut ring = Ring::new(10, 0, 3).unwrap();
        fill(&mut ring, 0..10, |_| 0.0);
        assert_eq!(ring.sample(7, Strategy::Balanced, None).unwrap().len(), 7);
    }

    #[test]
    fn seeded_sampling_is_reproducible() {
        let mut a = Ring::new(50, 1, 9).unwrap();
        fill(&mut a, 0..80, |i| (i % 2) as f32);
        let mut b = a.clone();
        assert_eq!(
            a.sample(64, Strategy::Uniform, None).unwrap(),
            b.sample(64, Strategy::Uniform, None).unwrap()
        );
        let x = a.sample(64, Strategy::RecencyEvents(10.0), Some(5)).unwrap();
        let y = a.sample(64, Strategy::RecencyEvents(10.0), Some(5)).unwrap();
        assert_eq!(x, y);
        assert_ne!(
            a.sample(64, Strategy::Uniform, None).unwrap(),
            a.sample(64, Strategy::Uniform, None).unwrap()
        );
    }

    #[test]
    fn serialisation_round_trips_exactly() {
        let mut ring = Ring::new(7, 3, 11).unwrap();
        fill(&mut ring, 0..12, |i| (i % 3) as f32 / 2.0);
        ring.sample(5, Strategy::Uniform, None).unwrap();
        let bytes = ring.to_bytes();
        let mut back = Ring::from_bytes(&bytes).unwrap();
        assert_eq!(back, ring);
        assert_eq!(
            back.sample(32, Strategy::Uniform, None).unwrap(),
            ring.sample(32, Strategy::Uniform, None).unwrap()
        );
        let empty = Ring::new(3, 0, 0).unwrap();
        assert_eq!(Ring::from_bytes(&empty.to_bytes()).unwrap(), empty);
    }

    #[test]
    fn corrupt_blobs_are_errors() {
        let mut ring = Ring::new(7, 2, 11).unwrap();
        fill(&mut ring, 0..5, |_| 1.0);
        let bytes = ring.to_bytes();
        assert!(matches!(
            Ring::from_bytes(b"hello world, not a ring"),
            Err(Error::Corrupt(_))
        ));
        assert!(matches!(
            Ring::from_bytes(&bytes[..bytes.len() / 2]),
            Err(Error::Corrupt(_))
        ));
        let mut flipped = bytes.clone();
        flipped[60] ^= 0xff;
        assert!(matches!(Ring::from_bytes(&flipped), Err(Error::Corrupt(_))));
        let mut future = bytes.clone();
        future[8] = 99;
        let err = Ring::from_bytes(&future).unwrap_err();
        assert!(err.to_string().contains("version 99"), "{err}");
        for cut in 0..bytes.len() {
            assert!(Ring::from_bytes(&bytes[..cut]).is_err());
        }
    }

    #[test]
    fn bad_pushes_are_rejected_without_changing_state() {
        let mut ring = Ring::new(4, 0, 0).unwrap();
        let before = ring.clone();
        let bad_offsets = PushBatch {
            indices: &[1, 2],
            offsets: &[0, 3],
            labels: &[1.0],
            weights: &[1.0],
            ts: &[0.0],
            row_ids: None,
            dense: None,
        };
        assert!(ring.push(&bad_offsets).is_err());
        let nan = PushBatch {
            indices: &[1],
            offsets: &[0, 1],
            labels: &[f32::NAN],
            weights: &[1.0],
            ts: &[0.0],
            row_ids: None,
            dense: None,
        };
        assert!(ring.push(&nan).is_err());
        let negative = PushBatch {
            indices: &[-1],
            offsets: &[0, 1],
            labels: &[1.0],
            weights: &[1.0],
            ts: &[0.0],
            row_ids: None,
            dense: None,
        };
        assert!(ring.push(&negative).is_err());
        assert_eq!(ring, before);
        assert!(Ring::new(0, 0, 0).is_err());
    }
}
