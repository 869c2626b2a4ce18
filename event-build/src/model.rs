//! The intermediate model: every message, nested type, handler and producer of a crate, as
//! plain data. The JSON Schema and proto3 emitters read it, and it is written as `model.json`
//! for the catalog. The bottom of the pipeline: it imports nothing of this crate.
//!
//! # `model.json`
//!
//! [`Model`] serialized with serde (keys sorted, two-space indent). Its shape, with `?` for a
//! value that may be `null`:
//!
//! ```text
//! {
//!   "format": 1,                                   // MODEL_FORMAT: bumped on a breaking change
//!   "messages": [ {                                // sorted by context, name, version
//!     "kind": "event" | "command",
//!     "name": "orders.order_placed", "version": 3, "context": "orders",
//!     "description": "A customer placed an order."?,
//!     "deprecated": { "since": "2026-01-01"?, "sunset": "2026-06-30"?, "note": "..."? }?,
//!     "sla": { "max_latency_ms": 500?, "retention_secs": 2592000? },
//!     "codec": "json" | "protobuf", "content_type": "application/json",
//!     "rust_type": "OrderPlaced" | "ShipmentEvent::Packed",   // as the derive names it
//!     "rust_path": "orders::OrderPlaced",                      // from the crate root
//!     "variant": "Packed"?, "serde_variant": "packed"?,
//!     "key_fields": ["order_id"], "key_expr": "self.customer.id"?,  // Rust field names
//!     "dedupe_fields": ["order_id"],
//!     "upcast_from": "OrderPlacedV2"?, "json_upcasts": [1], "oldest_readable_version": 1,
//!     "compatibility": "BACKWARD"?,               // the registry gate's mode
//!     "payload": <shape>,                          // what the CloudEvents `data` holds
//!     "defs": ["Line", "Money"],                   // its $defs (keys of "types")
//!     "schema_file": "schemas/orders/orders.order_placed/v3.schema.json",
//!     "proto_file": "schemas/orders/orders.order_placed/v3.proto",
//!     "proto_package": "events.orders", "proto_message": "OrderPlacedV3",
//!     "source": { "file": "src/orders.rs", "line": 42 }
//!   } ],
//!   "types": { "Line": {                           // every nested type any message uses
//!     "name": "Line", "rust_path": "orders::Line", "doc": "..."?,
//!     "shape": <shape>, "source": { "file": ..., "line": ... } } },
//!   "handlers": [ {                                // #[handler(group = "...")] functions
//!     "function": "billing::charge", "group": "billing", "doc": "..."?,
//!     "event_type": "OrderPlaced",                 // the `E` of `Envelope<E>`, as written
//!     "messages": [ { "name": "orders.order_placed", "version": 3 } ],  // every variant for an enum
//!     "source": { ... } } ],
//!   "producers": [ {                               // where a message is created to be sent
//!     "message": { "name": ..., "version": ... }, "rust_type": "PaymentCaptured",
//!     "via": "publish" | "send" | "envelope_event" | "envelope_command",
//!     "function": "payments::charge", "group": "payments"?,   // group: the enclosing handler's
//!     "source": { ... } } ],
//!   "sagas": [ {                                   // #[saga(...)] impl blocks
//!     "name": "checkout", "group": "saga.checkout", "rust_type": "Checkout", "key": "order_id",
//!     "attempts": 5, "doc": "..."?,
//!     "starts": [ <saga message> ],
//!     "steps": [ { "name": "hold_stock", "kind": "compensatable" | "pivot" | "retriable",
//!       "command": <saga message>, "reply": <saga message>, "fault": <saga message>?,
//!       "timeout_ms": 5000, "compensation": { "function": "release_stock",
//!       "command": <saga message>? }?, "compensated": <saga message>? } ],
//!     "source": { ... } } ]
//! }
//!
//! <saga message> = { "rust_type": "StockHeld", "messages": [ { "name": ..., "version": ... } ] }
//!
//! <shape> = { "shape": "struct", "fields": [<field>], "additional": <ty>?, "reserved": [7]?,
//!             "reserved_names": ["coupon"]? }
//!         | { "shape": "newtype", "inner": <ty> }   // also #[serde(transparent)]
//!         | { "shape": "tuple", "items": [<ty>] }
//!         | { "shape": "unit" }
//!         | { "shape": "enum", "repr": <repr>, "variants": [<variant>], "reserved": [..]? }
//! <repr>  = { "style": "external" } | { "style": "internal", "tag": "type" }
//!         | { "style": "adjacent", "tag": "t", "content": "c" } | { "style": "untagged" }
//! <variant> = { "name": "card" (serde), "rust_name": "Card", "doc": ...?, "number": 1,
//!               "payload": <shape> }
//! <field> = { "name": "orderId" (serde), "rust_name": "order_id", "doc": ...?,
//!             "rust_type": "String", "ty": <ty>, "required": true, "default": <json>,  // when known
//!             "number": 1, "tag": 1?, "prost": { "ty": "sint64", "label": "optional"? }?,
//!             "line": 12 }
//! <ty>    = { "type": "string", "format": "uuid" | "date-time" | "date" | "time" | ...? }
//!         | { "type": "char" } | { "type": "bool" } | { "type": "integer", "bits": 64, "signed": false }
//!         | { "type": "float", "bits": 64 } | { "type": "duration" } | { "type": "any" } | { "type": "unit" }
//!         | { "type": "option", "inner": <ty> } | { "type": "seq", "items": <ty>, "unique": false }
//!         | { "type": "array", "items": <ty>, "len": 4 } | { "type": "tuple", "items": [<ty>] }
//!         | { "type": "map", "key": <ty>, "values": <ty> } | { "type": "ref", "name": "Line" }
//!         | { "type": "schema", "schema": <json schema> } | { "type": "unresolved", "rust": "Decimal" }
//! ```
//!
//! Field and variant `number`s are the protobuf field numbers (see [`crate::numbers`]); `tag` is
//! the number the source fixes (`#[event(tag = N)]` or prost's `tag`), if any.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The version of the `model.json` layout.
pub const MODEL_FORMAT: u32 = 1;

/// Everything the scan found in one crate.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Model {
    /// [`MODEL_FORMAT`].
    pub format: u32,
    /// Every wire message (a struct, or one variant of an event enum), sorted by context, name
    /// and version.
    pub messages: Vec<Message>,
    /// The nested types the messages use, by their definition name (the `$defs` key).
    pub types: BTreeMap<String, TypeDef>,
    /// Every `#[handler(group = "...")]` function.
    pub handlers: Vec<Handler>,
    /// Every place that creates a message to publish or send.
    pub producers: Vec<Producer>,
    /// Every `#[saga]` (its messages are also among the handlers and producers, in its group).
    #[serde(default)]
    pub sagas: Vec<Saga>,
}

impl Model {
    /// The message `name` at `version`.
    pub fn message(&self, name: &str, version: u32) -> Option<&Message> {
        self.messages
            .iter()
            .find(|m| m.name == name && m.version == version)
    }

    /// The handlers that consume `name` (any version).
    pub fn consumers_of<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Handler> + 'a {
        self.handlers
            .iter()
            .filter(move |h| h.messages.iter().any(|m| m.name == name))
    }

    /// The places that produce `name` (any version).
    pub fn producers_of<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Producer> + 'a {
        self.producers
            .iter()
            .filter(move |p| p.message.name == name)
    }
}

/// Event or command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    /// `#[derive(DomainEvent)]`.
    Event,
    /// `#[derive(Command)]`.
    Command,
}

impl MessageKind {
    /// `event` or `command`.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Event => "event",
            MessageKind::Command => "command",
        }
    }
}

/// A file and line in the scanned crate.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Source {
    /// Relative to the crate directory, with `/` separators.
    pub file: String,
    /// 1-based.
    pub line: usize,
}

/// `deprecated(since, sunset, note)`, dates as `YYYY-MM-DD`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deprecation {
    /// When the version was deprecated.
    pub since: Option<String>,
    /// After this date producers must stop publishing it.
    pub sunset: Option<String>,
    /// What to use instead.
    pub note: Option<String>,
}

/// Service-level targets.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sla {
    /// Maximum end-to-end latency, in milliseconds.
    pub max_latency_ms: Option<u64>,
    /// Retention on the broker, in seconds.
    pub retention_secs: Option<u64>,
}

/// The team that owns a message (`owner(team = "...", contact = "...")`).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Owner {
    /// The team's name.
    pub team: String,
    /// How to reach it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact: Option<String>,
}

/// One wire message: a struct, or one variant of an event enum.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Event or command.
    pub kind: MessageKind,
    /// The CloudEvents `type`.
    pub name: String,
    /// The schema version.
    pub version: u32,
    /// The owning (event) or target (command) context.
    pub context: String,
    /// `description = ...`, else the doc comment.
    pub description: Option<String>,
    /// Deprecation, if any.
    pub deprecated: Option<Deprecation>,
    /// Service-level targets.
    pub sla: Sla,
    /// The owning team, when declared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,
    /// `json` or `protobuf`.
    pub codec: String,
    /// `application/json` or `application/protobuf`.
    pub content_type: String,
    /// The Rust type as the derive names it: `OrderPlaced`, or `ShipmentEvent::Packed`.
    pub rust_type: String,
    /// The type's path from the crate root: `orders::OrderPlaced`.
    pub rust_path: String,
    /// The enum variant, for event enums.
    pub variant: Option<String>,
    /// The serde name of that variant.
    pub serde_variant: Option<String>,
    /// The Rust fields that make the partition key.
    pub key_fields: Vec<String>,
    /// The key expression or function, as written, when the key is not a list of fields.
    pub key_expr: Option<String>,
    /// The Rust fields that make the dedupe key.
    pub dedupe_fields: Vec<String>,
    /// The previous version's Rust type (`upcast_from`).
    pub upcast_from: Option<String>,
    /// Versions with a JSON upcaster to the next one.
    pub json_upcasts: Vec<u32>,
    /// The oldest version this type can read through its upcaster chain.
    pub oldest_readable_version: u32,
    /// The message's compatibility mode for the schema registry gate (`BACKWARD`, ...):
    /// `#[event(compatibility = "...")]` (or `#[command(...)]`), else
    /// [`Config::compatibility_default`](crate::Config::compatibility_default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compatibility: Option<String>,
    /// What the CloudEvents `data` holds.
    pub payload: Shape,
    /// The nested types its schema defines (keys of [`Model::types`], the `$defs` of the JSON
    /// Schema, the nested messages of the `.proto`), sorted. The struct of a newtype payload is
    /// written inline and so is not among them unless it refers to itself.
    pub defs: Vec<String>,
    /// The JSON Schema file, relative to the output directory.
    pub schema_file: String,
    /// The `.proto` file, relative to the output directory.
    pub proto_file: String,
    /// The protobuf package.
    pub proto_package: String,
    /// The protobuf message name.
    pub proto_message: String,
    /// Where the type is declared.
    pub source: Source,
}

/// A nested type: any struct or enum of the crate that a message uses.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TypeDef {
    /// The `$defs` key and nested proto message name: the type's name, qualified with its module
    /// (`billing.Line`) only when two used types share a name.
    pub name: String,
    /// The type's path from the crate root.
    pub rust_path: String,
    /// The doc comment.
    pub doc: Option<String>,
    /// Its wire shape.
    pub shape: Shape,
    /// Where it is declared.
    pub source: Source,
}

/// The wire shape of a message payload, a nested type or an enum variant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "shape", rename_all = "snake_case")]
pub enum Shape {
    /// A JSON object with named fields.
    Struct {
        /// The fields serde writes, flattened fields inlined, skipped ones left out.
        fields: Vec<Field>,
        /// A flattened map: the object also holds other keys with values of this type (so the
        /// schema is open).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        additional: Option<Ty>,
        /// Protobuf numbers of removed fields, never to be used again.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        reserved: Vec<u32>,
        /// Names of removed fields, never to be used again for another field: a JSON reader
        /// of the old version would take the new field's value for the old one.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        reserved_names: Vec<String>,
    },
    /// One value written as itself: a newtype struct or variant, or `#[serde(transparent)]`.
    Newtype {
        /// The value's type.
        inner: Ty,
    },
    /// Several unnamed values, written as a JSON array.
    Tuple {
        /// Their types.
        items: Vec<Ty>,
    },
    /// No data (`null`).
    Unit,
    /// A nested enum, as serde represents it.
    Enum {
        /// Tagging.
        repr: EnumRepr,
        /// The variants serde writes.
        variants: Vec<Variant>,
        /// Protobuf numbers of removed variants.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        reserved: Vec<u32>,
    },
}

impl Shape {
    /// An enum whose variants all carry no data (written as strings).
    pub fn is_unit_enum(&self) -> bool {
        matches!(self, Shape::Enum { repr: EnumRepr::External, variants, .. }
            if variants.iter().all(|v| v.payload == Shape::Unit))
    }
}

/// The struct a newtype payload wraps, whose fields are the payload's (serde inlines them).
pub(crate) fn inlined_struct<'m>(
    payload: &Shape,
    types: &'m BTreeMap<String, TypeDef>,
) -> Option<&'m TypeDef> {
    match payload {
        Shape::Newtype {
            inner: Ty::Ref { name },
        } => types
            .get(name)
            .filter(|def| matches!(def.shape, Shape::Struct { .. })),
        _ => None,
    }
}

/// How serde tags an enum.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "style", rename_all = "snake_case")]
pub enum EnumRepr {
    /// `{"Variant": payload}`, unit variants as `"Variant"` (serde's default).
    External,
    /// `#[serde(tag = "t")]`: `{"t": "Variant", ...fields}`.
    Internal {
        /// The tag property.
        tag: String,
    },
    /// `#[serde(tag = "t", content = "c")]`: `{"t": "Variant", "c": payload}`.
    Adjacent {
        /// The tag property.
        tag: String,
        /// The content property.
        content: String,
    },
    /// `#[serde(untagged)]`: the payload alone.
    Untagged,
}

/// One variant of a nested enum.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Variant {
    /// The serde name.
    pub name: String,
    /// The Rust name.
    pub rust_name: String,
    /// The doc comment.
    pub doc: Option<String>,
    /// Its protobuf number (the `oneof` member or enum value).
    pub number: u32,
    /// Its data.
    pub payload: Shape,
}

/// How prost declares a field of a `codec = protobuf` message (`#[prost(sint64, tag = "2")]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProstField {
    /// The proto type: a scalar (`sint64`, `bytes`, ...) or `map<string, int32>`.
    pub ty: String,
    /// `optional` or `repeated`, if prost says so.
    pub label: Option<String>,
}

/// One field serde writes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Field {
    /// The serde (wire) name.
    pub name: String,
    /// The Rust name (the index for tuple fields).
    pub rust_name: String,
    /// The doc comment.
    pub doc: Option<String>,
    /// The Rust type as written.
    pub rust_type: String,
    /// The wire type.
    pub ty: Ty,
    /// Whether every payload has it: not an `Option`, no `#[serde(default)]`, no
    /// `skip_serializing_if`.
    pub required: bool,
    /// The value a reader assumes when it is missing, when known (absent from `model.json`
    /// otherwise; a known default of `null` is written as `null`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub default: Option<serde_json::Value>,
    /// The protobuf field number.
    pub number: u32,
    /// The number the source fixes, if any.
    pub tag: Option<u32>,
    /// prost's declaration, on prost messages.
    pub prost: Option<ProstField>,
    /// The line of the field.
    pub line: usize,
}

/// A wire type.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Ty {
    /// A string, with a JSON Schema `format` for UUIDs, dates and times.
    String {
        /// `uuid`, `date-time`, `date`, `time`, `uri`, `ipv4`, `ipv6`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        format: Option<String>,
    },
    /// A `char` (a one-character string).
    Char,
    /// `bool`.
    Bool,
    /// An integer.
    Integer {
        /// 8, 16, 32, 64 or 128 (`isize`/`usize`: 64).
        bits: u16,
        /// Signed or not.
        signed: bool,
    },
    /// A floating-point number.
    Float {
        /// 32 or 64.
        bits: u16,
    },
    /// `std::time::Duration`: serde writes `{"secs": u64, "nanos": u32}`.
    Duration,
    /// Any JSON value (`serde_json::Value`).
    Any,
    /// `()`: `null`.
    Unit,
    /// `Option<T>`: the value or `null`.
    Option {
        /// `T`.
        inner: Box<Ty>,
    },
    /// A sequence (`Vec`, `VecDeque`, sets).
    Seq {
        /// Element type.
        items: Box<Ty>,
        /// A set: no two elements equal.
        unique: bool,
    },
    /// `[T; N]`.
    Array {
        /// Element type.
        items: Box<Ty>,
        /// `N`.
        len: u64,
    },
    /// A tuple.
    Tuple {
        /// Element types.
        items: Vec<Ty>,
    },
    /// A map written as a JSON object.
    Map {
        /// Key type (strings or integers).
        key: Box<Ty>,
        /// Value type.
        values: Box<Ty>,
    },
    /// A nested type of the crate ([`Model::types`]).
    Ref {
        /// Its definition name.
        name: String,
    },
    /// A schema declared by the user (`#[event(schema = "...")]`, `Config::type_schema`).
    Schema {
        /// The JSON Schema.
        schema: serde_json::Value,
    },
    /// A type the scan cannot resolve (warned about); any value in the schema.
    Unresolved {
        /// The Rust type as written.
        rust: String,
    },
}

impl Ty {
    /// Calls `f` on every definition this type names, directly or inside containers.
    pub fn for_each_ref(&self, f: &mut dyn FnMut(&str)) {
        match self {
            Ty::Ref { name } => f(name),
            Ty::Option { inner } => inner.for_each_ref(f),
            Ty::Seq { items, .. } | Ty::Array { items, .. } => items.for_each_ref(f),
            Ty::Tuple { items } => items.iter().for_each(|t| t.for_each_ref(f)),
            Ty::Map { key, values } => {
                key.for_each_ref(f);
                values.for_each_ref(f);
            }
            _ => {}
        }
    }
}

/// A field that is present is `Some`, even when its value is `null`.
fn present<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(deserializer).map(Some)
}

/// A reference to one message version.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MessageRef {
    /// The CloudEvents `type`.
    pub name: String,
    /// The version.
    pub version: u32,
}

/// A `#[handler(group = "...")]` function: a consumer of its event type in a group.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Handler {
    /// `module::function` from the crate root.
    pub function: String,
    /// The consumer group.
    pub group: String,
    /// The doc comment.
    pub doc: Option<String>,
    /// The `E` of `Envelope<E>`, as written.
    pub event_type: String,
    /// The messages it receives (every variant of an event enum); empty when `E` is not a
    /// message declared in this crate.
    pub messages: Vec<MessageRef>,
    /// Where it is declared.
    pub source: Source,
}

/// How a producer hands a message over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    /// `ctx.publish(Event { .. })` in a handler.
    Publish,
    /// `ctx.send(Command { .. })` in a handler.
    Send,
    /// `Envelope::event(Event { .. })`.
    EnvelopeEvent,
    /// `Envelope::command(Command { .. })`.
    EnvelopeCommand,
}

/// A place where a message is built to be published or sent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Producer {
    /// The message.
    pub message: MessageRef,
    /// The Rust type (or `Enum::Variant`) as the derive names it.
    pub rust_type: String,
    /// How.
    pub via: Via,
    /// The enclosing function: `module::function` or `module::Type::method`.
    pub function: String,
    /// The module of the enclosing function (`a::b`; empty at the crate root).
    #[serde(default)]
    pub module: String,
    /// The consumer group of the enclosing handler, if it is one.
    pub group: Option<String>,
    /// Where.
    pub source: Source,
}

/// An orchestrated saga: a `#[saga(...)]` impl block.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Saga {
    /// Its name (`saga(name = ...)`, else the type's in snake case).
    pub name: String,
    /// Its consumer group: `saga.<name>`.
    pub group: String,
    /// The state type.
    pub rust_type: String,
    /// The key field of its messages.
    pub key: String,
    /// Sends of a command before the instance is stuck.
    pub attempts: u32,
    /// The doc comment of the impl block.
    pub doc: Option<String>,
    /// The messages that start it.
    pub starts: Vec<SagaMessage>,
    /// Its steps, in order.
    pub steps: Vec<SagaStep>,
    /// Where it is declared.
    pub source: Source,
}

/// A message a saga names, as written, and the wire messages it is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SagaMessage {
    /// The type as written.
    pub rust_type: String,
    /// Empty when the type is not a message declared in this crate.
    pub messages: Vec<MessageRef>,
}

/// Where a step stands relative to the pivot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    /// Before the pivot.
    Compensatable,
    /// The point of no return.
    Pivot,
    /// After the pivot.
    Retriable,
}

/// One `#[step(...)]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SagaStep {
    /// The function's name.
    pub name: String,
    /// Compensatable, pivot or retriable.
    pub kind: StepKind,
    /// The command it sends.
    pub command: SagaMessage,
    /// Its reply.
    pub reply: SagaMessage,
    /// Its fault, if the participant can refuse.
    pub fault: Option<SagaMessage>,
    /// How long it waits.
    pub timeout_ms: u64,
    /// Its compensation.
    pub compensation: Option<SagaCompensation>,
    /// The compensation's reply, when awaited.
    pub compensated: Option<SagaMessage>,
}

/// A step's compensation function and the command it returns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SagaCompensation {
    /// The function's name.
    pub function: String,
    /// The command it sends (`None` when its return type could not be read).
    pub command: Option<SagaMessage>,
}
