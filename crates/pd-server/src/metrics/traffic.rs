//! The traffic ring: per-minute counts of lookups (by how they were answered) and of
//! problem answers (by type) over the last hour, kept in memory for the admin overview's
//! chart, plus totals since the node started.
//!
//! Recording is a clock read and one atomic add; a slot is cleared (under a lock) only when
//! the first event of a new minute arrives in it, so the hot path never waits on a reader
//! or on another recorder of the same minute.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pd_proto::ProblemType;

/// Minutes the ring covers.
pub const MINUTES: usize = 60;

/// How a lookup was answered, as the overview charts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupClass {
    /// A user of this node, answered from the store.
    Local,
    /// Another node's user, answered by asking that node (or failing to).
    Remote,
    /// Another node's user, answered from the cache (fresh or, while the node fails, stale).
    Cached,
    /// Another node's user, refused by this node's trust policy.
    Refused,
}

impl LookupClass {
    /// Every class, in the order of [`MinuteCounts::lookups`].
    pub const ALL: [Self; 4] = [Self::Local, Self::Remote, Self::Cached, Self::Refused];

    /// The lower-case name (`local`, `remote`, `cached`, `refused`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Remote => "remote",
            Self::Cached => "cached",
            Self::Refused => "refused",
        }
    }

    /// The class of a lookup counted with `source` and `result`, the labels of
    /// [`super::Metrics::lookup`].
    pub fn of(source: &str, result: &str) -> Self {
        match (source, result) {
            (_, "refused") => Self::Refused,
            ("local", _) => Self::Local,
            ("cache" | "stale", _) => Self::Cached,
            _ => Self::Remote,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

const LOOKUP_COUNTERS: usize = LookupClass::ALL.len();
const COUNTERS: usize = LOOKUP_COUNTERS + ProblemType::ALL.len();

fn problem_index(kind: ProblemType) -> usize {
    // Every type is in `ALL`; the fallback cannot be reached.
    LOOKUP_COUNTERS
        + ProblemType::ALL
            .iter()
            .position(|k| *k == kind)
            .unwrap_or_default()
}

/// One minute of the ring.
struct Slot {
    /// The minute (Unix seconds / 60) the counts belong to; `u64::MAX` for never used.
    minute: AtomicU64,
    counts: [AtomicU64; COUNTERS],
}

/// The counts of one minute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MinuteCounts {
    /// The start of the minute.
    pub start: SystemTime,
    /// Lookups by class, in the order of [`LookupClass::ALL`].
    pub lookups: [u64; LOOKUP_COUNTERS],
    /// Problem answers by type, in the order of [`ProblemType::ALL`].
    pub problems: Vec<u64>,
}

impl MinuteCounts {
    /// Lookups of `class` in this minute.
    pub fn lookups_of(&self, class: LookupClass) -> u64 {
        self.lookups[class.index()]
    }

    /// All lookups in this minute.
    pub fn total_lookups(&self) -> u64 {
        self.lookups.iter().sum()
    }
}

/// The ring's contents at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrafficSnapshot {
    /// The last [`MINUTES`] minutes, oldest first; the last one is the current minute.
    pub minutes: Vec<MinuteCounts>,
    /// Lookups by class since the node started.
    pub total_lookups: [u64; LOOKUP_COUNTERS],
    /// Problem answers by type since the node started, in the order of
    /// [`ProblemType::ALL`].
    pub total_problems: Vec<u64>,
}

impl TrafficSnapshot {
    /// Lookups of `class` over the whole ring.
    pub fn hour_lookups(&self, class: LookupClass) -> u64 {
        self.minutes.iter().map(|m| m.lookups_of(class)).sum()
    }

    /// Problem answers of each type over the whole ring and since the start, for the types
    /// that occurred, most frequent in the last hour first.
    pub fn problems(&self) -> Vec<(ProblemType, u64, u64)> {
        let mut out: Vec<(ProblemType, u64, u64)> = ProblemType::ALL
            .iter()
            .enumerate()
            .map(|(i, kind)| {
                let hour = self.minutes.iter().map(|m| m.problems[i]).sum();
                (*kind, hour, self.total_problems[i])
            })
            .filter(|(_, hour, total)| *hour > 0 || *total > 0)
            .collect();
        out.sort_by(|a, b| b.1.cmp(&a.1).then(b.2.cmp(&a.2)));
        out
    }
}

/// The ring itself.
pub struct Traffic {
    started: Instant,
    started_at: SystemTime,
    slots: Box<[Slot]>,
    totals: [AtomicU64; COUNTERS],
    rotate: Mutex<()>,
}

impl std::fmt::Debug for Traffic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Traffic")
            .field("started_at", &self.started_at)
            .finish_non_exhaustive()
    }
}

impl Default for Traffic {
    fn default() -> Self {
        Self::new()
    }
}

impl Traffic {
    /// An empty ring; the node's start is now.
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
            started_at: SystemTime::now(),
            slots: (0..MINUTES)
                .map(|_| Slot {
                    minute: AtomicU64::new(u64::MAX),
                    counts: std::array::from_fn(|_| AtomicU64::new(0)),
                })
                .collect(),
            totals: std::array::from_fn(|_| AtomicU64::new(0)),
            rotate: Mutex::new(()),
        }
    }

    /// When the node started.
    pub fn started_at(&self) -> SystemTime {
        self.started_at
    }

    /// How long the node has been running.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Counts a lookup answered as `class`, now.
    pub fn lookup(&self, class: LookupClass) {
        self.add(class.index(), SystemTime::now());
    }

    /// Counts a problem answer of type `kind`, now.
    pub fn problem(&self, kind: ProblemType) {
        self.add(problem_index(kind), SystemTime::now());
    }

    /// The ring as of now.
    pub fn snapshot(&self) -> TrafficSnapshot {
        self.snapshot_at(SystemTime::now())
    }

    fn add(&self, counter: usize, now: SystemTime) {
        self.totals[counter].fetch_add(1, Ordering::Relaxed);
        let minute = minute_of(now);
        let slot = &self.slots[slot_index(minute)];
        if slot.minute.load(Ordering::Acquire) != minute {
            let _guard = self
                .rotate
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            // Another recorder may have started the minute while this one waited.
            if slot.minute.load(Ordering::Acquire) != minute {
                for count in &slot.counts {
                    count.store(0, Ordering::Relaxed);
                }
                slot.minute.store(minute, Ordering::Release);
            }
        }
        slot.counts[counter].fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot_at(&self, now: SystemTime) -> TrafficSnapshot {
        let current = minute_of(now);
        let minutes = (0..MINUTES as u64)
            .rev()
            .map(|back| {
                let minute = current.saturating_sub(back);
                let slot = &self.slots[slot_index(minute)];
                let mut counts = [0u64; COUNTERS];
                if slot.minute.load(Ordering::Acquire) == minute {
                    for (out, count) in counts.iter_mut().zip(&slot.counts) {
                        *out = count.load(Ordering::Relaxed);
                    }
                }
                MinuteCounts {
                    start: UNIX_EPOCH + Duration::from_secs(minute * 60),
                    lookups: std::array::from_fn(|i| counts[i]),
                    problems: counts[LOOKUP_COUNTERS..].to_vec(),
                }
            })
            .collect();
        let totals: Vec<u64> = self
            .totals
            .iter()
            .map(|t| t.load(Ordering::Relaxed))
            .collect();
        TrafficSnapshot {
            minutes,
            total_lookups: std::array::from_fn(|i| totals[i]),
            total_problems: totals[LOOKUP_COUNTERS..].to_vec(),
        }
    }
}

fn minute_of(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() / 60)
}

fn slot_index(minute: u64) -> usize {
    (minute % MINUTES as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(minute: u64, second: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(29_000_000 * 60 + minute * 60 + second)
    }

    #[test]
    fn counts_land_in_their_minute_and_old_minutes_fall_out() {
        let t = Traffic::new();
        t.add(LookupClass::Local.index(), at(0, 5));
        t.add(LookupClass::Local.index(), at(0, 59));
        t.add(LookupClass::Cached.index(), at(1, 0));
        t.add(problem_index(ProblemType::UnknownUser), at(1, 30));
        let snap = t.snapshot_at(at(1, 40));
        assert_eq!(snap.minutes.len(), MINUTES);
        let last = &snap.minutes[MINUTES - 1];
        let before = &snap.minutes[MINUTES - 2];
        assert_eq!(last.start, at(1, 0));
        assert_eq!(last.lookups_of(LookupClass::Cached), 1);
        assert_eq!(before.lookups_of(LookupClass::Local), 2);
        assert_eq!(snap.hour_lookups(LookupClass::Local), 2);
        assert_eq!(
            snap.problems(),
            vec![(ProblemType::UnknownUser, 1, 1)],
            "only types that occurred are listed"
        );

        // An hour later the same slots hold new minutes; the old counts are gone from the
        // ring but stay in the totals.
        t.add(LookupClass::Refused.index(), at(60, 1));
        let snap = t.snapshot_at(at(61, 0));
        assert_eq!(snap.hour_lookups(LookupClass::Local), 0);
        assert_eq!(snap.hour_lookups(LookupClass::Cached), 0);
        assert_eq!(snap.hour_lookups(LookupClass::Refused), 1);
        assert_eq!(snap.total_lookups, [2, 0, 1, 1]);
        assert_eq!(snap.problems(), vec![(ProblemType::UnknownUser, 0, 1)]);
        // A reader long after the last event sees an empty hour.
        assert_eq!(
            t.snapshot_at(at(200, 0)).hour_lookups(LookupClass::Refused),
            0
        );
    }

    #[test]
    fn concurrent_recorders_lose_no_count() {
        let t = std::sync::Arc::new(Traffic::new());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let t = t.clone();
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        t.lookup(LookupClass::Remote);
                    }
                })
            })
            .collect();
        for th in threads {
            th.join().unwrap();
        }
        let snap = t.snapshot();
        assert_eq!(snap.total_lookups[LookupClass::Remote.index()], 40_000);
        // The recorders may straddle a minute boundary; the ring still holds them all.
        assert_eq!(snap.hour_lookups(LookupClass::Remote), 40_000);
    }

    #[test]
    fn lookup_labels_map_to_classes() {
        assert_eq!(LookupClass::of("local", "found"), LookupClass::Local);
        assert_eq!(LookupClass::of("local", "not_found"), LookupClass::Local);
        assert_eq!(LookupClass::of("cache", "found"), LookupClass::Cached);
        assert_eq!(LookupClass::of("stale", "found"), LookupClass::Cached);
        assert_eq!(LookupClass::of("remote", "found"), LookupClass::Remote);
        assert_eq!(LookupClass::of("remote", "error"), LookupClass::Remote);
        assert_eq!(LookupClass::of("remote", "refused"), LookupClass::Refused);
    }
}
