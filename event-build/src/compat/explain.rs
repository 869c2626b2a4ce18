//! A [`Violation`] in words: which promise it breaks, what the rule means for the two versions,
//! and how to fix it. Above the differs; [`check`](super::check) fills it in.

use std::fmt;

use super::mode::CompatibilityMode;
use super::proto::strip_version_suffix;
use super::rule::Rule;

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

/// What [`fix_text`] needs to know about one violation.
pub(super) struct FixContext<'a> {
    pub(super) rule: Rule,
    pub(super) direction: Direction,
    pub(super) pointer: &'a str,
    pub(super) old_version: u32,
    pub(super) new_version: u32,
    pub(super) old_type: Option<&'a str>,
    pub(super) alternative: CompatibilityMode,
}

pub(super) fn fix_text(cx: &FixContext<'_>) -> String {
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
}
