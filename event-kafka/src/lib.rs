//! The Apache Kafka engine for `event-runtime`: [`KafkaTransport`] implements the runtime's
//! [`Transport`](event_runtime::transport::Transport) contract on a Kafka cluster through
//! librdkafka (the `rdkafka` crate, built from source with CMake).
//!
//! ```no_run
//! use event_kafka::{KafkaConfig, KafkaTransport};
//! use event_runtime::{App, Stores};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = KafkaConfig::new("127.0.0.1:9092").sasl_plain("app", "secret");
//! let transport = KafkaTransport::connect(config)?;
//! let mut app = App::new(transport, Stores::in_memory().await?);
//! // app.register(...); let running = app.start().await?;
//! # Ok(()) }
//! ```
//!
//! # How the log model maps onto Kafka
//!
//! One to one: a topic is a Kafka topic, a partition a Kafka partition, an offset the Kafka
//! offset. With [`KafkaConfig::prefix`] set, the app's topic `orders` is the Kafka topic
//! `<prefix>.orders` and its group `billing` the Kafka group `<prefix>.billing`.
//!
//! - **`ensure_topic`** creates the topic with the admin API (an existing one is kept, with its
//!   partition count) and reads the count back from the metadata. Every client is configured
//!   with `allow.auto.create.topics=false`: reading or writing never creates a topic.
//! - **`append`** produces each record to its explicit partition (the caller chose it with
//!   `event_runtime::partition::partition_for_key`, the Java client's murmur2 partitioner),
//!   with the record key as the Kafka key and our headers (the CloudEvents Kafka binding's
//!   `ce_` names) verbatim as Kafka headers, through an idempotent producer
//!   (`enable.idempotence=true`, `acks=all`), and awaits every delivery report. **Not atomic**:
//!   without Kafka transactions a call whose records span partitions can fail midway with a
//!   prefix stored per partition; the idempotent producer only rules out duplicates and
//!   reordering from its own retries.
//! - **`fetch`** reads through cursors: a consumer `assign`ed to one partition at the offset,
//!   kept idle per partition and reused while its position matches, re-assigned otherwise. A
//!   fetch first takes what librdkafka has already fetched into the cursor's local queue
//!   (prefetched, no request); only when that is empty does it ask the partition's high
//!   watermark and read up to it (or `max` records).
//! - **`wait`** polls the cursor at the offset for up to the timeout; a record that arrives is
//!   kept for the next fetch.
//! - **Positions** are Kafka consumer-group offsets: `commit` commits an explicit offset list
//!   for group `<group>` (a consumer with that `group.id` that never subscribes), `committed`
//!   reads it back. So Kafka tooling (`kafka-consumer-groups`) shows the groups' lag.
//! - **Several instances** of an app's group are members of the Kafka group `<group>`
//!   ([`Sharing::Engine`](event_runtime::transport::Sharing::Engine)): per instance a client
//!   that subscribes with the `cooperative-sticky` assignor (session timeout = the group's
//!   `claim_ttl`) and pauses what it is assigned, so it only holds the membership. The app's
//!   commits go through it (the coordinator checks its generation), and a revocation waits for
//!   the app to drain and release the partition. See docs/delivery.md, "Running several
//!   instances", for what tansu 0.6 does not check.
//! - **`end_offsets`** are the high watermarks; **`topics`** the cluster metadata, without
//!   internal (`__`) topics.
//!
//! # Credentials
//!
//! [`KafkaConfig::sasl_plain`], [`KafkaConfig::sasl_scram_sha256`] and
//! [`KafkaConfig::sasl_scram_sha512`] set SASL credentials, [`KafkaConfig::tls`] TLS (CA, client
//! certificate and key, key password): `SASL_SSL` with both, `SSL` or `SASL_PLAINTEXT` with one.
//! Credentials are [`Secret`]s whose `Debug` is `[redacted]`; every error message has them
//! replaced by `[redacted]` and carries no engine error as source.
//!
//! # Conformance
//!
//! `tests/conformance.rs` runs the engine conformance kit (`event-conformance`) on this engine
//! twice, with one `event_conformance::conformance_tests!` each: on a real broker (tansu, at
//! `EVT_KAFKA_BOOTSTRAP`) and on librdkafka's in-process [`mock`] cluster. `tests/broker.rs`
//! starts brokers of its own with `event_conformance::servers::Tansu`.
//!
//! # Limitations
//!
//! - No atomic multi-record append (see above); no inbox mode.
//! - librdkafka is built with OpenSSL (TLS, SCRAM; Debian's `libssl-dev` at build time) but
//!   without zlib, zstd or curl (no OAUTHBEARER OIDC). TLS and a successful SCRAM login have
//!   been checked against no broker here (tansu 0.6 neither terminates TLS nor creates SCRAM
//!   users without one); the settings, the TLS build and refused logins are tested.
//! - Each read cursor and each group is a librdkafka client with its own threads and
//!   connections.
//! - Dead letters and dedupe marks live in the app's [`event_runtime::Stores`].

mod config;
mod group;
pub mod mock;
mod transport;

pub use config::{KafkaConfig, Sasl, Secret, Tls, TopicCreator};
pub use transport::{KafkaTransport, UNREADABLE_HEADERS};

#[cfg(test)]
mod tests;
