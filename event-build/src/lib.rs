//! The build step of the event framework: from a crate's own sources, the JSON Schema 2020-12
//! and proto3 of every event and command version, and the model the event catalog is made from.
//!
//! Add `event-build` to `[build-dependencies]` and call it from `build.rs`. The one-liner is
//! [`run()`]; here is the same with the two directories it takes from cargo spelled out (the
//! hidden lines write a small crate to a temporary directory):
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let crate_dir = std::env::temp_dir().join(format!("event-build-doc-{}", std::process::id()));
//! # let out_dir = crate_dir.join("out");
//! # std::fs::create_dir_all(crate_dir.join("src"))?;
//! # std::fs::write(crate_dir.join("src/lib.rs"), r#"
//! #     mod orders;
//! # "#)?;
//! # std::fs::write(crate_dir.join("src/orders.rs"), r#"
//! #     use event_runtime::DomainEvent;
//! #     use serde::{Deserialize, Serialize};
//! #
//! #     /// A customer placed an order.
//! #     #[derive(DomainEvent, Serialize, Deserialize)]
//! #     #[event(context = "orders", version = 2)]
//! #     pub struct OrderPlacedV2 {
//! #         #[event(key)]
//! #         pub order_id: String,
//! #         pub total_cents: u64,
//! #         #[serde(default)]
//! #         pub coupon: Option<String>,
//! #     }
//! # "#)?;
//! // build.rs
//! event_build::Config::new()
//!     .crate_dir(&crate_dir) // default: CARGO_MANIFEST_DIR
//!     .out_dir(&out_dir) // default: OUT_DIR
//!     .run()?; // prints cargo:rerun-if-changed for each source file read
//!
//! let schema = std::fs::read_to_string(
//!     out_dir.join("schemas/orders/orders.order_placed/v2.schema.json"),
//! )?;
//! assert!(schema.contains(r#""$id": "urn:event:orders.order_placed:v2""#));
//! assert!(schema.contains(r#""required": ["#));
//! let proto =
//!     std::fs::read_to_string(out_dir.join("schemas/orders/orders.order_placed/v2.proto"))?;
//! assert!(proto.contains("message OrderPlacedV2 {"));
//! assert!(proto.contains("optional string coupon = 3;"));
//! # std::fs::remove_dir_all(&crate_dir)?;
//! # Ok(())
//! # }
//! ```
//!
//! The schemas are then in `$OUT_DIR/schemas/<context>/<name>/v<N>.schema.json` and `.proto`,
//! next to `$OUT_DIR/model.json` (see [`config`] for the layout).
//!
//! # How it works
//!
//! A build script cannot see the types of the crate it builds, so [`scan`] parses the sources
//! with syn, following `mod` declarations from `src/lib.rs`, and runs every
//! `#[derive(DomainEvent)]` and `#[derive(Command)]` through the same `event-model` parser and
//! checks as the derive: the two cannot disagree about a name, a version or a key, and an
//! attribute mistake is reported by both, in the same words, with its file and line. The result
//! is a [`model::Model`], from which [`json_schema`] and [`proto`] write one document per message
//! version; [`numbers`] keeps protobuf field numbers stable and never reused.
//!
//! A field whose type the scan cannot resolve is "any value" in the schema and a
//! `cargo:warning` that names the event, the field and the type; declare its wire shape with
//! `#[event(schema = "{\"type\": \"string\"}")]` on the field, or with [`Config::type_schema`].
//!
//! # The compatibility gate
//!
//! With [`Config::registry_dir`], the build also checks every event and command version against
//! a schema registry committed next to `Cargo.toml` ([`registry`]): published versions must not change,
//! a new version must be compatible with the published ones under its mode
//! (`#[event(compatibility = "...")]`, default `BACKWARD`, see [`compat`]), protobuf numbers are
//! never reused, and versions past their sunset are not produced any more. Commands are checked
//! the same way: their one consumer is the context they target, which upgrades first and reads
//! older senders' versions (through upcasters), so `BACKWARD` is their default too. New versions are
//! then published (written to the registry, `registry.lock` updated). A violation is an
//! [`ErrorKind::Registry`] error whose message lists every problem, one paragraph each
//! (event, versions, field, rule, fix); [`Config::run_or_exit`] prints it and fails the build:
//!
//! ```no_run
//! // build.rs: the body of `fn main`
//! event_build::Config::new().registry_dir("schemas").run_or_exit();
//! ```
//!
//! In CI, [`Config::check_only`] (or `evt schema check`) checks without writing.

// One pipeline, bottom first: each module imports only modules above it in this list.

// The scanned model; compatibility checks of schema documents (JSON and `.proto` text).
pub mod compat;
pub mod model;

// Example payloads generated from a schema, and a check of a payload against one.
pub mod example;

// The schema registry on disk and its build gate (on top of `compat` and `example`).
pub mod registry;

// The build's error (it wraps the registry's) and its diagnostics.
mod error;

// Protobuf field numbers, stable across builds (learned from the registry).
pub mod numbers;

// What to build: the `Config` settings, and what a build returns.
pub mod config;

// The sources to a model, numbers assigned.
pub mod scan;

// The model to one JSON Schema and one proto3 document per message version.
pub mod json_schema;
pub mod proto;

// The event catalog (JSON, Markdown, static HTML site) and the AsyncAPI document.
pub mod catalog;

// `Config::generate`, `emit`, `check` and `run`: the stages above, in order.
mod driver;

pub use config::{Config, Generated, Report};
pub use error::{Diagnostic, Error, ErrorKind, Location};
pub use numbers::FieldNumbers;
/// The `serde_json` this crate uses, for [`Config::type_schema`] values.
pub use serde_json;

/// `Config::new().run()`: scans the crate in `CARGO_MANIFEST_DIR`, writes its schemas and model
/// to `OUT_DIR`, and prints the `cargo:` lines. The whole `build.rs`:
///
/// ```no_run
/// fn main() {
///     event_build::run().expect("event schemas");
/// }
/// ```
///
/// # Errors
///
/// Those of [`Config::emit`].
// The example is a whole build script, `fn main` included.
#[allow(clippy::needless_doctest_main)]
pub fn run() -> Result<Report, Error> {
    Config::new().run()
}
