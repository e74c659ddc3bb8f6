//! Timed runs: a warm-up, then a measured window; latencies and throughput.

use std::time::{Duration, Instant};

/// When a timed run starts counting and when it stops issuing work. Operations
/// started during the warm-up are done but not counted; no operation starts after `end`.
#[derive(Clone, Copy)]
pub struct Window {
    pub measure_from: Instant,
    pub end: Instant,
}

impl Window {
    pub fn starting_now(warmup: Duration, duration: Duration) -> Self {
        let measure_from = Instant::now() + warmup;
        Self { measure_from, end: measure_from + duration }
    }

    /// Whether an operation may still start at `now`.
    pub fn is_open(&self, now: Instant) -> bool {
        now < self.end
    }
}

/// What one worker (a writer task or a client thread) saw.
#[derive(Default)]
pub struct WorkerLog {
    /// Latencies of the successful operations started in the measured window.
    pub latencies: Vec<Duration>,
    /// Failed operations started in the measured window.
    pub errors: u64,
    /// Operations started during the warm-up (not counted).
    pub warmup_ops: u64,
}

impl WorkerLog {
    /// Records one operation that started at `started` and took `latency`.
    pub fn record(&mut self, window: &Window, started: Instant, latency: Duration, ok: bool) {
        if started < window.measure_from {
            self.warmup_ops += 1;
        } else if ok {
            self.latencies.push(latency);
        } else {
            self.errors += 1;
        }
    }
}

/// The combined result of every worker of one timed run.
pub struct Measurement {
    /// Successful operations started in the measured window.
    pub ok: u64,
    pub errors: u64,
    /// Every operation, warm-up included.
    pub total_ops: u64,
    /// From the end of the warm-up until the last worker finished.
    pub elapsed: Duration,
    sorted: Vec<Duration>,
}

impl Measurement {
    /// Combines the workers' logs; call it as soon as every worker has finished.
    pub fn finish(window: &Window, logs: Vec<WorkerLog>) -> Self {
        let elapsed = Instant::now().saturating_duration_since(window.measure_from);
        let mut sorted = Vec::new();
        let (mut errors, mut warmup_ops) = (0, 0);
        for log in logs {
            sorted.extend(log.latencies);
            errors += log.errors;
            warmup_ops += log.warmup_ops;
        }
        sorted.sort_unstable();
        let ok = sorted.len() as u64;
        Self { ok, errors, total_ops: ok + errors + warmup_ops, elapsed, sorted }
    }

    /// Successful operations per second over the measured window.
    pub fn per_second(&self) -> f64 {
        let seconds = self.elapsed.as_secs_f64();
        if seconds > 0.0 { self.ok as f64 / seconds } else { 0.0 }
    }

    /// The `p`th percentile latency (nearest rank) in milliseconds; 0 with no samples.
    pub fn percentile_ms(&self, p: f64) -> f64 {
        percentile_ms(&self.sorted, p)
    }

    /// One line for the progress output.
    pub fn summary(&self, unit: &str) -> String {
        format!(
            "{} {unit}/s, p50 {:.2} ms, p99 {:.2} ms, {} ok, {} errors",
            thousands(self.per_second().round() as u64),
            self.percentile_ms(50.0),
            self.percentile_ms(99.0),
            self.ok,
            self.errors
        )
    }
}

/// The `p`th percentile (nearest rank) of sorted latencies in milliseconds; 0 with none.
pub fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    let index = rank.clamp(1, sorted.len()) - 1;
    sorted[index].as_secs_f64() * 1000.0
}

/// `1234567` as `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measurement(latencies_ms: &[u64]) -> Measurement {
        let window = Window { measure_from: Instant::now(), end: Instant::now() };
        let log = WorkerLog { latencies: latencies_ms.iter().map(|ms| Duration::from_millis(*ms)).collect(), errors: 0, warmup_ops: 0 };
        Measurement::finish(&window, vec![log])
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let m = measurement(&(1..=100).rev().collect::<Vec<_>>());
        assert_eq!(m.percentile_ms(50.0), 50.0);
        assert_eq!(m.percentile_ms(99.0), 99.0);
        assert_eq!(m.percentile_ms(100.0), 100.0);
        assert_eq!(measurement(&[7]).percentile_ms(99.0), 7.0);
        assert_eq!(measurement(&[]).percentile_ms(50.0), 0.0);
    }

    #[test]
    fn thousands_are_separated() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
    }
}
