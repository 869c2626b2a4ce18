//! Errors of encoding and decoding. Every decode error is permanent: retrying the same bytes gives
//! the same answer, so the runtime dead-letters them with [`DecodeError::kind`] as the reason.

use std::fmt;

/// Why a payload or envelope could not be encoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The payload codec failed.
    #[error("cannot encode the payload of `{event}`: {source}")]
    Payload {
        /// Wire name.
        event: &'static str,
        /// The codec's error.
        #[source]
        source: PayloadError,
    },
    /// The message version is deprecated and past its sunset date: no longer published
    /// ([`crate::deprecation::DeprecationPolicy`]).
    #[error(
        "`{name}` version {version} is past its sunset ({sunset}) and is no longer published{}",
        note.map(|note| format!(": {note}")).unwrap_or_default()
    )]
    Sunset {
        /// Wire name.
        name: &'static str,
        /// Version.
        version: u32,
        /// The declared sunset date.
        sunset: &'static str,
        /// The declared note (what to use instead).
        note: Option<&'static str>,
    },
    /// The encoded message is bigger than the configured limit.
    #[error("{what} is {actual} bytes, over the limit of {limit} bytes")]
    TooLarge {
        /// What was measured.
        what: &'static str,
        /// The limit.
        limit: usize,
        /// The size found.
        actual: usize,
    },
    /// An attribute holds a value the chosen format cannot carry.
    #[error("attribute `{attribute}` cannot be encoded: {reason}")]
    InvalidAttribute {
        /// The CloudEvents attribute.
        attribute: String,
        /// Why.
        reason: String,
    },
}

/// The payload codec's own error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PayloadError {
    /// serde_json.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// prost.
    #[error(transparent)]
    Protobuf(#[from] prost::DecodeError),
    /// prost's encoder, for a codec writing into a bounded buffer (the built-in protobuf codec
    /// writes into a growing `Vec`, which cannot run out of room).
    #[error(transparent)]
    ProtobufEncode(#[from] prost::EncodeError),
    /// The payload does not have the shape this type writes (an enum payload that is not a variant).
    #[error("{0}")]
    Shape(String),
}

/// Why bytes could not be turned into an envelope or a typed message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The bytes are not a valid message in the expected format.
    #[error("malformed {format} message: {reason}")]
    Malformed {
        /// Which format was being read.
        format: Format,
        /// What is wrong and where.
        reason: String,
    },
    /// A required CloudEvents attribute is absent.
    #[error("{format} message has no `{attribute}` attribute")]
    MissingAttribute {
        /// Which format was being read.
        format: Format,
        /// The attribute.
        attribute: &'static str,
    },
    /// An attribute is present but its value is not valid.
    #[error("attribute `{attribute}` is invalid: {reason}")]
    InvalidAttribute {
        /// The attribute.
        attribute: String,
        /// Why.
        reason: String,
    },
    /// `specversion` is not `1.0`.
    #[error("unsupported CloudEvents specversion `{0}`; this library reads 1.0")]
    UnsupportedSpecVersion(String),
    /// Over a size limit; nothing beyond the limit was read.
    #[error("{what} is {actual} bytes, over the limit of {limit} bytes")]
    TooLarge {
        /// What was measured.
        what: &'static str,
        /// The limit.
        limit: usize,
        /// The size found.
        actual: usize,
    },
    /// The message's type is not one this Rust type represents.
    #[error("event type `{found}` is not {expected}")]
    UnknownType {
        /// The `type` attribute found.
        found: String,
        /// The Rust type that was asked for.
        expected: &'static str,
    },
    /// The message is newer than this consumer knows: never partially decoded.
    #[error(
        "`{event}` version {version} is newer than the newest version this consumer knows ({newest_known}); deploy the new consumer or keep producers on version {newest_known}"
    )]
    FutureVersion {
        /// Wire name.
        event: String,
        /// The version found.
        version: u32,
        /// The newest version the consumer's type has.
        newest_known: u32,
    },
    /// The message is older than the oldest version the upcaster chain reads.
    #[error(
        "`{event}` version {version} cannot be read: the upcaster chain starts at version {oldest_readable}"
    )]
    NoUpcaster {
        /// Wire name.
        event: String,
        /// The version found.
        version: u32,
        /// Oldest readable version.
        oldest_readable: u32,
    },
    /// An upcaster failed.
    #[error("upcasting `{event}` from version {from} failed: {source}")]
    Upcast {
        /// Wire name.
        event: String,
        /// The version being lifted.
        from: u32,
        /// The upcaster's error.
        #[source]
        source: UpcastError,
    },
    /// The payload does not decode as the type of its version.
    #[error("payload of `{event}` version {version} does not decode: {source}")]
    Payload {
        /// Wire name.
        event: String,
        /// Version.
        version: u32,
        /// The codec's error.
        #[source]
        source: PayloadError,
    },
}

/// The class of a [`DecodeError`], for metrics and dead-letter reasons.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DecodeErrorKind {
    /// Not a valid envelope.
    Malformed,
    /// An attribute is missing or invalid, or the spec version is unsupported.
    Attribute,
    /// Over a size limit.
    TooLarge,
    /// A type this consumer does not know.
    UnknownType,
    /// A version newer than this consumer knows.
    FutureVersion,
    /// A version older than the upcaster chain reads, or a failed upcaster.
    Upcast,
    /// The payload does not match the schema of its version.
    Payload,
}

impl DecodeError {
    /// The class of this error.
    pub fn kind(&self) -> DecodeErrorKind {
        match self {
            DecodeError::Malformed { .. } => DecodeErrorKind::Malformed,
            DecodeError::MissingAttribute { .. }
            | DecodeError::InvalidAttribute { .. }
            | DecodeError::UnsupportedSpecVersion(_) => DecodeErrorKind::Attribute,
            DecodeError::TooLarge { .. } => DecodeErrorKind::TooLarge,
            DecodeError::UnknownType { .. } => DecodeErrorKind::UnknownType,
            DecodeError::FutureVersion { .. } => DecodeErrorKind::FutureVersion,
            DecodeError::NoUpcaster { .. } | DecodeError::Upcast { .. } => DecodeErrorKind::Upcast,
            DecodeError::Payload { .. } => DecodeErrorKind::Payload,
        }
    }
}

/// A wire format, named in errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// `application/cloudevents+json`.
    StructuredJson,
    /// Binary content mode: headers plus payload.
    Binary,
    /// `application/cloudevents+protobuf`.
    Protobuf,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::StructuredJson => "structured JSON CloudEvents",
            Format::Binary => "binary-mode CloudEvents",
            Format::Protobuf => "protobuf CloudEvents",
        })
    }
}

/// The error a JSON-level upcaster returns.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct UpcastError {
    message: String,
}

impl UpcastError {
    /// An upcaster error with a message naming the field that is wrong.
    pub fn new(message: impl Into<String>) -> Self {
        UpcastError {
            message: message.into(),
        }
    }
}

impl From<serde_json::Error> for UpcastError {
    fn from(err: serde_json::Error) -> Self {
        UpcastError::new(err.to_string())
    }
}
