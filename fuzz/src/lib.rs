//! The harnesses behind `cargo fuzz` targets for every decoder a record goes through. Each
//! target in `fuzz_targets/` is one call to a function here, which feeds its input to the public
//! API with the default [`Limits`] and lets errors be errors: only a panic, a sanitizer report, a
//! timeout or an allocation over the limit (`-malloc_limit_mb`) is a finding.
//!
//! | target | input | API |
//! |---|---|---|
//! | `binary_headers` | [`framing`] headers + payload | `binary::decode`, both bindings |
//! | `structured_json` | bytes | `structured::decode`, `cloudevents::from_json` |
//! | `protobuf` | bytes | `protobuf::decode`, `cloudevents::from_protobuf` |
//! | `record` | a [`framing::record`] | `decode_record`, then `RawEnvelope::decode` into [`events`] |
//! | `upcast` | 4 bytes of version (little-endian) + payload | `Message::decode_payload` of [`events`] |
//!
//! Each function returns whether the input decoded (through the deepest step for `record`), so
//! `examples/seeds.rs` can check that every seed it writes is a valid input.

pub mod events;
pub mod framing;

use event_runtime::Message;
use event_runtime::cloudevents::binary::{self, Binding};
use event_runtime::cloudevents::{self, Limits, decode_record, protobuf, structured};

use crate::events::{PARCEL_BOOKED, PARCEL_DISPATCHED, PARCEL_LOST, ParcelBooked, ParcelEvent};

/// Binary content mode: the headers and payload of [`framing::parse`], read with the Kafka and
/// the NATS binding.
pub fn binary_headers(data: &[u8]) -> bool {
    let framed = framing::parse(data);
    let limits = Limits::default();
    let mut decoded = false;
    for binding in [Binding::Kafka, Binding::Nats] {
        let headers = framed
            .headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_slice()));
        decoded |= binary::decode(headers, &framed.payload, binding, &limits).is_ok();
    }
    decoded
}

/// The JSON event format: the raw decoder, and the typed one (which reads a current-version
/// payload in the same pass as the attributes, and upcasts older ones).
pub fn structured_json(data: &[u8]) -> bool {
    let limits = Limits::default();
    let raw = structured::decode(data, &limits).is_ok();
    let _ = cloudevents::from_json::<ParcelBooked>(data, &limits);
    let _ = cloudevents::from_json::<ParcelEvent>(data, &limits);
    raw
}

/// The protobuf event format: the raw decoder and the typed one.
pub fn protobuf(data: &[u8]) -> bool {
    let limits = Limits::default();
    let raw = protobuf::decode(data, &limits).is_ok();
    let _ = cloudevents::from_protobuf::<ParcelBooked>(data, &limits);
    let _ = cloudevents::from_protobuf::<ParcelEvent>(data, &limits);
    raw
}

/// A stored record in any content mode, then its payload into both event types (through their
/// upcasters when the version is older).
pub fn record(data: &[u8]) -> bool {
    let record = framing::record(data);
    let Ok(raw) = decode_record(&record, &Limits::default()) else {
        return false;
    };
    let booked = raw.decode::<ParcelBooked>().is_ok();
    let event = raw.decode::<ParcelEvent>().is_ok();
    booked || event
}

/// A payload at an arbitrary version, into every wire type of both event types.
pub fn upcast(data: &[u8]) -> bool {
    let Some((version, payload)) = data.split_first_chunk::<4>() else {
        return false;
    };
    let version = u32::from_le_bytes(*version);
    let booked = ParcelBooked::decode_payload(PARCEL_BOOKED, version, payload).is_ok();
    let dispatched = ParcelEvent::decode_payload(PARCEL_DISPATCHED, version, payload).is_ok();
    let lost = ParcelEvent::decode_payload(PARCEL_LOST, version, payload).is_ok();
    booked || dispatched || lost
}
