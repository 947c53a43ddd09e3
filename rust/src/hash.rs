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

    /// Hash a batch. `columns[i]` belongs to namespace `i`; all columns have the same length.
    /// With `stats`, also count distinct inputs and buckets (a second, 64-bit hash per feature).
    pub fn hash(&self, columns: &[Column<'_>], stats: bool) -> Result<(Hashed, Option<CollisionStats>)> {
        if columns.len() != self.namespaces.len() {
            return Err(Error::invalid(
                "columns",
                format!(
                    "expected {} columns (one per namespace), got {}",
                    self.namespaces.len(),
                    columns.len()
                ),
            ));
        }
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
