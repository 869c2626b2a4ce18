//! runtime
#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;
pub mod cloudevents;
pub mod codec;
pub mod envelope;
pub mod error;
pub mod message;
pub mod partition;
pub mod registry;
pub use envelope::Envelope;
#[cfg(feature = "derive")]
pub use event_derive::{Command, DomainEvent};
pub use message::{Command, DomainEvent, Message};
