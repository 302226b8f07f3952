//! The rate limit on new sessions from one address (`Config::connection_rate`; Node has none): a token bucket
//! per IP address, refilled at `rate` per second up to `burst`. Handshakes past it are refused (429) before a
//! session is made, so a client that reconnects in a loop, or a flood from one address, costs the server a
//! table entry and a short answer.
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

/// Buckets are pruned (those full again, whose address has been quiet) once the table reaches this size, and
/// then each time it doubles: the table stays within twice the addresses active within a refill.
const PRUNE_FROM: usize = 4096;

#[derive(Debug)]
pub struct Admission {
    rate: f64,
    burst: f64,
    buckets: HashMap<IpAddr, (f64, Instant)>,
    prune_at: usize,
}

impl Admission {
    pub fn new(rate: f64, burst: f64) -> Self {
        Admission {
            rate,
            burst: burst.max(1.0),
            buckets: HashMap::new(),
            prune_at: PRUNE_FROM,
        }
    }

    fn refilled(&self, (tokens, at): (f64, Instant), now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(at).as_secs_f64();
        (tokens + elapsed * self.rate).min(self.burst)
    }

    /// Spend a token of `ip`'s bucket: false (nothing spent) when it has none.
    pub fn admit(&mut self, ip: IpAddr, now: Instant) -> bool {
        if self.buckets.len() >= self.prune_at {
            let (rate, burst) = (self.rate, self.burst);
            self.buckets.retain(|_, (tokens, at)| {
                *tokens + now.saturating_duration_since(*at).as_secs_f64() * rate < burst
            });
            self.prune_at = (self.buckets.len() * 2).max(PRUNE_FROM);
        }
        let bucket = self.buckets.get(&ip).copied().unwrap_or((self.burst, now));
        let tokens = self.refilled(bucket, now);
        let admitted = tokens >= 1.0;
        let left = if admitted { tokens - 1.0 } else { tokens };
        self.buckets.insert(ip, (left, now));
        admitted
    }

    /// Addresses with a bucket (tests: the table stays bounded).
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use std::time::Duration;

    #[test]
    fn a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut a = Admission::new(2.0, 3.0);
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let other = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
        assert!((0..3).all(|_| a.admit(ip, t0)), "the burst");
        assert!(!a.admit(ip, t0), "then none");
        assert!(a.admit(other, t0), "each address has its own bucket");
        assert!(
            a.admit(ip, t0 + Duration::from_millis(500)),
            "one more per 1/rate s"
        );
        assert!(!a.admit(ip, t0 + Duration::from_millis(500)));
    }

    #[test]
    fn the_table_is_pruned_of_quiet_addresses() {
        let t0 = Instant::now();
        let mut a = Admission::new(10.0, 1.0);
        for i in 0..20_000u32 {
            let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
            // Each address connects once, 1 ms apart: its bucket is full again 100 ms later.
            assert!(a.admit(ip, t0 + Duration::from_millis(u64::from(i))));
        }
        assert!(a.len() < 2 * PRUNE_FROM, "{} buckets kept", a.len());
    }
}
