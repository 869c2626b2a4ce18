//! Messages declared by a `macro_rules!` (the type's and fields' names from its arguments)
//! derive like any other: the generated code keeps its own bindings at the call site.
#![deny(warnings)]

use event_runtime::{Command, DomainEvent, Message};
use serde::{Deserialize, Serialize};

macro_rules! event {
    ($name:ident, $key:ident) => {
        #[derive(DomainEvent, Serialize, Deserialize, Clone, Debug, PartialEq)]
        #[event(context = "made")]
        pub struct $name {
            #[event(key, dedupe)]
            pub $key: String,
        }
    };
}

macro_rules! command {
    ($name:ident, $key:ident) => {
        #[derive(Command, Serialize, Deserialize, Clone, Debug, PartialEq)]
        #[command(context = "made")]
        pub struct $name {
            #[command(key)]
            pub $key: String,
        }
    };
}

macro_rules! enum_event {
    ($name:ident, $a:ident, $b:ident) => {
        #[derive(DomainEvent, Serialize, Deserialize, Clone, Debug, PartialEq)]
        #[event(context = "made")]
        pub enum $name {
            $a { #[event(key)] id: String },
            $b { #[event(key)] id: String },
        }
    };
}

event!(Made, id);
command!(Make, id);
enum_event!(Shipment, Packed, Lost);

fn main() {
    let made = Made { id: "m-1".into() };
    assert_eq!(made.partition_key().as_deref(), Some("m-1"));
    let mut buf = Vec::new();
    made.encode_payload(&mut buf).unwrap();
    let back = Made::decode_payload("made.made", 1, &buf).unwrap();
    assert_eq!(back, made);
    assert_eq!(Make { id: "k".into() }.partition_key().as_deref(), Some("k"));
    let packed = Shipment::Packed { id: "s".into() };
    let mut buf = Vec::new();
    packed.encode_payload(&mut buf).unwrap();
    assert_eq!(Shipment::decode_payload("made.packed", 1, &buf).unwrap(), packed);
}
