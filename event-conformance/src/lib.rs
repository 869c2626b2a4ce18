//! The conformance kit for `event-runtime` engines. An engine (an implementation of
//! [`Transport`]) proves it gives an app the same guarantees as the others (docs/delivery.md)
//! with one macro call in its own tests: describe how to make a fresh, isolated instance of it
//! (an [`Engine`]) and [`conformance_tests!`] expands to one `#[test]` per case of the suite, so
//! a failure names its case.
//!
//! ```
//! // tests/conformance.rs of an engine crate, with `event-conformance` as a dev-dependency.
//! use event_conformance::Engine;
//! use event_runtime::transport::memory::MemoryTransport;
//! use event_runtime::{App, Stores};
//!
//! /// One instance of the engine under test: a fresh, empty log of its own.
//! struct Memory {
//!     transport: MemoryTransport,
//!     stores: Stores,
//! }
//!
//! impl Engine for Memory {
//!     type Transport = MemoryTransport;
//!
//!     async fn create(_test: &str) -> Option<Self> {
//!         // A server-backed engine returns `None` (the case is skipped) when it has no server:
//!         // `event_conformance::servers::server_url("MY_ENGINE_URL")?`.
//!         Some(Memory {
//!             transport: MemoryTransport::new(),
//!             stores: Stores::in_memory().await.unwrap(),
//!         })
//!     }
//!
//!     async fn transport(&self) -> MemoryTransport {
//!         self.transport.clone()
//!     }
//!
//!     async fn app(&self) -> App<MemoryTransport> {
//!         App::new(self.transport.clone(), self.stores.clone())
//!     }
//! }
//!
//! event_conformance::conformance_tests!(Memory);
//! # // The tests above exist only under `cargo test`; run one case here by hand.
//! # fn main() {
//! #     event_conformance::__private::block_on(event_conformance::run::<Memory, _, _>(
//! #         "doc",
//! #         event_conformance::cases::transport_contract,
//! #     ));
//! # }
//! ```
//!
//! `cargo test` (or `cargo nextest run`) then runs `transport_contract`,
//! `per_key_order_holds_under_concurrency`, ... each on a fresh `Memory`. To run the suite on
//! several configurations of one engine, invoke the macro once per module; to run only some
//! cases (an engine of stores, say), list them: `conformance_tests!(Memory; transport_contract)`.
//!
//! # What the suite checks
//!
//! The [`cases`]: the `Transport` contract itself (topics, offsets from 0 per partition, fetch
//! from any offset, wait, positions per group, end offsets, the errors), per-key order under
//! concurrency, restart from the committed position, redelivery after a crash (from the oldest
//! record not done), no head-of-line blocking across keys, concurrent keys with one handler per
//! key at a time, no loss with
//! concurrent producers, producer-retry dedupe, poison to the dead letters (and the engine's
//! dead-letter topic), sequenced parking and redrive, replay, lag, records of foreign producers
//! in the structured content mode, replay by time, one open dead letter per record.
//!
//! # Real servers
//!
//! [`servers`] finds the shared servers of the test run (`EVT_NATS_URL`, `EVT_POSTGRES_URL`,
//! `EVT_KAFKA_BOOTSTRAP`; scripts/servers.sh starts them) and starts servers of a test's own
//! (`nats-server`, tansu) on free loopback ports, with one rule: what is missing skips the test
//! with a printed reason, except under `CI`, where it fails.

use std::future::Future;

use event_runtime::App;
use event_runtime::transport::Transport;

pub mod cases;
pub mod fixture;
pub mod servers;

/// One engine under test. [`Engine::create`] gives a fresh, empty, isolated engine;
/// [`Engine::transport`] and [`Engine::app`] give new handles on that same engine (the log, the
/// positions, the dead letters and the dedupe marks), which is what a restarted process gets.
///
/// The cases run in parallel (one test each), possibly on one shared server: each created
/// engine must be isolated from the others, for instance by a topic prefix of its own
/// ([`fixture::unique_prefix`]).
pub trait Engine: Sized + Send + Sync + 'static {
    /// The engine's transport.
    type Transport: Transport;

    /// A fresh engine for the case `test` (a name for its files), or `None` when this machine
    /// has none: the case is then skipped (see [`servers::server_url`] for the CI rule).
    fn create(test: &str) -> impl Future<Output = Option<Self>> + Send;

    /// A new handle on the engine.
    fn transport(&self) -> impl Future<Output = Self::Transport> + Send;

    /// A new app on the engine and its stores (dead letters, dedupe marks).
    fn app(&self) -> impl Future<Output = App<Self::Transport>> + Send;

    /// Whether appending a record again with the same CloudEvents id stores it once
    /// (JetStream's duplicate window); the others store it twice and consumers drop the copy.
    /// The default is `false`.
    fn dedupes_appends(&self) -> bool {
        false
    }
}

/// Runs the case `case` on a fresh `E` (made for the case named `test`), unless this machine has
/// none; what each test of [`conformance_tests!`] does.
///
/// ```no_run
/// # async fn doc<E: event_conformance::Engine>() {
/// event_conformance::run::<E, _, _>("contract", event_conformance::cases::transport_contract)
///     .await;
/// # }
/// ```
///
/// # Panics
///
/// When the case fails (its assertions panic).
pub async fn run<E: Engine, F, Fut>(test: &str, case: F)
where
    F: FnOnce(E) -> Fut,
    Fut: Future<Output = ()>,
{
    if let Some(engine) = E::create(test).await {
        case(engine).await;
    }
}

/// One `#[test]` per case of the suite, on the [`Engine`] `$engine`, each named after its case
/// (`transport_contract`, ...) and run on a multi-threaded Tokio runtime of its own (two
/// workers). With a list after the engine, only the cases listed:
///
/// ```ignore
/// event_conformance::conformance_tests!(MyEngine);
/// event_conformance::conformance_tests!(MyStores; a_record_has_one_open_dead_letter);
/// ```
///
/// The tests are items of the module the macro is invoked in: invoke it once per module.
#[macro_export]
macro_rules! conformance_tests {
    ($engine:ty; $($case:ident),+ $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::__private::block_on($crate::run::<$engine, _, _>(
                    ::core::stringify!($case),
                    $crate::cases::$case::<$engine>,
                ));
            }
        )+
    };
    ($engine:ty) => {
        $crate::conformance_tests!($engine;
            transport_contract,
            per_key_order_holds_under_concurrency,
            restart_resumes_from_the_committed_position,
            uncommitted_records_are_redelivered_after_a_crash,
            a_slow_key_does_not_hold_back_other_keys,
            keys_run_concurrently_and_each_key_one_at_a_time,
            nothing_is_lost_with_concurrent_producers,
            a_producer_retry_has_its_effect_once,
            events_sharing_a_dedupe_key_are_handled_once,
            a_dedupe_key_in_flight_is_handled_once,
            poison_goes_to_the_dlq_without_blocking_other_records,
            a_type_added_to_the_context_later_is_skipped_and_counted,
            sequenced_mode_parks_later_events_of_a_failed_key_until_redrive,
            replay_is_idempotent_unless_dedupe_is_bypassed,
            requests_this_instance_cannot_run_never_hold_up_the_others,
            lag_counts_what_a_group_has_not_committed,
            structured_mode_records_of_foreign_producers_are_handled,
            replay_by_time_starts_at_the_engines_time_lookup,
            a_record_has_one_open_dead_letter,
            purging_a_keys_letters_cancels_their_released_redrives,
            closed_dead_letters_are_deleted_after_their_retention,
            instances_share_a_groups_partitions,
            a_dead_instances_partitions_move_to_the_survivors,
            a_deposed_instance_never_commits_again,
            slots_are_compare_and_set,
            redrives_run_once_across_instances,
            a_stopping_instance_keeps_its_claims_while_it_drains,
            instances_never_run_one_dedupe_key_at_once,
        );
    };
}

/// What the macro's expansion uses; not part of the API.
#[doc(hidden)]
pub mod __private {
    use std::future::Future;

    /// Runs `future` to completion on a new multi-threaded runtime with two workers and every
    /// driver enabled: what `#[tokio::test(flavor = "multi_thread", worker_threads = 2)]` does.
    pub fn block_on<F: Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a Tokio runtime for the conformance case")
            .block_on(future)
    }
}
