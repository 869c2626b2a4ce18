//! Integration, compile-fail, property and golden tests live under `tests/`; this library makes
//! the README's example a doc test, so the README cannot drift from the API, and holds the
//! instances benchmark's service ([`billing`]), which a process of its own runs too.

// The README shows whole programs (a build.rs and a binary), so their `fn main` is the point.
#[allow(clippy::needless_doctest_main)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeExample;

/// The service of the instances benchmark (`benches/instances.rs`): a `billing` group whose
/// handler has the capacity a real one has. Shared with `src/bin/bench_member.rs`, an instance
/// in a process of its own that the benchmark can SIGKILL.
pub mod billing {
    use std::sync::Arc;
    use std::time::Duration;

    use event_runtime::app::GroupOptions;
    use event_runtime::partition::partition_for_key;
    use event_runtime::transport::Transport;
    use event_runtime::{App, Context, DomainEvent, Envelope, HandlerError};
    use serde::{Deserialize, Serialize};
    use tokio::sync::Semaphore;

    /// An order to bill.
    #[derive(DomainEvent, Serialize, Deserialize, Debug, Clone)]
    #[event(context = "bench_orders")]
    pub struct Order {
        /// The key.
        #[event(key)]
        pub order_id: String,
    }

    /// The topic's partitions.
    pub const PARTITIONS: u32 = 12;
    /// The keys orders spread over.
    pub const KEYS: u64 = 240;
    /// The handlers of one instance that can work at once (its connection pool, say).
    pub const PERMITS: usize = 4;
    /// What one order takes.
    pub const WORK: Duration = Duration::from_millis(5);

    /// `app` as instance `id` of the service: group `billing` with `claim_ttl`, whose handler
    /// takes one of [`PERMITS`] permits, awaits [`WORK`] and then calls `handled` with the
    /// order's partition.
    pub fn wire<T: Transport>(
        mut app: App<T>,
        id: &str,
        claim_ttl: Duration,
        handled: impl Fn(u32) + Send + Sync + 'static,
    ) -> App<T> {
        let (handled, pool) = (Arc::new(handled), Arc::new(Semaphore::new(PERMITS)));
        app.instance(id)
            .partitions(PARTITIONS)
            .group_options(
                "billing",
                GroupOptions {
                    claim_ttl,
                    ..GroupOptions::default()
                },
            )
            .subscribe::<Order, _>("billing", move |event: Envelope<Order>, _ctx: Context| {
                let (handled, pool) = (handled.clone(), pool.clone());
                async move {
                    let _connection = pool.acquire().await.expect("open");
                    tokio::time::sleep(WORK).await;
                    handled(partition_for_key(
                        event.data.order_id.as_bytes(),
                        PARTITIONS,
                    ));
                    Ok::<(), HandlerError>(())
                }
            });
        app
    }
}
