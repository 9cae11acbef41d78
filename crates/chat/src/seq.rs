//! Sequence numbers for signed operations: microsecond timestamps that strictly increase
//! within one process, even when two operations fall in the same microsecond or the clock
//! steps back.

use std::sync::atomic::{AtomicU64, Ordering};

static LAST: AtomicU64 = AtomicU64::new(0);

/// The next sequence number: the current time in microseconds, or one more than the last
/// number handed out if that is larger.
pub fn next_seq() -> u64 {
    let now = pd_proto::now_micros();
    let previous = LAST
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| {
            Some(now.max(last.saturating_add(1)))
        })
        .unwrap_or_else(|last| last);
    now.max(previous.saturating_add(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn successive_numbers_strictly_increase_and_follow_the_clock() {
        let before = pd_proto::now_micros();
        let mut last = next_seq();
        assert!(last >= before);
        for _ in 0..10_000 {
            let next = next_seq();
            assert!(next > last, "{next} after {last}");
            last = next;
        }
    }

    #[test]
    fn numbers_are_unique_across_threads() {
        let handles: Vec<_> = (0..4)
            .map(|_| std::thread::spawn(|| (0..1000).map(|_| next_seq()).collect::<Vec<_>>()))
            .collect();
        let mut all: Vec<u64> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        let count = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), count);
    }
}
