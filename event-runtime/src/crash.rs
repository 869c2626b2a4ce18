//! Crash points, for crash tests: with the `crash-points` feature, a process whose environment
//! has `EVT_CRASH_POINT=<name>` aborts (SIGABRT, no unwinding, no cleanup: like a SIGKILL at
//! that exact line) the `EVT_CRASH_AFTER`-th time (default 1) it reaches the point `<name>`.
//! With `EVT_CRASH_ACTION=stop` it stops itself there instead (SIGSTOP: a frozen process, whose
//! connections and locks stay open), once; a SIGCONT lets it go on. Without the feature a point
//! compiles to nothing.
//!
//! The points:
//!
//! | name | where |
//! |---|---|
//! | `inbox.before_commit` | an inbox transaction (a handler's, a saga transition's) wrote everything and is about to commit |
//! | `inbox.after_commit` | it committed; the record is not acknowledged yet (the position is not committed) |
//! | `outbox.after_append` | the relay appended rows to the log and has not deleted them from the outbox yet |
//! | `timers.taken` | the saga timer poller locked and deleted due timers in its transaction, and has neither emitted their `TimerFired` nor committed |

/// Aborts (or stops) the process here if the environment asks for it (see the module docs).
#[cfg(feature = "crash-points")]
pub(crate) fn point(name: &str) {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};

    static AT: OnceLock<Option<(String, u64, bool)>> = OnceLock::new();
    static HITS: AtomicU64 = AtomicU64::new(0);
    let at = AT.get_or_init(|| {
        let point = std::env::var("EVT_CRASH_POINT").ok()?;
        let after = std::env::var("EVT_CRASH_AFTER")
            .ok()
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(1)
            .max(1);
        let stop = match std::env::var("EVT_CRASH_ACTION").as_deref() {
            Err(_) | Ok("abort") => false,
            Ok("stop") => true,
            Ok(other) => {
                eprintln!("EVT_CRASH_ACTION `{other}` is neither `abort` nor `stop`: aborting");
                std::process::abort();
            }
        };
        Some((point, after, stop))
    });
    let Some((point, after, stop)) = at else {
        return;
    };
    if point != name {
        return;
    }
    let hit = HITS.fetch_add(1, Ordering::SeqCst) + 1;
    if *stop && hit == *after {
        eprintln!("crash point `{name}` reached (hit {after}): stopping");
        // Safe code cannot raise a signal; `kill` can. The process stops before it returns
        // (its other threads run on until then). A stop that fails aborts instead, rather than
        // let the test go on past the point.
        let stopped = std::process::Command::new("kill")
            .args(["-STOP", &std::process::id().to_string()])
            .status();
        if !stopped
            .as_ref()
            .is_ok_and(std::process::ExitStatus::success)
        {
            eprintln!("crash point `{name}`: `kill -STOP` failed ({stopped:?}): aborting");
            std::process::abort();
        }
    } else if !*stop && hit >= *after {
        eprintln!("crash point `{name}` reached (hit {after}): aborting");
        std::process::abort();
    }
}

/// Nothing: crash points are compiled in with the `crash-points` feature only.
#[cfg(not(feature = "crash-points"))]
#[inline(always)]
pub(crate) fn point(_name: &str) {}
