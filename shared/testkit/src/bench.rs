//! What the benchmark binaries share: settings from the environment, percentiles, and how much
//! of the machine the host took away while they ran (on a shared virtual machine a latency's
//! tail follows that more than it follows the code).

/// `name` from the environment as a number, or `default`.
pub fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The `p` quantile (0.0–1.0) of `sorted` by the nearest-rank rule; NaN when empty.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    let at = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len().max(1)) - 1;
    sorted.get(at).copied().unwrap_or(f64::NAN)
}

/// The share of CPU time the hypervisor gave to others ("steal" in `/proc/stat`) from
/// [`Steal::start`] on.
pub struct Steal {
    at_start: Option<CpuTimes>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct CpuTimes {
    steal: u64,
    total: u64,
}

impl Steal {
    pub fn start() -> Self {
        Steal {
            at_start: read_cpu_times(),
        }
    }

    /// Stolen CPU time since the start as a share of all (0.0–1.0); None off Linux.
    pub fn share(&self) -> Option<f64> {
        let (start, now) = (self.at_start?, read_cpu_times()?);
        let total = now.total.checked_sub(start.total)?;
        (total > 0).then(|| now.steal.saturating_sub(start.steal) as f64 / total as f64)
    }
}

fn read_cpu_times() -> Option<CpuTimes> {
    cpu_times(std::fs::read_to_string("/proc/stat").ok()?.lines().next()?)
}

/// The all-CPU line of `/proc/stat`: `cpu user nice system idle iowait irq softirq steal …`
/// (guest time is counted in user time already).
fn cpu_times(line: &str) -> Option<CpuTimes> {
    let mut fields = line.split_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    let times: Vec<u64> = fields.take(8).map(str::parse).collect::<Result<_, _>>().ok()?;
    Some(CpuTimes {
        steal: *times.get(7)?,
        total: times.iter().sum(),
    })
}

#[cfg(test)]
mod tests {
    use super::{CpuTimes, cpu_times, percentile};

    #[test]
    fn the_hosts_share_is_read_from_the_cpu_line() {
        assert_eq!(
            cpu_times("cpu  3960070 29953 1062345 9477810 43240 0 64007 84342 0 0"),
            Some(CpuTimes {
                steal: 84342,
                total: 3960070 + 29953 + 1062345 + 9477810 + 43240 + 64007 + 84342,
            })
        );
        assert_eq!(cpu_times("cpu0 1 2 3 4 5 6 7 8 0 0"), None);
        assert_eq!(cpu_times("cpu 1 2 3"), None);
    }

    #[test]
    fn percentiles_take_the_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&values, 0.5), 50.0);
        assert_eq!(percentile(&values, 0.99), 99.0);
        assert_eq!(percentile(&values, 1.0), 100.0);
        assert_eq!(percentile(&[7.0], 0.99), 7.0);
        assert!(percentile(&[], 0.5).is_nan());
    }
}
