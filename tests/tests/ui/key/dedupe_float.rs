use event_runtime::DomainEvent;
use serde::{Deserialize, Serialize};

#[derive(DomainEvent, Serialize, Deserialize)]
#[event(context = "sensors")]
struct Reading {
    #[event(key)]
    sensor: String,
    #[event(dedupe)]
    celsius: f64,
}

fn main() {}
