//! Helpers shared by the runtime tests (`runtime.rs`, `outbox.rs`, `crash.rs`) and the engine
//! conformance tests (`conformance.rs`): the conformance kit's `Step` event, recording handler
//! and temporary directories, and its lookup of the shared servers.
#![allow(unused_imports, unreachable_pub)]

pub use event_conformance::fixture::{HandlerFuture, Seen, Step, recorder, steps, tempdir};
pub use event_conformance::servers::{postgres_schema, server_url};
