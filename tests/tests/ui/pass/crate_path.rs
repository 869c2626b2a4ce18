// The facade re-exported under another path, as a company-wide prelude crate would do.
mod my {
    pub use event_runtime as rt;
}

use my::rt::{Command, DomainEvent, Envelope, Message};
use serde::{Deserialize, Serialize};

#[derive(DomainEvent, Serialize, Deserialize)]
#[event(context = "x", crate = "my::rt")]
struct Happened {
    #[event(key)]
    id: u64,
}

#[derive(DomainEvent, Serialize, Deserialize)]
#[event(context = "x", version = 2, upcast_from = Happened, crate = "my::rt")]
struct HappenedV2 {
    #[event(key)]
    id: u64,
    #[serde(default)]
    note: String,
}

impl From<Happened> for HappenedV2 {
    fn from(old: Happened) -> Self {
        HappenedV2 { id: old.id, note: String::new() }
    }
}

#[derive(Command, Serialize, Deserialize)]
#[command(context = "x", crate = my::rt)]
struct DoIt {
    #[command(key)]
    id: u64,
}

fn main() {
    assert_eq!(HappenedV2::DESCRIPTORS[0].name, "x.happened");
    assert_eq!(Envelope::event(Happened { id: 1 }).partition_key.as_deref(), Some("1"));
    assert_eq!(Envelope::command(DoIt { id: 2 }).partition_key.as_deref(), Some("2"));
}
