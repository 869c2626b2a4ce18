use event_runtime::DomainEvent;
use serde::{Deserialize, Serialize};

#[derive(DomainEvent, Serialize, Deserialize)]
#[event(context = "sensors")]
enum SensorEvent {
    Installed {
        #[event(key)]
        sensor: String,
    },
    Measured {
        #[event(key)]
        celsius: f32,
    },
}

fn main() {}
