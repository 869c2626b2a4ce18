//! The event types the `record` and `upcast` targets decode into: a struct at version 3 whose
//! chain mixes both kinds of upcaster (v1 -> v2 by `upcast_json`, the v1 Rust type being gone;
//! v2 -> v3 by `upcast_from` and `From`), and an enum whose variants decode through
//! `decode_variant`, one of them with a JSON upcaster of its own. The upcasters are written as a
//! user would write them: they return [`UpcastError`] for input they cannot lift, never panic.

use event_runtime::DomainEvent;
use event_runtime::error::UpcastError;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The wire name of [`ParcelBooked`] (and of [`ParcelBookedV2`]).
pub const PARCEL_BOOKED: &str = "fuzz.parcel_booked";
/// The wire name of [`ParcelEvent::Dispatched`].
pub const PARCEL_DISPATCHED: &str = "fuzz.parcel_dispatched";
/// The wire name of [`ParcelEvent::Lost`].
pub const PARCEL_LOST: &str = "fuzz.parcel_lost";

/// Version 2 of [`ParcelBooked`]: version 1 (`{"parcel", "kilos", "tag"?}`, its Rust type gone)
/// is read through [`grams_from_kilos`].
#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(
    context = "fuzz",
    name = "fuzz.parcel_booked",
    version = 2,
    upcast_json(from = 1, with = grams_from_kilos)
)]
pub struct ParcelBookedV2 {
    /// The parcel.
    #[event(key)]
    pub parcel: String,
    /// Weight.
    pub grams: u64,
    /// Handling labels.
    pub tags: Vec<String>,
}

/// A parcel was booked; version 3 added the sender's note and the dimensions.
#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(
    context = "fuzz",
    name = "fuzz.parcel_booked",
    version = 3,
    upcast_from = ParcelBookedV2
)]
pub struct ParcelBooked {
    /// The parcel.
    #[event(key)]
    pub parcel: String,
    /// Weight.
    pub grams: u64,
    /// Handling labels.
    pub tags: Vec<String>,
    /// The sender's note.
    #[serde(default)]
    pub note: Option<String>,
    /// Length, width and height in millimetres, when measured.
    #[serde(default)]
    pub dimensions: Option<[u32; 3]>,
}

impl From<ParcelBookedV2> for ParcelBooked {
    fn from(v2: ParcelBookedV2) -> Self {
        ParcelBooked {
            parcel: v2.parcel,
            grams: v2.grams,
            tags: v2.tags,
            note: None,
            dimensions: None,
        }
    }
}

/// Lifts `{"parcel", "kilos", "tag"?}` (version 1) to `{"parcel", "grams", "tags"}`.
///
/// # Errors
///
/// When the payload is not an object, `kilos` is not an unsigned integer or does not fit in grams,
/// or `tag` is not a string.
pub fn grams_from_kilos(mut v1: Value) -> Result<Value, UpcastError> {
    let object = v1
        .as_object_mut()
        .ok_or_else(|| UpcastError::new("payload is not an object"))?;
    let kilos = object
        .remove("kilos")
        .and_then(|k| k.as_u64())
        .ok_or_else(|| UpcastError::new("field `kilos` is missing or not an unsigned integer"))?;
    let grams = kilos
        .checked_mul(1000)
        .ok_or_else(|| UpcastError::new("field `kilos` is too large to be written in grams"))?;
    let tags = match object.remove("tag") {
        None | Some(Value::Null) => json!([]),
        Some(Value::String(tag)) => json!([tag]),
        Some(_) => return Err(UpcastError::new("field `tag` is not a string")),
    };
    object.insert("grams".into(), json!(grams));
    object.insert("tags".into(), tags);
    Ok(v1)
}

/// The later life of a parcel, one event type per variant.
#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(context = "fuzz")]
pub enum ParcelEvent {
    /// The parcel left; version 2 renamed `carrier_code` to `carrier`.
    #[event(
        name = "fuzz.parcel_dispatched",
        version = 2,
        upcast_json(from = 1, with = rename_carrier)
    )]
    Dispatched {
        /// The parcel.
        #[event(key)]
        parcel: String,
        /// Who carries it.
        carrier: String,
    },
    /// Lost in transit.
    #[event(name = "fuzz.parcel_lost")]
    Lost(#[event(key)] String),
}

/// Lifts `{"parcel", "carrier_code"}` (version 1 of `Dispatched`) to `{"parcel", "carrier"}`.
///
/// # Errors
///
/// When the payload is not an object or has no `carrier_code`.
pub fn rename_carrier(mut v1: Value) -> Result<Value, UpcastError> {
    let object = v1
        .as_object_mut()
        .ok_or_else(|| UpcastError::new("payload is not an object"))?;
    let carrier = object
        .remove("carrier_code")
        .ok_or_else(|| UpcastError::new("field `carrier_code` is missing"))?;
    object.insert("carrier".into(), carrier);
    Ok(v1)
}
