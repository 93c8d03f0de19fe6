//! Measurements: latency percentiles and a process's CPU time and memory from `/proc`.

use serde::Serialize;

/// Latency summary in milliseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Latency {
    pub samples: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    pub fn of(mut ms: Vec<f64>) -> Latency {
        if ms.is_empty() {
            return Latency::default();
        }
        ms.sort_by(f64::total_cmp);
        // Nearest-rank percentile: the smallest sample with at least p of all at or below it.
        let rank = |p: f64| {
            let i = ((p * ms.len() as f64).ceil() as usize).clamp(1, ms.len()) - 1;
            round2(ms[i])
        };
        Latency {
            samples: ms.len(),
            p50_ms: rank(0.50),
            p99_ms: rank(0.99),
            p999_ms: rank(0.999),
            max_ms: round2(ms[ms.len() - 1]),
        }
    }

    pub fn cell(&self) -> String {
        if self.samples == 0 {
            return "–".into();
        }
        format!("{} / {} / {}", self.p50_ms, self.p99_ms, self.p999_ms)
    }
}

pub fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// A process observed through `/proc/<pid>`.
#[derive(Debug, Clone, Copy)]
pub struct Proc {
    pub pid: u32,
}

/// `/proc/<pid>/stat` times are in USER_HZ, which Linux fixes at 100 for user space.
const USER_HZ: f64 = 100.0;

impl Proc {
    /// User + system CPU seconds used so far.
    pub fn cpu_secs(&self) -> Option<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).ok()?;
        // Fields after the command name (which may contain spaces) start at field 3.
        let rest = &stat[stat.rfind(')')? + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        let utime: f64 = f.get(11)?.parse().ok()?;
        let stime: f64 = f.get(12)?.parse().ok()?;
        Some((utime + stime) / USER_HZ)
    }

    fn status_kb(&self, key: &str) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        status
            .lines()
            .find(|l| l.starts_with(key))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    }

    /// Resident set size now, in KiB.
    pub fn rss_kb(&self) -> Option<u64> {
        self.status_kb("VmRSS:")
    }

    /// Open file descriptors.
    pub fn fds(&self) -> Option<usize> {
        Some(
            std::fs::read_dir(format!("/proc/{}/fd", self.pid))
                .ok()?
                .count(),
        )
    }
}

/// CPU use of a process over an interval, as a share of one core (1.0 = one core busy).
pub struct CpuMeter {
    proc: Option<Proc>,
    start_cpu: f64,
    start: std::time::Instant,
}

impl CpuMeter {
    pub fn start(proc: Option<Proc>) -> CpuMeter {
        CpuMeter {
            start_cpu: proc.and_then(|p| p.cpu_secs()).unwrap_or(0.0),
            proc,
            start: std::time::Instant::now(),
        }
    }

    pub fn cores(&self) -> Option<f64> {
        let now = self.proc?.cpu_secs()?;
        let wall = self.start.elapsed().as_secs_f64();
        (wall > 0.0).then(|| round2((now - self.start_cpu) / wall))
    }
}

/// Least-squares slope and intercept of y over x.
pub fn linear_fit(points: &[(f64, f64)]) -> Option<(f64, f64)> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    if sxx == 0.0 {
        return None;
    }
    let slope = sxy / sxx;
    Some((slope, my - slope * mx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let l = Latency::of((1..=1000).map(f64::from).collect());
        assert_eq!(l.samples, 1000);
        assert_eq!(l.p50_ms, 500.0);
        assert_eq!(l.p99_ms, 990.0);
        assert_eq!(l.p999_ms, 999.0);
        assert_eq!(l.max_ms, 1000.0);
        assert_eq!(Latency::of(vec![]).samples, 0);
    }

    #[test]
    fn fit_recovers_a_line() {
        let (m, b) = linear_fit(&[(1.0, 12.0), (2.0, 22.0), (4.0, 42.0)]).expect("fit");
        assert!((m - 10.0).abs() < 1e-9 && (b - 2.0).abs() < 1e-9);
    }

    #[test]
    fn reads_own_process() {
        let me = Proc {
            pid: std::process::id(),
        };
        assert!(me.rss_kb().is_some_and(|kb| kb > 0));
        assert!(me.cpu_secs().is_some());
        assert!(me.fds().is_some_and(|n| n >= 3));
    }
}
