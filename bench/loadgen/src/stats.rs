//! Measurements: latency percentiles, and the CPU time and memory of a process read from /proc.
use std::fs;
use std::time::Duration;

/// Linux's USER_HZ, the unit of utime/stime in /proc/<pid>/stat, is 100 on every architecture it runs on.
const TICKS_PER_SECOND: f64 = 100.0;

/// utime + stime of a process in seconds; `None` for "self" failures or a vanished process.
pub fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses; the fields after its last ')' are fixed.
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let mut fields = rest.split_whitespace();
    // Fields 14 and 15 of the file are the 12th and 13th after the name (the state is the 1st).
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / TICKS_PER_SECOND)
}

/// Resident set size in KiB (VmRSS).
pub fn rss_kib(pid: &str) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU use of this process and, when given, of the server, over a measured window.
pub struct CpuWindow {
    server_pid: Option<String>,
    self_start: Option<f64>,
    server_start: Option<f64>,
}

impl CpuWindow {
    pub fn start(server_pid: Option<&str>) -> Self {
        CpuWindow {
            server_pid: server_pid.map(str::to_owned),
            self_start: cpu_seconds("self"),
            server_start: server_pid.and_then(cpu_seconds),
        }
    }

    /// Fractions of one core used over `wall`: (load generator, server).
    pub fn finish(&self, wall: Duration) -> (Option<f64>, Option<f64>) {
        let secs = wall.as_secs_f64().max(1e-9);
        let used = |start: Option<f64>, now: Option<f64>| Some((now? - start?) / secs);
        let server_now = self.server_pid.as_deref().and_then(cpu_seconds);
        (
            used(self.self_start, cpu_seconds("self")),
            used(self.server_start, server_now),
        )
    }
}

/// Latency samples in microseconds, bounded so that a long run cannot grow without limit.
pub struct Latencies {
    samples: Vec<u32>,
    cap: usize,
    dropped: u64,
}

impl Latencies {
    pub fn new(cap: usize) -> Self {
        Latencies {
            samples: Vec::with_capacity(cap.min(1 << 20)),
            cap,
            dropped: 0,
        }
    }

    pub fn record(&mut self, d: Duration) {
        if self.samples.len() < self.cap {
            self.samples
                .push(u32::try_from(d.as_micros()).unwrap_or(u32::MAX));
        } else {
            self.dropped += 1;
        }
    }

    /// p50, p90, p99, p99.9 and max in milliseconds, as JSON.
    pub fn summary(&mut self) -> serde_json::Value {
        self.samples.sort_unstable();
        self.summary_ref()
    }

    /// As `summary`, sorting a copy.
    pub fn summary_ref(&self) -> serde_json::Value {
        let mut sorted = self.samples.clone();
        sorted.sort_unstable();
        let n = sorted.len();
        let pct = |p: f64| -> Option<f64> {
            if n == 0 {
                return None;
            }
            let rank = ((p / 100.0) * n as f64).ceil() as usize;
            let i = rank.clamp(1, n) - 1;
            sorted.get(i).map(|&us| f64::from(us) / 1000.0)
        };
        serde_json::json!({
            "samples": n,
            "dropped": self.dropped,
            "p50_ms": pct(50.0),
            "p90_ms": pct(90.0),
            "p99_ms": pct(99.0),
            "p999_ms": pct(99.9),
            "max_ms": pct(100.0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_cpu_and_rss() {
        assert!(cpu_seconds("self").is_some());
        assert!(rss_kib("self").unwrap_or(0) > 0);
        assert!(cpu_seconds("999999999").is_none());
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let mut l = Latencies::new(1000);
        for us in 1..=100u64 {
            l.record(Duration::from_micros(us * 1000));
        }
        let s = l.summary();
        assert_eq!(s["p50_ms"], 50.0);
        assert_eq!(s["p99_ms"], 99.0);
        assert_eq!(s["max_ms"], 100.0);
    }

    #[test]
    fn samples_are_bounded() {
        let mut l = Latencies::new(2);
        for _ in 0..5 {
            l.record(Duration::from_millis(1));
        }
        assert_eq!(l.summary()["dropped"], 3);
    }
}
