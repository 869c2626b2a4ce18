//! The engine conformance kit (`event-conformance`) on Kafka: every case on a real broker, tansu
//! (a Kafka-compatible broker from crates.io) at `EVT_KAFKA_BOOTSTRAP` (scripts/test.sh starts
//! one; skipped without it, except under `CI`), and every case again on librdkafka's in-process
//! mock cluster, which needs no server. The stores are in a local SQLite file.

use std::sync::Arc;

use event_conformance::Engine;
use event_conformance::fixture::{sqlite_stores, tempdir, unique_prefix};
use event_conformance::servers::server_url;
use event_kafka::mock::MockKafka;
use event_kafka::{KafkaConfig, KafkaTransport};
use event_runtime::App;

/// The broker at `EVT_KAFKA_BOOTSTRAP`, each case under a topic and group prefix of its own.
/// Topics are created with the admin API.
struct Broker {
    config: KafkaConfig,
    stores: std::path::PathBuf,
}

impl Engine for Broker {
    type Transport = KafkaTransport;

    async fn create(test: &str) -> Option<Self> {
        let servers = server_url("EVT_KAFKA_BOOTSTRAP")?;
        Some(Broker {
            // One record per produce batch: tansu 0.6 answers ListOffsets (latest) with the
            // base offset of the newest batch + 1, whatever the batch holds, so the high
            // watermark is short after a batch of several records. Its Fetch is right.
            config: KafkaConfig::new(servers)
                .prefix(unique_prefix())
                .client_option("batch.num.messages", "1"),
            stores: tempdir(test).join("stores.db"),
        })
    }

    async fn transport(&self) -> KafkaTransport {
        KafkaTransport::connect(self.config.clone()).unwrap()
    }

    async fn app(&self) -> App<KafkaTransport> {
        App::new(self.transport().await, sqlite_stores(&self.stores).await)
    }
}

/// An in-process mock cluster of its own per case (librdkafka's). Always runs.
struct Mock {
    cluster: Arc<MockKafka>,
    stores: std::path::PathBuf,
}

impl Engine for Mock {
    type Transport = KafkaTransport;

    async fn create(test: &str) -> Option<Self> {
        Some(Mock {
            cluster: Arc::new(MockKafka::start(1)),
            stores: tempdir(test).join("stores.db"),
        })
    }

    async fn transport(&self) -> KafkaTransport {
        KafkaTransport::connect(self.cluster.config()).unwrap()
    }

    async fn app(&self) -> App<KafkaTransport> {
        App::new(self.transport().await, sqlite_stores(&self.stores).await)
    }
}

mod broker {
    event_conformance::conformance_tests!(crate::Broker);
}

mod mock {
    event_conformance::conformance_tests!(crate::Mock);
}
