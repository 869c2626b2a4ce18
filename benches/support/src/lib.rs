//! What the benchmarks share beside their baselines (`scripts/bench.sh`): CPU time. A side
//! that is slower by the clock may be slower because it spends more CPU of its own (which a
//! server on the same cores then lacks), or because it waits longer; this process's CPU time
//! and the machine's load around each side tell the two apart.
//!
//! ```
//! let before = event_bench_support::process_time();
//! let busy: u64 = (0..1_000_000u64).map(|n| n % 7).sum();
//! assert!(busy > 0);
//! assert!(event_bench_support::process_time() > before);
//! ```

use std::time::Duration;

/// CPU time (user and system) this process's live threads have run so far, in nanoseconds
/// (Linux: the sum of `/proc/self/task/*/schedstat`). Threads that already exited are not
/// counted, so take differences across spans in which the threads of interest (a tokio
/// runtime's workers) live. `Duration::ZERO` where `/proc` is not there.
pub fn process_time() -> Duration {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Duration::ZERO;
    };
    let nanos = tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok())
        .filter_map(|stat| stat.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    Duration::from_nanos(nanos)
}

/// The machine's CPU counters since boot (Linux: the first line of `/proc/stat`, in clock
/// ticks): `(busy, total)`, busy being everything but idle and I/O wait. `(0, 0)` where `/proc`
/// is not there.
pub fn machine_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|n| n.parse().ok())
        .collect();
    let total = ticks.iter().take(8).sum::<u64>();
    let idle = ticks.get(3).copied().unwrap_or(0) + ticks.get(4).copied().unwrap_or(0);
    (total - idle.min(total), total)
}

/// The wall-clock and CPU time of a span of a benchmark: [`Stopwatch::start`], then
/// [`Stopwatch::spent`].
#[derive(Debug, Clone, Copy)]
pub struct Stopwatch {
    wall: std::time::Instant,
    cpu: Duration,
    machine: (u64, u64),
}

/// What a span took, by the clock and in this process's CPU time, and how busy the whole
/// machine was meanwhile (servers included); spans add up.
#[derive(Debug, Clone, Copy, Default)]
pub struct Spent {
    /// Wall-clock time.
    pub wall: Duration,
    /// CPU time of this process's threads ([`process_time`]).
    pub cpu: Duration,
    /// The machine's busy and total CPU ticks ([`machine_ticks`]).
    pub machine: (u64, u64),
}

impl Stopwatch {
    /// Starts both clocks.
    pub fn start() -> Self {
        Stopwatch {
            wall: std::time::Instant::now(),
            cpu: process_time(),
            machine: machine_ticks(),
        }
    }

    /// Both clocks' time since [`Stopwatch::start`].
    pub fn spent(&self) -> Spent {
        let (busy, total) = machine_ticks();
        Spent {
            wall: self.wall.elapsed(),
            cpu: process_time().saturating_sub(self.cpu),
            machine: (
                busy.saturating_sub(self.machine.0),
                total.saturating_sub(self.machine.1),
            ),
        }
    }
}

impl Spent {
    /// Events per second by the clock, for `events` events.
    pub fn rate(&self, events: usize) -> f64 {
        events as f64 / self.wall.as_secs_f64()
    }

    /// This process's CPU microseconds per event, for `events` events.
    pub fn cpu_micros(&self, events: usize) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / events as f64
    }

    /// The share of the machine's CPU time that was busy (every process, servers included), 0
    /// to 1: near 1, the span was bound by CPU, and what a side saves in its own CPU time the
    /// servers get.
    pub fn machine_busy(&self) -> f64 {
        self.machine.0 as f64 / self.machine.1.max(1) as f64
    }
}

impl std::ops::AddAssign for Spent {
    fn add_assign(&mut self, other: Spent) {
        self.wall += other.wall;
        self.cpu += other.cpu;
        self.machine.0 += other.machine.0;
        self.machine.1 += other.machine.1;
    }
}
