//! Compatibility checking between the published versions of one event.
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

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::str::FromStr;

use prost_types::field_descriptor_proto::{Label, Type as ProtoType};
use prost_types::{
    DescriptorProto, EnumDescriptorProto, FieldDescriptorProto, FileDescriptorProto,
};
use serde_json::{Map, Value};

// ---------------------------------------------------------------------------------------------
// Modes
// ---------------------------------------------------------------------------------------------

/// A compatibility mode, named and defined as in Confluent Schema Registry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CompatibilityMode {
    /// Consumers using the new version can read data written with the latest published one.
    #[default]
    Backward,
    /// As [`Backward`](Self::Backward), against every published version.
    BackwardTransitive,
    /// Consumers using the latest published version can read data written with the new one.
    Forward,
    /// As [`Forward`](Self::Forward), against every published version.
    ForwardTransitive,
    /// Backward and forward against the latest published version.
    Full,
    /// Backward and forward against every published version.
    FullTransitive,
    /// No check.
    None,
}

impl CompatibilityMode {
    /// Every mode, in Confluent's order.
    pub const ALL: [CompatibilityMode; 7] = [
        CompatibilityMode::Backward,
        CompatibilityMode::BackwardTransitive,
        CompatibilityMode::Forward,
        CompatibilityMode::ForwardTransitive,
        CompatibilityMode::Full,
        CompatibilityMode::FullTransitive,
        CompatibilityMode::None,
    ];

    /// The Confluent name: `BACKWARD`, `FULL_TRANSITIVE`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            CompatibilityMode::Backward => "BACKWARD",
            CompatibilityMode::BackwardTransitive => "BACKWARD_TRANSITIVE",
            CompatibilityMode::Forward => "FORWARD",
            CompatibilityMode::ForwardTransitive => "FORWARD_TRANSITIVE",
            CompatibilityMode::Full => "FULL",
            CompatibilityMode::FullTransitive => "FULL_TRANSITIVE",
            CompatibilityMode::None => "NONE",
        }
    }

    /// Whether new consumers must read old data.
    pub fn checks_backward(self) -> bool {
        matches!(
            self,
            CompatibilityMode::Backward
                | CompatibilityMode::BackwardTransitive
                | CompatibilityMode::Full
                | CompatibilityMode::FullTransitive
        )
    }

    /// Whether old consumers must read new data.
    pub fn checks_forward(self) -> bool {
        matches!(
            self,
            CompatibilityMode::Forward
                | CompatibilityMode::ForwardTransitive
                | CompatibilityMode::Full
                | CompatibilityMode::FullTransitive
        )
    }

    /// Whether the new version is checked against every published version, not only the latest.
    pub fn is_transitive(self) -> bool {
        matches!(
            self,
            CompatibilityMode::BackwardTransitive
                | CompatibilityMode::ForwardTransitive
                | CompatibilityMode::FullTransitive
        )
    }

    fn from_parts(backward: bool, forward: bool, transitive: bool) -> CompatibilityMode {
        match (backward, forward, transitive) {
            (true, true, false) => CompatibilityMode::Full,
            (true, true, true) => CompatibilityMode::FullTransitive,
            (true, false, false) => CompatibilityMode::Backward,
            (true, false, true) => CompatibilityMode::BackwardTransitive,
            (false, true, false) => CompatibilityMode::Forward,
            (false, true, true) => CompatibilityMode::ForwardTransitive,
            (false, false, _) => CompatibilityMode::None,
        }
    }
}

impl fmt::Display for CompatibilityMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text is not one of Confluent's seven mode names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownMode(pub String);

impl fmt::Display for UnknownMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` is not a compatibility mode; use one of BACKWARD, BACKWARD_TRANSITIVE, FORWARD, \
             FORWARD_TRANSITIVE, FULL, FULL_TRANSITIVE, NONE",
            self.0
        )
    }
}

impl std::error::Error for UnknownMode {}

impl FromStr for CompatibilityMode {
    type Err = UnknownMode;

    /// Accepts the Confluent names in any case, with `_` or `-` (`backward-transitive`).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let normal = text.trim().to_ascii_uppercase().replace('-', "_");
        CompatibilityMode::ALL
            .into_iter()
            .find(|mode| mode.as_str() == normal)
            .ok_or_else(|| UnknownMode(text.to_owned()))
    }
}

// ---------------------------------------------------------------------------------------------
// Rules
// ---------------------------------------------------------------------------------------------

macro_rules! rules {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal, $compatible:literal; )*) => {
        /// A kind of schema change. Displays as Confluent's `Difference.Type` for JSON Schema,
        /// buf's rule id for protobuf, and `FORMAT_*` for the `format` extension.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum Rule {
            $( $(#[$doc])* $variant, )*
        }

        impl Rule {
            /// Every rule.
            pub const ALL: &'static [Rule] = &[ $( Rule::$variant, )* ];

            /// The printed name (`PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL`, `FIELD_SAME_NAME`).
            pub fn name(self) -> &'static str {
                match self { $( Rule::$variant => $name, )* }
            }

            /// Whether a difference of this kind keeps the reader able to read the writer's
            /// data (Confluent's `COMPATIBLE_CHANGES`). Protobuf rules are always breaking.
            pub fn is_compatible(self) -> bool {
                match self { $( Rule::$variant => $compatible, )* }
            }
        }
    };
}

rules! {
    /// `$id` changed.
    IdChanged = "ID_CHANGED", true;
    /// `description` changed.
    DescriptionChanged = "DESCRIPTION_CHANGED", true;
    /// `title` changed.
    TitleChanged = "TITLE_CHANGED", true;
    /// `default` changed.
    DefaultChanged = "DEFAULT_CHANGED", true;
    /// The reader constrains something the writer left out (for example array items).
    SchemaAdded = "SCHEMA_ADDED", false;
    /// The reader dropped a constraint.
    SchemaRemoved = "SCHEMA_REMOVED", true;
    /// The reader accepts more types (`integer` → `number`, enum → string).
    TypeExtended = "TYPE_EXTENDED", true;
    /// The reader accepts fewer types (`number` → `integer`, string → enum).
    TypeNarrowed = "TYPE_NARROWED", false;
    /// The type changed.
    TypeChanged = "TYPE_CHANGED", false;
    /// `maxLength` added.
    MaxLengthAdded = "MAX_LENGTH_ADDED", false;
    /// `maxLength` removed.
    MaxLengthRemoved = "MAX_LENGTH_REMOVED", true;
    /// `maxLength` increased.
    MaxLengthIncreased = "MAX_LENGTH_INCREASED", true;
    /// `maxLength` decreased.
    MaxLengthDecreased = "MAX_LENGTH_DECREASED", false;
    /// `minLength` added.
    MinLengthAdded = "MIN_LENGTH_ADDED", false;
    /// `minLength` removed.
    MinLengthRemoved = "MIN_LENGTH_REMOVED", true;
    /// `minLength` increased.
    MinLengthIncreased = "MIN_LENGTH_INCREASED", false;
    /// `minLength` decreased.
    MinLengthDecreased = "MIN_LENGTH_DECREASED", true;
    /// `pattern` added.
    PatternAdded = "PATTERN_ADDED", false;
    /// `pattern` removed.
    PatternRemoved = "PATTERN_REMOVED", true;
    /// `pattern` changed.
    PatternChanged = "PATTERN_CHANGED", false;
    /// `format` added (extension; narrows the accepted strings or numbers).
    FormatAdded = "FORMAT_ADDED", false;
    /// `format` removed (extension).
    FormatRemoved = "FORMAT_REMOVED", true;
    /// `format` changed to an unrelated one (extension).
    FormatChanged = "FORMAT_CHANGED", false;
    /// The numeric `format` covers more values (`int32` → `int64`, `float` → `double`).
    FormatWidened = "FORMAT_WIDENED", true;
    /// The numeric `format` covers fewer values (`int64` → `int32`, `double` → `float`).
    FormatNarrowed = "FORMAT_NARROWED", false;
    /// `maximum` added.
    MaximumAdded = "MAXIMUM_ADDED", false;
    /// `maximum` removed.
    MaximumRemoved = "MAXIMUM_REMOVED", true;
    /// `maximum` increased.
    MaximumIncreased = "MAXIMUM_INCREASED", true;
    /// `maximum` decreased.
    MaximumDecreased = "MAXIMUM_DECREASED", false;
    /// `minimum` added.
    MinimumAdded = "MINIMUM_ADDED", false;
    /// `minimum` removed.
    MinimumRemoved = "MINIMUM_REMOVED", true;
    /// `minimum` increased.
    MinimumIncreased = "MINIMUM_INCREASED", false;
    /// `minimum` decreased.
    MinimumDecreased = "MINIMUM_DECREASED", true;
    /// `exclusiveMaximum` added.
    ExclusiveMaximumAdded = "EXCLUSIVE_MAXIMUM_ADDED", false;
    /// `exclusiveMaximum` removed.
    ExclusiveMaximumRemoved = "EXCLUSIVE_MAXIMUM_REMOVED", true;
    /// `exclusiveMaximum` increased.
    ExclusiveMaximumIncreased = "EXCLUSIVE_MAXIMUM_INCREASED", true;
    /// `exclusiveMaximum` decreased.
    ExclusiveMaximumDecreased = "EXCLUSIVE_MAXIMUM_DECREASED", false;
    /// `exclusiveMinimum` added.
    ExclusiveMinimumAdded = "EXCLUSIVE_MINIMUM_ADDED", false;
    /// `exclusiveMinimum` removed.
    ExclusiveMinimumRemoved = "EXCLUSIVE_MINIMUM_REMOVED", true;
    /// `exclusiveMinimum` increased.
    ExclusiveMinimumIncreased = "EXCLUSIVE_MINIMUM_INCREASED", false;
    /// `exclusiveMinimum` decreased.
    ExclusiveMinimumDecreased = "EXCLUSIVE_MINIMUM_DECREASED", true;
    /// `multipleOf` added.
    MultipleOfAdded = "MULTIPLE_OF_ADDED", false;
    /// `multipleOf` removed.
    MultipleOfRemoved = "MULTIPLE_OF_REMOVED", true;
    /// `multipleOf` became a multiple of the old value.
    MultipleOfExpanded = "MULTIPLE_OF_EXPANDED", false;
    /// `multipleOf` became a divisor of the old value.
    MultipleOfReduced = "MULTIPLE_OF_REDUCED", true;
    /// `multipleOf` changed otherwise.
    MultipleOfChanged = "MULTIPLE_OF_CHANGED", false;
    /// A property became required and has no `default`.
    RequiredAttributeAdded = "REQUIRED_ATTRIBUTE_ADDED", false;
    /// A property became required and has a `default`.
    RequiredAttributeWithDefaultAdded = "REQUIRED_ATTRIBUTE_WITH_DEFAULT_ADDED", true;
    /// A property stopped being required.
    RequiredAttributeRemoved = "REQUIRED_ATTRIBUTE_REMOVED", true;
    /// `maxProperties` added.
    MaxPropertiesAdded = "MAX_PROPERTIES_ADDED", false;
    /// `maxProperties` removed.
    MaxPropertiesRemoved = "MAX_PROPERTIES_REMOVED", true;
    /// `maxProperties` increased.
    MaxPropertiesIncreased = "MAX_PROPERTIES_INCREASED", true;
    /// `maxProperties` decreased.
    MaxPropertiesDecreased = "MAX_PROPERTIES_DECREASED", false;
    /// `minProperties` added.
    MinPropertiesAdded = "MIN_PROPERTIES_ADDED", false;
    /// `minProperties` removed.
    MinPropertiesRemoved = "MIN_PROPERTIES_REMOVED", true;
    /// `minProperties` increased.
    MinPropertiesIncreased = "MIN_PROPERTIES_INCREASED", false;
    /// `minProperties` decreased.
    MinPropertiesDecreased = "MIN_PROPERTIES_DECREASED", true;
    /// The reader allows additional properties the writer did not.
    AdditionalPropertiesAdded = "ADDITIONAL_PROPERTIES_ADDED", true;
    /// The reader no longer allows additional properties.
    AdditionalPropertiesRemoved = "ADDITIONAL_PROPERTIES_REMOVED", false;
    /// The reader no longer constrains additional properties.
    AdditionalPropertiesExtended = "ADDITIONAL_PROPERTIES_EXTENDED", true;
    /// The reader constrains additional properties the writer left open.
    AdditionalPropertiesNarrowed = "ADDITIONAL_PROPERTIES_NARROWED", false;
    /// A property was added to an open object (it may already exist with another type).
    PropertyAddedToOpenContentModel = "PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL", false;
    /// A property with the empty schema was added to an open object.
    PropertyWithEmptySchemaAddedToOpenContentModel =
        "PROPERTY_WITH_EMPTY_SCHEMA_ADDED_TO_OPEN_CONTENT_MODEL", true;
    /// A required property without default was added to a closed object.
    RequiredPropertyAddedToUnopenContentModel = "REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL", false;
    /// A required property with a default was added to a closed object.
    RequiredPropertyWithDefaultAddedToUnopenContentModel =
        "REQUIRED_PROPERTY_WITH_DEFAULT_ADDED_TO_UNOPEN_CONTENT_MODEL", true;
    /// An optional property was added to a closed object.
    OptionalPropertyAddedToUnopenContentModel = "OPTIONAL_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL", true;
    /// A property was removed from an open object.
    PropertyRemovedFromOpenContentModel = "PROPERTY_REMOVED_FROM_OPEN_CONTENT_MODEL", true;
    /// A property whose schema was `false` was removed from a closed object.
    PropertyWithFalseRemovedFromClosedContentModel =
        "PROPERTY_WITH_FALSE_REMOVED_FROM_CLOSED_CONTENT_MODEL", true;
    /// A property was removed from a closed object: the reader rejects data that has it.
    PropertyRemovedFromClosedContentModel = "PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL", false;
    /// A removed property is still accepted by the reader's `additionalProperties` schema.
    PropertyRemovedIsCoveredByPartiallyOpenContentModel =
        "PROPERTY_REMOVED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL", true;
    /// A removed property is not accepted by the reader's `additionalProperties` schema.
    PropertyRemovedNotCoveredByPartiallyOpenContentModel =
        "PROPERTY_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL", false;
    /// An added property fits the writer's `additionalProperties` schema.
    PropertyAddedIsCoveredByPartiallyOpenContentModel =
        "PROPERTY_ADDED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL", true;
    /// An added property does not fit the writer's `additionalProperties` schema.
    PropertyAddedNotCoveredByPartiallyOpenContentModel =
        "PROPERTY_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL", false;
    /// `maxItems` added.
    MaxItemsAdded = "MAX_ITEMS_ADDED", false;
    /// `maxItems` removed.
    MaxItemsRemoved = "MAX_ITEMS_REMOVED", true;
    /// `maxItems` increased.
    MaxItemsIncreased = "MAX_ITEMS_INCREASED", true;
    /// `maxItems` decreased.
    MaxItemsDecreased = "MAX_ITEMS_DECREASED", false;
    /// `minItems` added.
    MinItemsAdded = "MIN_ITEMS_ADDED", false;
    /// `minItems` removed.
    MinItemsRemoved = "MIN_ITEMS_REMOVED", true;
    /// `minItems` increased.
    MinItemsIncreased = "MIN_ITEMS_INCREASED", false;
    /// `minItems` decreased.
    MinItemsDecreased = "MIN_ITEMS_DECREASED", true;
    /// `uniqueItems` added (a `Vec` became a set).
    UniqueItemsAdded = "UNIQUE_ITEMS_ADDED", false;
    /// `uniqueItems` removed.
    UniqueItemsRemoved = "UNIQUE_ITEMS_REMOVED", true;
    /// The reader's tuple allows extra items the writer's did not.
    AdditionalItemsAdded = "ADDITIONAL_ITEMS_ADDED", true;
    /// The reader's tuple no longer allows extra items.
    AdditionalItemsRemoved = "ADDITIONAL_ITEMS_REMOVED", false;
    /// The reader no longer constrains extra tuple items.
    AdditionalItemsExtended = "ADDITIONAL_ITEMS_EXTENDED", true;
    /// The reader constrains extra tuple items the writer left open.
    AdditionalItemsNarrowed = "ADDITIONAL_ITEMS_NARROWED", false;
    /// A tuple item was added to an open tuple.
    ItemAddedToOpenContentModel = "ITEM_ADDED_TO_OPEN_CONTENT_MODEL", false;
    /// A tuple item with the empty schema was added to an open tuple.
    ItemWithEmptySchemaAddedToOpenContentModel = "ITEM_WITH_EMPTY_SCHEMA_ADDED_TO_OPEN_CONTENT_MODEL", true;
    /// A tuple item was added to a closed tuple.
    ItemAddedToClosedContentModel = "ITEM_ADDED_TO_CLOSED_CONTENT_MODEL", true;
    /// A tuple item was removed from an open tuple.
    ItemRemovedFromOpenContentModel = "ITEM_REMOVED_FROM_OPEN_CONTENT_MODEL", true;
    /// A tuple item whose schema was `false` was removed from a closed tuple.
    ItemWithFalseRemovedFromClosedContentModel = "ITEM_WITH_FALSE_REMOVED_FROM_CLOSED_CONTENT_MODEL", true;
    /// A tuple item was removed from a closed tuple.
    ItemRemovedFromClosedContentModel = "ITEM_REMOVED_FROM_CLOSED_CONTENT_MODEL", false;
    /// A removed tuple item is still accepted by the reader's extra-items schema.
    ItemRemovedIsCoveredByPartiallyOpenContentModel =
        "ITEM_REMOVED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL", true;
    /// A removed tuple item is not accepted by the reader's extra-items schema.
    ItemRemovedNotCoveredByPartiallyOpenContentModel =
        "ITEM_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL", false;
    /// An added tuple item fits the writer's extra-items schema.
    ItemAddedIsCoveredByPartiallyOpenContentModel =
        "ITEM_ADDED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL", true;
    /// An added tuple item does not fit the writer's extra-items schema.
    ItemAddedNotCoveredByPartiallyOpenContentModel =
        "ITEM_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL", false;
    /// Enum values were added.
    EnumArrayExtended = "ENUM_ARRAY_EXTENDED", true;
    /// Enum values were removed.
    EnumArrayNarrowed = "ENUM_ARRAY_NARROWED", false;
    /// Enum values were added and removed.
    EnumArrayChanged = "ENUM_ARRAY_CHANGED", false;
    /// `allOf`/`oneOf` became `anyOf` (or a singleton became `oneOf`).
    CombinedTypeExtended = "COMBINED_TYPE_EXTENDED", true;
    /// The combination keyword changed otherwise.
    CombinedTypeChanged = "COMBINED_TYPE_CHANGED", false;
    /// `allOf` gained subschemas.
    ProductTypeExtended = "PRODUCT_TYPE_EXTENDED", false;
    /// `allOf` lost subschemas.
    ProductTypeNarrowed = "PRODUCT_TYPE_NARROWED", true;
    /// `anyOf`/`oneOf` gained subschemas (a variant was added, `T` became `Option<T>`).
    SumTypeExtended = "SUM_TYPE_EXTENDED", true;
    /// `anyOf`/`oneOf` lost subschemas (a variant was removed).
    SumTypeNarrowed = "SUM_TYPE_NARROWED", false;
    /// A subschema of the writer has no compatible subschema in the reader.
    CombinedTypeSubschemasChanged = "COMBINED_TYPE_SUBSCHEMAS_CHANGED", false;
    /// buf: a field was deleted and its number not reserved.
    FieldNoDeleteUnlessNumberReserved = "FIELD_NO_DELETE_UNLESS_NUMBER_RESERVED", false;
    /// buf: a field was deleted and its name not reserved.
    FieldNoDeleteUnlessNameReserved = "FIELD_NO_DELETE_UNLESS_NAME_RESERVED", false;
    /// buf: a field number now has another name.
    FieldSameName = "FIELD_SAME_NAME", false;
    /// buf: a field number now has another JSON name.
    FieldSameJsonName = "FIELD_SAME_JSON_NAME", false;
    /// buf: a field changed to a type that is not wire and JSON compatible.
    FieldWireJsonCompatibleType = "FIELD_WIRE_JSON_COMPATIBLE_TYPE", false;
    /// buf: a field changed to a type that is not wire compatible.
    FieldWireCompatibleType = "FIELD_WIRE_COMPATIBLE_TYPE", false;
    /// buf: a field changed between singular and repeated.
    FieldWireJsonCompatibleCardinality = "FIELD_WIRE_JSON_COMPATIBLE_CARDINALITY", false;
    /// buf: a field moved into, out of or between oneofs.
    FieldSameOneof = "FIELD_SAME_ONEOF", false;
    /// buf: an enum value was deleted and its number not reserved.
    EnumValueNoDeleteUnlessNumberReserved = "ENUM_VALUE_NO_DELETE_UNLESS_NUMBER_RESERVED", false;
    /// buf: an enum value was deleted and its name not reserved.
    EnumValueNoDeleteUnlessNameReserved = "ENUM_VALUE_NO_DELETE_UNLESS_NAME_RESERVED", false;
    /// buf: an enum number now has another name.
    EnumValueSameName = "ENUM_VALUE_SAME_NAME", false;
    /// buf: a reserved range or name of a message was removed.
    ReservedMessageNoDelete = "RESERVED_MESSAGE_NO_DELETE", false;
    /// buf: a reserved range or name of an enum was removed.
    ReservedEnumNoDelete = "RESERVED_ENUM_NO_DELETE", false;
}

impl Rule {
    /// Whether the rule comes from buf's protobuf rules.
    pub fn is_proto(self) -> bool {
        matches!(
            self,
            Rule::FieldNoDeleteUnlessNumberReserved
                | Rule::FieldNoDeleteUnlessNameReserved
                | Rule::FieldSameName
                | Rule::FieldSameJsonName
                | Rule::FieldWireJsonCompatibleType
                | Rule::FieldWireCompatibleType
                | Rule::FieldWireJsonCompatibleCardinality
                | Rule::FieldSameOneof
                | Rule::EnumValueNoDeleteUnlessNumberReserved
                | Rule::EnumValueNoDeleteUnlessNameReserved
                | Rule::EnumValueSameName
                | Rule::ReservedMessageNoDelete
                | Rule::ReservedEnumNoDelete
        )
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Rule {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Rule::ALL
            .iter()
            .copied()
            .find(|rule| rule.name() == text)
            .ok_or_else(|| format!("`{text}` is not a rule name"))
    }
}

// ---------------------------------------------------------------------------------------------
// Differences
// ---------------------------------------------------------------------------------------------

/// One difference between a writer schema and a reader schema.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Difference {
    /// What changed.
    pub rule: Rule,
    /// JSON pointer of the field in the event's JSON document, for example
    /// `/properties/lines/items/properties/sku` (empty for the event itself).
    pub pointer: String,
    /// What exactly, for example `int64 → int32` or `values no longer accepted: "GIFT"`.
    pub detail: String,
}

impl Difference {
    /// Whether the reader still reads what the writer writes despite this difference.
    pub fn is_compatible(&self) -> bool {
        self.rule.is_compatible()
    }
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pointer = if self.pointer.is_empty() {
            "(root)"
        } else {
            &self.pointer
        };
        write!(f, "{pointer}: {}", self.rule)?;
        if !self.detail.is_empty() {
            write!(f, " ({})", self.detail)?;
        }
        Ok(())
    }
}

/// Lists the differences between a writer's schema and a reader's schema, compatible ones
/// included, following Confluent's JSON Schema diff (see the module documentation).
///
/// `$ref`s are resolved against each document's own `$defs`; recursive definitions are
/// compared once.
pub fn diff_json(writer: &Value, reader: &Value) -> Vec<Difference> {
    let mut differ = JsonDiffer {
        writer_root: writer,
        reader_root: reader,
        in_progress: HashSet::new(),
    };
    let mut out = Vec::new();
    let mut path = Vec::new();
    differ.compare(&mut out, &mut path, Some(writer), Some(reader));
    out
}

fn is_compatible(diffs: &[Difference]) -> bool {
    diffs.iter().all(Difference::is_compatible)
}

fn pointer(path: &[String]) -> String {
    let mut out = String::new();
    for segment in path {
        out.push('/');
        out.push_str(&segment.replace('~', "~0").replace('/', "~1"));
    }
    out
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Criterion {
    All,
    Any,
    One,
}

impl Criterion {
    fn keyword(self) -> &'static str {
        match self {
            Criterion::All => "allOf",
            Criterion::Any => "anyOf",
            Criterion::One => "oneOf",
        }
    }
}

#[derive(Debug)]
enum Kind {
    False,
    Empty,
    Combined(Criterion, Vec<Value>),
    Enum(Vec<Value>),
    String,
    Number,
    Boolean,
    Null,
    Object,
    Array,
}

impl Kind {
    fn class(&self) -> &'static str {
        match self {
            Kind::False => "false",
            Kind::Empty => "any",
            Kind::Combined(..) => "combined",
            Kind::Enum(_) => "enum",
            Kind::String => "string",
            Kind::Number => "number",
            Kind::Boolean => "boolean",
            Kind::Null => "null",
            Kind::Object => "object",
            Kind::Array => "array",
        }
    }
}

const ANNOTATIONS: &[&str] = &[
    "$schema",
    "$id",
    "$comment",
    "$defs",
    "definitions",
    "title",
    "description",
    "default",
    "examples",
    "deprecated",
    "readOnly",
    "writeOnly",
];

fn is_annotation(key: &str) -> bool {
    ANNOTATIONS.contains(&key) || key.starts_with("x-")
}

fn kind_of(schema: &Value) -> Kind {
    let map = match schema {
        Value::Bool(true) => return Kind::Empty,
        Value::Bool(false) => return Kind::False,
        Value::Object(map) => map,
        _ => return Kind::Empty,
    };
    for criterion in [Criterion::Any, Criterion::One, Criterion::All] {
        if let Some(Value::Array(subschemas)) = map.get(criterion.keyword()) {
            return Kind::Combined(criterion, subschemas.clone());
        }
    }
    if let Some(Value::Array(values)) = map.get("enum") {
        return Kind::Enum(values.clone());
    }
    if let Some(value) = map.get("const") {
        return Kind::Enum(vec![value.clone()]);
    }
    match map.get("type") {
        Some(Value::String(name)) => kind_of_type(name),
        Some(Value::Array(types)) if types.len() == 1 => match &types[0] {
            Value::String(name) => kind_of_type(name),
            _ => Kind::Empty,
        },
        Some(Value::Array(types)) => {
            // `"type": ["string", "null"]` is `anyOf` of one schema per type.
            let subschemas = types
                .iter()
                .map(|ty| {
                    let mut copy = map.clone();
                    copy.insert("type".into(), ty.clone());
                    Value::Object(copy)
                })
                .collect();
            Kind::Combined(Criterion::Any, subschemas)
        }
        _ => {
            let has = |keys: &[&str]| keys.iter().any(|key| map.contains_key(*key));
            if has(&[
                "properties",
                "additionalProperties",
                "required",
                "patternProperties",
            ]) {
                Kind::Object
            } else if has(&["items", "prefixItems"]) {
                Kind::Array
            } else if map.keys().all(|key| is_annotation(key)) {
                Kind::Empty
            } else if has(&["maxLength", "minLength", "pattern"]) {
                Kind::String
            } else if has(&[
                "minimum",
                "maximum",
                "exclusiveMinimum",
                "exclusiveMaximum",
                "multipleOf",
            ]) {
                Kind::Number
            } else {
                Kind::Empty
            }
        }
    }
}

fn kind_of_type(name: &str) -> Kind {
    match name {
        "string" => Kind::String,
        "integer" | "number" => Kind::Number,
        "boolean" => Kind::Boolean,
        "null" => Kind::Null,
        "object" => Kind::Object,
        "array" => Kind::Array,
        _ => Kind::Empty,
    }
}

struct JsonDiffer<'a> {
    writer_root: &'a Value,
    reader_root: &'a Value,
    in_progress: HashSet<(String, String)>,
}

/// Resolves `$ref` (local `#/...` pointers only), merging the referring schema's own keywords
/// (description, default, ...) over the referred one. Returns the schema and the last `$ref`.
fn resolve(root: &Value, schema: &Value) -> (Value, Option<String>) {
    let mut current = schema.clone();
    let mut last_ref = None;
    for _ in 0..32 {
        let Some(reference) = current
            .get("$ref")
            .and_then(Value::as_str)
            .map(str::to_owned)
        else {
            break;
        };
        let target = reference
            .strip_prefix('#')
            .and_then(|pointer| root.pointer(pointer))
            .cloned()
            .unwrap_or(Value::Bool(true));
        let mut merged = match target {
            Value::Object(map) => map,
            Value::Bool(true) => Map::new(),
            other => return (other, Some(reference)),
        };
        if let Value::Object(own) = &current {
            for (key, value) in own {
                if key != "$ref" {
                    merged.insert(key.clone(), value.clone());
                }
            }
        }
        current = Value::Object(merged);
        last_ref = Some(reference);
    }
    (current, last_ref)
}

fn number(map: &Map<String, Value>, key: &str) -> Option<f64> {
    map.get(key).and_then(Value::as_f64)
}

fn string<'m>(map: &'m Map<String, Value>, key: &str) -> Option<&'m str> {
    map.get(key).and_then(Value::as_str)
}

fn empty_map() -> &'static Map<String, Value> {
    static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
    EMPTY.get_or_init(Map::new)
}

fn as_map(schema: &Value) -> &Map<String, Value> {
    schema.as_object().unwrap_or_else(|| empty_map())
}

fn has_default(schema: Option<&Value>) -> bool {
    schema
        .and_then(Value::as_object)
        .is_some_and(|map| map.contains_key("default"))
}

/// Value range of the integer and floating point formats, as the Rust types behind them.
fn numeric_format_range(format: &str) -> Option<(f64, f64)> {
    Some(match format {
        "int8" => (i8::MIN as f64, i8::MAX as f64),
        "int16" => (i16::MIN as f64, i16::MAX as f64),
        "int32" => (i32::MIN as f64, i32::MAX as f64),
        "int64" => (i64::MIN as f64, i64::MAX as f64),
        "int128" => (i128::MIN as f64, i128::MAX as f64),
        "uint8" => (0.0, u8::MAX as f64),
        "uint16" => (0.0, u16::MAX as f64),
        "uint32" => (0.0, u32::MAX as f64),
        "uint64" => (0.0, u64::MAX as f64),
        "uint128" => (0.0, u128::MAX as f64),
        "float" => (f32::MIN as f64, f32::MAX as f64),
        "double" => (f64::MIN, f64::MAX),
        _ => return None,
    })
}

fn values_text(values: &[&Value]) -> String {
    values
        .iter()
        .map(|value| value.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A short name for a `oneOf`/`anyOf` subschema: its title, the single property of an
/// externally tagged variant, or its constant.
fn variant_label(root: &Value, schema: &Value) -> Option<String> {
    let (schema, reference) = resolve(root, schema);
    let map = schema.as_object()?;
    if let Some(title) = string(map, "title") {
        return Some(title.to_owned());
    }
    if let Some(Value::Object(properties)) = map.get("properties")
        && properties.len() == 1
    {
        return properties.keys().next().cloned();
    }
    if let Some(Value::Array(values)) = map.get("enum")
        && values.len() == 1
    {
        return values[0].as_str().map(str::to_owned);
    }
    if let Some(Value::String(value)) = map.get("const") {
        return Some(value.clone());
    }
    reference.and_then(|r| r.rsplit('/').next().map(str::to_owned))
}

fn is_null_schema(schema: &Value) -> bool {
    schema.get("type").and_then(Value::as_str) == Some("null")
        && schema.as_object().is_some_and(|m| m.len() <= 2)
}

/// `anyOf: [T, {"type": "null"}]` (either order): returns `T`.
fn option_inner(criterion: Criterion, subschemas: &[Value]) -> Option<&Value> {
    if criterion == Criterion::All || subschemas.len() != 2 {
        return None;
    }
    match (
        is_null_schema(&subschemas[0]),
        is_null_schema(&subschemas[1]),
    ) {
        (false, true) => Some(&subschemas[0]),
        (true, false) => Some(&subschemas[1]),
        _ => None,
    }
}

impl JsonDiffer<'_> {
    fn push(
        &self,
        out: &mut Vec<Difference>,
        path: &[String],
        rule: Rule,
        detail: impl Into<String>,
    ) {
        out.push(Difference {
            rule,
            pointer: pointer(path),
            detail: detail.into(),
        });
    }

    fn push_at(
        &self,
        out: &mut Vec<Difference>,
        path: &[String],
        keyword: &str,
        rule: Rule,
        detail: String,
    ) {
        // Keyword-level changes (maxLength, enum, ...) are reported at the field, with the
        // keyword in the detail, so that the pointer always names a field.
        let detail = if detail.is_empty() {
            keyword.to_owned()
        } else {
            format!("{keyword}: {detail}")
        };
        self.push(out, path, rule, detail);
    }

    fn sub(
        &mut self,
        path: &mut Vec<String>,
        writer: Option<&Value>,
        reader: Option<&Value>,
    ) -> Vec<Difference> {
        let mut out = Vec::new();
        self.compare(&mut out, path, writer, reader);
        out
    }

    fn compare(
        &mut self,
        out: &mut Vec<Difference>,
        path: &mut Vec<String>,
        writer: Option<&Value>,
        reader: Option<&Value>,
    ) {
        let (writer, reader) = match (writer, reader) {
            (None, None) => return,
            (None, Some(_)) => return self.push(out, path, Rule::SchemaAdded, ""),
            (Some(_), None) => return self.push(out, path, Rule::SchemaRemoved, ""),
            (Some(w), Some(r)) => (w, r),
        };
        let (writer, writer_ref) = resolve(self.writer_root, writer);
        let (reader, reader_ref) = resolve(self.reader_root, reader);
        let key = match (&writer_ref, &reader_ref) {
            (Some(w), Some(r)) => {
                // Two definitions being compared higher up the stack: a recursive type.
                let key = (w.clone(), r.clone());
                if !self.in_progress.insert(key.clone()) {
                    return;
                }
                Some(key)
            }
            _ => None,
        };
        self.compare_resolved(
            out,
            path,
            (&writer, writer_ref.as_deref()),
            (&reader, reader_ref.as_deref()),
        );
        if let Some(key) = key {
            self.in_progress.remove(&key);
        }
    }

    fn compare_resolved(
        &mut self,
        out: &mut Vec<Difference>,
        path: &mut Vec<String>,
        (writer, writer_ref): (&Value, Option<&str>),
        (reader, reader_ref): (&Value, Option<&str>),
    ) {
        let writer_kind = kind_of(writer);
        let reader_kind = kind_of(reader);

        match (&writer_kind, &reader_kind) {
            (Kind::Combined(..), Kind::Combined(..)) => {}
            (_, Kind::Combined(criterion, subschemas)) => {
                if subschemas.len() == 1 {
                    let sub = self.sub(path, Some(writer), Some(&subschemas[0]));
                    if is_compatible(&sub) {
                        out.extend(sub);
                        return;
                    }
                } else if *criterion != Criterion::All {
                    for subschema in subschemas {
                        let sub = self.sub(path, Some(writer), Some(subschema));
                        if is_compatible(&sub) {
                            out.extend(sub);
                            let detail = if option_inner(*criterion, subschemas).is_some() {
                                "now accepts null (T → Option<T>)".to_owned()
                            } else {
                                format!("now one of {} alternatives", subschemas.len())
                            };
                            self.push(out, path, Rule::SumTypeExtended, detail);
                            return;
                        }
                    }
                }
            }
            (Kind::Combined(_, subschemas), _) if subschemas.len() == 1 => {
                let sub = self.sub(path, Some(&subschemas[0]), Some(reader));
                if is_compatible(&sub) {
                    out.extend(sub);
                    return;
                }
            }
            _ => {}
        }

        if writer_kind.class() != reader_kind.class() {
            if matches!(writer_kind, Kind::False) || matches!(reader_kind, Kind::Empty) {
                return;
            }
            let all_strings = |values: &[Value]| values.iter().all(Value::is_string);
            match (&writer_kind, &reader_kind) {
                (Kind::String, Kind::Enum(values)) if all_strings(values) => {
                    let detail = format!(
                        "string → one of {}",
                        values_text(&values.iter().collect::<Vec<_>>())
                    );
                    return self.push(out, path, Rule::TypeNarrowed, detail);
                }
                (Kind::Enum(values), Kind::String) if all_strings(values) => {
                    return self.push(out, path, Rule::TypeExtended, "enum → any string");
                }
                _ => {}
            }
            let named = |text: String, reference: Option<&str>| match reference {
                Some(r) => format!("{} ({text})", r.rsplit('/').next().unwrap_or(r)),
                None => text,
            };
            let detail = format!(
                "{} → {}",
                named(type_text(writer, &writer_kind), writer_ref),
                named(type_text(reader, &reader_kind), reader_ref)
            );
            return self.push(out, path, Rule::TypeChanged, detail);
        }

        let (w, r) = (as_map(writer), as_map(reader));
        if w.get("$id") != r.get("$id") {
            self.push(out, path, Rule::IdChanged, "");
        }
        if w.get("title") != r.get("title") {
            self.push(out, path, Rule::TitleChanged, "");
        }
        if w.get("description") != r.get("description") {
            self.push(out, path, Rule::DescriptionChanged, "");
        }
        if w.get("default") != r.get("default") {
            self.push(out, path, Rule::DefaultChanged, "");
        }

        match (&writer_kind, &reader_kind) {
            (Kind::String, Kind::String) => self.compare_string(out, path, w, r),
            (Kind::Number, Kind::Number) => self.compare_number(out, path, w, r),
            (Kind::Enum(wv), Kind::Enum(rv)) => self.compare_enum(out, path, wv, rv),
            (Kind::Combined(wc, ws), Kind::Combined(rc, rs)) => {
                self.compare_combined(out, path, (*wc, ws), (*rc, rs))
            }
            (Kind::Object, Kind::Object) => self.compare_object(out, path, w, r),
            (Kind::Array, Kind::Array) => self.compare_array(out, path, w, r),
            _ => {}
        }
    }

    fn compare_string(
        &mut self,
        out: &mut Vec<Difference>,
        path: &[String],
        w: &Map<String, Value>,
        r: &Map<String, Value>,
    ) {
        use Rule::*;
        self.bound(
            out,
            path,
            "maxLength",
            w,
            r,
            [
                MaxLengthAdded,
                MaxLengthRemoved,
                MaxLengthIncreased,
                MaxLengthDecreased,
            ],
        );
        self.bound(
            out,
            path,
            "minLength",
            w,
            r,
            [
                MinLengthAdded,
                MinLengthRemoved,
                MinLengthIncreased,
                MinLengthDecreased,
            ],
        );
        match (string(w, "pattern"), string(r, "pattern")) {
            (None, Some(p)) => {
                self.push_at(out, path, "pattern", PatternAdded, format!("now {p:?}"))
            }
            (Some(p), None) => {
                self.push_at(out, path, "pattern", PatternRemoved, format!("was {p:?}"))
            }
            (Some(a), Some(b)) if a != b => self.push_at(
                out,
                path,
                "pattern",
                PatternChanged,
                format!("{a:?} → {b:?}"),
            ),
            _ => {}
        }
        match (string(w, "format"), string(r, "format")) {
            (None, Some(f)) => {
                self.push_at(out, path, "format", FormatAdded, format!("string → {f}"))
            }
            (Some(f), None) => {
                self.push_at(out, path, "format", FormatRemoved, format!("{f} → string"))
            }
            (Some(a), Some(b)) if a != b => {
                self.push_at(out, path, "format", FormatChanged, format!("{a} → {b}"))
            }
            _ => {}
        }
    }

    /// Compares one numeric keyword, Confluent's way: `[added, removed, increased, decreased]`.
    #[allow(clippy::too_many_arguments)]
    fn bound(
        &self,
        out: &mut Vec<Difference>,
        path: &[String],
        keyword: &str,
        w: &Map<String, Value>,
        r: &Map<String, Value>,
        rules: [Rule; 4],
    ) {
        self.bound_values(
            out,
            path,
            keyword,
            number(w, keyword),
            number(r, keyword),
            rules,
        );
    }

    fn bound_values(
        &self,
        out: &mut Vec<Difference>,
        path: &[String],
        keyword: &str,
        w: Option<f64>,
        r: Option<f64>,
        [added, removed, increased, decreased]: [Rule; 4],
    ) {
        match (w, r) {
            (None, Some(b)) => self.push_at(out, path, keyword, added, format!("now {b}")),
            (Some(a), None) => self.push_at(out, path, keyword, removed, format!("was {a}")),
            (Some(a), Some(b)) if a < b => {
                self.push_at(out, path, keyword, increased, format!("{a} → {b}"))
            }
            (Some(a), Some(b)) if a > b => {
                self.push_at(out, path, keyword, decreased, format!("{a} → {b}"))
            }
            _ => {}
        }
    }

    fn compare_number(
        &mut self,
        out: &mut Vec<Difference>,
        path: &[String],
        w: &Map<String, Value>,
        r: &Map<String, Value>,
    ) {
        use Rule::*;
        // `minimum: 0` beside an unsigned format restates the format.
        let implied_min = |map: &Map<String, Value>| {
            let unsigned = string(map, "format").is_some_and(|f| f.starts_with("uint"));
            let min = number(map, "minimum");
            if unsigned && min == Some(0.0) {
                None
            } else {
                min
            }
        };
        self.bound(
            out,
            path,
            "maximum",
            w,
            r,
            [
                MaximumAdded,
                MaximumRemoved,
                MaximumIncreased,
                MaximumDecreased,
            ],
        );
        self.bound_values(
            out,
            path,
            "minimum",
            implied_min(w),
            implied_min(r),
            [
                MinimumAdded,
                MinimumRemoved,
                MinimumIncreased,
                MinimumDecreased,
            ],
        );
        self.bound(
            out,
            path,
            "exclusiveMaximum",
            w,
            r,
            [
                ExclusiveMaximumAdded,
                ExclusiveMaximumRemoved,
                ExclusiveMaximumIncreased,
                ExclusiveMaximumDecreased,
            ],
        );
        self.bound(
            out,
            path,
            "exclusiveMinimum",
            w,
            r,
            [
                ExclusiveMinimumAdded,
                ExclusiveMinimumRemoved,
                ExclusiveMinimumIncreased,
                ExclusiveMinimumDecreased,
            ],
        );
        match (number(w, "multipleOf"), number(r, "multipleOf")) {
            (None, Some(b)) => {
                self.push_at(out, path, "multipleOf", MultipleOfAdded, format!("now {b}"))
            }
            (Some(a), None) => self.push_at(
                out,
                path,
                "multipleOf",
                MultipleOfRemoved,
                format!("was {a}"),
            ),
            (Some(a), Some(b)) if a != b => {
                let rule = if a != 0.0 && (b / a).fract() == 0.0 {
                    MultipleOfExpanded
                } else if b != 0.0 && (a / b).fract() == 0.0 {
                    MultipleOfReduced
                } else {
                    MultipleOfChanged
                };
                self.push_at(out, path, "multipleOf", rule, format!("{a} → {b}"));
            }
            _ => {}
        }
        let writer_integer = string(w, "type") == Some("integer");
        let reader_integer = string(r, "type") == Some("integer");
        if writer_integer != reader_integer {
            if writer_integer {
                self.push(out, path, TypeExtended, "integer → number");
            } else {
                self.push(out, path, TypeNarrowed, "number → integer");
            }
            // Confluent treats integer → number as a widening whatever the width.
            return;
        }
        match (string(w, "format"), string(r, "format")) {
            (None, Some(f)) => self.push_at(out, path, "format", FormatAdded, format!("any → {f}")),
            (Some(f), None) => {
                self.push_at(out, path, "format", FormatRemoved, format!("{f} → any"))
            }
            (Some(a), Some(b)) if a != b => {
                let rule = match (numeric_format_range(a), numeric_format_range(b)) {
                    (Some((amin, amax)), Some((bmin, bmax))) if bmin <= amin && amax <= bmax => {
                        FormatWidened
                    }
                    (Some((amin, amax)), Some((bmin, bmax))) if amin <= bmin && bmax <= amax => {
                        FormatNarrowed
                    }
                    _ => FormatChanged,
                };
                self.push_at(out, path, "format", rule, format!("{a} → {b}"));
            }
            _ => {}
        }
    }

    fn compare_enum(
        &mut self,
        out: &mut Vec<Difference>,
        path: &[String],
        w: &[Value],
        r: &[Value],
    ) {
        let removed: Vec<&Value> = w.iter().filter(|v| !r.contains(v)).collect();
        let added: Vec<&Value> = r.iter().filter(|v| !w.contains(v)).collect();
        let rule = match (removed.is_empty(), added.is_empty()) {
            (true, true) => return,
            (true, false) => Rule::EnumArrayExtended,
            (false, true) => Rule::EnumArrayNarrowed,
            (false, false) => Rule::EnumArrayChanged,
        };
        let mut detail = Vec::new();
        if !removed.is_empty() {
            detail.push(format!(
                "values no longer accepted: {}",
                values_text(&removed)
            ));
        }
        if !added.is_empty() {
            detail.push(format!("values added: {}", values_text(&added)));
        }
        self.push_at(out, path, "enum", rule, detail.join("; "));
    }

    fn compare_combined(
        &mut self,
        out: &mut Vec<Difference>,
        path: &mut Vec<String>,
        (wc, ws): (Criterion, &Vec<Value>),
        (rc, rs): (Criterion, &Vec<Value>),
    ) {
        let criterion_rule = if wc == rc {
            None
        } else if rc == Criterion::Any
            || (rc == Criterion::One && ws.len() == 1)
            || (rc == Criterion::All && ws.len() == 1 && rs.len() == 1)
        {
            Some(Rule::CombinedTypeExtended)
        } else {
            Some(Rule::CombinedTypeChanged)
        };
        if let Some(rule) = criterion_rule {
            self.push(
                out,
                path,
                rule,
                format!("{} → {}", wc.keyword(), rc.keyword()),
            );
            if rule == Rule::CombinedTypeChanged {
                return;
            }
        }

        // Option<T> on both sides: compare T at the field itself.
        if let (Some(w), Some(r)) = (option_inner(wc, ws), option_inner(rc, rs)) {
            self.compare(out, path, Some(w), Some(r));
            return;
        }

        let dedup = |schemas: &[Value]| {
            let mut unique: Vec<Value> = Vec::new();
            for schema in schemas {
                if !unique.contains(schema) {
                    unique.push(schema.clone());
                }
            }
            unique
        };
        let (ws, rs) = (dedup(ws), dedup(rs));
        let writer_labels: Vec<String> = ws
            .iter()
            .enumerate()
            .map(|(i, s)| {
                variant_label(self.writer_root, s)
                    .unwrap_or_else(|| format!("{}/{i}", wc.keyword()))
            })
            .collect();
        let reader_labels: Vec<String> = rs
            .iter()
            .enumerate()
            .map(|(i, s)| {
                variant_label(self.reader_root, s)
                    .unwrap_or_else(|| format!("{}/{i}", rc.keyword()))
            })
            .collect();

        // Compatible pairs, then a maximum matching (Confluent's MaximumCardinalityMatch).
        let mut edges: Vec<Vec<(usize, Vec<Difference>)>> = Vec::with_capacity(ws.len());
        for (i, w) in ws.iter().enumerate() {
            let mut row = Vec::new();
            path.push(wc.keyword().to_owned());
            path.push(i.to_string());
            for (j, r) in rs.iter().enumerate() {
                let sub = self.sub(path, Some(w), Some(r));
                if is_compatible(&sub) {
                    row.push((j, sub));
                }
            }
            path.truncate(path.len() - 2);
            edges.push(row);
        }
        let matching = max_matching(ws.len(), rs.len(), &edges);
        let matched = matching.iter().filter(|m| m.is_some()).count();
        for (i, m) in matching.iter().enumerate() {
            if let Some(j) = m
                && let Some((_, sub)) = edges[i].iter().find(|(k, _)| k == j)
            {
                out.extend(sub.iter().cloned());
            }
        }
        let unmatched_writer: Vec<usize> =
            (0..ws.len()).filter(|i| matching[*i].is_none()).collect();
        let names = |indices: &[usize], labels: &[String]| {
            indices
                .iter()
                .map(|i| format!("`{}`", labels[*i]))
                .collect::<Vec<_>>()
                .join(", ")
        };

        if ws.len() < rs.len() {
            let rule = if rc == Criterion::All {
                Rule::ProductTypeExtended
            } else {
                Rule::SumTypeExtended
            };
            let matched_reader: BTreeSet<usize> = matching.iter().flatten().copied().collect();
            let added: Vec<usize> = (0..rs.len())
                .filter(|j| !matched_reader.contains(j))
                .collect();
            self.push(
                out,
                path,
                rule,
                format!("{} added", names(&added, &reader_labels)),
            );
        } else if ws.len() > rs.len() {
            let rule = if rc == Criterion::All {
                Rule::ProductTypeNarrowed
            } else {
                Rule::SumTypeNarrowed
            };
            let detail = if unmatched_writer.is_empty() {
                format!("{} → {} alternatives", ws.len(), rs.len())
            } else {
                format!(
                    "{} no longer accepted",
                    names(&unmatched_writer, &writer_labels)
                )
            };
            self.push(out, path, rule, detail);
        }
        if matched < ws.len().min(rs.len()) {
            // Explain each unmatched alternative through the one of the same name (or place)
            // in the reader when there is one; the rest is Confluent's generic difference.
            let mut unexplained = Vec::new();
            for &i in &unmatched_writer {
                let mut reasons = Vec::new();
                let same_place = || {
                    let writer_kind = kind_of(&resolve(self.writer_root, &ws[i]).0);
                    let reader_kind = rs.get(i).map(|r| kind_of(&resolve(self.reader_root, r).0));
                    reader_kind
                        .is_some_and(|k| k.class() == writer_kind.class())
                        .then_some(i)
                };
                let counterpart = reader_labels
                    .iter()
                    .position(|label| *label == writer_labels[i])
                    .or_else(same_place);
                if let Some(j) = counterpart {
                    path.push(wc.keyword().to_owned());
                    path.push(i.to_string());
                    let sub = self.sub(path, Some(&ws[i]), Some(&rs[j]));
                    path.truncate(path.len() - 2);
                    reasons.extend(sub.into_iter().filter(|d| !d.is_compatible()));
                }
                if reasons.is_empty() {
                    unexplained.push(i);
                }
                out.extend(reasons);
            }
            if !unexplained.is_empty() {
                self.push(
                    out,
                    path,
                    Rule::CombinedTypeSubschemasChanged,
                    format!(
                        "{} has no compatible alternative",
                        names(&unexplained, &writer_labels)
                    ),
                );
            }
        }
    }

    fn compare_object(
        &mut self,
        out: &mut Vec<Difference>,
        path: &mut Vec<String>,
        w: &Map<String, Value>,
        r: &Map<String, Value>,
    ) {
        let properties = |map: &Map<String, Value>| {
            map.get("properties")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default()
        };
        let required = |map: &Map<String, Value>| -> BTreeSet<String> {
            map.get("required")
                .and_then(Value::as_array)
                .map(|names| {
                    names
                        .iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        };
        let (wp, rp) = (properties(w), properties(r));
        let (wr, rr) = (required(w), required(r));

        // Required changes of properties present on both sides.
        for key in wp.keys() {
            if !rp.contains_key(key) {
                continue;
            }
            path.push("properties".into());
            path.push(key.clone());
            match (wr.contains(key), rr.contains(key)) {
                (true, false) => self.push(
                    out,
                    path,
                    Rule::RequiredAttributeRemoved,
                    "required → optional",
                ),
                (false, true) if has_default(rp.get(key)) => self.push(
                    out,
                    path,
                    Rule::RequiredAttributeWithDefaultAdded,
                    "optional → required, with a default",
                ),
                (false, true) => self.push(
                    out,
                    path,
                    Rule::RequiredAttributeAdded,
                    "optional → required, no default",
                ),
                _ => {}
            }
            path.truncate(path.len() - 2);
        }

        let keys: BTreeSet<&String> = wp.keys().chain(rp.keys()).collect();
        for key in keys {
            path.push("properties".into());
            path.push(key.clone());
            match (wp.get(key), rp.get(key)) {
                (Some(writer_schema), None) => {
                    if is_open(r) {
                        self.push(out, path, Rule::PropertyRemovedFromOpenContentModel, "");
                    } else if let Some(partial) = partial_schema(r, key) {
                        let sub = self.sub(path, Some(writer_schema), Some(&partial));
                        let compatible = is_compatible(&sub);
                        out.extend(sub);
                        let rule = if compatible {
                            Rule::PropertyRemovedIsCoveredByPartiallyOpenContentModel
                        } else {
                            Rule::PropertyRemovedNotCoveredByPartiallyOpenContentModel
                        };
                        self.push(out, path, rule, "");
                    } else if *writer_schema == Value::Bool(false) {
                        self.push(
                            out,
                            path,
                            Rule::PropertyWithFalseRemovedFromClosedContentModel,
                            "",
                        );
                    } else {
                        let detail = if wr.contains(key) {
                            "required field"
                        } else {
                            "optional field"
                        };
                        self.push(
                            out,
                            path,
                            Rule::PropertyRemovedFromClosedContentModel,
                            detail,
                        );
                    }
                }
                (None, Some(reader_schema)) => {
                    if is_open(w) {
                        let (resolved, _) = resolve(self.reader_root, reader_schema);
                        if matches!(kind_of(&resolved), Kind::Empty) {
                            self.push(
                                out,
                                path,
                                Rule::PropertyWithEmptySchemaAddedToOpenContentModel,
                                "",
                            );
                        } else {
                            self.push(out, path, Rule::PropertyAddedToOpenContentModel, "");
                        }
                    } else {
                        if let Some(partial) = partial_schema(w, key) {
                            let sub = self.sub(path, Some(&partial), Some(reader_schema));
                            let compatible = is_compatible(&sub);
                            out.extend(sub);
                            let rule = if compatible {
                                Rule::PropertyAddedIsCoveredByPartiallyOpenContentModel
                            } else {
                                Rule::PropertyAddedNotCoveredByPartiallyOpenContentModel
                            };
                            self.push(out, path, rule, "");
                        }
                        if rr.contains(key) {
                            if has_default(Some(reader_schema)) {
                                self.push(
                                    out,
                                    path,
                                    Rule::RequiredPropertyWithDefaultAddedToUnopenContentModel,
                                    "",
                                );
                            } else {
                                self.push(
                                    out,
                                    path,
                                    Rule::RequiredPropertyAddedToUnopenContentModel,
                                    "no default",
                                );
                            }
                        } else {
                            self.push(
                                out,
                                path,
                                Rule::OptionalPropertyAddedToUnopenContentModel,
                                "",
                            );
                        }
                    }
                }
                (Some(writer_schema), Some(reader_schema)) => {
                    self.compare(out, path, Some(writer_schema), Some(reader_schema));
                }
                (None, None) => {}
            }
            path.truncate(path.len() - 2);
        }

        // additionalProperties: `false`, absent/`true`, or a schema (a map's values).
        path.push("additionalProperties".into());
        let permits =
            |map: &Map<String, Value>| map.get("additionalProperties") != Some(&Value::Bool(false));
        let schema_of = |map: &Map<String, Value>| match map.get("additionalProperties") {
            Some(Value::Bool(_)) | None => None,
            Some(schema) => Some(schema.clone()),
        };
        let (ws, rs) = (schema_of(w), schema_of(r));
        if permits(w) != permits(r) {
            if permits(r) {
                self.push(out, path, Rule::AdditionalPropertiesAdded, "");
            } else {
                self.push(out, path, Rule::AdditionalPropertiesRemoved, "");
            }
        } else if ws.is_none() && rs.is_some() {
            self.push(out, path, Rule::AdditionalPropertiesNarrowed, "");
        } else if ws.is_some() && rs.is_none() {
            self.push(out, path, Rule::AdditionalPropertiesExtended, "");
        } else {
            self.compare(out, path, ws.as_ref(), rs.as_ref());
        }
        path.pop();

        use Rule::*;
        self.bound(
            out,
            path,
            "maxProperties",
            w,
            r,
            [
                MaxPropertiesAdded,
                MaxPropertiesRemoved,
                MaxPropertiesIncreased,
                MaxPropertiesDecreased,
            ],
        );
        self.bound(
            out,
            path,
            "minProperties",
            w,
            r,
            [
                MinPropertiesAdded,
                MinPropertiesRemoved,
                MinPropertiesIncreased,
                MinPropertiesDecreased,
            ],
        );
    }

    fn compare_array(
        &mut self,
        out: &mut Vec<Difference>,
        path: &mut Vec<String>,
        w: &Map<String, Value>,
        r: &Map<String, Value>,
    ) {
        let tuple =
            |map: &Map<String, Value>| map.get("prefixItems").and_then(Value::as_array).cloned();
        let (wt, rt) = (tuple(w), tuple(r));
        // 2020-12: with prefixItems, `items` constrains the items after the tuple.
        let all_items = |map: &Map<String, Value>, tuple: &Option<Vec<Value>>| {
            if tuple.is_some() {
                None
            } else {
                map.get("items").cloned()
            }
        };
        let extra = |map: &Map<String, Value>, tuple: &Option<Vec<Value>>| {
            if tuple.is_some() {
                map.get("items").cloned()
            } else {
                None
            }
        };

        path.push("items".into());
        self.compare(
            out,
            path,
            all_items(w, &wt).as_ref(),
            all_items(r, &rt).as_ref(),
        );
        path.pop();

        let (we, re) = (extra(w, &wt), extra(r, &rt));
        let permits = |extra: &Option<Value>| extra.as_ref() != Some(&Value::Bool(false));
        let schema_of = |extra: &Option<Value>| match extra {
            Some(Value::Bool(_)) | None => None,
            Some(schema) => Some(schema.clone()),
        };
        let open = |extra: &Option<Value>| permits(extra) && schema_of(extra).is_none();

        let (wt, rt) = (wt.unwrap_or_default(), rt.unwrap_or_default());
        let common = wt.len().min(rt.len());
        for i in 0..wt.len().max(rt.len()) {
            path.push("prefixItems".into());
            path.push(i.to_string());
            if i < common {
                self.compare(out, path, Some(&wt[i]), Some(&rt[i]));
            } else if i < wt.len() {
                if open(&re) {
                    self.push(out, path, Rule::ItemRemovedFromOpenContentModel, "");
                } else if let Some(partial) = schema_of(&re) {
                    let sub = self.sub(path, Some(&wt[i]), Some(&partial));
                    let compatible = is_compatible(&sub);
                    out.extend(sub);
                    let rule = if compatible {
                        Rule::ItemRemovedIsCoveredByPartiallyOpenContentModel
                    } else {
                        Rule::ItemRemovedNotCoveredByPartiallyOpenContentModel
                    };
                    self.push(out, path, rule, "");
                } else if wt[i] == Value::Bool(false) {
                    self.push(
                        out,
                        path,
                        Rule::ItemWithFalseRemovedFromClosedContentModel,
                        "",
                    );
                } else {
                    self.push(out, path, Rule::ItemRemovedFromClosedContentModel, "");
                }
            } else if open(&we) {
                let (resolved, _) = resolve(self.reader_root, &rt[i]);
                if matches!(kind_of(&resolved), Kind::Empty) {
                    self.push(
                        out,
                        path,
                        Rule::ItemWithEmptySchemaAddedToOpenContentModel,
                        "",
                    );
                } else {
                    self.push(out, path, Rule::ItemAddedToOpenContentModel, "");
                }
            } else if let Some(partial) = schema_of(&we) {
                let sub = self.sub(path, Some(&partial), Some(&rt[i]));
                let compatible = is_compatible(&sub);
                out.extend(sub);
                let rule = if compatible {
                    Rule::ItemAddedIsCoveredByPartiallyOpenContentModel
                } else {
                    Rule::ItemAddedNotCoveredByPartiallyOpenContentModel
                };
                self.push(out, path, rule, "");
            } else {
                self.push(out, path, Rule::ItemAddedToClosedContentModel, "");
            }
            path.truncate(path.len() - 2);
        }

        path.push("items".into());
        if permits(&we) != permits(&re) {
            if permits(&we) {
                self.push(out, path, Rule::AdditionalItemsRemoved, "");
            } else {
                self.push(out, path, Rule::AdditionalItemsAdded, "");
            }
        } else if schema_of(&we).is_none() && schema_of(&re).is_some() {
            self.push(out, path, Rule::AdditionalItemsNarrowed, "");
        } else if schema_of(&we).is_some() && schema_of(&re).is_none() {
            self.push(out, path, Rule::AdditionalItemsExtended, "");
        } else if let (Some(a), Some(b)) = (schema_of(&we), schema_of(&re)) {
            self.compare(out, path, Some(&a), Some(&b));
        }
        path.pop();

        use Rule::*;
        self.bound(
            out,
            path,
            "maxItems",
            w,
            r,
            [
                MaxItemsAdded,
                MaxItemsRemoved,
                MaxItemsIncreased,
                MaxItemsDecreased,
            ],
        );
        self.bound(
            out,
            path,
            "minItems",
            w,
            r,
            [
                MinItemsAdded,
                MinItemsRemoved,
                MinItemsIncreased,
                MinItemsDecreased,
            ],
        );
        let unique = |map: &Map<String, Value>| map.get("uniqueItems") == Some(&Value::Bool(true));
        match (unique(w), unique(r)) {
            (true, false) => self.push(out, path, UniqueItemsRemoved, "set → list"),
            (false, true) => self.push(out, path, UniqueItemsAdded, "list → set"),
            _ => {}
        }
    }
}

fn type_text(schema: &Value, kind: &Kind) -> String {
    let map = as_map(schema);
    match kind {
        Kind::Number | Kind::String => {
            let ty = string(map, "type").unwrap_or(kind.class());
            match string(map, "format") {
                Some(format) => format!("{ty} ({format})"),
                None => ty.to_owned(),
            }
        }
        Kind::Combined(criterion, subschemas) => {
            if option_inner(*criterion, subschemas).is_some() {
                "optional (T or null)".to_owned()
            } else {
                format!("{} of {}", criterion.keyword(), subschemas.len())
            }
        }
        other => other.class().to_owned(),
    }
}

fn is_open(map: &Map<String, Value>) -> bool {
    let no_patterns = map
        .get("patternProperties")
        .and_then(Value::as_object)
        .is_none_or(Map::is_empty);
    no_patterns
        && matches!(
            map.get("additionalProperties"),
            None | Some(Value::Bool(true))
        )
}

fn partial_schema(map: &Map<String, Value>, key: &str) -> Option<Value> {
    if let Some(patterns) = map.get("patternProperties").and_then(Value::as_object) {
        // Patterns are matched literally (the emitted subset has none).
        if let Some((_, schema)) = patterns
            .iter()
            .find(|(pattern, _)| key.contains(pattern.trim_matches(['^', '$'])))
        {
            return Some(schema.clone());
        }
    }
    match map.get("additionalProperties") {
        Some(Value::Bool(_)) | None => None,
        Some(schema) => Some(schema.clone()),
    }
}

/// Kuhn's augmenting paths: `edges[i]` lists the right vertices `i` may match.
fn max_matching<T>(left: usize, right: usize, edges: &[Vec<(usize, T)>]) -> Vec<Option<usize>> {
    fn augment<T>(
        i: usize,
        edges: &[Vec<(usize, T)>],
        seen: &mut [bool],
        owner: &mut [Option<usize>],
    ) -> bool {
        for (j, _) in &edges[i] {
            if seen[*j] {
                continue;
            }
            seen[*j] = true;
            if owner[*j].is_none_or(|other| augment(other, edges, seen, owner)) {
                owner[*j] = Some(i);
                return true;
            }
        }
        false
    }
    let mut owner: Vec<Option<usize>> = vec![None; right];
    for i in 0..left {
        let mut seen = vec![false; right];
        augment(i, edges, &mut seen, &mut owner);
    }
    let mut matching = vec![None; left];
    for (j, i) in owner.iter().enumerate() {
        if let Some(i) = i {
            matching[*i] = Some(j);
        }
    }
    matching
}

// ---------------------------------------------------------------------------------------------
// Protobuf
// ---------------------------------------------------------------------------------------------

/// Which of buf's breaking-change categories the protobuf check applies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ProtoCategory {
    /// Changes that break the binary encoding or the JSON mapping (buf's recommended minimum).
    #[default]
    WireJson,
    /// Changes that break the binary encoding only.
    Wire,
}

/// A `.proto` text that does not parse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtoError {
    /// Which file: `v2.proto`.
    pub file: String,
    /// protox's message.
    pub message: String,
}

impl fmt::Display for ProtoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} does not parse as proto3: {}",
            self.file, self.message
        )
    }
}

impl std::error::Error for ProtoError {}

struct SourceResolver {
    name: String,
    source: String,
}

impl protox::file::FileResolver for SourceResolver {
    fn open_file(&self, name: &str) -> Result<protox::file::File, protox::Error> {
        if name == self.name {
            protox::file::File::from_source(name, &self.source)
        } else {
            Err(protox::Error::file_not_found(name))
        }
    }
}

/// Parses and links one `.proto` text (well-known `google/protobuf/*` imports resolve).
pub fn parse_proto(file_name: &str, source: &str) -> Result<FileDescriptorProto, ProtoError> {
    let mut resolver = protox::file::ChainFileResolver::new();
    resolver.add(SourceResolver {
        name: file_name.to_owned(),
        source: source.to_owned(),
    });
    resolver.add(protox::file::GoogleFileResolver::new());
    let mut compiler = protox::Compiler::with_file_resolver(resolver);
    compiler.open_file(file_name).map_err(|err| ProtoError {
        file: file_name.to_owned(),
        message: err.to_string(),
    })?;
    compiler
        .file_descriptor_set()
        .file
        .into_iter()
        .find(|file| file.name() == file_name)
        .ok_or_else(|| ProtoError {
            file: file_name.to_owned(),
            message: "no file descriptor produced".into(),
        })
}

struct ProtoIndex<'a> {
    package: String,
    messages: BTreeMap<String, &'a DescriptorProto>,
    enums: BTreeMap<String, &'a EnumDescriptorProto>,
}

impl<'a> ProtoIndex<'a> {
    fn new(file: &'a FileDescriptorProto) -> Self {
        let package = file.package().to_owned();
        let prefix = if package.is_empty() {
            String::from(".")
        } else {
            format!(".{package}.")
        };
        let mut index = ProtoIndex {
            package,
            messages: BTreeMap::new(),
            enums: BTreeMap::new(),
        };
        for message in &file.message_type {
            index.add_message(&prefix, message);
        }
        for enumeration in &file.enum_type {
            index
                .enums
                .insert(format!("{prefix}{}", enumeration.name()), enumeration);
        }
        index
    }

    fn add_message(&mut self, prefix: &str, message: &'a DescriptorProto) {
        let full = format!("{prefix}{}", message.name());
        for nested in &message.nested_type {
            self.add_message(&format!("{full}."), nested);
        }
        for enumeration in &message.enum_type {
            self.enums
                .insert(format!("{full}.{}", enumeration.name()), enumeration);
        }
        self.messages.insert(full, message);
    }

    /// The name relative to the package (`.orders.v2.Line` → `Line`).
    fn relative<'n>(&self, full: &'n str) -> &'n str {
        let full = full.trim_start_matches('.');
        if self.package.is_empty() {
            full
        } else {
            full.strip_prefix(&self.package)
                .map(|rest| rest.trim_start_matches('.'))
                .unwrap_or(full)
        }
    }

    /// The event's message: named like the hint (the schema's title, with or without a
    /// `V<n>` suffix), else the only top-level message no field refers to, else the first.
    fn root(
        &self,
        file: &'a FileDescriptorProto,
        hint: Option<&str>,
    ) -> Option<(&'a DescriptorProto, String)> {
        let prefix = if self.package.is_empty() {
            String::from(".")
        } else {
            format!(".{}.", self.package)
        };
        let top: Vec<&DescriptorProto> = file.message_type.iter().collect();
        if let Some(hint) = hint {
            // Titles of enum-variant events read `ShipmentEvent::Packed`; messages `ShipmentEventPackedV1`.
            let hint = hint.replace("::", "");
            let hint = hint.as_str();
            let base = strip_version_suffix(hint);
            if let Some(message) = top
                .iter()
                .find(|m| m.name() == hint)
                .or_else(|| top.iter().find(|m| strip_version_suffix(m.name()) == base))
            {
                return Some((message, format!("{prefix}{}", message.name())));
            }
        }
        let referenced: BTreeSet<&str> = self
            .messages
            .values()
            .flat_map(|m| m.field.iter())
            .map(|f| f.type_name())
            .filter(|name| !name.is_empty())
            .collect();
        let roots: Vec<&&DescriptorProto> = top
            .iter()
            .filter(|m| !referenced.contains(format!("{prefix}{}", m.name()).as_str()))
            .collect();
        let message = if roots.len() == 1 {
            roots[0]
        } else {
            top.first()?
        };
        Some((message, format!("{prefix}{}", message.name())))
    }
}

fn strip_version_suffix(name: &str) -> &str {
    let trimmed = name.trim_end_matches(|c: char| c.is_ascii_digit());
    if trimmed.len() < name.len()
        && let Some(base) = trimmed.strip_suffix('V')
        && !base.is_empty()
    {
        return base;
    }
    name
}

fn wire_json_group(ty: ProtoType) -> u8 {
    match ty {
        ProtoType::Int32 | ProtoType::Uint32 => 1,
        ProtoType::Int64 | ProtoType::Uint64 => 2,
        ProtoType::Fixed32 | ProtoType::Sfixed32 => 3,
        ProtoType::Fixed64 | ProtoType::Sfixed64 => 4,
        ProtoType::Bool => 5,
        ProtoType::Sint32 => 6,
        ProtoType::Sint64 => 7,
        ProtoType::String => 8,
        ProtoType::Bytes => 9,
        ProtoType::Double => 10,
        ProtoType::Float => 11,
        ProtoType::Group => 12,
        ProtoType::Message => 13,
        ProtoType::Enum => 14,
    }
}

fn wire_group(ty: ProtoType) -> u8 {
    match ty {
        ProtoType::Int32
        | ProtoType::Int64
        | ProtoType::Uint32
        | ProtoType::Uint64
        | ProtoType::Bool => 1,
        ProtoType::Sint32 | ProtoType::Sint64 => 2,
        ProtoType::String => 3,
        ProtoType::Bytes => 4,
        ProtoType::Fixed32 | ProtoType::Sfixed32 => 5,
        ProtoType::Fixed64 | ProtoType::Sfixed64 => 6,
        ProtoType::Double => 7,
        ProtoType::Float => 8,
        ProtoType::Group => 9,
        ProtoType::Message => 10,
        ProtoType::Enum => 11,
    }
}

fn proto_type_name(ty: ProtoType) -> &'static str {
    match ty {
        ProtoType::Double => "double",
        ProtoType::Float => "float",
        ProtoType::Int64 => "int64",
        ProtoType::Uint64 => "uint64",
        ProtoType::Int32 => "int32",
        ProtoType::Fixed64 => "fixed64",
        ProtoType::Fixed32 => "fixed32",
        ProtoType::Bool => "bool",
        ProtoType::String => "string",
        ProtoType::Group => "group",
        ProtoType::Message => "message",
        ProtoType::Bytes => "bytes",
        ProtoType::Uint32 => "uint32",
        ProtoType::Enum => "enum",
        ProtoType::Sfixed32 => "sfixed32",
        ProtoType::Sfixed64 => "sfixed64",
        ProtoType::Sint32 => "sint32",
        ProtoType::Sint64 => "sint64",
    }
}

/// The JSON name protoc derives: `order_id` → `orderId`.
fn default_json_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for c in name.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

fn json_name(field: &FieldDescriptorProto) -> String {
    field
        .json_name
        .clone()
        .unwrap_or_else(|| default_json_name(field.name()))
}

fn reserved_number(message: &DescriptorProto, number: i32) -> bool {
    message
        .reserved_range
        .iter()
        .any(|range| range.start() <= number && number < range.end())
}

fn reserved_enum_number(enumeration: &EnumDescriptorProto, number: i32) -> bool {
    // Enum reserved ranges are inclusive.
    enumeration
        .reserved_range
        .iter()
        .any(|range| range.start() <= number && number <= range.end())
}

/// A real (not proto3-`optional` synthetic) oneof a field belongs to.
fn oneof_name(message: &DescriptorProto, field: &FieldDescriptorProto) -> Option<String> {
    if field.proto3_optional() {
        return None;
    }
    let index = usize::try_from(field.oneof_index?).ok()?;
    message
        .oneof_decl
        .get(index)
        .map(|oneof| oneof.name().to_owned())
}

struct ProtoDiffer<'a> {
    old: ProtoIndex<'a>,
    new: ProtoIndex<'a>,
    old_root: String,
    new_root: String,
    category: ProtoCategory,
    seen: HashSet<(String, String)>,
    out: Vec<Difference>,
}

/// Lists the buf breaking changes (category `category`) from the `old` to the `new` `.proto`
/// text of one event. `root` names the event's message (the JSON schema's `title`); without it
/// the only top-level message that no field refers to is taken. Pointers are JSON pointers of
/// the fields (`/properties/lines/items/properties/sku`).
pub fn diff_proto(
    old: &str,
    new: &str,
    root: Option<&str>,
    category: ProtoCategory,
) -> Result<Vec<Difference>, ProtoError> {
    let old_file = parse_proto("old.proto", old)?;
    let new_file = parse_proto("new.proto", new)?;
    let old_index = ProtoIndex::new(&old_file);
    let new_index = ProtoIndex::new(&new_file);
    let (Some((old_root, old_name)), Some((new_root, new_name))) = (
        old_index.root(&old_file, root),
        new_index.root(&new_file, root),
    ) else {
        return Ok(Vec::new());
    };
    let mut differ = ProtoDiffer {
        old: old_index,
        new: new_index,
        old_root: old_name.clone(),
        new_root: new_name.clone(),
        category,
        seen: HashSet::new(),
        out: Vec::new(),
    };
    differ.seen.insert((old_name, new_name));
    differ.compare_message(old_root, new_root, &mut Vec::new());
    Ok(differ.out)
}

impl ProtoDiffer<'_> {
    fn push(&mut self, path: &[String], rule: Rule, detail: String) {
        self.out.push(Difference {
            rule,
            pointer: pointer(path),
            detail,
        });
    }

    /// The type name with the package removed and the event's message written `<event>`, so
    /// that `.orders.v1.OrderPlacedV1.Line` and `.orders.v2.OrderPlacedV2.Line` match.
    fn comparable(&self, index_is_old: bool, full: &str) -> String {
        let (index, root) = if index_is_old {
            (&self.old, &self.old_root)
        } else {
            (&self.new, &self.new_root)
        };
        if full == root {
            return "<event>".into();
        }
        if let Some(rest) = full.strip_prefix(root.as_str())
            && rest.starts_with('.')
        {
            return format!("<event>{rest}");
        }
        index.relative(full).to_owned()
    }

    fn compare_message(
        &mut self,
        old: &DescriptorProto,
        new: &DescriptorProto,
        path: &mut Vec<String>,
    ) {
        let wire_json = self.category == ProtoCategory::WireJson;
        let message_name = new.name().to_owned();

        // Reserved ranges and names may only grow.
        for range in &old.reserved_range {
            let kept = (range.start()..range.end()).all(|n| reserved_number(new, n));
            if !kept {
                let detail = format!(
                    "message `{message_name}` no longer reserves {}",
                    range_text(range.start(), range.end() - 1)
                );
                self.push(path, Rule::ReservedMessageNoDelete, detail);
            }
        }
        for name in &old.reserved_name {
            if !new.reserved_name.contains(name) {
                self.push(
                    path,
                    Rule::ReservedMessageNoDelete,
                    format!("message `{message_name}` no longer reserves \"{name}\""),
                );
            }
        }

        let new_by_number: BTreeMap<i32, &FieldDescriptorProto> =
            new.field.iter().map(|f| (f.number(), f)).collect();
        let mut old_fields: Vec<&FieldDescriptorProto> = old.field.iter().collect();
        old_fields.sort_by_key(|f| f.number());
        for old_field in old_fields {
            let number = old_field.number();
            path.push("properties".into());
            path.push(old_field.name().to_owned());
            match new_by_number.get(&number) {
                None => {
                    if !reserved_number(new, number) {
                        let detail = format!(
                            "field `{}` = {number} of `{message_name}` deleted without `reserved {number};`",
                            old_field.name()
                        );
                        self.push(path, Rule::FieldNoDeleteUnlessNumberReserved, detail);
                    }
                    if wire_json && !new.reserved_name.iter().any(|n| n == old_field.name()) {
                        let detail = format!(
                            "field `{}` = {number} of `{message_name}` deleted without `reserved \"{}\";`",
                            old_field.name(),
                            old_field.name()
                        );
                        self.push(path, Rule::FieldNoDeleteUnlessNameReserved, detail);
                    }
                }
                Some(new_field) => self.compare_field(old, new, old_field, new_field, path),
            }
            path.truncate(path.len() - 2);
        }
    }

    fn compare_field(
        &mut self,
        old_message: &DescriptorProto,
        new_message: &DescriptorProto,
        old: &FieldDescriptorProto,
        new: &FieldDescriptorProto,
        path: &mut Vec<String>,
    ) {
        let wire_json = self.category == ProtoCategory::WireJson;
        let number = old.number();
        let message_name = new_message.name().to_owned();
        if wire_json && old.name() != new.name() {
            let detail = format!(
                "field {number} of `{message_name}` was `{}`, now `{}`",
                old.name(),
                new.name()
            );
            self.push(path, Rule::FieldSameName, detail);
        } else if wire_json && json_name(old) != json_name(new) {
            let detail = format!(
                "field {number} of `{message_name}`: JSON name `{}` → `{}`",
                json_name(old),
                json_name(new)
            );
            self.push(path, Rule::FieldSameJsonName, detail);
        }

        let old_repeated = old.label() == Label::Repeated;
        let new_repeated = new.label() == Label::Repeated;
        if old_repeated != new_repeated {
            let text = |repeated: bool| if repeated { "repeated" } else { "singular" };
            let detail = format!(
                "field `{}` = {number}: {} → {}",
                new.name(),
                text(old_repeated),
                text(new_repeated)
            );
            self.push(path, Rule::FieldWireJsonCompatibleCardinality, detail);
            return;
        }

        let (old_ty, new_ty) = (old.r#type(), new.r#type());
        let (group, rule) = if wire_json {
            (
                wire_json_group as fn(ProtoType) -> u8,
                Rule::FieldWireJsonCompatibleType,
            )
        } else {
            (
                wire_group as fn(ProtoType) -> u8,
                Rule::FieldWireCompatibleType,
            )
        };
        let string_to_bytes =
            !wire_json && old_ty == ProtoType::String && new_ty == ProtoType::Bytes;
        if group(old_ty) != group(new_ty) && !string_to_bytes {
            let detail = format!(
                "field `{}` = {number}: {} → {}",
                new.name(),
                self.type_text(true, old),
                self.type_text(false, new)
            );
            self.push(path, rule, detail);
            return;
        }

        if old_ty == new_ty
            && matches!(
                old_ty,
                ProtoType::Message | ProtoType::Group | ProtoType::Enum
            )
        {
            let old_name = self.comparable(true, old.type_name());
            let new_name = self.comparable(false, new.type_name());
            let old_short = old_name.rsplit('.').next().unwrap_or_default().to_owned();
            let new_short = new_name.rsplit('.').next().unwrap_or_default().to_owned();
            if old_ty == ProtoType::Enum {
                // buf: enums match by short name, and the old values must remain.
                if old_short != new_short {
                    let detail = format!(
                        "field `{}` = {number}: enum {} → {}",
                        new.name(),
                        self.type_text(true, old),
                        self.type_text(false, new)
                    );
                    self.push(path, rule, detail);
                } else if let (Some(old_enum), Some(new_enum)) = (
                    self.old.enums.get(old.type_name()).copied(),
                    self.new.enums.get(new.type_name()).copied(),
                ) {
                    self.compare_enum(old_enum, new_enum, path);
                }
            } else if old_name != new_name {
                let detail = format!(
                    "field `{}` = {number}: message {} → {}",
                    new.name(),
                    self.type_text(true, old),
                    self.type_text(false, new)
                );
                self.push(path, rule, detail);
            } else if let (Some(old_type), Some(new_type)) = (
                self.old.messages.get(old.type_name()).copied(),
                self.new.messages.get(new.type_name()).copied(),
            ) {
                let key = (old.type_name().to_owned(), new.type_name().to_owned());
                if self.seen.insert(key) {
                    let map_entry = new_type.options.as_ref().is_some_and(|o| o.map_entry());
                    if map_entry {
                        path.push("additionalProperties".into());
                        // Compare the value fields of the two map entries directly.
                        let old_value = old_type.field.iter().find(|f| f.number() == 2);
                        let new_value = new_type.field.iter().find(|f| f.number() == 2);
                        if let (Some(a), Some(b)) = (old_value, new_value) {
                            self.compare_field(old_type, new_type, a, b, path);
                        }
                        path.pop();
                    } else {
                        if new_repeated {
                            path.push("items".into());
                        }
                        self.compare_message(old_type, new_type, path);
                        if new_repeated {
                            path.pop();
                        }
                    }
                }
            }
        }

        if wire_json {
            let (old_oneof, new_oneof) =
                (oneof_name(old_message, old), oneof_name(new_message, new));
            if old_oneof != new_oneof {
                let text = |name: &Option<String>| {
                    name.as_deref()
                        .map_or("no oneof".to_owned(), |n| format!("oneof `{n}`"))
                };
                let detail = format!(
                    "field `{}` = {number}: {} → {}",
                    new.name(),
                    text(&old_oneof),
                    text(&new_oneof)
                );
                self.push(path, Rule::FieldSameOneof, detail);
            }
        }
    }

    fn type_text(&self, old: bool, field: &FieldDescriptorProto) -> String {
        let index = if old { &self.old } else { &self.new };
        match field.r#type() {
            ProtoType::Message | ProtoType::Enum | ProtoType::Group => {
                index.relative(field.type_name()).to_owned()
            }
            other => proto_type_name(other).to_owned(),
        }
    }

    fn compare_enum(
        &mut self,
        old: &EnumDescriptorProto,
        new: &EnumDescriptorProto,
        path: &[String],
    ) {
        let key = (
            format!("enum:{}", old.name()),
            format!("enum:{}", new.name()),
        );
        if !self.seen.insert(key) {
            return;
        }
        let wire_json = self.category == ProtoCategory::WireJson;
        let enum_name = new.name().to_owned();
        for range in &old.reserved_range {
            if !(range.start()..=range.end()).all(|n| reserved_enum_number(new, n)) {
                let detail = format!(
                    "enum `{enum_name}` no longer reserves {}",
                    range_text(range.start(), range.end())
                );
                self.push(path, Rule::ReservedEnumNoDelete, detail);
            }
        }
        for name in &old.reserved_name {
            if !new.reserved_name.contains(name) {
                self.push(
                    path,
                    Rule::ReservedEnumNoDelete,
                    format!("enum `{enum_name}` no longer reserves \"{name}\""),
                );
            }
        }
        for value in &old.value {
            let number = value.number();
            let same_number: Vec<_> = new.value.iter().filter(|v| v.number() == number).collect();
            if same_number.is_empty() {
                if !reserved_enum_number(new, number) {
                    let detail = format!(
                        "value `{}` = {number} of enum `{enum_name}` deleted without `reserved {number};`",
                        value.name()
                    );
                    self.push(path, Rule::EnumValueNoDeleteUnlessNumberReserved, detail);
                }
                if wire_json && !new.reserved_name.iter().any(|n| n == value.name()) {
                    let detail = format!(
                        "value `{}` = {number} of enum `{enum_name}` deleted without `reserved \"{}\";`",
                        value.name(),
                        value.name()
                    );
                    self.push(path, Rule::EnumValueNoDeleteUnlessNameReserved, detail);
                }
            } else if wire_json && !same_number.iter().any(|v| v.name() == value.name()) {
                let detail = format!(
                    "enum `{enum_name}` value {number} was `{}`, now `{}`",
                    value.name(),
                    same_number[0].name()
                );
                self.push(path, Rule::EnumValueSameName, detail);
            }
        }
    }
}

/// The contract of a `.proto` text as canonical text: every message and enum with its
/// fields (number, name, JSON name, label, type, oneof), values and reservations, names
/// relative to the package and the event's message written `<event>`. Comments, options and
/// the event message's own name are left out, so a renamed Rust type is not a change.
pub(crate) fn proto_contract(text: &str, root: Option<&str>) -> Result<String, ProtoError> {
    let file = parse_proto("contract.proto", text)?;
    let index = ProtoIndex::new(&file);
    let root_name = index
        .root(&file, root)
        .map(|(_, name)| name)
        .unwrap_or_default();
    let comparable = |full: &str| -> String {
        if !root_name.is_empty() {
            if full == root_name {
                return "<event>".into();
            }
            if let Some(rest) = full.strip_prefix(root_name.as_str())
                && rest.starts_with('.')
            {
                return format!("<event>{rest}");
            }
        }
        index.relative(full).to_owned()
    };
    let mut lines = BTreeMap::new();
    for (full, message) in &index.messages {
        let mut text = String::new();
        let map_entry = message.options.as_ref().is_some_and(|o| o.map_entry());
        text.push_str(&format!(
            "message {}{}\n",
            comparable(full),
            if map_entry { " map_entry" } else { "" }
        ));
        let mut fields: Vec<&FieldDescriptorProto> = message.field.iter().collect();
        fields.sort_by_key(|f| f.number());
        for field in fields {
            let ty = match field.r#type() {
                ProtoType::Message | ProtoType::Enum | ProtoType::Group => {
                    comparable(field.type_name())
                }
                other => proto_type_name(other).to_owned(),
            };
            text.push_str(&format!(
                "  {} {} json={} {:?} {ty} oneof={} optional={}\n",
                field.number(),
                field.name(),
                json_name(field),
                field.label(),
                oneof_name(message, field).unwrap_or_default(),
                field.proto3_optional()
            ));
        }
        for range in &message.reserved_range {
            text.push_str(&format!(
                "  reserved {}\n",
                range_text(range.start(), range.end() - 1)
            ));
        }
        for name in &message.reserved_name {
            text.push_str(&format!("  reserved \"{name}\"\n"));
        }
        lines.insert(comparable(full), text);
    }
    for (full, enumeration) in &index.enums {
        let mut text = format!("enum {}\n", comparable(full));
        let mut values: Vec<_> = enumeration.value.iter().collect();
        values.sort_by_key(|v| (v.number(), v.name().to_owned()));
        for value in values {
            text.push_str(&format!("  {} {}\n", value.number(), value.name()));
        }
        for range in &enumeration.reserved_range {
            text.push_str(&format!(
                "  reserved {}\n",
                range_text(range.start(), range.end())
            ));
        }
        for name in &enumeration.reserved_name {
            text.push_str(&format!("  reserved \"{name}\"\n"));
        }
        lines.insert(format!("~enum {}", comparable(full)), text);
    }
    Ok(lines.into_values().collect())
}

fn range_text(start: i32, end_inclusive: i32) -> String {
    if start == end_inclusive {
        start.to_string()
    } else {
        format!("{start} to {end_inclusive}")
    }
}

// ---------------------------------------------------------------------------------------------
// Checking versions
// ---------------------------------------------------------------------------------------------

/// One version of an event as the checker sees it.
#[derive(Clone, Copy, Debug)]
pub struct SchemaVersion<'a> {
    /// The version number.
    pub version: u32,
    /// The JSON Schema document.
    pub schema: &'a Value,
    /// The `.proto` text, when there is one.
    pub proto: Option<&'a str>,
}

impl<'a> SchemaVersion<'a> {
    /// A version known only by its JSON schema.
    pub fn json(version: u32, schema: &'a Value) -> Self {
        SchemaVersion {
            version,
            schema,
            proto: None,
        }
    }

    /// A version with its JSON schema and its `.proto` text.
    pub fn with_proto(version: u32, schema: &'a Value, proto: &'a str) -> Self {
        SchemaVersion {
            version,
            schema,
            proto: Some(proto),
        }
    }

    fn title(&self) -> Option<&'a str> {
        self.schema.get("title").and_then(Value::as_str)
    }
}

/// Which promise a violation breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Consumers on the new version read data written with the old one.
    Backward,
    /// Consumers on the old version read data written with the new one.
    Forward,
    /// The protobuf encoding stays wire and JSON compatible (buf), both ways.
    Wire,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Backward => "backward",
            Direction::Forward => "forward",
            Direction::Wire => "wire",
        })
    }
}

/// A change that the event's compatibility mode forbids.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The event's wire name: `orders.order_placed`.
    pub event: String,
    /// The published version the new one is checked against.
    pub old_version: u32,
    /// The version being added.
    pub new_version: u32,
    /// JSON pointer of the field: `/properties/lines/items/properties/sku`.
    pub pointer: String,
    /// The rule broken.
    pub rule: Rule,
    /// The mode that forbids it.
    pub mode: CompatibilityMode,
    /// The half of the mode that is broken.
    pub direction: Direction,
    /// What changed, for example `int64 → int32`.
    pub detail: String,
    /// How to fix it, concretely.
    pub fix: String,
}

impl Violation {
    /// The field as a Rust-ish path: `lines[].sku`, `metadata{}`, or `the event itself`.
    pub fn field(&self) -> String {
        field_path(&self.pointer)
    }
}

/// `/properties/lines/items/properties/sku` → `lines[].sku`.
fn field_path(pointer: &str) -> String {
    let mut out = String::new();
    let mut segments = pointer
        .split('/')
        .skip(1)
        .map(|s| s.replace("~1", "/").replace("~0", "~"));
    while let Some(segment) = segments.next() {
        match segment.as_str() {
            "properties" => {
                if let Some(name) = segments.next() {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(&name);
                }
            }
            "items" => out.push_str("[]"),
            "additionalProperties" => out.push_str("{}"),
            "prefixItems" => {
                if let Some(index) = segments.next() {
                    out.push_str(&format!(".{index}"));
                }
            }
            "anyOf" | "oneOf" | "allOf" => {
                segments.next();
            }
            _ => {}
        }
    }
    out
}

fn last_field(pointer: &str) -> String {
    let path = field_path(pointer);
    let name = path
        .rsplit('.')
        .next()
        .unwrap_or_default()
        .trim_end_matches("[]")
        .trim_end_matches("{}");
    if name.is_empty() {
        "the event".to_owned()
    } else {
        name.to_owned()
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (old, new) = (
            format!("v{}", self.old_version),
            format!("v{}", self.new_version),
        );
        let promise = match self.direction {
            Direction::Backward => {
                format!("consumers on {new} must read events written with {old}")
            }
            Direction::Forward => {
                format!("consumers still on {old} must read events written with {new}")
            }
            Direction::Wire => format!(
                "the protobuf encodings of {old} and {new} must stay wire and JSON compatible (buf WIRE_JSON)"
            ),
        };
        let field = self.field();
        let place = if field.is_empty() {
            "the event itself".to_owned()
        } else {
            format!("field `{field}` ({})", self.pointer)
        };
        let (writer, reader) = match self.direction {
            Direction::Forward => (&new, &old),
            _ => (&old, &new),
        };
        let explanation = explain(self.rule, writer, reader);
        write!(
            f,
            "{} {old} → {new} breaks {} compatibility ({promise}): at {place}, rule {} — {explanation}",
            self.event, self.mode, self.rule
        )?;
        if !self.detail.is_empty() {
            write!(f, " ({})", self.detail)?;
        }
        write!(f, ". Fix: {}", self.fix)
    }
}

/// One sentence on what the rule means, with `writer`/`reader` naming the versions.
fn explain(rule: Rule, writer: &str, reader: &str) -> String {
    use Rule::*;
    match rule {
        PropertyRemovedFromClosedContentModel => format!(
            "{writer} has this field and {reader} does not; {reader}'s object is closed (additionalProperties: false), so it rejects {writer} data that carries it"
        ),
        RequiredPropertyAddedToUnopenContentModel => {
            format!("{reader} requires this field and gives it no default, but {writer} data does not have it")
        }
        RequiredAttributeAdded => {
            format!("{reader} requires this field and gives it no default, but it is optional in {writer}, so {writer} data may lack it")
        }
        PropertyAddedToOpenContentModel | PropertyAddedNotCoveredByPartiallyOpenContentModel => {
            format!("{reader} adds a field that {writer}'s open object may already carry with another type")
        }
        PropertyRemovedNotCoveredByPartiallyOpenContentModel | ItemRemovedNotCoveredByPartiallyOpenContentModel => {
            format!("{reader} dropped this member and its additional-properties schema does not accept {writer}'s values")
        }
        TypeChanged => format!("{reader} expects a different type than {writer} writes"),
        TypeNarrowed => format!("{reader} accepts fewer values than {writer} writes"),
        FormatAdded => format!("{reader} requires a format that {writer} did not guarantee"),
        FormatChanged => format!("{reader} expects another format than {writer} writes"),
        FormatNarrowed => format!("{reader}'s numeric range is smaller than {writer}'s"),
        EnumArrayNarrowed | EnumArrayChanged => format!("{writer} may write enum values that {reader} does not know"),
        SumTypeNarrowed | CombinedTypeSubschemasChanged => {
            format!("{writer} may write a variant that {reader} cannot read")
        }
        CombinedTypeChanged | ProductTypeExtended => format!("{reader} combines its alternatives differently from {writer}"),
        SchemaAdded => format!("{reader} constrains something {writer} left free"),
        UniqueItemsAdded => format!("{reader} requires unique items (a set) but {writer} may write duplicates"),
        AdditionalPropertiesRemoved | AdditionalPropertiesNarrowed => {
            format!("{reader} restricts extra properties that {writer} allowed")
        }
        AdditionalItemsRemoved | AdditionalItemsNarrowed | ItemAddedToOpenContentModel => {
            format!("{reader} restricts tuple items that {writer} allowed")
        }
        ItemRemovedFromClosedContentModel => format!("{writer}'s tuple has more items than {reader}'s closed tuple accepts"),
        ItemAddedNotCoveredByPartiallyOpenContentModel => format!("{reader}'s new tuple item does not fit what {writer} allowed there"),
        MaxLengthAdded | MaxLengthDecreased | MinLengthAdded | MinLengthIncreased | PatternAdded | PatternChanged
        | MaximumAdded | MaximumDecreased | MinimumAdded | MinimumIncreased | ExclusiveMaximumAdded
        | ExclusiveMaximumDecreased | ExclusiveMinimumAdded | ExclusiveMinimumIncreased | MultipleOfAdded
        | MultipleOfExpanded | MultipleOfChanged | MaxPropertiesAdded | MaxPropertiesDecreased | MinPropertiesAdded
        | MinPropertiesIncreased | MaxItemsAdded | MaxItemsDecreased | MinItemsAdded | MinItemsIncreased => {
            format!("{reader} is stricter than {writer}")
        }
        FieldNoDeleteUnlessNumberReserved => {
            "the field was deleted but its number is not reserved, so a later field could reuse it and misread old bytes".to_owned()
        }
        FieldNoDeleteUnlessNameReserved => {
            "the field was deleted but its name is not reserved, so a later field could reuse it and misread old JSON".to_owned()
        }
        FieldSameName | FieldSameJsonName => "the field number now carries another name, which breaks the JSON mapping".to_owned(),
        FieldWireJsonCompatibleType | FieldWireCompatibleType => {
            "the field number now carries a type that decodes the old bytes or JSON differently".to_owned()
        }
        FieldWireJsonCompatibleCardinality => "the field changed between singular and repeated".to_owned(),
        FieldSameOneof => "the field moved into, out of or between oneofs".to_owned(),
        EnumValueNoDeleteUnlessNumberReserved | EnumValueNoDeleteUnlessNameReserved => {
            "an enum value was deleted without reserving it".to_owned()
        }
        EnumValueSameName => "an enum number now carries another name, which breaks the JSON mapping".to_owned(),
        ReservedMessageNoDelete | ReservedEnumNoDelete => "a reservation was removed, so a retired number or name could come back".to_owned(),
        _ => format!("{reader} cannot read everything {writer} writes"),
    }
}

/// Checks `candidate` against the `published` versions of `event` under `mode`.
///
/// Non-transitive modes check the latest published version older than the candidate,
/// transitive modes every one of them. An empty result means the candidate may be published.
/// Versions in `published` that are not older than the candidate are ignored.
pub fn check(
    event: &str,
    mode: CompatibilityMode,
    candidate: &SchemaVersion<'_>,
    published: &[SchemaVersion<'_>],
) -> Result<Vec<Violation>, ProtoError> {
    check_with(event, mode, ProtoCategory::WireJson, candidate, published)
}

/// [`check`] with a choice of buf category for the protobuf half.
pub fn check_with(
    event: &str,
    mode: CompatibilityMode,
    category: ProtoCategory,
    candidate: &SchemaVersion<'_>,
    published: &[SchemaVersion<'_>],
) -> Result<Vec<Violation>, ProtoError> {
    if mode == CompatibilityMode::None {
        return Ok(Vec::new());
    }
    let mut older: Vec<&SchemaVersion<'_>> = published
        .iter()
        .filter(|p| p.version < candidate.version)
        .collect();
    older.sort_by_key(|p| std::cmp::Reverse(p.version));
    if !mode.is_transitive() {
        older.truncate(1);
    }

    // Each half separately, to suggest the mode that would accept the change.
    let mut backward = Vec::new();
    let mut forward = Vec::new();
    let mut wire = Vec::new();
    for old in &older {
        let pair = (old.version, candidate.version);
        backward.extend(
            diff_json(old.schema, candidate.schema)
                .into_iter()
                .filter(|d| !d.is_compatible())
                .map(|d| (pair, d, *old)),
        );
        forward.extend(
            diff_json(candidate.schema, old.schema)
                .into_iter()
                .filter(|d| !d.is_compatible())
                .map(|d| (pair, d, *old)),
        );
        if let (Some(old_proto), Some(new_proto)) = (old.proto, candidate.proto) {
            let hint = candidate.title().or(old.title());
            let diffs =
                diff_proto(old_proto, new_proto, hint, category).map_err(|err| ProtoError {
                    file: format!("{event} v{}.proto or v{}.proto", pair.0, pair.1),
                    ..err
                })?;
            wire.extend(diffs.into_iter().map(|d| (pair, d, *old)));
        }
    }

    let alternative = match (backward.is_empty(), forward.is_empty(), wire.is_empty()) {
        (_, _, false) => CompatibilityMode::None,
        (true, false, true) => CompatibilityMode::from_parts(true, false, mode.is_transitive()),
        (false, true, true) => CompatibilityMode::from_parts(false, true, mode.is_transitive()),
        _ => CompatibilityMode::None,
    };

    let mut violations = Vec::new();
    let mut add = |direction: Direction,
                   list: Vec<((u32, u32), Difference, &SchemaVersion<'_>)>| {
        for ((old_version, new_version), diff, old) in list {
            let fix = fix_text(&FixContext {
                rule: diff.rule,
                direction,
                pointer: &diff.pointer,
                old_version,
                new_version,
                old_type: old.title(),
                alternative,
            });
            violations.push(Violation {
                event: event.to_owned(),
                old_version,
                new_version,
                pointer: diff.pointer,
                rule: diff.rule,
                mode,
                direction,
                detail: diff.detail,
                fix,
            });
        }
    };
    if mode.checks_backward() {
        add(Direction::Backward, backward);
    }
    if mode.checks_forward() {
        add(Direction::Forward, forward);
    }
    add(Direction::Wire, wire);
    violations.sort_by(|a, b| {
        (b.old_version, &a.pointer, a.direction as u8, a.rule).cmp(&(
            a.old_version,
            &b.pointer,
            b.direction as u8,
            b.rule,
        ))
    });
    Ok(violations)
}

struct FixContext<'a> {
    rule: Rule,
    direction: Direction,
    pointer: &'a str,
    old_version: u32,
    new_version: u32,
    old_type: Option<&'a str>,
    alternative: CompatibilityMode,
}

fn fix_text(cx: &FixContext<'_>) -> String {
    use Rule::*;
    let field = last_field(cx.pointer);
    let (old, new) = (cx.old_version, cx.new_version);
    // The convention for the type that keeps an old version: `OrderPlacedV2`.
    let old_type = cx.old_type.map_or_else(
        || format!("<the v{old} type>"),
        |title| format!("{}V{old}", strip_version_suffix(title)),
    );
    let upcaster = format!(
        "read v{old} events through an upcaster instead (#[event(version = {new}, upcast_from = {old_type})] with a From<{old_type}> impl)"
    );
    let mode_change = if cx.alternative == CompatibilityMode::None {
        "accept the break for this event with #[event(compatibility = \"NONE\")] (consumers must then be migrated by hand)".to_owned()
    } else {
        format!(
            "change the mode for this event with #[event(compatibility = \"{}\")] if {} is not needed",
            cx.alternative,
            match cx.direction {
                Direction::Backward => "reading old events with the new type",
                _ => "letting consumers on the old version read new events",
            }
        )
    };
    let first = match (cx.direction, cx.rule) {
        (
            Direction::Backward,
            RequiredPropertyAddedToUnopenContentModel | RequiredAttributeAdded,
        ) => {
            format!("add a default to `{field}` (make it Option<_> or #[serde(default)])")
        }
        (Direction::Backward, PropertyRemovedFromClosedContentModel) => {
            format!(
                "keep `{field}` in v{new} (deprecate it in its doc comment instead of removing it; v{old} events carry it)"
            )
        }
        (Direction::Forward, PropertyRemovedFromClosedContentModel) => format!(
            "v{old} consumers reject fields they do not know (closed content model), so `{field}` cannot be added under a forward mode: upgrade the consumers first"
        ),
        (
            Direction::Forward,
            RequiredPropertyAddedToUnopenContentModel | RequiredAttributeAdded,
        ) => {
            format!(
                "keep writing `{field}` in v{new} (v{old} consumers require it): keep it required, without Option"
            )
        }
        (
            _,
            TypeChanged | TypeNarrowed | FormatAdded | FormatChanged | FormatNarrowed | SchemaAdded,
        ) => {
            if cx.direction == Direction::Backward {
                format!(
                    "keep the type of `{field}` as in v{old} or only widen it (int32 → int64, float → double, integer → number, T → Option<T>, enum → String); for another type add a new field and keep `{field}`"
                )
            } else {
                format!(
                    "keep the type of `{field}` as in v{old} (v{old} consumers cannot read the new type; widening is backward, not forward, compatible)"
                )
            }
        }
        (Direction::Backward, EnumArrayNarrowed | EnumArrayChanged) => {
            format!(
                "keep every value of `{field}` that v{old} could write; add values instead of removing or renaming them"
            )
        }
        (Direction::Forward, EnumArrayNarrowed | EnumArrayChanged) => {
            format!(
                "v{old} consumers do not know the new values of `{field}`: add values only after the consumers are upgraded"
            )
        }
        (
            Direction::Backward,
            SumTypeNarrowed | CombinedTypeSubschemasChanged | CombinedTypeChanged,
        ) => {
            format!(
                "keep every variant of `{field}` that v{old} could write; add variants instead of removing or changing them"
            )
        }
        (
            Direction::Forward,
            SumTypeNarrowed | CombinedTypeSubschemasChanged | CombinedTypeChanged,
        ) => {
            format!(
                "v{old} consumers cannot read the new or changed variants of `{field}`: add them only after the consumers are upgraded"
            )
        }
        (_, UniqueItemsAdded) => {
            format!("keep `{field}` a list (Vec) as in v{old}; it may contain duplicates")
        }
        (_, FieldNoDeleteUnlessNumberReserved | FieldNoDeleteUnlessNameReserved) => format!(
            "reserve the deleted field (`reserved <number>; reserved \"{field}\";`): the proto emitter writes these from the registry lock's retired numbers, so emit v{new} through the registry"
        ),
        (_, FieldSameName | FieldSameJsonName) => format!(
            "a rename is a delete plus an add: give the renamed field a new number and retire the old one (or keep the name `{field}`, with #[serde(rename)] for the Rust side)"
        ),
        (
            _,
            FieldWireJsonCompatibleType
            | FieldWireCompatibleType
            | FieldWireJsonCompatibleCardinality
            | FieldSameOneof,
        ) => format!(
            "give `{field}` a new field number and retire the old one (the registry lock then reserves it), or keep its protobuf type within a compatible group (int32/uint32, int64/uint64, fixed32/sfixed32, fixed64/sfixed64)"
        ),
        (
            _,
            EnumValueNoDeleteUnlessNumberReserved
            | EnumValueNoDeleteUnlessNameReserved
            | EnumValueSameName,
        ) => "keep the enum value, or reserve its number and name in the enum".to_owned(),
        (_, ReservedMessageNoDelete | ReservedEnumNoDelete) => {
            "keep every reservation of the older version".to_owned()
        }
        (Direction::Backward, _) => {
            format!("revert the change to `{field}` or make it a widening of v{old}")
        }
        _ => format!("revert the change to `{field}`"),
    };
    match cx.direction {
        Direction::Backward => format!("{first}; or {upcaster}; or {mode_change}"),
        Direction::Forward => format!("{first}; or {mode_change}"),
        Direction::Wire => format!("{first}; or {mode_change}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn field_paths() {
        assert_eq!(
            field_path("/properties/lines/items/properties/sku"),
            "lines[].sku"
        );
        assert_eq!(
            field_path("/properties/tags/additionalProperties"),
            "tags{}"
        );
        assert_eq!(field_path(""), "");
        assert_eq!(last_field("/properties/lines/items/properties/sku"), "sku");
    }

    #[test]
    fn modes_parse() {
        assert_eq!(
            "backward-transitive".parse::<CompatibilityMode>().unwrap(),
            CompatibilityMode::BackwardTransitive
        );
        assert!("sideways".parse::<CompatibilityMode>().is_err());
        for mode in CompatibilityMode::ALL {
            assert_eq!(mode.as_str().parse::<CompatibilityMode>().unwrap(), mode);
        }
    }

    #[test]
    fn recursive_defs_terminate() {
        let schema = json!({
            "type": "object", "additionalProperties": false,
            "properties": { "child": { "anyOf": [{ "$ref": "#/$defs/Node" }, { "type": "null" }] } },
            "$defs": { "Node": { "type": "object", "additionalProperties": false,
                "properties": { "child": { "anyOf": [{ "$ref": "#/$defs/Node" }, { "type": "null" }] } } } }
        });
        assert!(diff_json(&schema, &schema).is_empty());
    }

    #[test]
    fn matching_is_maximal() {
        // 0 can take 0 or 1, 1 only 0: the greedy choice 0→0 must be undone.
        let edges = vec![vec![(0, ()), (1, ())], vec![(0, ())]];
        assert_eq!(max_matching(2, 2, &edges), vec![Some(1), Some(0)]);
    }
}
