//! The items each user has touched, compactly: one `Vec<u32>` per user index.
//!
//! The learner keeps three of these (items with an example, items consumed, and items with
//! an example as of the ranking evaluation); as Python sets they cost about 85 bytes per
//! (user, item) pair and had no bound. Here a pair costs 4 bytes plus the vectors' spare
//! capacity, and with `max_per_user > 0` a user keeps only that many items: adding an item
//! the user already has moves it to the newest end, and a new item past the bound forgets
//! the least recently touched one. Unbounded (`max_per_user == 0`), order is first touch.
//!
//! Users are dense integer indices (the featurizer's), so the sets live in a vector indexed by
//! user; a forgotten user leaves an empty, unallocated slot.

use crate::error::{Error, Result};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ItemSets {
    max_per_user: usize,
    sets: Vec<Vec<u32>>,
    pairs: u64,
    evicted: u64,
}

/// Position of `x` in `v`. Scans 16 lanes at a time without an early exit per element, which
/// the compiler turns into vector compares: a user's items are scanned on every add.
fn find(v: &[u32], x: u32) -> Option<usize> {
    let mut chunks = v.chunks_exact(16);
    let mut base = 0;
    for c in &mut chunks {
        if c.iter().fold(false, |acc, &y| acc | (y == x)) {
            return c.iter().position(|&y| y == x).map(|p| base + p);
        }
        base += 16;
    }
    chunks.remainder().iter().position(|&y| y == x).map(|p| base + p)
}

fn index(field: &str, v: i64) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::invalid(field, format!("{v} is not an index in 0..2^32")))
}

impl ItemSets {
    pub fn new(max_per_user: usize) -> Self {
        ItemSets {
            max_per_user,
            ..Default::default()
        }
    }

    pub fn max_per_user(&self) -> usize {
        self.max_per_user
    }

    /// Add the pairs `(users[k], items[k])` in order. Every index is checked first, so a bad
    /// one changes nothing.
    pub fn add(&mut self, users: &[i64], items: &[i64]) -> Result<()> {
        if users.len() != items.len() {
            return Err(Error::invalid(
                "items",
                format!("{} items for {} users", items.len(), users.len()),
            ));
        }
        for (&u, &i) in users.iter().zip(items) {
            index("users", u)?;
            index("items", i)?;
        }
        for (&u, &i) in users.iter().zip(items) {
            self.add_one(u as usize, i as u32);
        }
        Ok(())
    }

    fn add_one(&mut self, u: usize, i: u32) {
        if u >= self.sets.len() {
            self.sets.resize_with(u + 1, Vec::new);
        }
        let set = &mut self.sets[u];
        match find(set, i) {
            Some(p) if self.max_per_user > 0 => {
                // Touched again: to the newest end (the bound forgets from the oldest).
                set[p..].rotate_left(1);
            }
            Some(_) => {}
            None => {
                if self.max_per_user > 0 && set.len() >= self.max_per_user {
                    set.remove(0);
                    self.evicted += 1;
                } else {
                    self.pairs += 1;
                }
                set.push(i);
            }
        }
    }

    /// The user's items, least recently touched first (first touched, when unbounded).
    pub fn get(&self, user: i64) -> &[u32] {
        usize::try_from(user)
            .ok()
            .and_then(|u| self.sets.get(u))
            .map_or(&[], |s| s.as_slice())
    }

    /// Drop a user's items; how many there were.
    pub fn remove(&mut self, user: i64) -> usize {
        let Some(set) = usize::try_from(user).ok().and_then(|u| self.sets.get_mut(u)) else {
            return 0;
        };
        let n = set.len();
        *set = Vec::new();
        self.pairs -= n as u64;
        n
    }

    /// Users with at least one item.
    pub fn users(&self) -> usize {
        self.sets.iter().filter(|s| !s.is_empty()).count()
    }

    /// (user, item) pairs held.
    pub fn pairs(&self) -> u64 {
        self.pairs
    }

    /// Pairs forgotten to keep a user within the bound.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    pub fn memory_bytes(&self) -> usize {
        self.sets.capacity() * std::mem::size_of::<Vec<u32>>()
            + self.sets.iter().map(|s| s.capacity() * 4).sum::<usize>()
    }

    /// Keys (users with items, ascending), set sizes and every member in each set's order.
    pub fn to_flat(&self) -> (Vec<i64>, Vec<i64>, Vec<i64>) {
        let mut keys = Vec::new();
        let mut sizes = Vec::new();
        let mut members = Vec::with_capacity(self.pairs as usize);
        for (u, s) in self.sets.iter().enumerate().filter(|(_, s)| !s.is_empty()) {
            keys.push(u as i64);
            sizes.push(s.len() as i64);
            members.extend(s.iter().map(|&i| i as i64));
        }
        (keys, sizes, members)
    }

    /// The inverse of [`Self::to_flat`]. A set longer than `max_per_user` keeps its last items;
    /// a repeated member or key counts once.
    pub fn from_flat(keys: &[i64], sizes: &[i64], members: &[i64], max_per_user: usize) -> Result<Self> {
        if keys.len() != sizes.len() {
            return Err(Error::invalid(
                "sizes",
                format!("{} sizes for {} keys", sizes.len(), keys.len()),
            ));
        }
        let mut total: u64 = 0;
        for &n in sizes {
            let n = u64::try_from(n).map_err(|_| Error::invalid("sizes", format!("{n} is negative")))?;
            total = total.saturating_add(n);
        }
        if total != members.len() as u64 {
            return Err(Error::invalid(
                "members",
                format!("{} members for sizes summing to {total}", members.len()),
            ));
        }
        let mut out = ItemSets::new(max_per_user);
        let mut start = 0;
        for (&u, &n) in keys.iter().zip(sizes) {
            let part = &members[start..start + n as usize];
            start += n as usize;
            out.add(&vec![u; part.len()], part)?;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn unbounded_sets_match_a_set_per_user() {
        let mut s = ItemSets::new(0);
        let mut truth: Vec<BTreeSet<u32>> = vec![BTreeSet::new(); 7];
        let mut x: u64 = 17;
        let (mut us, mut is) = (Vec::new(), Vec::new());
        for _ in 0..5_000 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let (u, i) = ((x >> 40) % 7, (x >> 20) % 97);
            truth[u as usize].insert(i as u32);
            us.push(u as i64);
            is.push(i as i64);
        }
        s.add(&us, &is).unwrap();
        for (u, t) in truth.iter().enumerate() {
            assert_eq!(s.get(u as i64).iter().copied().collect::<BTreeSet<_>>(), *t);
            assert_eq!(s.get(u as i64).len(), t.len(), "no duplicates");
        }
        assert_eq!(s.pairs(), truth.iter().map(|t| t.len() as u64).sum::<u64>());
        assert_eq!(s.evicted(), 0);
    }

    #[test]
    fn the_bound_forgets_the_least_recently_touched() {
        let mut s = ItemSets::new(3);
        s.add(&[0, 0, 0, 0, 0], &[1, 2, 3, 1, 4]).unwrap();
        assert_eq!(s.get(0), &[3, 1, 4]); // 2 was touched least recently
        assert_eq!((s.pairs(), s.evicted()), (3, 1));
        assert!(s.get(1).is_empty());
    }

    #[test]
    fn find_agrees_with_position_on_every_length() {
        for n in 0..70u32 {
            let v: Vec<u32> = (0..n).map(|k| k * 3).collect();
            for x in 0..(3 * n + 2) {
                assert_eq!(find(&v, x), v.iter().position(|&y| y == x));
            }
        }
    }

    #[test]
    fn a_bad_index_changes_nothing() {
        let mut s = ItemSets::new(0);
        s.add(&[1], &[5]).unwrap();
        let before = s.clone();
        assert!(s.add(&[1, 2], &[6, -1]).is_err());
        assert!(s.add(&[1, 2], &[6]).is_err());
        assert!(s.add(&[-3], &[6]).is_err());
        assert_eq!(s, before);
    }

    #[test]
    fn flat_round_trip_and_remove() {
        let mut s = ItemSets::new(0);
        s.add(&[4, 1, 4, 4], &[9, 2, 7, 9]).unwrap();
        let (k, n, m) = s.to_flat();
        assert_eq!(
            (k.as_slice(), n.as_slice(), m.as_slice()),
            (&[1, 4][..], &[1, 2][..], &[2, 9, 7][..])
        );
        let t = ItemSets::from_flat(&k, &n, &m, 0).unwrap();
        assert_eq!(t.to_flat(), s.to_flat());
        let bounded = ItemSets::from_flat(&k, &n, &m, 1).unwrap();
        assert_eq!(bounded.get(4), &[7]);
        assert!(ItemSets::from_flat(&k, &n, &m[1..], 0).is_err());
        assert!(ItemSets::from_flat(&k, &[1, -1], &m, 0).is_err());
        assert_eq!(s.remove(4), 2);
        assert_eq!((s.remove(4), s.remove(99), s.remove(-1)), (0, 0, 0));
        assert_eq!((s.users(), s.pairs()), (1, 1));
    }
}
