//! The schema registry: a directory committed in the user's repository.
//!
//! It works on schema documents only (JSON and `.proto` text), with [`compat`](crate::compat) below it; the
//! build's `numbers` learns from it and the build driver runs its gate. Inside, one way: `lock`
//! and `report` → `input` → `contract` and `store` ([`SchemaRegistry`], the on-disk registry) →
//! `gate` ([`SchemaRegistry::check_and_update`]); everything public is re-exported here.
//!
//! ```text
//! schemas/                                  (default: next to Cargo.toml)
//! ├── registry.lock                         JSON, sorted keys, one entry per event or command
//! └── <context>/<event or command name>/
//!     ├── v1.schema.json                    JSON Schema 2020-12, as emitted
//!     ├── v1.proto                          proto3, as emitted
//!     ├── v1.example.json                   an example payload (generated, or yours), checked
//!     └── v2.schema.json, v2.proto, ...
//! ```
//!
//! Commands are kept and checked exactly like events (below, "event" means either): a command's
//! context is the one it targets, which is its only consumer.
//!
//! `registry.lock` records, per event: the owning context, the compatibility mode, each
//! published version with the digests of its contract, and the protobuf field numbers (per
//! message scope: the assigned number of every field path, the retired numbers, which are
//! never handed out again, and the retired names, which every later `.proto` reserves). It is written with sorted keys and one value per line so that a
//! review shows exactly what was published.
//!
//! [`SchemaRegistry::check_and_update`] is the build gate. For every [`Candidate`] (one per event
//! version found in the code):
//!
//! - **A new version** is checked against the published versions with
//!   [`compat::check`](crate::compat::check) under the event's mode, its field numbers are
//!   checked against the lock, and then it is published: its files are written and the lock
//!   is updated. Versions are appended: the next version of an event is the newest published
//!   plus one (`v1` then `v3` without `v2` is a [`ErrorKind::VersionGap`]); the first version
//!   recorded may be any number, so an event whose old Rust types are gone can be adopted.
//! - **A published version** must not change. Its *contract* is compared by digest: the JSON
//!   schema without its annotations (`description`, `title`, `$comment`, `examples` and the
//!   `x-event` metadata) and the `.proto` file as parsed (field names, numbers, types, labels,
//!   oneofs, enums, reservations; comments and the event message's own name left out).
//!   Doc-comment edits, a renamed Rust type (`OrderPlaced` → `OrderPlacedV2` when v3 arrives)
//!   and a deprecation added later are therefore not changes: the stored files are refreshed
//!   and the lock stays as it is. Anything else is a [`ErrorKind::PublishedChanged`] that names
//!   the place and asks for a new version.
//! - **Deprecation**: a version past its `sunset` date that is still produced fails
//!   ([`ErrorKind::Sunset`]), or is a warning with [`SunsetPolicy::Warn`]. The date of "today"
//!   is an input ([`CheckOptions::today`]) so that builds and tests are deterministic. A version
//!   counts as produced when it is the newest version of its event among the candidates (older
//!   types are kept to be upcast from), unless [`Candidate::produced`] says otherwise.
//! - **Upcasters**: a candidate that reads older versions through an upcaster chain
//!   ([`Candidate::upcast_from`]) decodes them with their own types, so it need not be backward
//!   compatible with them: its backward violations against those versions, and its protobuf
//!   violations when the mode promises nothing forward, are listed in [`Report::waived`]
//!   instead of failing. Forward violations are never waived (old consumers have no
//!   upcaster).
//!
//! - **Examples**: every published version keeps one example payload, generated from its schema
//!   ([`example`](crate::example)) when missing and kept afterwards; a stored one (replace it
//!   with a realistic payload if you like) must match its version's schema
//!   ([`ErrorKind::InvalidExample`]). `event_runtime::contracts::assert_reads_registry` decodes
//!   them all with a consumer's current types, in its own tests.
//!
//! Nothing is written unless every candidate passes, and a file is only written when its
//! content changes. All problems are reported together in one [`RegistryError`].
//!
//! # Field numbers
//!
//! The JSON schemas carry the protobuf numbers: `x-proto-field` on properties,
//! `x-proto-variants` on enums and `x-proto-reserved` for numbers already retired. The lock
//! keeps them per *scope*, the protobuf message (or enum) they number:
//!
//! | scope | numbers |
//! |---|---|
//! | `#` ([`ROOT_SCOPE`]) | the event's payload fields, shared by all its versions |
//! | `#/$defs/<Name>` | the fields of a struct, or the variants of an enum, defined in `$defs` |
//! | `#/$defs/<Name>/<variant>` | the fields of one variant of a data enum |
//! | `<scope>/<field>` | the fields of an inline object below a numbered field |
//!
//! Within a scope the key is the serde name of the field or variant. (These are the owners and
//! scopes of the emitter's `numbers` module: `Owner::Message` is `#`, `Owner::Type` is
//! `#/$defs/<Name>`, a variant scope is `#/$defs/<Name>/<variant>`.)
//! [`SchemaRegistry::field_numbers`] gives the proto emitter the numbers to keep and the ones never
//! to reuse; when a published version drops a field or variant, its number moves from
//! `assigned` to `retired` (and its name to `retired_names`), and a later version that uses the
//! number again is refused. The `.proto` of every later version reserves both (`reserved 3;
//! reserved "gift_note";`), which buf's WIRE_JSON rules require (the JSON mapping reads fields
//! by name), so a FORWARD or FULL mode may drop an optional field.
//!
//! # Example
//!
//! ```
//! use event_build::compat::CompatibilityMode;
//! use event_build::registry::{Candidate, CheckOptions, SchemaRegistry};
//! use event_model::attr::Date;
//! use serde_json::json;
//!
//! let dir = std::env::temp_dir().join(format!("registry-doc-{}", std::process::id()));
//! let _ = std::fs::remove_dir_all(&dir);
//! let mut registry = SchemaRegistry::open(&dir).unwrap();
//! let options = CheckOptions::new(Date::parse("2025-06-01").unwrap());
//!
//! let v1 = json!({
//!     "title": "OrderPlaced", "type": "object", "additionalProperties": false,
//!     "properties": { "order_id": { "type": "string", "x-proto-field": 1 } },
//!     "required": ["order_id"]
//! });
//! let candidate = Candidate::new("orders.order_placed", "orders", 1, v1);
//! let report = registry.check_and_update(&[candidate.clone()], &options).unwrap();
//! assert_eq!(report.published.len(), 1);
//! assert!(dir.join("orders/orders.order_placed/v1.schema.json").exists());
//!
//! // v2 adds a required field without a default: not BACKWARD compatible.
//! let v2 = json!({
//!     "title": "OrderPlaced", "type": "object", "additionalProperties": false,
//!     "properties": {
//!         "order_id": { "type": "string", "x-proto-field": 1 },
//!         "coupon": { "type": "string", "x-proto-field": 2 }
//!     },
//!     "required": ["order_id", "coupon"]
//! });
//! let v2 = Candidate::new("orders.order_placed", "orders", 2, v2)
//!     .with_mode(CompatibilityMode::Backward);
//! let err = registry.check_and_update(&[candidate, v2], &options).unwrap_err();
//! assert!(err.to_string().contains("/properties/coupon"));
//! assert_eq!(registry.field_numbers("orders.order_placed")["#"].assigned["order_id"], 1);
//! # std::fs::remove_dir_all(&dir).unwrap();
//! ```

mod contract;
mod gate;
mod input;
mod lock;
mod report;
mod store;

pub use contract::collect_field_numbers;
pub use input::{Candidate, CheckOptions, Deprecation, SunsetPolicy};
pub use lock::{LOCK_FILE, Numbering, ROOT_SCOPE};
pub use report::{ErrorKind, EventVersion, Problem, RegistryError, Report, RetiredNumber};
pub use store::SchemaRegistry;
