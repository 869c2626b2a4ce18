//! The engine conformance kit (`event-conformance`) on NATS JetStream: every case, against the
//! server in `EVT_NATS_URL` (scripts/test.sh starts one), each case under a stream and bucket
//! prefix of its own, with the stores in a local SQLite file. Skipped without `EVT_NATS_URL`,
//! except under `CI`.

use event_conformance::Engine;
use event_conformance::fixture::{sqlite_stores, tempdir, unique_prefix};
use event_conformance::servers::server_url;
use event_nats::{NatsConfig, NatsTransport};
use event_runtime::App;

/// A prefix on the shared server, and a stores file of its own.
struct Nats {
    config: NatsConfig,
    stores: std::path::PathBuf,
}

impl Engine for Nats {
    type Transport = NatsTransport;

    async fn create(test: &str) -> Option<Self> {
        let url = server_url("EVT_NATS_URL")?;
        // A prefix of its own per case: streams and buckets never meet another case's.
        Some(Nats {
            config: NatsConfig::new(url).prefix(unique_prefix()),
            stores: tempdir(test).join("stores.db"),
        })
    }

    async fn transport(&self) -> NatsTransport {
        NatsTransport::connect(self.config.clone()).await.unwrap()
    }

    async fn app(&self) -> App<NatsTransport> {
        App::new(self.transport().await, sqlite_stores(&self.stores).await)
    }

    /// JetStream's duplicate window (`Nats-Msg-Id` = the event id) stores a retried record once.
    fn dedupes_appends(&self) -> bool {
        true
    }
}

event_conformance::conformance_tests!(Nats);
