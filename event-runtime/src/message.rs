//! The traits the derives implement: [`DomainEvent`] for facts, [`Command`] for requests.
//!
//! Both build on [`Message`], which carries what the wire needs. They are distinct traits so that
//! the type system keeps an event from being sent as a command and a command from being published
//! as an event: [`Envelope::event`](crate::Envelope::event) only takes a `DomainEvent`,
//! [`Envelope::command`](crate::Envelope::command) only a `Command`.

use crate::error::{DecodeError, EncodeError};

/// Whether a message is an event or a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MessageKind {
    /// A fact that happened, owned by one bounded context.
    Event,
    /// A request addressed to one bounded context.
    Command,
}

/// Deprecation schedule of one message version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deprecation {
    /// When it was deprecated (`YYYY-MM-DD`).
    pub since: Option<&'static str>,
    /// After this date producers must stop publishing it (`YYYY-MM-DD`).
    pub sunset: Option<&'static str>,
    /// What to use instead.
    pub note: Option<&'static str>,
}

/// Service-level targets, shown in the catalog.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sla {
    /// Maximum end-to-end latency, publish to handled, in milliseconds.
    pub max_latency_ms: Option<u64>,
    /// Retention on the broker, in seconds.
    pub retention_secs: Option<u64>,
}

/// Everything known at compile time about one wire message type (one name at one version).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Descriptor {
    /// Event or command.
    pub kind: MessageKind,
    /// Stable wire name, the CloudEvents `type`. A derived name is frozen once published.
    pub name: &'static str,
    /// Schema version, from 1.
    pub version: u32,
    /// Owning (event) or target (command) bounded context.
    pub context: &'static str,
    /// From `description = ...` or the doc comment.
    pub description: Option<&'static str>,
    /// The Rust type, `module::path::Type` or `Type::Variant`.
    pub rust_type: &'static str,
    /// Payload content type: `application/json` or `application/protobuf`.
    pub content_type: &'static str,
    /// Fields that form the partition key (empty if it is computed or absent).
    pub key_fields: &'static [&'static str],
    /// Fields that form the dedupe key (empty: the event id is the dedupe key).
    pub dedupe_fields: &'static [&'static str],
    /// The oldest version this type can decode, through its upcaster chain.
    pub oldest_readable_version: u32,
    /// Deprecation schedule.
    pub deprecated: Option<Deprecation>,
    /// Service-level targets.
    pub sla: Sla,
}

/// What every message type provides to the wire. Implemented by the derives; use
/// [`DomainEvent`] or [`Command`] in bounds.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an event or a command",
    label = "expected a type deriving `DomainEvent` or `Command`",
    note = "add #[derive(DomainEvent)] with #[event(context = \"...\")] (or #[derive(Command)]) to `{Self}`"
)]
pub trait Message: Sized + Send + Sync + 'static {
    /// Every wire type this Rust type can be: one for a struct, one per variant for an enum.
    const DESCRIPTORS: &'static [Descriptor];

    /// The descriptor of this value (its variant, for enums).
    fn descriptor(&self) -> &'static Descriptor;

    /// The partition key: events with equal keys keep their order. `None` when undeclared.
    fn partition_key(&self) -> Option<String>;

    /// The dedupe key from `#[event(dedupe)]` fields, prefixed with the wire name so that two event
    /// types cannot collide. `None` means "use the event id".
    fn dedupe_key(&self) -> Option<String>;

    /// Appends the encoded payload (the CloudEvents `data`) to `buf`.
    ///
    /// # Errors
    ///
    /// When the payload codec fails (a map with non-string keys in JSON, for instance).
    fn encode_payload(&self, buf: &mut Vec<u8>) -> Result<(), EncodeError>;

    /// The exact length [`Message::encode_payload`] will append, if the codec knows it without
    /// encoding ([`crate::codec::PayloadCodec::encoded_len`]); `None` otherwise.
    #[doc(hidden)]
    fn payload_len(&self) -> Option<usize> {
        None
    }

    /// Decodes a payload of wire type `name` at `version`, lifting older versions through the
    /// upcaster chain so that the caller only ever sees the current type.
    ///
    /// # Errors
    ///
    /// [`DecodeError::UnknownType`], [`DecodeError::FutureVersion`],
    /// [`DecodeError::NoUpcaster`], [`DecodeError::Upcast`] or [`DecodeError::Payload`].
    fn decode_payload(name: &str, version: u32, data: &[u8]) -> Result<Self, DecodeError>;

    /// Whether [`Message::deserialize_json_in_place`] reads the current version's JSON payload
    /// (true for struct messages with the JSON codec). Lets the JSON event format decode the
    /// envelope and the payload in one pass.
    #[doc(hidden)]
    const JSON_IN_PLACE: bool = false;

    /// Reads the current version's JSON payload from a deserializer positioned on `data`.
    #[doc(hidden)]
    fn deserialize_json_in_place<'de, D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Self, D::Error> {
        let _ = deserializer;
        Err(serde::de::Error::custom(
            "this message type is not read in place",
        ))
    }
}

/// A domain event: a fact that happened, owned by one bounded context.
///
/// Derive it with `#[derive(DomainEvent)]`; see the crate docs for the attributes.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a domain event",
    label = "expected a type deriving `DomainEvent`",
    note = "events are facts that happened and are published; commands are requests and are sent with `Envelope::command`",
    note = "add #[derive(DomainEvent)] and #[event(context = \"...\")] if this is a fact"
)]
pub trait DomainEvent: Message {}

/// A command: a request addressed to one bounded context, which may refuse it.
///
/// Derive it with `#[derive(Command)]`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a command",
    label = "expected a type deriving `Command`",
    note = "commands are requests sent to one context; events are facts and are published with `Envelope::event`",
    note = "add #[derive(Command)] and #[command(context = \"...\")] if this is a request"
)]
pub trait Command: Message {}
