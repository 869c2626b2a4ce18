//! Compatibility checking between the published versions of one event.
//!
//! Below the [`registry`](crate::registry), which runs [`check_with`] on every new version; it
//! reads schema documents only (JSON and `.proto` text) and imports nothing else of this crate.
//! Inside, one way: `mode` and `rule` → the differs `json` and `proto` → `explain` (a
//! violation in words) → `check`; everything public is re-exported here.
//!
//! Every event version is described twice by the build step: a JSON Schema 2020-12 document
//! (closed objects: `additionalProperties: false`) and a proto3 message. This module decides
//! whether a new version may follow the published ones under a compatibility mode, with the
//! modes exactly as Confluent Schema Registry defines them:
//!
//! | mode | checked against | direction |
//! |---|---|---|
//! | `BACKWARD` (default) | the latest published version | consumers on the new version read data written with the old one |
//! | `BACKWARD_TRANSITIVE` | every published version | as `BACKWARD` |
//! | `FORWARD` | the latest published version | consumers on the old version read data written with the new one |
//! | `FORWARD_TRANSITIVE` | every published version | as `FORWARD` |
//! | `FULL` | the latest published version | both |
//! | `FULL_TRANSITIVE` | every published version | both |
//! | `NONE` | nothing | nothing |
//!
//! # JSON Schema rules
//!
//! [`diff_json`] is a port of Confluent's `io.confluent.kafka.schemaregistry.json.diff`
//! (`SchemaDiff`, `ObjectSchemaDiff`, `ArraySchemaDiff`, `CombinedSchemaDiff`, `NumberSchemaDiff`,
//! `StringSchemaDiff`, `EnumSchemaDiff`) for the subset of JSON Schema the build step emits. It
//! compares a *writer* schema with a *reader* schema and lists every [`Difference`], each named
//! by a [`Rule`] that prints as Confluent's `Difference.Type`; a rule is either compatible (the
//! reader still accepts everything the writer produces) or not. A backward check diffs
//! `(writer = old, reader = new)`, a forward check `(writer = new, reader = old)`.
//!
//! What that means for the closed objects the build step emits (the table the corpus test
//! `tests/compat_corpus.rs` pins down):
//!
//! | change | backward | forward | rules |
//! |---|---|---|---|
//! | add an optional field (`Option<T>`, or a default) | yes | **no** | `OPTIONAL_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL` / `PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL` |
//! | add a required field without default | no | no | `REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL` / `PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL` |
//! | add a required field with a `default` | yes | no | `REQUIRED_PROPERTY_WITH_DEFAULT_ADDED_TO_UNOPEN_CONTENT_MODEL` |
//! | remove a field | no | yes if it was optional | `PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL` |
//! | rename a field (= remove + add) | no | no | both of the above |
//! | optional → required | no | yes | `REQUIRED_ATTRIBUTE_ADDED` / `REQUIRED_ATTRIBUTE_REMOVED` |
//! | `T` → `Option<T>` | yes | no | `SUM_TYPE_EXTENDED` / `TYPE_CHANGED` |
//! | `integer` → `number` | yes | no | `TYPE_EXTENDED` / `TYPE_NARROWED` |
//! | `int32` → `int64`, `float` → `double` | yes | no | `FORMAT_WIDENED` / `FORMAT_NARROWED` |
//! | string → enum of strings | no | yes | `TYPE_NARROWED` / `TYPE_EXTENDED` |
//! | enum value added | yes | no | `ENUM_ARRAY_EXTENDED` / `ENUM_ARRAY_NARROWED` |
//! | `oneOf` variant added | yes | no | `SUM_TYPE_EXTENDED` / `SUM_TYPE_NARROWED` |
//! | `format` added / removed / changed | no / yes / no | yes / no / no | `FORMAT_ADDED`, `FORMAT_REMOVED`, `FORMAT_CHANGED` |
//! | description, title, `$id`, `default` | yes | yes | `DESCRIPTION_CHANGED`, ... |
//!
//! Adding an optional field is not forward compatible because an old consumer's closed object
//! rejects a property it does not know; that is Confluent's closed-content-model rule, kept as is.
//!
//! Where this port deliberately differs from Confluent's implementation:
//!
//! - `format` is compared (`FORMAT_*` rules, not in Confluent, whose everit loader ignores
//!   `format`): the derived codecs do parse formats (a `Uuid` field rejects a string that is
//!   not a UUID), and the integer formats (`int8` … `uint64`) are the value ranges of the Rust
//!   types, so `int32` → `int64` widens and `int64` → `int32` narrows. The `minimum: 0` the
//!   emitter writes beside an unsigned format is implied by the format and not compared again.
//! - `{"type":"string","enum":[...]}` is an enum restricting a string (everit loads it as an
//!   `allOf` and Confluent reports `TYPE_CHANGED` both ways): string → enum is `TYPE_NARROWED`,
//!   enum → string is `TYPE_EXTENDED`.
//! - `Option<T>` (`anyOf: [T, {"type":"null"}]`) on both sides is compared through `T` at the
//!   field's own pointer, so a change inside an `Option` names the field rather than
//!   `anyOf/0`; the verdict is the one Confluent's subschema matching gives.
//! - Pointers always name the field: a `required` change is reported at `/properties/<field>`
//!   (Confluent uses `#/required/<field>`), and a change inside a `$ref` is reported at the path
//!   that reaches it (`/properties/lines/items/properties/sku`), not inside `$defs`.
//! - A `oneOf` variant that changed incompatibly is reported through the differences of the
//!   variant of the same name when there is one, not only as `COMBINED_TYPE_SUBSCHEMAS_CHANGED`.
//! - `dependencies`, `not`, `patternProperties` with regular expressions and `unevaluated*`
//!   are outside the emitted subset and not compared (a `patternProperties` key is matched
//!   literally).
//!
//! # Protobuf rules
//!
//! [`diff_proto`] parses the two `.proto` texts with protox into `FileDescriptorProto`s and
//! applies buf's `WIRE_JSON` breaking rules (or `WIRE`, see [`ProtoCategory`]) to the event's
//! message and every message and enum its fields reach, pairing fields by number:
//! `FIELD_NO_DELETE_UNLESS_NUMBER_RESERVED`, `FIELD_NO_DELETE_UNLESS_NAME_RESERVED`,
//! `FIELD_SAME_NAME`, `FIELD_SAME_JSON_NAME`, `FIELD_WIRE_JSON_COMPATIBLE_TYPE`,
//! `FIELD_WIRE_JSON_COMPATIBLE_CARDINALITY`, `FIELD_SAME_ONEOF`,
//! `ENUM_VALUE_NO_DELETE_UNLESS_NUMBER_RESERVED`, `ENUM_VALUE_NO_DELETE_UNLESS_NAME_RESERVED`,
//! `ENUM_VALUE_SAME_NAME`, `RESERVED_MESSAGE_NO_DELETE` and `RESERVED_ENUM_NO_DELETE`. The
//! type groups are buf's: under `WIRE_JSON` only `int32`/`uint32`, `int64`/`uint64`,
//! `fixed32`/`sfixed32` and `fixed64`/`sfixed64` may change into each other (the JSON mapping
//! writes 64-bit integers as strings, so `int32` → `int64` breaks JSON readers); under `WIRE`
//! `int32`/`uint32`/`int64`/`uint64`/`bool` form one group, `sint32`/`sint64` another, and
//! `string` may become `bytes`. Enum values may be added. The text is parsed rather than the
//! JSON schemas' `x-proto-field` numbers because the `.proto` file is what other languages
//! compile, reserved ranges included. Protobuf rules are symmetric: they apply in every mode
//! except `NONE`.
//!
//! # Example
//!
//! ```
//! use event_build::compat::{check, CompatibilityMode, Rule, SchemaVersion};
//! use serde_json::json;
//!
//! let v1 = json!({
//!     "title": "OrderPlaced", "type": "object", "additionalProperties": false,
//!     "properties": { "order_id": { "type": "string" } },
//!     "required": ["order_id"]
//! });
//! let v2 = json!({
//!     "title": "OrderPlaced", "type": "object", "additionalProperties": false,
//!     "properties": { "order_id": { "type": "string" }, "coupon": { "type": "string" } },
//!     "required": ["order_id", "coupon"]
//! });
//! let published = [SchemaVersion::json(1, &v1)];
//! let candidate = SchemaVersion::json(2, &v2);
//! let violations =
//!     check("orders.order_placed", CompatibilityMode::Backward, &candidate, &published).unwrap();
//! assert_eq!(violations.len(), 1);
//! assert_eq!(violations[0].rule, Rule::RequiredPropertyAddedToUnopenContentModel);
//! assert_eq!(violations[0].pointer, "/properties/coupon");
//! let text = violations[0].to_string();
//! assert!(text.contains("orders.order_placed v1 → v2"));
//! assert!(text.contains("#[serde(default)]"));
//!
//! // Adding it as an `Option` is backward compatible.
//! let v2 = json!({
//!     "title": "OrderPlaced", "type": "object", "additionalProperties": false,
//!     "properties": {
//!         "order_id": { "type": "string" },
//!         "coupon": { "anyOf": [{ "type": "string" }, { "type": "null" }] }
//!     },
//!     "required": ["order_id"]
//! });
//! let candidate = SchemaVersion::json(2, &v2);
//! assert!(check("orders.order_placed", CompatibilityMode::Backward, &candidate, &published)
//!     .unwrap()
//!     .is_empty());
//! ```

mod check;
mod explain;
mod json;
mod mode;
mod proto;
mod rule;

pub use check::{SchemaVersion, check, check_with};
pub use explain::{Direction, Violation};
pub use json::diff_json;
pub use mode::{CompatibilityMode, UnknownMode};
pub use proto::{ProtoCategory, ProtoError, diff_proto, parse_proto};
pub(crate) use proto::{proto_contract, strip_version_suffix};
pub use rule::{Difference, Rule};
