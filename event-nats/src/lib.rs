//! The NATS JetStream engine for `event-runtime`: [`NatsTransport`] implements the runtime's
//! [`Transport`](event_runtime::transport::Transport) contract on a JetStream server (2.9 or
//! newer), so an app moves from the embedded log to NATS without changing its handlers.
//!
//! ```no_run
//! use event_nats::{NatsConfig, NatsTransport};
//! use event_runtime::{App, Stores};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let transport = NatsTransport::connect(NatsConfig::new("nats://127.0.0.1:4222")).await?;
//! // Dead letters and dedupe marks in a local SQLite file; `App::with_transport` keeps them in
//! // memory instead.
//! let stores = event_runtime::transport::sqlite::SqliteTransport::open("shop-stores.db").await?;
//! let mut app = App::new(transport, Stores::sqlite(&stores));
//! // app.register(...); let running = app.start().await?;
//! # Ok(()) }
//! ```
//!
//! # How the log model maps onto JetStream
//!
//! **One stream per partition.** Partition `p` of topic `t` is the stream `<prefix>-<t>-<p>`
//! capturing the one subject `<prefix>.<t>.<p>` (`t` encoded as a single token: letters and
//! digits kept, other bytes `_XX`). A stream's sequence numbers start at 1 and grow by one per
//! stored message, so **offset = stream sequence − 1**, exactly, per partition. The alternative,
//! one stream per topic with a subject per partition, shares one sequence between partitions
//! and would need an index from per-partition offsets to stream sequences; with one stream per
//! partition no index exists to drift. (Records that expire through `max_age` leave a gap of
//! offsets, as Kafka's retention does.)
//!
//! **Topics** are a KV bucket `<prefix>-topics`: key = topic, value = partition count. The
//! first `ensure_topic` wins through KV `create` (an atomic "create if absent"); every process
//! then creates or checks the partitions' streams. `topics()` lists the bucket.
//!
//! **Appending.** Each record is published to its partition's subject, by default as an event in
//! structured content mode (see [the wire](#the-wire)), and acknowledged by JetStream with its
//! stream sequence. JetStream 2.9 has **no atomic multi-message publish** (atomic batches arrived
//! in 2.12, and only within one stream; a batch here can span partitions, i.e. streams). So `append` is *best-effort in order*: all records
//! of a call are pipelined on one connection, which keeps their order within each partition, and
//! then every acknowledgement is awaited. If a call fails midway, a prefix (or, with a lost
//! acknowledgement, some) of its records may be stored. Every record carries
//! `Nats-Msg-Id` = its CloudEvents id, so a producer that retries the call within the stream's
//! duplicate window (default 2 minutes, [`NatsConfig::duplicate_window`]) stores each record
//! once: JetStream acknowledges the retried copy as a duplicate with the original's sequence,
//! and `append` returns the original position. (The runtime's consumer-side dedupe covers a
//! retry after the window.)
//!
//! **Fetching** from an offset uses read cursors: an ephemeral pull consumer created with
//! `DeliverPolicy::ByStartSequence(offset + 1)`, no acknowledgements (the server advances it as
//! it delivers), in memory, deleted when idle. A fetch is one no-wait pull request: the server
//! sends what it has, up to `max`, and says "no messages" at the end. The transport keeps idle
//! cursors per partition keyed by their position, so a consumer group reading on creates a
//! consumer only when it jumps (restart, replay). A fetch that returned a full batch sends the
//! next pull request at once, and a task of its own turns what that request brings into records
//! while the batch is handled; the next fetch takes them. At most one request is outstanding per
//! cursor, so records come in stream order. Each
//! delivered message's stream sequence is checked against the cursor; a cursor that saw any
//! error is dropped, and the next fetch creates one at the exact offset again. Nothing depends
//! on the cursor for correctness: positions are the group's commits.
//!
//! **Waiting** is a long-poll pull request for one message (`expires` = the timeout) on the
//! cursor at the offset: the server answers as soon as the record is stored; the record is
//! kept in the cursor and handed out by the next fetch.
//!
//! **Positions** (`committed`/`commit`) are a KV bucket `<prefix>-positions`, key
//! `<group>.<topic>.<partition>`, value the next offset. Durable consumers' ack floors were
//! the alternative and do not fit: a commit is "everything below this offset is done", set
//! after the whole batch was handled or dead-lettered, and may move anywhere (a reset, a
//! replay); an ack floor only moves by acking messages delivered through that consumer, and a
//! durable consumer brings redelivery timers (`ack_wait`, `max_deliver`) that would compete with
//! the runtime's own retries and dead-letter queue. The KV bucket is one put per batch, survives
//! server restarts (file storage), and lists every group's position for lag and the CLI.
//!
//! **End offsets** are each partition stream's last sequence (stream info).
//!
//! # The wire
//!
//! By default ([`ContentMode::Structured`]) each record is a CloudEvent in the NATS protocol
//! binding's structured content mode, the one mode CloudEvents 1.0.2's NATS binding defines: the
//! message body is the whole event in the JSON event format, so any NATS CloudEvents reader
//! (the official SDKs) understands the messages. The publisher writes the events it publishes so
//! already ([`Transport::structured_records`]), and `append` sends them as they are. Records
//! that reach `append` in binary mode (the Kafka binding's `ce_` headers: events emitted by
//! handlers, the outbox relay, tools) are rewritten without parsing anything:
//!
//! | record (trait side) | NATS message |
//! |---|---|
//! | `ce_<attr>` headers | members of the JSON body (`eventversion` a number, the others strings) |
//! | `content-type` | the body's `datacontenttype`; header `content-type: application/cloudevents+json` |
//! | payload | `data`, embedded as it is when the content type is JSON; `data_base64` otherwise |
//! | key | header `x-evt-key` (or `x-evt-key-b64`, base64, when not printable) |
//! | — | header `Nats-Msg-Id` = the event id (JetStream's duplicate detection) |
//! | other headers (a dead letter's `x-evt-dlq-*`) | headers of the same name |
//!
//! Three headers in all for a published event. The JSON event format has no other binary
//! encoding than base64, so protobuf payloads take a third more bytes here; the binding allows
//! only the JSON format, which is why `application/cloudevents+protobuf` is not written. The key
//! stays a header so that a consumer routes a record to its key's lane without reading the body.
//!
//! Readers take every mode, whatever the configuration: structured JSON or protobuf (as foreign
//! producers may write it) and binary mode, which releases before structured mode wrote and
//! [`ContentMode::Binary`] still writes: each attribute in a `ce-<attr>` header (the NATS
//! binding's names; they come back as the runtime's `ce_` names), the payload as the body.
//!
//! A record that structured mode could not carry so that a reader gets the same event as from
//! binary mode travels in binary mode: one that is not a binary-mode CloudEvent
//! (`ce_specversion: 1.0`), whose attribute names are not plain lower-case `a-z0-9` or repeat,
//! with a non-UTF-8 attribute, or whose body would exceed 1 MiB (the readers' default
//! message limit). So a record handed to `append` comes back from `fetch` either as the same
//! event in structured mode (headers `content-type` and the non-CloudEvents ones, the JSON body
//! as payload) or byte for byte. A payload whose content type says JSON is embedded unchecked:
//! the runtime's codecs write JSON; bytes that are not make the record unreadable (it is
//! dead-lettered as malformed) where binary mode would fail at the payload.
//!
//! Header names and values NATS cannot carry verbatim travel base64-encoded in `x-evt-extra`
//! (values that are not UTF-8, contain control characters or begin/end with whitespace, names
//! with `:`/spaces/non-ASCII, and names this mapping reserves: `ce-*`, `x-evt-*`, `Nats-*`), so
//! such a record still round-trips byte for byte; a NATS header block is a map, so headers
//! come back sorted by name.
//!
//! [`Transport::structured_records`]: event_runtime::transport::Transport::structured_records
//!
//! # Credentials
//!
//! [`NatsConfig::auth`] takes user and password, a token, a creds file or creds content, and
//! the URL may carry `user:password@`. They are held in [`Secret`]s whose `Debug` is
//! `[redacted]`; [`NatsConfig`] and [`NatsTransport`] print the URL redacted; every error
//! message has each credential replaced by `[redacted]` and carries no engine error as source.
//! This crate logs nothing.
//!
//! # Conformance
//!
//! `tests/conformance.rs` runs the engine conformance kit (`event-conformance`) on this engine:
//! every case of the suite, against the JetStream server in `EVT_NATS_URL`, each under a prefix
//! of its own, with one `event_conformance::conformance_tests!(Nats)`. The other tests start
//! servers of their own with `event_conformance::servers::NatsServer` (and kill them).
//!
//! # Limitations
//!
//! - No atomic multi-record append (see above); no inbox mode (that needs the SQLite engine's
//!   transaction; groups with `inbox: true` use the dedupe store).
//! - Stream, subject and KV key names grow with the topic and group names (bytes other than
//!   ASCII letters and digits take three characters); keep names short enough for the server's
//!   name limits. Stream names differ in case only if topics do, which a case-insensitive
//!   file system under the server's store cannot hold apart.
//! - One stream per partition: a topic of `n` partitions is `n` streams (JetStream handles
//!   thousands; the server's memory per stream is the cost).
//! - Header order is not kept (sorted by name on read); values and duplicates are.
//! - In structured mode a record comes back from `fetch` as the same event, not as the same
//!   headers and bytes (see [the wire](#the-wire)); [`ContentMode::Binary`] keeps both.
//! - Dead letters, redrive/replay requests and dedupe marks are not on NATS: they live in the
//!   [`event_runtime::Stores`] given to the app (in memory, or an SQLite file).
//! - Partition counts are fixed at creation, as with the other engines.

mod config;
mod headers;
mod names;
mod structured;
mod transport;

pub use config::{Auth, ContentMode, NatsConfig, Secret, Storage};
pub use transport::NatsTransport;
