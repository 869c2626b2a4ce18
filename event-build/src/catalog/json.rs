//! `catalog.json`: the [`Catalog`] serialized (keys sorted, two-space indent), with the
//! structural diff of each pair of consecutive versions.
//!
//! ```text
//! { "format": 1, "service": "shop", "contexts": ["billing", ...],
//!   "messages": [ { "kind": "event", "name": "orders.order_placed", "context": "orders",
//!       "topic": "orders", "description": ..., "latest_version": 3,
//!       "versions": [ { "version": 1, "in_code": true, "published": true?, "schema": {...},
//!                       "deprecated": {...}?, "sla": {...}, "key_fields": [...],
//!                       "key_properties": [...], "dedupe_fields": [...], ... } ],
//!       "diffs": [ { "from": 1, "to": 2, "changes": [ {"change": "added", "property": {...}} ] } ],
//!       "producers": [ { "context", "function", "group", "via", "versions", "source" } ],
//!       "consumers": [ ... ] } ],
//!   "flows": [ { "from": "orders", "message": "orders.order_placed", "to": "billing", "kind": "event" } ] }
//! ```

use serde_json::{Value, json};

use crate::json_schema;

use super::{Catalog, diff};

/// The layout version of `catalog.json`.
pub const CATALOG_FORMAT: u32 = 1;

/// `catalog.json` as a value.
pub fn to_value(catalog: &Catalog) -> Value {
    let mut value = serde_json::to_value(catalog)
        .unwrap_or_else(|_| unreachable!("the catalog has string keys only"));
    if let Some(messages) = value.get_mut("messages").and_then(Value::as_array_mut) {
        for (message, data) in messages.iter_mut().zip(&catalog.messages) {
            let diffs: Vec<Value> = data
                .versions
                .windows(2)
                .map(|pair| {
                    json!({
                        "from": pair[0].version,
                        "to": pair[1].version,
                        "changes": diff::diff(&pair[0].schema, &pair[1].schema),
                    })
                })
                .collect();
            message["diffs"] = Value::Array(diffs);
        }
    }
    value["format"] = json!(CATALOG_FORMAT);
    value
}

/// `catalog.json`.
pub fn render(catalog: &Catalog) -> String {
    json_schema::to_pretty(&to_value(catalog))
}
