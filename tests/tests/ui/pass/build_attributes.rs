use event_runtime::{Command, DomainEvent, Message};
use serde::{Deserialize, Serialize};

/// `tag` and `schema` are read by event-build; the derive checks them and otherwise ignores them.
#[derive(DomainEvent, Serialize, Deserialize)]
#[event(context = "pricing")]
struct PriceChanged {
    #[event(key, tag = 3)]
    sku: String,
    #[event(tag = 1, schema = r#"{"type": "string", "pattern": "^[0-9]+$"}"#)]
    price: String,
}

#[derive(Command, Serialize, Deserialize)]
#[command(context = "pricing")]
struct Reprice {
    #[command(key, tag = 2)]
    sku: String,
    #[command(schema = "{}")]
    extra: serde_json::Value,
}

fn main() {
    let changed = PriceChanged { sku: "s-1".into(), price: "100".into() };
    assert_eq!(changed.partition_key().as_deref(), Some("s-1"));
    assert_eq!(PriceChanged::DESCRIPTORS[0].key_fields, ["sku"]);
    let reprice = Reprice { sku: "s-1".into(), extra: serde_json::Value::Null };
    assert_eq!(reprice.partition_key().as_deref(), Some("s-1"));
}
