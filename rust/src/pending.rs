//! The labeller's waiting room: impressions waiting for their label, and labelled ones kept
//! for a late positive or a follow-up.
//!
//! The per-impression bookkeeping of `rtrec.labels.Labeler` runs here: two key indexes
//! (user and item packed in one `i64`, newest slot first, older slots chained through the
//! store's `next` column) and two deadline queues (min-heaps on deadline, then sequence
//! number, then slot). The slot columns themselves (`key`, `rid`, `seq`, `deadline`, `state`,
//! `next`) stay in the Python store's numpy arrays and are passed in as [`Slots`].
//!
//! Queue entries are never removed in place: an entry whose slot was resolved, freed or
//! reused since (its state or sequence number no longer matches) is skipped when popped.
//! Per waiting impression this costs about 24 bytes in an index and 24 in a queue, where
//! Python's dict and heap of ints cost several times that.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};

/// Slot states, as `rtrec.labels.store` numbers them.
pub const PENDING: i8 = 1;
pub const EXPIRED: i8 = 2;
pub const ANSWERED: i8 = 3;
pub const RELEASING: i8 = 4;

/// Example origins, as `rtrec.labels.ORIGINS` numbers them.
pub const IMPRESSION: i8 = 1;
pub const LATE: i8 = 2;
pub const FOLLOWUP: i8 = 3;

type Entry = Reverse<(i64, i64, i64)>; // (deadline, seq, slot), smallest first

/// The store's slot columns, borrowed for one call.
pub struct Slots<'a> {
    pub key: &'a [i64],
    pub rid: &'a [i64],
    pub seq: &'a [i64],
    pub deadline: &'a [i64],
    pub state: &'a mut [i8],
    pub next: &'a mut [i64],
}

/// What one call resolved, in the order it was found.
#[derive(Default, Debug, PartialEq)]
pub struct Resolved {
    /// Examples from stored impressions: slot, label, weight, origin and order key.
    pub slot: Vec<i64>,
    pub label: Vec<f32>,
    pub weight: Vec<f32>,
    pub origin: Vec<i8>,
    pub order: Vec<i64>,
    /// Chunk rows that are examples of their own (a labelled event no impression waits for).
    pub event_rows: Vec<i64>,
    /// Slots to free once the examples are learned.
    pub freed: Vec<i64>,
}

impl Resolved {
    fn example(&mut self, slot: i64, label: f32, weight: f32, origin: i8, order: i64) {
        self.slot.push(slot);
        self.label.push(label);
        self.weight.push(weight);
        self.origin.push(origin);
        self.order.push(order);
    }
}

/// One chunk's rows, as [`Waiting::plan`] takes them (every slice has one entry per chunk row).
pub struct Rows<'a> {
    /// The rows to visit, ascending: new impressions and labelled events whose key is in play.
    pub cand: &'a [i64],
    /// The slot allocated to each row that is a new impression, else -1.
    pub slot: &'a [i64],
    pub key: &'a [i64],
    pub rid: &'a [i64],
    pub label: &'a [f32],
    pub weight: &'a [f32],
    /// The event-time watermark after each row (non-decreasing).
    pub watermark: &'a [i64],
}

/// The key indexes and deadline queues of waiting and kept impressions.
#[derive(Default)]
pub struct Waiting {
    retention: i64,
    cap: usize,
    pending: HashMap<i64, i64>,
    retained: HashMap<i64, i64>,
    queue: BinaryHeap<Entry>,
    retained_queue: BinaryHeap<Entry>,
    pub n_pending: usize,
    pub n_retained: usize,
    /// Pending impressions learned as negatives before their window ended, at the cap.
    pub expired_early: u64,
    /// Kept snapshots dropped before their late window ended, at the cap.
    pub dropped: u64,
}

impl Waiting {
    /// `retention`: how long (µs) a labelled impression is kept past its deadline (0: not kept);
    /// `cap`: at most this many pending and kept impressions together.
    pub fn new(retention: i64, cap: usize) -> Self {
        Waiting {
            retention,
            cap,
            ..Default::default()
        }
    }

    /// Whether nothing waits and nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty() && self.retained.is_empty()
    }

    /// Approximate bytes held (indexes and queues, at their capacity).
    pub fn memory_bytes(&self) -> usize {
        let map = |m: &HashMap<i64, i64>| m.capacity() * (16 + 1);
        let heap = |h: &BinaryHeap<Entry>| h.capacity() * std::mem::size_of::<Entry>();
        map(&self.pending) + map(&self.retained) + heap(&self.queue) + heap(&self.retained_queue)
    }

    /// For each row: is its key waiting or kept, or is it the key of an impression in the same chunk?
    pub fn in_play(&self, keys: &[i64], is_impression: &[bool]) -> Vec<bool> {
        let chunk: HashSet<i64> = keys
            .iter()
            .zip(is_impression)
            .filter(|(_, &imp)| imp)
            .map(|(&k, _)| k)
            .collect();
        keys.iter()
            .map(|k| chunk.contains(k) || self.pending.contains_key(k) || self.retained.contains_key(k))
            .collect()
    }

    /// Rebuild the indexes and queues from the slots of waiting (`pending`) and kept (`kept`)
    /// impressions, whose chains are already in `s.next`.
    pub fn rebuild(&mut self, s: &Slots<'_>, pending: &[i64], kept: &[i64]) {
        let (retention, cap) = (self.retention, self.cap);
        let (early, dropped) = (self.expired_early, self.dropped);
        *self = Waiting::new(retention, cap);
        self.expired_early = early;
        self.dropped = dropped;
        (self.pending, self.queue) = index(s, pending);
        (self.retained, self.retained_queue) = index(s, kept);
        self.n_pending = pending.len();
        self.n_retained = kept.len();
    }

    /// Label the candidate rows of one chunk, in order, then expire what the chunk's last
    /// watermark passed. New impressions must already have their slot columns written.
    pub fn plan(&mut self, s: &mut Slots<'_>, rows: &Rows<'_>) -> Resolved {
        let mut out = Resolved::default();
        let wm = rows.watermark;
        for &r in rows.cand {
            let ru = r as usize;
            self.expire_before(s, Some(wm[ru]), Some(wm), &mut out);
            self.prune_retained(s, wm[ru], &mut out);
            let key = rows.key[ru];
            let slot = rows.slot[ru];
            if slot >= 0 {
                self.add_pending(s, key, slot);
                if self.n_pending + self.n_retained > self.cap {
                    self.enforce_cap(s, 2 * r, &mut out);
                }
                continue;
            }
            let (label, weight, rid) = (rows.label[ru], rows.weight[ru], rows.rid[ru]);
            let found = find(s, &self.pending, key, rid);
            if found >= 0 {
                unlink(s, &mut self.pending, key, found);
                self.n_pending -= 1;
                out.example(found, label, weight, IMPRESSION, 2 * r + 2);
                self.retain(s, key, found, ANSWERED, &mut out);
                continue;
            }
            let kept = find(s, &self.retained, key, rid);
            if kept >= 0 {
                let late = label > 0.0 && s.state[kept as usize] == EXPIRED;
                if late {
                    s.state[kept as usize] = ANSWERED;
                }
                out.example(kept, label, weight, if late { LATE } else { FOLLOWUP }, 2 * r + 2);
                continue;
            }
            out.event_rows.push(r);
        }
        if let Some(&last) = wm.last() {
            self.expire_before(s, Some(last), Some(wm), &mut out);
            self.prune_retained(s, last, &mut out);
        }
        out
    }

    /// Pending impressions with a deadline before `limit` (all when None) become negatives
    /// (order key 0); then, with `horizon`, kept snapshots past `horizon - retention` are freed.
    pub fn expire(&mut self, s: &mut Slots<'_>, limit: Option<i64>, horizon: Option<i64>) -> Resolved {
        let mut out = Resolved::default();
        self.expire_before(s, limit, None, &mut out);
        if let Some(h) = horizon {
            self.prune_retained(s, h, &mut out);
        }
        out
    }

    fn add_pending(&mut self, s: &mut Slots<'_>, key: i64, slot: i64) {
        let u = slot as usize;
        s.next[u] = self.pending.get(&key).copied().unwrap_or(-1);
        self.pending.insert(key, slot);
        self.queue.push(Reverse((s.deadline[u], s.seq[u], slot)));
        self.n_pending += 1;
    }

    /// Keep a labelled impression's snapshot for later feedback, or free it without retention.
    fn retain(&mut self, s: &mut Slots<'_>, key: i64, slot: i64, state: i8, out: &mut Resolved) {
        let u = slot as usize;
        if self.retention <= 0 {
            s.state[u] = RELEASING;
            out.freed.push(slot);
            return;
        }
        s.state[u] = state;
        s.next[u] = self.retained.get(&key).copied().unwrap_or(-1);
        self.retained.insert(key, slot);
        self.n_retained += 1;
        self.retained_queue.push(Reverse((s.deadline[u], s.seq[u], slot)));
    }

    /// Hold at most `cap`: drop the oldest kept snapshot, else expire the oldest pending one.
    fn enforce_cap(&mut self, s: &mut Slots<'_>, order: i64, out: &mut Resolved) {
        while self.n_pending + self.n_retained > self.cap {
            if self.n_retained > 0 {
                let Some(Reverse((_, seq, slot))) = self.retained_queue.pop() else {
                    break;
                };
                let u = slot as usize;
                if matches!(s.state[u], EXPIRED | ANSWERED) && s.seq[u] == seq {
                    self.release_retained(s, slot, out);
                    self.dropped += 1;
                }
                continue;
            }
            let Some(Reverse((_, seq, slot))) = self.queue.pop() else {
                break;
            };
            let u = slot as usize;
            if s.state[u] != PENDING || s.seq[u] != seq {
                continue;
            }
            let key = s.key[u];
            unlink(s, &mut self.pending, key, slot);
            self.n_pending -= 1;
            self.expired_early += 1;
            out.example(slot, 0.0, 1.0, IMPRESSION, order);
            self.retain(s, key, slot, EXPIRED, out);
        }
    }

    fn release_retained(&mut self, s: &mut Slots<'_>, slot: i64, out: &mut Resolved) {
        let key = s.key[slot as usize];
        unlink(s, &mut self.retained, key, slot);
        self.n_retained -= 1;
        s.state[slot as usize] = RELEASING;
        out.freed.push(slot);
    }

    /// Pending impressions with `deadline < limit` (all when None) become negatives, by
    /// deadline, each placed just before the chunk row whose watermark passed its deadline
    /// (order key `2 * row`), or at 0 outside a chunk.
    fn expire_before(&mut self, s: &mut Slots<'_>, limit: Option<i64>, wm: Option<&[i64]>, out: &mut Resolved) {
        while let Some(&Reverse((deadline, seq, slot))) = self.queue.peek() {
            if limit.is_some_and(|l| deadline >= l) {
                break;
            }
            self.queue.pop();
            let u = slot as usize;
            if s.state[u] != PENDING || s.seq[u] != seq {
                continue; // resolved since (and the slot perhaps reused)
            }
            let key = s.key[u];
            unlink(s, &mut self.pending, key, slot);
            self.n_pending -= 1;
            let d = s.deadline[u];
            let order = wm.map_or(0, |w| 2 * w.partition_point(|&x| x <= d) as i64);
            out.example(slot, 0.0, 1.0, IMPRESSION, order);
            self.retain(s, key, slot, EXPIRED, out);
        }
    }

    /// Free the snapshots kept past `late_window` after their deadline.
    fn prune_retained(&mut self, s: &mut Slots<'_>, horizon: i64, out: &mut Resolved) {
        let limit = horizon.saturating_sub(self.retention);
        while let Some(&Reverse((deadline, seq, slot))) = self.retained_queue.peek() {
            if deadline >= limit {
                break;
            }
            self.retained_queue.pop();
            let u = slot as usize;
            if matches!(s.state[u], EXPIRED | ANSWERED) && s.seq[u] == seq {
                self.release_retained(s, slot, out);
            }
        }
    }
}

/// The newest slot under `key` that `rid` can resolve (-1 if none): request ids must match
/// when both sides carry one.
fn find(s: &Slots<'_>, index: &HashMap<i64, i64>, key: i64, rid: i64) -> i64 {
    let mut slot = index.get(&key).copied().unwrap_or(-1);
    while slot >= 0 {
        let other = s.rid[slot as usize];
        if rid == 0 || other == 0 || other == rid {
            return slot;
        }
        slot = s.next[slot as usize];
    }
    -1
}

fn unlink(s: &mut Slots<'_>, index: &mut HashMap<i64, i64>, key: i64, slot: i64) {
    let (mut prev, mut cur) = (-1i64, index.get(&key).copied().unwrap_or(-1));
    while cur >= 0 && cur != slot {
        prev = cur;
        cur = s.next[cur as usize];
    }
    if cur < 0 {
        return;
    }
    let nxt = s.next[cur as usize];
    if prev < 0 {
        if nxt < 0 {
            index.remove(&key);
        } else {
            index.insert(key, nxt);
        }
    } else {
        s.next[prev as usize] = nxt;
    }
    s.next[cur as usize] = -1;
}

/// The key index (newest slot of each chain: the one no other slot points to) and the
/// deadline queue of `slots`.
fn index(s: &Slots<'_>, slots: &[i64]) -> (HashMap<i64, i64>, BinaryHeap<Entry>) {
    let pointed: HashSet<i64> = slots.iter().map(|&x| s.next[x as usize]).filter(|&n| n >= 0).collect();
    let mut map = HashMap::with_capacity(slots.len());
    let mut entries = Vec::with_capacity(slots.len());
    for &x in slots {
        let u = x as usize;
        if !pointed.contains(&x) {
            map.insert(s.key[u], x);
        }
        entries.push(Reverse((s.deadline[u], s.seq[u], x)));
    }
    (map, BinaryHeap::from(entries))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Store {
        key: Vec<i64>,
        rid: Vec<i64>,
        seq: Vec<i64>,
        deadline: Vec<i64>,
        state: Vec<i8>,
        next: Vec<i64>,
    }

    impl Store {
        fn new(n: usize) -> Self {
            Store {
                key: vec![0; n],
                rid: vec![0; n],
                seq: vec![0; n],
                deadline: vec![0; n],
                state: vec![0; n],
                next: vec![-1; n],
            }
        }
        fn slots(&mut self) -> Slots<'_> {
            Slots {
                key: &self.key,
                rid: &self.rid,
                seq: &self.seq,
                deadline: &self.deadline,
                state: &mut self.state,
                next: &mut self.next,
            }
        }
        fn put(&mut self, slot: usize, key: i64, rid: i64, seq: i64, deadline: i64) {
            (self.key[slot], self.rid[slot], self.seq[slot], self.deadline[slot]) = (key, rid, seq, deadline);
            self.state[slot] = PENDING;
        }
    }

    /// Rows: an impression (slot 0) of key 7 at t=0, then a click on key 7 at t=10.
    #[test]
    fn a_click_resolves_its_impression_and_is_kept() {
        let mut st = Store::new(4);
        st.put(0, 7, 0, 1, 100);
        let mut w = Waiting::new(50, 10);
        let rows = Rows {
            cand: &[0, 1],
            slot: &[0, -1],
            key: &[7, 7],
            rid: &[0, 0],
            label: &[0.0, 1.0],
            weight: &[1.0, 2.0],
            watermark: &[0, 10],
        };
        let out = w.plan(&mut st.slots(), &rows);
        assert_eq!(out.slot, vec![0]);
        assert_eq!(out.label, vec![1.0]);
        assert_eq!(out.weight, vec![2.0]);
        assert_eq!(out.origin, vec![IMPRESSION]);
        assert_eq!(out.order, vec![4]);
        assert!(out.event_rows.is_empty());
        assert_eq!((w.n_pending, w.n_retained), (0, 1));
        assert_eq!(st.state[0], ANSWERED);
        // Past deadline + retention, the kept snapshot is freed.
        let out = w.expire(&mut st.slots(), Some(1000), Some(1000));
        assert_eq!(out.freed, vec![0]);
        assert_eq!(w.n_retained, 0);
        assert!(w.is_empty());
    }

    #[test]
    fn expiry_then_late_positive_and_request_ids() {
        let mut st = Store::new(4);
        st.put(0, 7, 11, 1, 100);
        st.put(1, 7, 22, 2, 100);
        let mut w = Waiting::new(1000, 10);
        let rows = Rows {
            cand: &[0, 1, 2],
            slot: &[0, 1, -1],
            key: &[7, 7, 7],
            rid: &[11, 22, 11],
            label: &[0.0, 0.0, 1.0],
            weight: &[1.0, 1.0, 1.0],
            watermark: &[0, 0, 5],
        };
        // The click names request 11: it resolves slot 0, not the newer slot 1.
        let out = w.plan(&mut st.slots(), &rows);
        assert_eq!(out.slot, vec![0]);
        assert_eq!(w.n_pending, 1);
        // The watermark passes slot 1's deadline: a negative at order 0, kept as expired.
        let out = w.expire(&mut st.slots(), Some(200), Some(200));
        assert_eq!(
            (out.slot.clone(), out.label.clone(), out.order.clone()),
            (vec![1], vec![0.0], vec![0])
        );
        assert_eq!(st.state[1], EXPIRED);
        // A late click for request 22 is learned as late; a second one as a follow-up.
        let rows = Rows {
            cand: &[0, 1],
            slot: &[-1, -1],
            key: &[7, 7],
            rid: &[22, 22],
            label: &[1.0, 1.0],
            weight: &[1.0, 1.0],
            watermark: &[300, 300],
        };
        let out = w.plan(&mut st.slots(), &rows);
        assert_eq!(out.slot, vec![1, 1]);
        assert_eq!(out.origin, vec![LATE, FOLLOWUP]);
    }

    #[test]
    fn the_cap_expires_the_oldest_early_and_rebuild_restores_the_indexes() {
        let mut st = Store::new(4);
        for s in 0..3 {
            st.put(s, 7 + s as i64, 0, s as i64 + 1, 100 + s as i64);
        }
        let mut w = Waiting::new(0, 2);
        let rows = Rows {
            cand: &[0, 1, 2],
            slot: &[0, 1, 2],
            key: &[7, 8, 9],
            rid: &[0, 0, 0],
            label: &[0.0; 3],
            weight: &[1.0; 3],
            watermark: &[0, 0, 0],
        };
        let out = w.plan(&mut st.slots(), &rows);
        assert_eq!(
            (out.slot.clone(), out.order.clone(), out.freed.clone()),
            (vec![0], vec![4], vec![0])
        );
        assert_eq!((w.n_pending, w.expired_early), (2, 1));
        let mut again = Waiting::new(0, 2);
        again.rebuild(&st.slots(), &[1, 2], &[]);
        assert_eq!(again.n_pending, 2);
        assert_eq!(
            again.in_play(&[8, 9, 7], &[false, false, false]),
            vec![true, true, false]
        );
        let out = again.expire(&mut st.slots(), None, None);
        assert_eq!(out.slot, vec![1, 2]);
        assert!(again.is_empty());
    }
}
