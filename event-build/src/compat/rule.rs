//! The kinds of schema change ([`Rule`]) and one change found between two versions
//! ([`Difference`]): what both differs ([`json`](super::json) and [`proto`](super::proto))
//! report. Next to [`mode`](super::mode) at the bottom of the compatibility checker.

use std::fmt;
use std::str::FromStr;

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

/// The JSON pointer of a path of property names and keywords.
pub(super) fn pointer(path: &[String]) -> String {
    let mut out = String::new();
    for segment in path {
        out.push('/');
        out.push_str(&segment.replace('~', "~0").replace('/', "~1"));
    }
    out
}
