//! Item-to-item co-visitation, time-decayed, with bounded memory.
//!
//! Each positive event `(user, item, ts)` pairs the item with the user's last
//! `history` engaged items: both directions gain a weight that halves every
//! `half_life_s` seconds of event time and shrinks with the distance in the user's
//! history. Every item serves its `max_neighbours` heaviest pairs and keeps as many again
//! in reserve; a new pair takes the place of the weakest one when it weighs more. The
//! reserve is what a retraction (a bot's pairs taken back) hands the served places back
//! to: without it, the real pairs a crawler pushed out of a full list would be lost for
//! good. Decay uses one reference time for all weights (an increment at time `t` is
//! `2^((t - t_ref) / half_life)`), so nothing is touched per event except the pairs it
//! adds; all weights are rescaled together when the increments grow large.
//!
//! Scores are cosine-like: `C(a, b) / sqrt(n_a * n_b)`, with `n` an item's decayed count
//! of positive events, so popular items do not dominate every neighbour list.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet, VecDeque};

use crate::error::{Error, Result};

/// Rescale every stored weight once an increment exceeds this (f32 keeps ~1e38).
const RESCALE_AT: f64 = 1e12;
const MAGIC: &[u8; 8] = b"RTCOVIS1";

#[derive(Debug, Clone, PartialEq)]
pub struct CoVisitation {
    max_neighbours: usize,
    history: usize,
    half_life_s: f64,
    t_ref: f64,
    started: bool,
    neighbours: Vec<Vec<(u32, f32)>>,
    counts: Vec<f32>,
    histories: HashMap<u64, VecDeque<u32>>,
    pairs: u64,
}

impl CoVisitation {
    pub fn new(max_neighbours: usize, history: usize, half_life_s: f64) -> Result<Self> {
        if max_neighbours == 0 || max_neighbours > 100_000 {
            return Err(Error::invalid(
                "max_neighbours",
                format!("must be in 1..=100000, got {max_neighbours}"),
            ));
        }
        if history == 0 || history > 10_000 {
            return Err(Error::invalid(
                "history",
                format!("must be in 1..=10000, got {history}"),
            ));
        }
        if half_life_s.is_nan() || half_life_s <= 0.0 {
            return Err(Error::invalid(
                "half_life_s",
                format!("must be positive (inf: no decay), got {half_life_s}"),
            ));
        }
        Ok(CoVisitation {
            max_neighbours,
            history,
            half_life_s,
            t_ref: 0.0,
            started: false,
            neighbours: Vec::new(),
            counts: Vec::new(),
            histories: HashMap::new(),
            pairs: 0,
        })
    }

    /// Number of item slots (the highest item index seen, plus one).
    pub fn items(&self) -> usize {
        self.counts.len()
    }

    pub fn users(&self) -> usize {
        self.histories.len()
    }

    /// What the state was built with: (max_neighbours, history, half_life_s). A state
    /// restored from bytes keeps these whatever the caller now asks for.
    pub fn settings(&self) -> (usize, usize, f64) {
        (self.max_neighbours, self.history, self.half_life_s)
    }

    /// Pair increments applied so far.
    pub fn pairs(&self) -> u64 {
        self.pairs
    }

    /// Bytes held by the neighbour lists, counts and histories (capacity, not length).
    pub fn memory_bytes(&self) -> usize {
        let lists: usize = self.neighbours.iter().map(|l| l.capacity() * 8 + 24).sum();
        let hist: usize = self.histories.values().map(|h| h.capacity() * 4 + 48 + 8).sum();
        lists + self.counts.capacity() * 4 + hist
    }

    fn grow(&mut self, item: usize) {
        if item >= self.counts.len() {
            self.counts.resize(item + 1, 0.0);
            self.neighbours.resize_with(item + 1, Vec::new);
        }
    }

    /// What an event at `ts` adds at the current reference time (1 without decay).
    fn increment(&self, ts: f64) -> f64 {
        if self.half_life_s.is_finite() {
            ((ts - self.t_ref) / self.half_life_s).exp2()
        } else {
            1.0
        }
    }

    /// The increment of one event at `ts`, rescaling stored weights first when it grows large.
    fn unit(&mut self, ts: f64) -> f32 {
        if !self.half_life_s.is_finite() {
            return 1.0;
        }
        if !self.started {
            self.started = true;
            self.t_ref = ts;
        }
        let mut f = self.increment(ts);
        if f > RESCALE_AT {
            let k = (1.0 / f) as f32;
            for c in self.counts.iter_mut() {
                *c *= k;
            }
            for list in self.neighbours.iter_mut() {
                for e in list.iter_mut() {
                    e.1 *= k;
                }
                list.retain(|e| e.1 > 0.0);
            }
            self.t_ref = ts;
            f = 1.0;
        }
        f as f32
    }

    fn add(&mut self, a: u32, b: u32, w: f32) {
        let cap = 2 * self.max_neighbours; // served, and as many in reserve
        let list = &mut self.neighbours[a as usize];
        if let Some(e) = list.iter_mut().find(|e| e.0 == b) {
            e.1 += w;
            return;
        }
        if list.len() < cap {
            list.push((b, w));
            return;
        }
        let (k, min) = list.iter().enumerate().fold(
            (0, f32::INFINITY),
            |acc, (k, e)| if e.1 < acc.1 { (k, e.1) } else { acc },
        );
        if w >= min {
            list[k] = (b, w);
        }
    }

    /// The pairs an item serves: the heaviest `max_neighbours` of its list (in no order).
    fn served(&self, a: usize) -> Cow<'_, [(u32, f32)]> {
        let list = &self.neighbours[a];
        let m = self.max_neighbours;
        if list.len() <= m {
            return Cow::Borrowed(list);
        }
        let mut top = list.clone();
        top.select_nth_unstable_by(m - 1, |x, y| y.1.total_cmp(&x.1));
        top.truncate(m);
        Cow::Owned(top)
    }

    /// Fold in positive events, in stream order. `weights` scale each event (1 for a click).
    pub fn observe(&mut self, users: &[i64], items: &[i64], ts: &[f64], weights: &[f32]) -> Result<()> {
        let n = users.len();
        if items.len() != n || ts.len() != n || weights.len() != n {
            return Err(Error::invalid(
                "items",
                "users, items, ts and weights must have one entry per event",
            ));
        }
        if items.iter().any(|&i| !(0..=u32::MAX as i64).contains(&i)) {
            return Err(Error::invalid("items", "item indices must be in 0..2^32"));
        }
        if users.iter().any(|&u| u < 0) {
            return Err(Error::invalid("users", "user indices must not be negative"));
        }
        if ts.iter().any(|t| !t.is_finite()) {
            return Err(Error::invalid("ts", "times must be finite"));
        }
        for k in 0..n {
            let w = weights[k];
            if !(w.is_finite() && w > 0.0) {
                continue;
            }
            let item = items[k] as u32;
            self.grow(item as usize);
            let f = self.unit(ts[k]) * w;
            self.counts[item as usize] += f;
            let hist = self.histories.entry(users[k] as u64).or_default();
            let Some(others) = enter(hist, item, self.history) else {
                continue;
            };
            for (d, other) in others.into_iter().enumerate() {
                let wd = pair_weight(f, d);
                self.add(other, item, wd);
                self.add(item, other, wd);
                self.pairs += 1;
            }
        }
        Ok(())
    }

    /// Take back what `observe` learned from one user's positives (`items` at `ts`, oldest
    /// first, from the user's first positive on, each observed with weight 1): their counts
    /// and the pairs they made, replayed as `observe` made them from an empty history. A pair
    /// no longer held is skipped, and a real pair pushed out past the reserve is not
    /// restored; one left with only rounding error is dropped. The user's history goes too.
    /// Returns the pair increments taken back.
    pub fn retract(&mut self, user: i64, items: &[i64], ts: &[f64]) -> Result<u64> {
        if items.len() != ts.len() {
            return Err(Error::invalid("ts", "items and ts must have one entry per event"));
        }
        if items.iter().any(|&i| !(0..=u32::MAX as i64).contains(&i)) {
            return Err(Error::invalid("items", "item indices must be in 0..2^32"));
        }
        if ts.iter().any(|t| !t.is_finite()) {
            return Err(Error::invalid("ts", "times must be finite"));
        }
        self.forget_user(user);
        if !self.started {
            return Ok(0);
        }
        let mut hist: VecDeque<u32> = VecDeque::new();
        let mut taken = 0u64;
        for (&item, &t) in items.iter().zip(ts) {
            let item = item as u32;
            if item as usize >= self.counts.len() {
                continue;
            }
            // The increment observe added at `t` (the same reference time, since rescaling
            // moves the reference and every stored weight together).
            let f = self.increment(t) as f32;
            let c = &mut self.counts[item as usize];
            *c = (*c - f).max(0.0);
            let Some(others) = enter(&mut hist, item, self.history) else {
                continue;
            };
            for (d, other) in others.into_iter().enumerate() {
                let wd = pair_weight(f, d);
                taken += u64::from(self.subtract(other, item, wd)) + u64::from(self.subtract(item, other, wd));
            }
        }
        self.pairs = self.pairs.saturating_sub(taken / 2);
        Ok(taken / 2)
    }

    /// Subtract `w` from the pair `a -> b` if held; whether it was.
    fn subtract(&mut self, a: u32, b: u32, w: f32) -> bool {
        let list = &mut self.neighbours[a as usize];
        let Some(k) = list.iter().position(|e| e.0 == b) else {
            return false;
        };
        let left = list[k].1 - w;
        if left <= w * 1e-4 {
            list.swap_remove(k);
        } else {
            list[k].1 = left;
        }
        true
    }

    /// The user's recent engaged items, oldest first.
    pub fn history(&self, user: i64) -> Vec<u32> {
        self.histories
            .get(&(user as u64))
            .map(|h| h.iter().copied().collect())
            .unwrap_or_default()
    }

    pub fn forget_user(&mut self, user: i64) -> bool {
        self.histories.remove(&(user as u64)).is_some()
    }

    fn sim(&self, a: u32, b: u32, c: f32) -> f32 {
        let na = self.counts.get(a as usize).copied().unwrap_or(0.0);
        let nb = self.counts.get(b as usize).copied().unwrap_or(0.0);
        if na <= 0.0 || nb <= 0.0 {
            return 0.0;
        }
        (c as f64 / (na as f64 * nb as f64).sqrt()) as f32
    }

    /// The item's neighbours, best first, at most `k`.
    pub fn neighbours(&self, item: i64, k: usize) -> Vec<(u32, f32)> {
        let Some(i) = usize::try_from(item).ok().filter(|&i| i < self.neighbours.len()) else {
            return Vec::new();
        };
        let mut out: Vec<(u32, f32)> = self
            .served(i)
            .iter()
            .map(|&(b, c)| (b, self.sim(item as u32, b, c)))
            .collect();
        top(&mut out, k);
        out
    }

    /// Every neighbour of the user's history, scored by recency-weighted similarity
    /// (the newest history item weighs 1, each older one 0.9 times the next).
    fn gather(&self, user: i64) -> HashMap<u32, f32> {
        let mut acc: HashMap<u32, f32> = HashMap::new();
        let Some(hist) = self.histories.get(&(user as u64)) else {
            return acc;
        };
        let mut r = 1.0f32;
        for &a in hist.iter().rev() {
            for &(b, c) in self.served(a as usize).iter() {
                *acc.entry(b).or_insert(0.0) += r * self.sim(a, b, c);
            }
            r *= 0.9;
        }
        acc
    }

    /// The `k` best items for the user from their history's neighbours, skipping `exclude`
    /// and the history itself.
    pub fn recommend(&self, user: i64, k: usize, exclude: &[i64]) -> Vec<(u32, f32)> {
        let mut acc = self.gather(user);
        let skip: HashSet<i64> = exclude.iter().copied().collect();
        if let Some(hist) = self.histories.get(&(user as u64)) {
            for a in hist {
                acc.remove(a);
            }
        }
        let mut out: Vec<(u32, f32)> = acc.into_iter().filter(|(b, _)| !skip.contains(&(*b as i64))).collect();
        top(&mut out, k);
        out
    }

    /// The co-visitation score of each of `items` for the user (0 where none).
    pub fn score(&self, user: i64, items: &[i64]) -> Vec<f32> {
        let acc = self.gather(user);
        items
            .iter()
            .map(|&i| u32::try_from(i).ok().and_then(|i| acc.get(&i).copied()).unwrap_or(0.0))
            .collect()
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.counts.len() * 12);
        out.extend_from_slice(MAGIC);
        for v in [
            self.max_neighbours as u64,
            self.history as u64,
            self.pairs,
            self.started as u64,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&self.half_life_s.to_le_bytes());
        out.extend_from_slice(&self.t_ref.to_le_bytes());
        out.extend_from_slice(&(self.counts.len() as u64).to_le_bytes());
        for (c, list) in self.counts.iter().zip(&self.neighbours) {
            out.extend_from_slice(&c.to_le_bytes());
            out.extend_from_slice(&(list.len() as u32).to_le_bytes());
            for &(b, w) in list {
                out.extend_from_slice(&b.to_le_bytes());
                out.extend_from_slice(&w.to_le_bytes());
            }
        }
        out.extend_from_slice(&(self.histories.len() as u64).to_le_bytes());
        let mut users: Vec<_> = self.histories.iter().collect();
        users.sort_by_key(|(u, _)| **u);
        for (u, h) in users {
            out.extend_from_slice(&u.to_le_bytes());
            out.extend_from_slice(&(h.len() as u32).to_le_bytes());
            for i in h {
                out.extend_from_slice(&i.to_le_bytes());
            }
        }
        out
    }

    pub fn from_bytes(data: &[u8]) -> Result<Self> {
        let mut r = Reader { data, at: 0 };
        if r.take(8)? != MAGIC {
            return Err(Error::Corrupt("co-visitation state: wrong magic".into()));
        }
        let (m, h, pairs, started) = (r.u64()? as usize, r.u64()? as usize, r.u64()?, r.u64()? != 0);
        let half = r.f64()?;
        let mut cv = CoVisitation::new(m, h, half).map_err(|e| Error::Corrupt(format!("co-visitation state: {e}")))?;
        cv.pairs = pairs;
        cv.started = started;
        cv.t_ref = r.f64()?;
        let n = r.u64()? as usize;
        cv.counts.reserve(n.min(data.len()));
        for _ in 0..n {
            cv.counts.push(r.f32()?);
            let len = r.u32()? as usize;
            let mut list = Vec::with_capacity(len.min(m));
            for _ in 0..len {
                list.push((r.u32()?, r.f32()?));
            }
            cv.neighbours.push(list);
        }
        let users = r.u64()? as usize;
        for _ in 0..users {
            let u = r.u64()?;
            let len = r.u32()? as usize;
            let mut hist = VecDeque::with_capacity(len.min(h));
            for _ in 0..len {
                hist.push_back(r.u32()?);
            }
            cv.histories.insert(u, hist);
        }
        if r.at != data.len() {
            return Err(Error::Corrupt("co-visitation state: trailing bytes".into()));
        }
        let in_range = |i: &u32| (*i as usize) < n;
        if !cv.neighbours.iter().all(|l| l.iter().all(|e| in_range(&e.0)))
            || !cv.histories.values().all(|h| h.iter().all(in_range))
        {
            return Err(Error::Corrupt("co-visitation state: an item index out of range".into()));
        }
        Ok(cv)
    }
}

/// Keep the `k` highest scores, best first (ties by item index, for determinism).
fn top(v: &mut Vec<(u32, f32)>, k: usize) {
    let cmp = |x: &(u32, f32), y: &(u32, f32)| y.1.total_cmp(&x.1).then(x.0.cmp(&y.0));
    if v.len() > k && k > 0 {
        v.select_nth_unstable_by(k - 1, cmp);
    }
    v.truncate(k);
    v.sort_unstable_by(cmp);
}

struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8]> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.data.len());
        let end = end.ok_or_else(|| Error::Corrupt("co-visitation state: truncated".into()))?;
        let s = &self.data[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
    fn f64(&mut self) -> Result<f64> {
        Ok(f64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn f32(&mut self) -> Result<f32> {
        Ok(f32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
}

/// Move `item` into a user's history (oldest first, at most `cap` long). Returns the items it
/// pairs with, newest first, or None when it was already there: engaging again with a recent
/// item adds no new pairs, it only becomes the newest.
fn enter(hist: &mut VecDeque<u32>, item: u32, cap: usize) -> Option<Vec<u32>> {
    if let Some(at) = hist.iter().position(|&i| i == item) {
        hist.remove(at);
        hist.push_back(item);
        return None;
    }
    let others = hist.iter().rev().copied().collect();
    hist.push_back(item);
    if hist.len() > cap {
        hist.pop_front();
    }
    Some(others)
}

/// What an increment `f` adds to a pair `d` places apart in the history (0: the newest).
fn pair_weight(f: f32, d: usize) -> f32 {
    f / (1.0 + d as f32 / 4.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cv() -> CoVisitation {
        CoVisitation::new(3, 5, f64::INFINITY).unwrap()
    }

    #[test]
    fn pairs_items_of_one_user_both_ways() {
        let mut c = cv();
        c.observe(&[1, 1, 2], &[10, 11, 12], &[0.0, 1.0, 2.0], &[1.0; 3])
            .unwrap();
        assert_eq!(c.neighbours(10, 5).iter().map(|e| e.0).collect::<Vec<_>>(), vec![11]);
        assert_eq!(c.neighbours(11, 5).iter().map(|e| e.0).collect::<Vec<_>>(), vec![10]);
        assert!(c.neighbours(12, 5).is_empty(), "another user's item is no neighbour");
        assert_eq!(c.history(1), vec![10, 11]);
    }

    /// Neighbour lists (sorted by item) and counts, for comparing two states.
    type Snapshot = (Vec<Vec<(u32, f32)>>, Vec<f32>);

    fn snapshot(c: &CoVisitation) -> Snapshot {
        let lists = (0..c.items() as i64)
            .map(|i| {
                let mut l = c.neighbours[i as usize].clone();
                l.sort_by_key(|e| e.0);
                l
            })
            .collect();
        (lists, c.counts.clone())
    }

    fn close(a: &Snapshot, b: &Snapshot) -> bool {
        let near = |x: f32, y: f32| (x - y).abs() <= 1e-4 * (1.0 + x.abs().max(y.abs()));
        a.1.len() == b.1.len()
            && a.1.iter().zip(&b.1).all(|(&x, &y)| near(x, y))
            && a.0
                .iter()
                .zip(&b.0)
                .all(|(l, m)| l.len() == m.len() && l.iter().zip(m).all(|(e, f)| e.0 == f.0 && near(e.1, f.1)))
    }

    #[test]
    fn retract_leaves_what_the_other_users_made() {
        // A real user (1) and a crawler (2) walking items in order, interleaved, with decay on.
        let real = (vec![3i64, 5, 3, 7, 1], vec![0.0, 10.0, 20.0, 30.0, 31.0]);
        let bot: (Vec<i64>, Vec<f64>) = ((0..8).collect(), (0..8).map(|k| 15.0 + k as f64).collect());
        let mut events: Vec<(i64, i64, f64)> = real.0.iter().zip(&real.1).map(|(&i, &t)| (1, i, t)).collect();
        events.extend(bot.0.iter().zip(&bot.1).map(|(&i, &t)| (2, i, t)));
        events.sort_by(|a, b| a.2.total_cmp(&b.2));
        let mut both = CoVisitation::new(16, 3, 20.0).unwrap();
        let mut alone = CoVisitation::new(16, 3, 20.0).unwrap();
        for &(u, i, t) in &events {
            both.observe(&[u], &[i], &[t], &[1.0]).unwrap();
            if u == 1 {
                alone.observe(&[u], &[i], &[t], &[1.0]).unwrap();
            }
        }
        alone.grow(both.items() - 1);
        assert!(
            !close(&snapshot(&both), &snapshot(&alone)),
            "the crawler's pairs are there"
        );
        let taken = both.retract(2, &bot.0, &bot.1).unwrap();
        assert!(taken > 0);
        assert!(
            close(&snapshot(&both), &snapshot(&alone)),
            "only the real user's pairs and counts stay"
        );
        assert!(both.history(2).is_empty() && both.history(1) == alone.history(1));
        assert!(both.retract(2, &[0], &[f64::NAN]).is_err());
    }

    #[test]
    fn recommend_skips_history_and_exclusions() {
        let mut c = CoVisitation::new(10, 10, f64::INFINITY).unwrap();
        // Users 1 and 2 engaged with 0, 1 and 2; user 3 only with 0.
        c.observe(&[1, 1, 1, 2, 2, 2, 3], &[0, 1, 2, 0, 1, 2, 0], &[0.0; 7], &[1.0; 7])
            .unwrap();
        let rec: Vec<u32> = c.recommend(3, 5, &[]).iter().map(|e| e.0).collect();
        assert_eq!(rec.len(), 2);
        assert!(rec.contains(&1) && rec.contains(&2) && !rec.contains(&0));
        let rec: Vec<u32> = c.recommend(3, 5, &[1]).iter().map(|e| e.0).collect();
        assert_eq!(rec, vec![2]);
        let s = c.score(3, &[0, 1, 2, 99, -1]);
        assert!(s[1] > 0.0 && s[2] > 0.0 && s[3] == 0.0 && s[4] == 0.0);
    }

    #[test]
    fn neighbour_lists_are_bounded_and_keep_the_strongest() {
        let mut c = cv(); // at most 3 neighbours
                          // Item 0 is co-visited with 1 five times, then with 2..=6 once each.
        for u in 0..5 {
            c.observe(&[u, u], &[0, 1], &[0.0, 0.0], &[1.0, 1.0]).unwrap();
        }
        for (k, other) in (2..=6).enumerate() {
            let u = 100 + k as i64;
            c.observe(&[u, u], &[0, other], &[0.0, 0.0], &[1.0, 1.0]).unwrap();
        }
        let n = c.neighbours(0, 10);
        assert_eq!(n.len(), 3);
        assert_eq!(n[0].0, 1, "the strongest neighbour stays");
    }

    #[test]
    fn the_reserve_hands_back_what_a_retracted_user_pushed_out() {
        let mut c = cv(); // serves 3 neighbours, keeps 3 more in reserve
                          // Real users pair item 0 with 1, 2 and 3; later a crawler pairs it with 10, 11 and 12,
                          // heavier (decay), pushing all three real pairs out of the served part into the reserve.
        let mut c_decay = CoVisitation::new(3, 5, 100.0).unwrap();
        for (u, other) in [(1i64, 1i64), (2, 2), (3, 3)] {
            c_decay.observe(&[u, u], &[0, other], &[0.0, 0.0], &[1.0, 1.0]).unwrap();
        }
        let real: Vec<u32> = c_decay.neighbours(0, 10).iter().map(|e| e.0).collect();
        let crawl: Vec<i64> = vec![0, 10, 11, 12];
        let times: Vec<f64> = (0..crawl.len()).map(|k| 500.0 + k as f64).collect();
        for (&i, &t) in crawl.iter().zip(&times) {
            c_decay.observe(&[9], &[i], &[t], &[1.0]).unwrap();
        }
        let served: Vec<u32> = c_decay.neighbours(0, 10).iter().map(|e| e.0).collect();
        assert!(
            served.iter().all(|i| *i >= 10),
            "the crawler's pairs took the served places: {served:?}"
        );
        c_decay.retract(9, &crawl, &times).unwrap();
        let mut back: Vec<u32> = c_decay.neighbours(0, 10).iter().map(|e| e.0).collect();
        back.sort();
        assert_eq!(back, real);
        // A list never holds more than twice what it serves.
        for u in 0..20 {
            c.observe(&[u, u], &[0, 100 + u], &[0.0, 0.0], &[1.0, 1.0]).unwrap();
        }
        assert_eq!(c.neighbours[0].len(), 6);
        assert_eq!(c.neighbours(0, 10).len(), 3);
    }

    #[test]
    fn decay_favours_recent_pairs() {
        let mut c = CoVisitation::new(10, 10, 10.0).unwrap();
        c.observe(&[1, 1], &[0, 1], &[0.0, 0.0], &[1.0, 1.0]).unwrap();
        c.observe(&[2, 2], &[0, 2], &[100.0, 100.0], &[1.0, 1.0]).unwrap();
        let n = c.neighbours(0, 2);
        assert_eq!(n[0].0, 2, "ten half-lives later the new pair outweighs the old one");
        assert!(n[0].1 > 10.0 * n[1].1.max(1e-9) || n[1].0 != 1);
    }

    #[test]
    fn rescaling_keeps_rankings() {
        let mut c = CoVisitation::new(10, 10, 1.0).unwrap();
        c.observe(&[1, 1, 1], &[0, 1, 2], &[0.0, 0.0, 0.0], &[1.0; 3]).unwrap();
        c.observe(&[2, 2], &[0, 1], &[30.0, 30.0], &[1.0; 2]).unwrap();
        // 2^50 forces a rescale; the pair (0, 1) just seen must lead.
        c.observe(&[3, 3], &[0, 1], &[50.0, 50.0], &[1.0; 2]).unwrap();
        assert_eq!(c.neighbours(0, 1)[0].0, 1);
        assert!(c.counts.iter().all(|x| x.is_finite()));
    }

    #[test]
    fn state_round_trips_and_rejects_damage() {
        let mut c = CoVisitation::new(4, 3, 60.0).unwrap();
        c.observe(
            &[1, 1, 2, 2, 1],
            &[0, 1, 1, 2, 3],
            &[0.0, 1.0, 2.0, 3.0, 4.0],
            &[1.0, 2.0, 1.0, 1.0, 1.0],
        )
        .unwrap();
        let bytes = c.to_bytes();
        assert_eq!(CoVisitation::from_bytes(&bytes).unwrap(), c);
        assert!(CoVisitation::from_bytes(&bytes[..bytes.len() - 1]).is_err());
        assert!(CoVisitation::from_bytes(b"nonsense").is_err());
    }

    #[test]
    fn rejects_bad_input() {
        let mut c = cv();
        assert!(c.observe(&[1], &[-1], &[0.0], &[1.0]).is_err());
        assert!(c.observe(&[1], &[1], &[f64::NAN], &[1.0]).is_err());
        assert!(c.observe(&[1, 2], &[1], &[0.0], &[1.0]).is_err());
        assert!(CoVisitation::new(0, 1, 1.0).is_err());
    }
}
