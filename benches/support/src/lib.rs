//! What the benchmarks share beside their baselines (`scripts/bench.sh`): the median of rounds,
//! settings from the environment, and CPU time. A side that is slower by the clock may be
//! slower because it spends more CPU of its own (which a server on the same cores then lacks),
//! or because it waits longer; this process's CPU time and the machine's load around each side
//! tell the two apart.
//!
//! ```
//! use std::time::Duration;
//! // One thread spinning until it used 20 ms of CPU: as much wall-clock time at least.
//! let clock = event_bench_support::Stopwatch::start();
//! let mut spins = 0u64;
//! while clock.spent().cpu < Duration::from_millis(20) {
//!     spins = std::hint::black_box(spins + 1);
//! }
//! let spent = clock.spent();
//! assert!(spent.wall >= spent.cpu, "{spent:?}");
//! assert_eq!(spent.rate(2), 2.0 / spent.wall.as_secs_f64());
//! ```

use std::time::{Duration, Instant};

/// The median of `values` (the upper one of an even count).
///
/// # Panics
///
/// If `values` is empty.
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The number in the environment variable `name`, else `default`.
pub fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The CPU time (user and system) this process has used so far, every thread's, those that
/// exited included (`CLOCK_PROCESS_CPUTIME_ID`).
pub fn process_time() -> Duration {
    cpu_time::ProcessTime::now().as_duration()
}

/// The machine's CPU counters since boot (Linux: the first line of `/proc/stat`, in clock
/// ticks of 10 ms): `(busy, total)`, busy being everything but idle and I/O wait. `(0, 0)`
/// where `/proc` is not there.
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
    (total.saturating_sub(idle), total)
}

/// The wall-clock and CPU time of a span of a benchmark: [`Stopwatch::start`], then
/// [`Stopwatch::spent`].
#[derive(Debug, Clone, Copy)]
pub struct Stopwatch {
    wall: Instant,
    cpu: Duration,
    machine: (u64, u64),
}

/// What a span took, by the clock and in this process's CPU time, and how busy the whole
/// machine was meanwhile (servers included); spans add up.
#[derive(Debug, Clone, Copy, Default)]
pub struct Spent {
    /// Wall-clock time.
    pub wall: Duration,
    /// CPU time of this process ([`process_time`]).
    pub cpu: Duration,
    /// The machine's busy and total CPU ticks ([`machine_ticks`]).
    pub machine: (u64, u64),
}

impl Stopwatch {
    /// Starts the clocks: the machine's counters, then the wall clock, then the CPU clock, so
    /// that the CPU span lies inside the wall span and reading `/proc/stat` is in neither.
    pub fn start() -> Self {
        let machine = machine_ticks();
        let wall = Instant::now();
        Stopwatch {
            wall,
            cpu: process_time(),
            machine,
        }
    }

    /// The clocks' time since [`Stopwatch::start`], read in the reverse order.
    pub fn spent(&self) -> Spent {
        let cpu = process_time();
        let wall = self.wall.elapsed();
        let (busy, total) = machine_ticks();
        Spent {
            wall,
            cpu: cpu.saturating_sub(self.cpu),
            // Both counters only grow, but I/O wait may not: a rare tick of difference.
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
    /// servers get. Counted in ticks of 10 ms per core: spans shorter than a second or so are
    /// rough, so add spans up before reading it.
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
