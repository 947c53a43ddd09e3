//! Feature hashing.
//!
//! # Algorithm (stable: model checkpoints depend on it)
//!
//! * The hash is MurmurHash3 x86_32, as in Vowpal Wabbit.
//! * Each namespace `ns` has the seed `murmur3_32(ns.as_bytes(), base_seed)`, so `user=42`
//!   and `item=42` land in different buckets.
//! * A value `v` (UTF-8 bytes) of namespace `ns` hashes to `h = murmur3_32(v, seed(ns))`.
//!   Nulls produce no feature; the empty string is a value like any other.
//! * A cross `a x b` has the seed `murmur3_32(b"a^b", base_seed)`. For every pair of values of
//!   the two namespaces in a row (the cartesian product for multi-valued columns) its hash is
//!   `murmur3_32(h_a.to_le_bytes() ++ h_b.to_le_bytes(), seed(a^b))`.
//! * The bucket is `h & (2^bits - 1)`. With signed hashing the sign is `+1` when the top bit of
//!   `fmix32(h ^ 0x5BD1_E995)` is clear, else `-1`.
//! * Features of a row come in namespace order, then crosses in their configured order.

use std::collections::HashSet;

use crate::error::{Error, Result};

const C1: u32 = 0xcc9e_2d51;
const C2: u32 = 0x1b87_3593;

#[inline(always)]
pub fn fmix32(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    h
}

#[inline(always)]
fn mix_k1(mut k1: u32) -> u32 {
    k1 = k1.wrapping_mul(C1);
    k1 = k1.rotate_left(15);
    k1.wrapping_mul(C2)
}

#[inline(always)]
fn mix_h1(mut h1: u32, k1: u32) -> u32 {
    h1 ^= k1;
    h1 = h1.rotate_left(13);
    h1.wrapping_mul(5).wrapping_add(0xe654_6b64)
}

/// MurmurHash3 x86_32 of `data` with `seed`.
#[inline]
pub fn murmur3_32(data: &[u8], seed: u32) -> u32 {
    let mut h1 = seed;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let k1 = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        h1 = mix_h1(h1, mix_k1(k1));
    }
    let tail = chunks.remainder();
    let mut k1 = 0u32;
    if tail.len() >= 3 {
        k1 ^= (tail[2] as u32) << 16;
    }
    if tail.len() >= 2 {
        k1 ^= (tail[1] as u32) << 8;
    }
    if !tail.is_empty() {
        k1 ^= tail[0] as u32;
        h1 ^= mix_k1(k1);
    }
    h1 ^= data.len() as u32;
    fmix32(h1)
}

/// `murmur3_32(a.to_le_bytes() ++ b.to_le_bytes(), seed)` without building the buffer.
#[inline(always)]
pub fn murmur3_pair(a: u32, b: u32, seed: u32) -> u32 {
    let mut h1 = mix_h1(seed, mix_k1(a));
    h1 = mix_h1(h1, mix_k1(b));
    fmix32(h1 ^ 8)
}

#[inline(always)]
pub fn sign_of(h: u32) -> f32 {
    if fmix32(h ^ 0x5BD1_E995) >> 31 == 0 {
        1.0
    } else {
        -1.0
    }
}

/// Arrow-style offsets, 32- or 64-bit.
#[derive(Clone, Copy, Debug)]
pub enum Offsets<'a> {
    I32(&'a [i32]),
    I64(&'a [i64]),
}

impl Offsets<'_> {
    #[inline(always)]
    fn get(&self, i: usize) -> i64 {
        match self {
            Offsets::I32(o) => o[i] as i64,
            Offsets::I64(o) => o[i],
        }
    }

    fn len(&self) -> usize {
        match self {
            Offsets::I32(o) => o.len(),
            Offsets::I64(o) => o.len(),
        }
    }
}

#[inline(always)]
fn is_valid(validity: Option<&[u8]>, i: usize) -> bool {
    match validity {
        None => true,
        Some(bits) => bits[i >> 3] >> (i & 7) & 1 == 1,
    }
}

fn check_validity(validity: Option<&[u8]>, offset: usize, len: usize, field: &str) -> Result<()> {
    if let Some(bits) = validity {
        if bits.len() * 8 < offset + len {
            return Err(Error::invalid(field, "validity bitmap is shorter than the column"));
        }
    }
    Ok(())
}

fn check_offsets(offsets: Offsets<'_>, offset: usize, len: usize, data_len: usize, field: &str) -> Result<()> {
    if offsets.len() < offset + len + 1 {
        return Err(Error::invalid(field, "offsets buffer is shorter than the column"));
    }
    let mut prev = offsets.get(offset);
    if prev < 0 {
        return Err(Error::invalid(field, "offsets must not be negative"));
    }
    for i in offset + 1..=offset + len {
        let cur = offsets.get(i);
        if cur < prev {
            return Err(Error::invalid(field, "offsets must not decrease"));
        }
        prev = cur;
    }
    if prev as usize > data_len {
        return Err(Error::invalid(field, "offsets point past the end of the data buffer"));
    }
    Ok(())
}

/// A borrowed Arrow string array (`utf8` or `large_utf8`): buffers plus the slice offset.
#[derive(Clone, Copy, Debug)]
pub struct StrArray<'a> {
    pub validity: Option<&'a [u8]>,
    pub offsets: Offsets<'a>,
    pub data: &'a [u8],
    pub offset: usize,
    pub len: usize,
}

impl<'a> StrArray<'a> {
    /// Check buffer sizes so that `get` cannot index out of bounds.
    pub fn validate(&self, field: &str) -> Result<()> {
        check_validity(self.validity, self.offset, self.len, field)?;
        check_offsets(self.offsets, self.offset, self.len, self.data.len(), field)
    }

    #[inline(always)]
    pub fn get(&self, i: usize) -> Option<&'a [u8]> {
        let j = self.offset + i;
        if !is_valid(self.validity, j) {
            return None;
        }
        let (s, e) = (self.offsets.get(j) as usize, self.offsets.get(j + 1) as usize);
        Some(&self.data[s..e])
    }
}

/// A borrowed Arrow `list<utf8>` array.
#[derive(Clone, Copy, Debug)]
pub struct ListArray<'a> {
    pub validity: Option<&'a [u8]>,
    pub offsets: Offsets<'a>,
    pub offset: usize,
    pub len: usize,
    pub values: StrArray<'a>,
}

impl ListArray<'_> {
    pub fn validate(&self, field: &str) -> Result<()> {
        check_validity(self.validity, self.offset, self.len, field)?;
        check_offsets(self.offsets, self.offset, self.len, self.values.len, field)?;
        self.values.validate(field)
    }

    #[inline(always)]
    fn range(&self, i: usize) -> Option<std::ops::Range<usize>> {
        let j = self.offset + i;
        if !is_valid(self.validity, j) {
            return None;
        }
        Some(self.offsets.get(j) as usize..self.offsets.get(j + 1) as usize)
    }
}

/// One input column: one value per row, or several.
#[derive(Clone, Copy, Debug)]
pub enum Column<'a> {
    Single(StrArray<'a>),
    Multi(ListArray<'a>),
}

impl Column<'_> {
    pub fn len(&self) -> usize {
        match self {
            Column::Single(a) => a.len,
            Column::Multi(a) => a.len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn validate(&self, field: &str) -> Result<()> {
        match self {
            Column::Single(a) => a.validate(field),
            Column::Multi(a) => a.validate(field),
        }
    }
}

/// The hashed features of a batch, in the CSR form `torch.nn.EmbeddingBag` takes with
/// `include_last_offset=True`: row `r` owns `indices[offsets[r]..offsets[r + 1]]`.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Hashed {
    pub indices: Vec<i64>,
    pub offsets: Vec<i64>,
    pub signs: Option<Vec<f32>>,
}

/// One namespace's raw hashes (before masking) for [`FeatureHasher::hash_raw`].
#[derive(Debug, Clone, Copy)]
pub enum RawPart<'a> {
    /// Every row has these values (a request's user, hour, context value).
    Same(&'a [u32]),
    /// Row `r` has `values[offsets[idx[r]]..offsets[idx[r] + 1]]`: values kept per item by
    /// the caller, gathered by the rows' item indices.
    Table { values: &'a [u32], offsets: &'a [i64] },
}

impl RawPart<'_> {
    fn validate(&self, field: &str, idx: &[i64]) -> Result<()> {
        let RawPart::Table { values, offsets } = self else {
            return Ok(());
        };
        let Some((&first, _)) = offsets.split_first() else {
            return Err(Error::invalid(field, "offsets must have at least one entry"));
        };
        if first < 0 || offsets.windows(2).any(|w| w[1] < w[0]) || offsets[offsets.len() - 1] > values.len() as i64 {
            return Err(Error::invalid(
                field,
                "offsets must be non-decreasing, from 0 up to the number of values",
            ));
        }
        let rows = (offsets.len() - 1) as i64;
        if let Some(&bad) = idx.iter().find(|&&i| i < 0 || i >= rows) {
            return Err(Error::invalid(field, format!("row index {bad} is outside 0..{rows}")));
        }
        Ok(())
    }

    #[inline]
    fn row(&self, i: i64) -> &[u32] {
        match *self {
            RawPart::Same(v) => v,
            RawPart::Table { values, offsets } => {
                let i = i as usize;
                &values[offsets[i] as usize..offsets[i + 1] as usize]
            }
        }
    }
}

/// Concatenate, row by row, CSR blocks with the same number of rows (block order within a row).
pub fn merge_rows(blocks: &[(&[i64], &[i64])]) -> Result<(Vec<i64>, Vec<i64>)> {
    let rows = blocks.first().map_or(0, |b| b.1.len().saturating_sub(1));
    for (k, (ind, off)) in blocks.iter().enumerate() {
        if off.len() != rows + 1 {
            return Err(Error::invalid(
                "offsets",
                format!("block {k} has {} rows, block 0 has {rows}", off.len().saturating_sub(1)),
            ));
        }
        if off[0] < 0 || off.windows(2).any(|w| w[1] < w[0]) || off[rows] > ind.len() as i64 {
            return Err(Error::invalid(
                "offsets",
                format!("block {k}: offsets must be non-decreasing, from 0 up to the number of indices"),
            ));
        }
    }
    let total: usize = blocks.iter().map(|(_, off)| (off[rows] - off[0]) as usize).sum();
    let mut indices = Vec::with_capacity(total);
    let mut offsets = Vec::with_capacity(rows + 1);
    offsets.push(0);
    for r in 0..rows {
        for (ind, off) in blocks {
            indices.extend_from_slice(&ind[off[r] as usize..off[r + 1] as usize]);
        }
        offsets.push(indices.len() as i64);
    }
    Ok((indices, offsets))
}

/// Distinct inputs against distinct buckets in one batch.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CollisionStats {
    pub features: u64,
    pub distinct_inputs: u64,
    pub distinct_buckets: u64,
}

#[derive(Debug, Clone)]
pub struct FeatureHasher {
    namespaces: Vec<String>,
    seeds: Vec<u32>,
    crosses: Vec<(usize, usize, u32)>,
    bits: u32,
    mask: u32,
    signed: bool,
    /// Per namespace: whether its own features are emitted (crosses are always emitted).
    emit: Vec<bool>,
}

impl FeatureHasher {
    pub fn new(
        namespaces: Vec<String>,
        crosses: &[(String, String)],
        bits: u32,
        seed: u32,
        signed: bool,
    ) -> Result<Self> {
        if !(1..=32).contains(&bits) {
            return Err(Error::invalid("bits", format!("must be between 1 and 32, got {bits}")));
        }
        if namespaces.is_empty() {
            return Err(Error::invalid("namespaces", "at least one namespace is required"));
        }
        let mut seen = HashSet::new();
        for ns in &namespaces {
            if !seen.insert(ns.as_str()) {
                return Err(Error::invalid("namespaces", format!("namespace {ns:?} appears twice")));
            }
        }
        let seeds = namespaces.iter().map(|ns| murmur3_32(ns.as_bytes(), seed)).collect();
        let mut cross_ids = Vec::with_capacity(crosses.len());
        for (a, b) in crosses {
            let find = |name: &str| {
                namespaces.iter().position(|n| n == name).ok_or_else(|| {
                    Error::invalid("crosses", format!("namespace {name:?} is not one of the namespaces"))
                })
            };
            let (ia, ib) = (find(a)?, find(b)?);
            cross_ids.push((ia, ib, murmur3_32(format!("{a}^{b}").as_bytes(), seed)));
        }
        let mask = if bits == 32 { u32::MAX } else { (1u32 << bits) - 1 };
        Ok(FeatureHasher {
            emit: vec![true; namespaces.len()],
            namespaces,
            seeds,
            crosses: cross_ids,
            bits,
            mask,
            signed,
        })
    }

    /// Emit only the crosses and the namespaces in `names`; the others are hashed only to
    /// feed crosses. Target encodings of a cross use this.
    pub fn emit_only(mut self, names: &[String]) -> Result<Self> {
        for n in names {
            if !self.namespaces.contains(n) {
                return Err(Error::invalid(
                    "emit",
                    format!("namespace {n:?} is not one of the namespaces"),
                ));
            }
        }
        self.emit = self.namespaces.iter().map(|ns| names.contains(ns)).collect();
        Ok(self)
    }

    pub fn namespaces(&self) -> &[String] {
        &self.namespaces
    }

    pub fn bits(&self) -> u32 {
        self.bits
    }

    pub fn seed_of(&self, ns: usize) -> u32 {
        self.seeds[ns]
    }

    fn one_per_namespace(&self, field: &str, got: usize) -> Result<()> {
        if got == self.namespaces.len() {
            return Ok(());
        }
        Err(Error::invalid(
            field,
            format!(
                "expected {} {field} (one per namespace), got {got}",
                self.namespaces.len()
            ),
        ))
    }

    /// Hash a batch. `columns[i]` belongs to namespace `i`; all columns have the same length.
    /// With `stats`, also count distinct inputs and buckets (a second, 64-bit hash per feature).
    pub fn hash(&self, columns: &[Column<'_>], stats: bool) -> Result<(Hashed, Option<CollisionStats>)> {
        self.one_per_namespace("columns", columns.len())?;
        let n_rows = columns[0].len();
        for (col, ns) in columns.iter().zip(&self.namespaces) {
            if col.len() != n_rows {
                return Err(Error::invalid(
                    ns.as_str(),
                    format!(
                        "column has {} rows but {:?} has {n_rows}",
                        col.len(),
                        self.namespaces[0]
                    ),
                ));
            }
            col.validate(ns)?;
        }
        let mut out = Hashed {
            indices: Vec::with_capacity(n_rows * (columns.len() + self.crosses.len())),
            offsets: Vec::with_capacity(n_rows + 1),
            signs: if self.signed { Some(Vec::new()) } else { None },
        };
        // Raw 32-bit hashes of the current row, per namespace, for the crosses.
        let mut raw: Vec<Vec<u32>> = vec![Vec::new(); columns.len()];
        let crossed: Vec<bool> = (0..columns.len())
            .map(|i| self.crosses.iter().any(|&(a, b, _)| a == i || b == i))
            .collect();
        let mut inputs: HashSet<u64> = HashSet::new();
        out.offsets.push(0);
        for r in 0..n_rows {
            for (i, col) in columns.iter().enumerate() {
                let seed = self.seeds[i];
                let keep = crossed[i];
                let emitted = self.emit[i];
                raw[i].clear();
                let mut emit = |v: &[u8], out: &mut Hashed| {
                    let h = murmur3_32(v, seed);
                    if keep {
                        raw[i].push(h);
                    }
                    if !emitted {
                        return;
                    }
                    out.indices.push((h & self.mask) as i64);
                    if let Some(signs) = out.signs.as_mut() {
                        signs.push(sign_of(h));
                    }
                    if stats {
                        inputs.insert(input_key(v, seed));
                    }
                };
                match col {
                    Column::Single(a) => {
                        if let Some(v) = a.get(r) {
                            emit(v, &mut out);
                        }
                    }
                    Column::Multi(l) => {
                        if let Some(range) = l.range(r) {
                            for k in range {
                                if let Some(v) = l.values.get(k) {
                                    emit(v, &mut out);
                                }
                            }
                        }
                    }
                }
            }
            for &(a, b, seed) in &self.crosses {
                for &ha in &raw[a] {
                    for &hb in &raw[b] {
                        let h = murmur3_pair(ha, hb, seed);
                        out.indices.push((h & self.mask) as i64);
                        if let Some(signs) = out.signs.as_mut() {
                            signs.push(sign_of(h));
                        }
                        if stats {
                            inputs.insert(((ha as u64) << 32 | hb as u64) ^ ((seed as u64) << 17).rotate_left(29));
                        }
                    }
                }
            }
            out.offsets.push(out.indices.len() as i64);
        }
        let stats = stats.then(|| {
            let buckets: HashSet<i64> = out.indices.iter().copied().collect();
            CollisionStats {
                features: out.indices.len() as u64,
                distinct_inputs: inputs.len() as u64,
                distinct_buckets: buckets.len() as u64,
            }
        });
        Ok((out, stats))
    }
}

impl FeatureHasher {
    /// The raw 32-bit hashes of one namespace's column, per row, as CSR `(values, offsets)`:
    /// what [`FeatureHasher::hash_raw`] takes in a [`RawPart::Table`].
    pub fn raw_hashes(&self, ns: &str, col: &Column<'_>) -> Result<(Vec<u32>, Vec<i64>)> {
        let i = self
            .namespaces
            .iter()
            .position(|n| n == ns)
            .ok_or_else(|| Error::invalid("namespace", format!("{ns:?} is not one of the namespaces")))?;
        col.validate(ns)?;
        let seed = self.seeds[i];
        let mut values = Vec::with_capacity(col.len());
        let mut offsets = Vec::with_capacity(col.len() + 1);
        offsets.push(0);
        for r in 0..col.len() {
            match col {
                Column::Single(a) => values.extend(a.get(r).map(|v| murmur3_32(v, seed))),
                Column::Multi(l) => {
                    if let Some(range) = l.range(r) {
                        values.extend(range.filter_map(|k| l.values.get(k)).map(|v| murmur3_32(v, seed)));
                    }
                }
            }
            offsets.push(values.len() as i64);
        }
        Ok((values, offsets))
    }

    /// Hash rows given as raw hashes per namespace (`parts[i]` for namespace `i`): the same
    /// features, in the same order, as [`FeatureHasher::hash`] of the values they came from.
    /// With `distinct`, a bucket repeated within a row is kept once (its first place); `tag`
    /// (0..=255, only with at most 24 bits) is OR-ed into bits 24.. of every index.
    pub fn hash_raw(&self, parts: &[RawPart<'_>], idx: &[i64], distinct: bool, tag: u32) -> Result<Hashed> {
        self.one_per_namespace("parts", parts.len())?;
        if tag > 255 || (tag != 0 && self.bits > 24) {
            return Err(Error::invalid("tag", "must be 0..=255, and 0 with more than 24 bits"));
        }
        for (p, ns) in parts.iter().zip(&self.namespaces) {
            p.validate(ns, idx)?;
        }
        let tag_bits = (tag as i64) << 24;
        let mut out = Hashed {
            indices: Vec::with_capacity(idx.len() * (parts.len() + self.crosses.len())),
            offsets: Vec::with_capacity(idx.len() + 1),
            signs: if self.signed { Some(Vec::new()) } else { None },
        };
        out.offsets.push(0);
        let mut row: Vec<&[u32]> = Vec::with_capacity(parts.len());
        for &i in idx {
            row.clear();
            row.extend(parts.iter().map(|p| p.row(i)));
            let start = out.indices.len();
            let push = |h: u32, out: &mut Hashed| {
                let ix = (h & self.mask) as i64 | tag_bits;
                if distinct && out.indices[start..].contains(&ix) {
                    return;
                }
                out.indices.push(ix);
                if let Some(signs) = out.signs.as_mut() {
                    signs.push(sign_of(h));
                }
            };
            for (k, values) in row.iter().enumerate() {
                if self.emit[k] {
                    for &h in *values {
                        push(h, &mut out);
                    }
                }
            }
            for &(a, b, seed) in &self.crosses {
                for &ha in row[a] {
                    for &hb in row[b] {
                        push(murmur3_pair(ha, hb, seed), &mut out);
                    }
                }
            }
            out.offsets.push(out.indices.len() as i64);
        }
        Ok(out)
    }
}

/// A 64-bit identity of (namespace, value) for collision counting: two 32-bit murmur hashes
/// with unrelated seeds.
#[inline]
fn input_key(v: &[u8], seed: u32) -> u64 {
    (murmur3_32(v, seed) as u64) << 32 | murmur3_32(v, seed ^ 0x9E37_79B9) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur3_known_answers() {
        // Reference vectors of MurmurHash3_x86_32 (SMHasher / the canonical C++ implementation).
        assert_eq!(murmur3_32(b"", 0), 0);
        assert_eq!(murmur3_32(b"", 1), 0x514E_28B7);
        assert_eq!(murmur3_32(b"", 0xffff_ffff), 0x81F1_6F39);
        assert_eq!(murmur3_32(b"test", 0), 0xba6b_d213);
        assert_eq!(murmur3_32(b"Hello, world!", 0), 0xc036_3e43);
        assert_eq!(murmur3_32(b"Hello, world!", 1234), 0xfaf6_cdb3);
        assert_eq!(
            murmur3_32(b"The quick brown fox jumps over the lazy dog", 0),
            0x2e4f_f723
        );
        assert_eq!(murmur3_32(&[0x21, 0x43, 0x65, 0x87], 0), 0xf55b_516b);
        assert_eq!(murmur3_32(&[0x21, 0x43, 0x65], 0), 0x7e4a_8634);
        assert_eq!(murmur3_32(&[0x21, 0x43], 0), 0xa0f7_b07a);
        assert_eq!(murmur3_32(&[0x21], 0), 0x7266_1cf4);
    }

    #[test]
    fn pair_equals_hash_of_bytes() {
        for (a, b, s) in [(0u32, 0u32, 0u32), (1, 2, 3), (0xdead_beef, 0x1234_5678, 99)] {
            let mut buf = a.to_le_bytes().to_vec();
            buf.extend_from_slice(&b.to_le_bytes());
            assert_eq!(murmur3_pair(a, b, s), murmur3_32(&buf, s));
        }
    }

    fn strs(values: &[Option<&str>]) -> (Vec<u8>, Vec<i32>, Vec<u8>) {
        let mut data = Vec::new();
        let mut offsets = vec![0i32];
        let mut validity = vec![0u8; values.len().div_ceil(8)];
        for (i, v) in values.iter().enumerate() {
            if let Some(s) = v {
                data.extend_from_slice(s.as_bytes());
                validity[i / 8] |= 1 << (i % 8);
            }
            offsets.push(data.len() as i32);
        }
        (data, offsets, validity)
    }

    /// A string array over whole buffers: one row per offset pair.
    fn arr<'a>(validity: Option<&'a [u8]>, offsets: &'a [i32], data: &'a [u8]) -> StrArray<'a> {
        StrArray {
            validity,
            offsets: Offsets::I32(offsets),
            data,
            offset: 0,
            len: offsets.len() - 1,
        }
    }

    #[test]
    fn hash_raw_equals_hash_of_the_gathered_rows() {
        let h = FeatureHasher::new(
            vec!["user".into(), "item".into(), "tags".into(), "hour".into()],
            &[("user".into(), "tags".into()), ("item".into(), "tags".into())],
            6, // few buckets, so that rows repeat a bucket
            3,
            true,
        )
        .unwrap();
        // A catalog of three items: tags [a, b, a], none, [c].
        let (id_d, id_o, _) = strs(&[Some("i0"), Some("i1"), Some("i2")]);
        let (tv_d, tv_o, _) = strs(&[Some("a"), Some("b"), Some("a"), Some("c")]);
        let lo = [0i64, 3, 3, 4];
        let tag_validity = [0b101u8];
        let tags = Column::Multi(ListArray {
            validity: Some(&tag_validity),
            offsets: Offsets::I64(&lo),
            offset: 0,
            len: 3,
            values: arr(None, &tv_o, &tv_d),
        });
        let items = Column::Single(arr(None, &id_o, &id_d));
        let (item_v, item_o) = h.raw_hashes("item", &items).unwrap();
        let (tag_v, tag_o) = h.raw_hashes("tags", &tags).unwrap();
        assert_eq!(tag_o, vec![0, 3, 3, 4]);
        let user = [murmur3_32(b"u7", h.seed_of(0))];
        let idx = [2i64, 0, 1, 0];
        let parts = [
            RawPart::Same(&user),
            RawPart::Table {
                values: &item_v,
                offsets: &item_o,
            },
            RawPart::Table {
                values: &tag_v,
                offsets: &tag_o,
            },
            RawPart::Same(&[]),
        ];
        let got = h.hash_raw(&parts, &idx, false, 0).unwrap();
        // The same rows through `hash`: user u7, items i2 i0 i1 i0, their tags, no hour.
        let (u_d, u_o, _) = strs(&[Some("u7"); 4]);
        let (r_d, r_o, _) = strs(&[Some("i2"), Some("i0"), Some("i1"), Some("i0")]);
        let (rt_d, rt_o, _) = strs(&[
            Some("c"),
            Some("a"),
            Some("b"),
            Some("a"),
            Some("a"),
            Some("b"),
            Some("a"),
        ]);
        let rlo = [0i64, 1, 4, 4, 7];
        let r_validity = [0b1011u8];
        let (hr_d, hr_o, hr_v) = strs(&[None; 4]);
        let want = h
            .hash(
                &[
                    Column::Single(arr(None, &u_o, &u_d)),
                    Column::Single(arr(None, &r_o, &r_d)),
                    Column::Multi(ListArray {
                        validity: Some(&r_validity),
                        offsets: Offsets::I64(&rlo),
                        offset: 0,
                        len: 4,
                        values: arr(None, &rt_o, &rt_d),
                    }),
                    Column::Single(arr(Some(&hr_v), &hr_o, &hr_d)),
                ],
                false,
            )
            .unwrap()
            .0;
        assert_eq!(got, want);
        // distinct keeps each bucket of a row once, in its first place; tag goes above bit 24.
        let d = h.hash_raw(&parts, &idx, true, 5).unwrap();
        for r in 0..idx.len() {
            let (a, b) = (want.offsets[r] as usize, want.offsets[r + 1] as usize);
            let mut first = Vec::new();
            for &ix in &want.indices[a..b] {
                if !first.contains(&(ix | 5 << 24)) {
                    first.push(ix | 5 << 24);
                }
            }
            assert_eq!(&d.indices[d.offsets[r] as usize..d.offsets[r + 1] as usize], &first[..]);
        }
        assert!(
            d.indices.len() < want.indices.len(),
            "the rows repeat buckets at 6 bits"
        );
        // A row index past the table, or a tag with too many bits, is an error.
        assert!(h.hash_raw(&parts, &[3], false, 0).is_err());
        assert!(h.hash_raw(&parts[..3], &idx, false, 0).is_err());
        assert!(h.hash_raw(&parts, &idx, false, 256).is_err());
    }

    #[test]
    fn merge_rows_concatenates_each_row_in_block_order() {
        let (i1, o1) = (vec![1i64, 2, 3], vec![0i64, 2, 2, 3]);
        let (i2, o2) = (vec![7i64, 8], vec![0i64, 0, 1, 2]);
        let (ind, off) = merge_rows(&[(&i1, &o1), (&i2, &o2)]).unwrap();
        assert_eq!(ind, vec![1, 2, 7, 3, 8]);
        assert_eq!(off, vec![0, 2, 3, 5]);
        assert!(merge_rows(&[(&i1, &o1), (&i2, &o2[..3])]).is_err());
        assert_eq!(merge_rows(&[]).unwrap(), (vec![], vec![0]));
    }

    #[test]
    fn namespaces_get_their_own_seed_and_nulls_give_nothing() {
        let h = FeatureHasher::new(vec!["user".into(), "item".into()], &[], 20, 0, false).unwrap();
        let (d, o, v) = strs(&[Some("42"), None]);
        let col = arr(Some(&v), &o, &d);
        let (out, _) = h.hash(&[Column::Single(col), Column::Single(col)], false).unwrap();
        assert_eq!(out.offsets, vec![0, 2, 2]);
        assert_ne!(out.indices[0], out.indices[1]);
        let user_seed = murmur3_32(b"user", 0);
        assert_eq!(out.indices[0], (murmur3_32(b"42", user_seed) & 0xFFFFF) as i64);
    }

    #[test]
    fn crosses_take_the_cartesian_product_of_multi_values() {
        let h = FeatureHasher::new(
            vec!["user".into(), "tags".into()],
            &[("user".into(), "tags".into())],
            32,
            5,
            true,
        )
        .unwrap();
        let (ud, uo, _) = strs(&[Some("u1")]);
        let (td, to, _) = strs(&[Some("a"), Some("b"), Some("c")]);
        let values = arr(None, &to, &td);
        let lo = [0i64, 3];
        let tags = ListArray {
            validity: None,
            offsets: Offsets::I64(&lo),
            offset: 0,
            len: 1,
            values,
        };
        let user = arr(None, &uo, &ud);
        let (out, stats) = h.hash(&[Column::Single(user), Column::Multi(tags)], true).unwrap();
        assert_eq!(out.offsets, vec![0, 7]);
        let hu = murmur3_32(b"u1", murmur3_32(b"user", 5));
        let ha = murmur3_32(b"a", murmur3_32(b"tags", 5));
        assert_eq!(out.indices[4], murmur3_pair(hu, ha, murmur3_32(b"user^tags", 5)) as i64);
        let signs = out.signs.unwrap();
        assert_eq!(signs.len(), 7);
        assert!(signs.iter().all(|&s| s == 1.0 || s == -1.0));
        let stats = stats.unwrap();
        assert_eq!(stats.features, 7);
        assert_eq!(stats.distinct_inputs, 7);
    }

    #[test]
    fn emit_only_keeps_crosses_and_chosen_namespaces() {
        let h = FeatureHasher::new(
            vec!["user".into(), "tags".into()],
            &[("user".into(), "tags".into())],
            20,
            0,
            false,
        )
        .unwrap();
        let (ud, uo, _) = strs(&[Some("u1")]);
        let user = arr(None, &uo, &ud);
        let (full, _) = h.hash(&[Column::Single(user), Column::Single(user)], false).unwrap();
        let only = h.emit_only(&[]).unwrap();
        let (crosses, _) = only.hash(&[Column::Single(user), Column::Single(user)], false).unwrap();
        assert_eq!(crosses.indices, full.indices[2..].to_vec());
        assert!(FeatureHasher::new(vec!["a".into()], &[], 8, 0, false)
            .unwrap()
            .emit_only(&["b".into()])
            .is_err());
    }

    #[test]
    fn small_tables_report_collisions() {
        let h = FeatureHasher::new(vec!["item".into()], &[], 2, 0, false).unwrap();
        let vals: Vec<String> = (0..100).map(|i| i.to_string()).collect();
        let refs: Vec<Option<&str>> = vals.iter().map(|s| Some(s.as_str())).collect();
        let (d, o, _) = strs(&refs);
        let col = arr(None, &o, &d);
        let (out, stats) = h.hash(&[Column::Single(col)], true).unwrap();
        assert!(out.indices.iter().all(|&i| (0..4).contains(&i)));
        let stats = stats.unwrap();
        assert_eq!(stats.distinct_inputs, 100);
        assert_eq!(stats.distinct_buckets, 4);
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        assert!(FeatureHasher::new(vec!["a".into()], &[], 33, 0, false).is_err());
        assert!(FeatureHasher::new(vec!["a".into(), "a".into()], &[], 8, 0, false).is_err());
        assert!(FeatureHasher::new(vec!["a".into()], &[("a".into(), "b".into())], 8, 0, false).is_err());
        let h = FeatureHasher::new(vec!["a".into()], &[], 8, 0, false).unwrap();
        let o = [0i32, 5];
        let col = arr(None, &o, b"abc");
        let err = h.hash(&[Column::Single(col)], false).unwrap_err();
        assert!(err.to_string().contains("past the end"), "{err}");
        let o = [0i32, 2, 1];
        let col = arr(None, &o, b"abc");
        assert!(h.hash(&[Column::Single(col)], false).is_err());
        let bits = [0u8];
        let o = [0i32; 10];
        let col = arr(Some(&bits), &o, b"");
        assert!(h.hash(&[Column::Single(col)], false).is_err());
    }
}
