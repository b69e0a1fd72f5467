//! Deadlines for the event loop: a min-heap that gives the poll timeout and
//! the keys that are due. Cancellation is lazy: owners put a generation in
//! their keys and ignore stale ones, so nothing is ever removed early.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

pub struct Timers<K: Ord> {
    heap: BinaryHeap<Reverse<(Instant, u64, K)>>,
    seq: u64,
}

impl<K: Ord> Default for Timers<K> {
    fn default() -> Self {
        Timers {
            heap: BinaryHeap::new(),
            seq: 0,
        }
    }
}

impl<K: Ord> Timers<K> {
    pub fn schedule(&mut self, at: Instant, key: K) {
        // The sequence number keeps equal deadlines in scheduling order.
        self.seq = self.seq.wrapping_add(1);
        self.heap.push(Reverse((at, self.seq, key)));
    }

    /// How long poll may sleep: None (forever) when nothing is pending, so an
    /// idle init makes no wake-ups at all.
    pub fn next_timeout(&self, now: Instant) -> Option<Duration> {
        self.heap
            .peek()
            .map(|Reverse((at, _, _))| at.saturating_duration_since(now))
    }

    pub fn pop_due(&mut self, now: Instant) -> Vec<K> {
        let mut due = Vec::new();
        while let Some(Reverse((at, _, _))) = self.heap.peek() {
            if *at > now {
                break;
            }
            if let Some(Reverse((_, _, k))) = self.heap.pop() {
                due.push(k);
            }
        }
        due
    }

    /// The key that is due first.
    pub fn peek(&self) -> Option<&K> {
        self.heap.peek().map(|Reverse((_, _, k))| k)
    }

    /// Drops the key that is due first (a cancelled one).
    pub fn discard_first(&mut self) {
        self.heap.pop();
    }

    /// Moves every deadline later by `lost`: time the init did not see
    /// pass (the VM was paused or restored from a snapshot), so waits resume
    /// where they were instead of all firing at once.
    pub fn shift(&mut self, lost: Duration) {
        let items: Vec<_> = std::mem::take(&mut self.heap).into_vec();
        for Reverse((at, seq, k)) in items {
            self.heap
                .push(Reverse((at.checked_add(lost).unwrap_or(at), seq, k)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_timeout_and_due() {
        let t0 = Instant::now();
        let mut t = Timers::default();
        assert_eq!(t.next_timeout(t0), None, "idle means no wake-up");
        t.schedule(t0 + Duration::from_millis(30), "c");
        t.schedule(t0 + Duration::from_millis(10), "a");
        t.schedule(t0 + Duration::from_millis(10), "b");
        assert_eq!(t.next_timeout(t0), Some(Duration::from_millis(10)));
        assert!(t.pop_due(t0).is_empty());
        assert_eq!(t.pop_due(t0 + Duration::from_millis(10)), vec!["a", "b"]);
        assert_eq!(
            t.next_timeout(t0 + Duration::from_millis(40)),
            Some(Duration::ZERO)
        );
        assert_eq!(t.pop_due(t0 + Duration::from_millis(40)), vec!["c"]);
        assert_eq!(t.next_timeout(t0), None, "nothing left");
    }

    #[test]
    fn shift_moves_everything_later() {
        let t0 = Instant::now();
        let mut t = Timers::default();
        t.schedule(t0 + Duration::from_millis(10), 1);
        t.schedule(t0 + Duration::from_secs(5), 2);
        t.shift(Duration::from_secs(3600));
        assert!(
            t.pop_due(t0 + Duration::from_secs(60)).is_empty(),
            "nothing fires in a storm"
        );
        assert_eq!(t.next_timeout(t0), Some(Duration::from_millis(3_600_010)));
    }
}
