use event_runtime::DomainEvent;
use serde::{Deserialize, Serialize};

#[derive(DomainEvent, Serialize, Deserialize)]
#[event(context = "sensors")]
struct TemperatureMeasured {
    #[event(key)]
    celsius: f64,
    sensor: String,
}

fn main() {}
