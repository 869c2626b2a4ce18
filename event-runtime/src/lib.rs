//! Typed domain events and commands for event-driven Rust systems.
//!
//! Declare what happened and what you ask for as plain Rust types; the derives give each one a
//! stable wire name, a version, an owning bounded context, a partition key, a CloudEvents 1.0.2
//! envelope, a payload codec, and a way to read every older version of the same event.
//!
//! ```
//! use event_runtime::{Command, DomainEvent, Envelope, cloudevents};
//! use serde::{Deserialize, Serialize};
//!
//! /// A customer placed an order.
//! #[derive(DomainEvent, Serialize, Deserialize, Debug, PartialEq)]
//! #[event(context = "orders", version = 1, sla(max_latency = "500ms"))]
//! struct OrderPlaced {
//!     #[event(key)]
//!     order_id: String,
//!     total_cents: u64,
//! }
//!
//! /// Ask payments to charge the card.
//! #[derive(Command, Serialize, Deserialize, Debug)]
//! #[command(context = "payments")]
//! struct ChargeCard {
//!     #[command(key)]
//!     order_id: String,
//!     amount_cents: u64,
//! }
//!
//! let placed = Envelope::event(OrderPlaced { order_id: "o-1".into(), total_cents: 1250 });
//! assert_eq!(placed.ty, "orders.order_placed");
//! assert_eq!(placed.partition_key.as_deref(), Some("o-1"));
//!
//! // The command carries the event's correlation id and names it as its cause.
//! let charge = Envelope::command(ChargeCard { order_id: "o-1".into(), amount_cents: 1250 })
//!     .caused_by(&placed);
//! assert_eq!(charge.correlation_id, placed.correlation_id);
//!
//! // Any CloudEvents reader can read what we write.
//! let wire = cloudevents::to_json(&placed).unwrap();
//! let back = cloudevents::from_json::<OrderPlaced>(&wire, &Default::default()).unwrap();
//! assert_eq!(back, placed);
//! ```
//!
//! # Events and commands are different types
//!
//! [`DomainEvent`] (facts) and [`Command`] (requests) are separate traits:
//! [`Envelope::event`] only accepts the first and [`Envelope::command`] only the second, so
//! publishing a command or sending an event is a compile error. A type cannot derive both.
//!
//! # `#[event(...)]` on a struct or enum
//!
//! | attribute | meaning |
//! |---|---|
//! | `context = "orders"` | **required**: the owning bounded context |
//! | `name = "orders.placed"` | wire name (CloudEvents `type`); default `<context>.<snake_case type>` with a trailing `V<n>` dropped. **A derived name is frozen once published**: set `name` before renaming the type |
//! | `version = 3` | schema version, from 1 (default 1) |
//! | `description = "..."` | catalog text; default the doc comment |
//! | `upcast_from = OrderPlacedV2` | the previous version's type; lifted with `From`, or with `upcast_with = path::to::fn` |
//! | `upcast_json(from = 1, with = f)` | lift version 1 to 2 at the JSON level when its Rust type is gone (`fn(serde_json::Value) -> Result<serde_json::Value, UpcastError>`); one per step |
//! | `deprecated(since = "2026-01-01", sunset = "2026-06-30", note = "...")` | deprecation schedule (or bare `deprecated`) |
//! | `sla(max_latency = "500ms", retention = "30d")` | service-level targets shown in the catalog |
//! | `key = self.customer.id` / `key_with = path::to::fn` | partition key computed from an expression or a `fn(&Self) -> K` |
//! | `codec = json` / `codec = protobuf` | payload codec: serde_json (default) or prost (`#[derive(prost::Message)]` types) |
//! | `crate = "path"` | where `event_runtime` is, if you re-export it |
//! | `compatibility = "BACKWARD"` | the schema registry's compatibility mode for this event: `BACKWARD` (default), `BACKWARD_TRANSITIVE`, `FORWARD`, `FORWARD_TRANSITIVE`, `FULL`, `FULL_TRANSITIVE` or `NONE` (any case, `-` or `_`). `event-build`'s gate checks each new version under it; the derive checks the value and otherwise ignores it |
//!
//! On fields:
//!
//! | attribute | meaning |
//! |---|---|
//! | `#[event(key)]` | part of the partition key; several fields make a composite key joined with `/`. Key fields must implement [`partition::KeyPart`]: strings, integers, `bool`, `char`, UUIDs — not floats |
//! | `#[event(dedupe)]` | part of the dedupe key (default: the event id) |
//! | `#[event(tag = 3)]` | the field's number in the `.proto` that `event-build` writes (default: declaration order, kept stable by the schema registry); 1 to 536870911, outside 19000..=19999, unique in the type; on a `codec = protobuf` type use prost's `tag` instead. The derive checks it and otherwise ignores it |
//! | `#[event(schema = r#"{"type": "string"}"#)]` | the JSON Schema of the field's wire value, for a type `event-build` cannot resolve (it warns and writes "any value" otherwise). The derive ignores it; `event-build` checks that it is a JSON object |
//!
//! On an enum, every variant is its own event type (cqrs-es style): variants take `name`,
//! `version`, `description`, `upcast_json`, `deprecated` and `sla`; the default name is
//! `<context>.<snake_case variant>`. The payload is the variant's fields, not serde's
//! `{"Variant": ...}` wrapper, and the enum must keep serde's default representation.
//!
//! `#[command(...)]` takes `context` (the target context), `name`, `description`, `key`,
//! `key_with`, `codec` and `crate`; fields take `#[command(key)]`, `#[command(tag = N)]` and
//! `#[command(schema = "...")]`.
//!
//! # Versions and upcasting
//!
//! Decoding reads `eventversion` from the envelope and lifts older payloads through the chain
//! (V1 → V2 → V3), so a consumer only sees the current type. A chain link to the wrong version or
//! name is a compile error; a gap in `upcast_json` steps is a compile error; a chain that cannot
//! read a version still registered in the binary is a start-up error from [`registry::Registry`].
//! A version newer than the consumer knows is [`error::DecodeError::FutureVersion`], never a
//! partial decode. Unknown fields are ignored (and `#[serde(deny_unknown_fields)]` is rejected at
//! compile time), so adding an optional field never breaks a consumer.
//!
//! # The runtime
//!
//! [`App::embedded`] runs consumer groups on a durable log in one SQLite file ([`App::in_memory`]
//! for tests): `#[handler(group = "...")]` functions or [`Handler`] implementations receive
//! events at least once, in order per partition key, with dedupe (or the inbox pattern), retries,
//! a dead-letter queue, redrive and replay. `docs/delivery.md` states the guarantees exactly.
//!
//! # Modules
//!
//! - [`envelope`]: [`Envelope`] and causation.
//! - [`cloudevents`]: JSON, binary (Kafka and NATS bindings) and protobuf event formats.
//! - [`codec`]: payload codecs.
//! - [`partition`]: keys and the Kafka-compatible partitioner.
//! - [`registry`]: every message type in the binary, checked at start-up.
//! - [`error`]: encode and decode errors.
//! - [`app`]: [`App`], [`Publisher`], [`Running`]; [`consumer`]: consumer groups;
//!   [`handler`]: [`Handler`], [`Context`], `#[handler]`.
//! - [`transport`]: the engine contract and the in-memory and SQLite engines.
//! - [`dedupe`], [`dlq`], [`replay`], [`retry`]: idempotency, dead letters, replay, retries.
//! - [`request`]: the correlation id and trace context of the HTTP request being served, which
//!   the envelopes created while serving it carry (`CorrelationLayer` with the `http` feature).
//! - [`outbox`]: the transactional outbox on SQLite and PostgreSQL (publish atomically with your
//!   writes).
//! - [`store`]: where dead letters, dedupe marks, the inbox and the outbox live (memory, SQLite,
//!   PostgreSQL), each lifecycle written once.
//! - [`testing`]: checks for your own handlers.
//!
//! # Features
//!
//! Additive: `derive` (default) re-exports the macros; `sqlite` (default) adds the embedded
//! engine and SQLite stores (with the outbox); `postgres` (default) adds the PostgreSQL stores
//! (with the outbox); `http` adds the tower layer of [`request`].
//! With none of them, [`App`] runs on the in-memory engine (or any other engine) with dead
//! letters and dedupe marks in memory.

#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod app;
pub mod cloudevents;
pub mod codec;
pub mod consumer;
pub mod contracts;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod crash;
pub mod dedupe;
pub mod deprecation;
pub mod dlq;
pub mod envelope;
pub mod error;
pub mod handler;
pub mod message;
#[cfg(feature = "prometheus")]
pub mod metrics;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub mod outbox;
pub mod partition;
pub mod publish;
pub mod registry;
pub mod replay;
pub mod request;
pub mod retry;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub mod saga;
pub mod store;
pub mod telemetry;
pub mod testing;
pub mod trace;
pub mod transport;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

/// The maps on the per-record path (a key lane, an in-flight claim, a handler by type, the memory
/// dedupe store): foldhash's quality hasher instead of SipHash, whose cost was a tenth of an
/// in-memory delivery (about 29 hashes of keys per record). Each map's seed derives from a
/// per-process secret; foldhash calls itself only minimally resistant to crafted collisions, and
/// the maps keyed by message keys are bounded by the in-flight limits (the memory dedupe store,
/// for tests and single-process apps, excepted).
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::quality::RandomState>;

pub use app::{App, GroupOptions, Publisher, Running, Stores};
pub use envelope::Envelope;
pub use handler::{Context, Delivery, Handler, HandlerError};
pub use message::{Command, DomainEvent, Message};
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use outbox::{Outbox, Staging};

/// `#[derive(DomainEvent)]`: see the crate docs for the attributes.
#[cfg(feature = "derive")]
pub use event_derive::DomainEvent;

/// `#[derive(Command)]`: see the crate docs for the attributes.
#[cfg(feature = "derive")]
pub use event_derive::Command;

/// `#[handler(group = "...")]` on an `async fn(Envelope<E>, Context) -> Result<(), HandlerError>`.
#[cfg(feature = "derive")]
pub use event_derive::handler;
/// `#[saga(key = ...)]` on an `impl` block: an orchestrated saga (see [`mod@saga`]).
#[cfg(feature = "derive")]
pub use event_derive::saga;
