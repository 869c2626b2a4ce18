use event_runtime::error::UpcastError;
use event_runtime::{DomainEvent, Envelope, Message};
use serde::{Deserialize, Serialize};

/// Every variant is its own event type.
#[derive(DomainEvent, Serialize, Deserialize)]
#[event(context = "shipping", sla(retention = "30d"), compatibility = "full-transitive")]
#[serde(rename_all = "snake_case")]
enum ShipmentEvent {
    /// A parcel was packed.
    Packed {
        #[event(key)]
        shipment_id: String,
        #[event(dedupe)]
        packer: u32,
    },
    #[event(
        version = 2,
        description = "The parcel left the warehouse.",
        upcast_json(from = 1, with = rename_carrier),
        sla(max_latency = "2s")
    )]
    Dispatched {
        #[event(key)]
        shipment_id: String,
        carrier: String,
    },
    #[event(name = "shipping.delivered", deprecated(since = "2026-01-01", note = "use Handed"))]
    Delivered(#[event(key)] String),
    Lost,
}

fn rename_carrier(v: serde_json::Value) -> Result<serde_json::Value, UpcastError> {
    Ok(v)
}

fn main() {
    let names: Vec<_> = ShipmentEvent::DESCRIPTORS.iter().map(|d| (d.name, d.version)).collect();
    assert_eq!(
        names,
        [
            ("shipping.packed", 1),
            ("shipping.dispatched", 2),
            ("shipping.delivered", 1),
            ("shipping.lost", 1),
        ]
    );
    let packed = ShipmentEvent::Packed { shipment_id: "s-1".into(), packer: 4 };
    assert_eq!(packed.partition_key().as_deref(), Some("s-1"));
    assert_eq!(packed.dedupe_key().as_deref(), Some("shipping.packed:4"));
    assert_eq!(ShipmentEvent::Lost.partition_key(), None);
    let envelope = Envelope::event(ShipmentEvent::Delivered("s-1".into()));
    assert_eq!(envelope.partition_key.as_deref(), Some("s-1"));
    assert_eq!(ShipmentEvent::DESCRIPTORS[1].sla.max_latency_ms, Some(2_000));
    assert_eq!(ShipmentEvent::DESCRIPTORS[1].sla.retention_secs, Some(30 * 86_400));
}
