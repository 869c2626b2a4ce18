//! Paths for generated code only. Nothing here is covered by semver.

pub use core::convert::From;
pub use core::option::Option::{self, None, Some};
pub use core::result::Result::{self, Err, Ok};
pub use core::time::Duration;
pub use inventory;
pub use serde;
pub use serde_json;
pub use std::string::String;
pub use std::vec::Vec;

pub use crate::codec::{Json, JsonUpcastFn, PayloadCodec, Protobuf};
pub use crate::envelope::Envelope;
pub use crate::error::{DecodeError, EncodeError, PayloadError, UpcastError};
pub use crate::handler::{
    Context, DeclaredHandler, Handler, HandlerDecl, HandlerError, HandlerSpec,
};
pub use crate::message::{
    Command, Deprecation, Descriptor, DomainEvent, Message, MessageKind, Sla,
};
pub use crate::partition::KeyPart;
pub use crate::registry::Registration;

/// What `#[saga]` implements.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub mod saga {
    pub use crate::saga::{Handles, Messages, Orchestrated, Role, Step, StepKind, StepSpec, Steps};

    /// A message's key field as the instance's key; a type error here points at the message.
    pub fn key<K: ToString + ?Sized>(field: &K) -> String {
        field.to_string()
    }
}

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Decodes into `M` and drops the value: the registration's reader (see `contracts`).
pub fn read_payload<M: Message>(name: &str, version: u32, data: &[u8]) -> Result<(), DecodeError> {
    M::decode_payload(name, version, data).map(drop)
}

/// `const` string equality, for the compile-time upcast chain check.
pub const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// Coerces a key field to a trait object; a type error here points at the user's field.
pub fn key_part<K: KeyPart>(part: &K) -> &dyn KeyPart {
    part
}

/// A partition key from its parts.
pub fn key(parts: &[&dyn KeyPart]) -> String {
    crate::partition::composite_key(parts)
}

/// A dedupe key: `<wire name>:<parts>`.
pub fn dedupe_key(descriptor: &Descriptor, parts: &[&dyn KeyPart]) -> String {
    let mut out = String::from(descriptor.name);
    out.push(':');
    out.push_str(&crate::partition::composite_key(parts));
    out
}

/// Encodes with codec `C`.
pub fn encode<T, C: PayloadCodec<T>>(
    descriptor: &'static Descriptor,
    value: &T,
    buf: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    C::encode(value, buf).map_err(|source| EncodeError::Payload {
        event: descriptor.name,
        source,
    })
}

/// Encodes one variant of an event enum.
pub fn encode_variant<T: Serialize>(
    descriptor: &'static Descriptor,
    serde_name: &str,
    value: &T,
    buf: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    crate::codec::encode_variant(value, serde_name, buf).map_err(|source| EncodeError::Payload {
        event: descriptor.name,
        source,
    })
}

/// The error for a `type` this Rust type does not represent.
pub fn unknown_type(name: &str, rust_type: &'static str) -> DecodeError {
    DecodeError::UnknownType {
        found: name.to_owned(),
        expected: rust_type,
    }
}

/// Checks the version against `descriptor`: `Ok(true)` when it matches exactly, `Ok(false)` when
/// it is older (the caller upcasts), the typed error when it is newer.
pub fn exact_version(descriptor: &'static Descriptor, version: u32) -> Result<bool, DecodeError> {
    if version > descriptor.version {
        return Err(DecodeError::FutureVersion {
            event: descriptor.name.to_owned(),
            version,
            newest_known: descriptor.version,
        });
    }
    Ok(version == descriptor.version)
}

/// The error for an older version with no upcaster.
pub fn no_upcaster(descriptor: &'static Descriptor, version: u32) -> DecodeError {
    DecodeError::NoUpcaster {
        event: descriptor.name.to_owned(),
        version,
        oldest_readable: descriptor.oldest_readable_version,
    }
}

/// Decodes the current version with codec `C`.
pub fn decode<T, C: PayloadCodec<T>>(
    descriptor: &'static Descriptor,
    data: &[u8],
) -> Result<T, DecodeError> {
    C::decode(data).map_err(|source| DecodeError::Payload {
        event: descriptor.name.to_owned(),
        version: descriptor.version,
        source,
    })
}

/// Decodes one variant of an event enum at its current version.
pub fn decode_variant<T: DeserializeOwned>(
    descriptor: &'static Descriptor,
    serde_name: &str,
    data: &[u8],
) -> Result<T, DecodeError> {
    crate::codec::decode_variant(serde_name, data).map_err(|source| DecodeError::Payload {
        event: descriptor.name.to_owned(),
        version: descriptor.version,
        source,
    })
}

/// Lifts an old JSON payload through `chain`, then decodes it (as a variant when `variant` is set).
pub fn upcast_json<T: DeserializeOwned>(
    descriptor: &'static Descriptor,
    variant: Option<&str>,
    version: u32,
    chain: &[(u32, JsonUpcastFn)],
    data: &[u8],
) -> Result<T, DecodeError> {
    let value =
        crate::codec::upcast_json(descriptor.name, version, descriptor.version, chain, data)?;
    let value = match variant {
        Some(name) => {
            let mut map = serde_json::Map::with_capacity(1);
            map.insert(name.to_owned(), value);
            serde_json::Value::Object(map)
        }
        None => value,
    };
    serde_json::from_value(value).map_err(|err| DecodeError::Payload {
        event: descriptor.name.to_owned(),
        version: descriptor.version,
        source: PayloadError::Json(err),
    })
}
