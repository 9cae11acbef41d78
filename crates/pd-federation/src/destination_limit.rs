//! The per-destination cap on uncached lookups: how many lookups a second this node sends
//! to one remote domain for answers it does not hold, so that clients asking for random
//! names at one domain cannot turn the node into a reflector against it (issue 12). Cached
//! answers, negative ones included, cost the remote nothing and are not counted.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock as _, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use pd_proto::Host;

/// Above this many tracked destinations, those whose bucket is full again are forgotten.
const MAX_TRACKED: usize = 10_000;

/// A token bucket per remote domain.
pub struct DestinationLimit {
    limiter: RateLimiter<Host, DefaultKeyedStateStore<Host>, DefaultClock>,
    per_second: NonZeroU32,
}

impl std::fmt::Debug for DestinationLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DestinationLimit")
            .field("per_second", &self.per_second)
            .finish_non_exhaustive()
    }
}

impl DestinationLimit {
    /// At most `per_second` lookups a second to one destination, sustained, and `burst` at
    /// once.
    pub fn new(per_second: NonZeroU32, burst: NonZeroU32) -> Self {
        Self {
            limiter: RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst)),
            per_second,
        }
    }

    /// The most lookups a second to one destination.
    pub fn per_second(&self) -> u32 {
        self.per_second.get()
    }

    /// Takes one lookup of `destination` from its bucket, or says how long until the next
    /// one may be sent.
    pub fn check(&self, destination: &Host) -> Result<(), Duration> {
        if self.limiter.len() > MAX_TRACKED {
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
        self.limiter
            .check_key(destination)
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_destination_has_its_own_bucket() {
        let nz = |n| NonZeroU32::new(n).unwrap();
        let limit = DestinationLimit::new(nz(1), nz(3));
        let a = Host::parse("a.example").unwrap();
        let b = Host::parse("b.example").unwrap();
        for _ in 0..3 {
            assert!(limit.check(&a).is_ok());
        }
        let wait = limit.check(&a).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        assert!(
            limit.check(&b).is_ok(),
            "another destination is not affected"
        );
    }
}
