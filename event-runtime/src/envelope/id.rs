//! [`EventId`]: the CloudEvents `id`.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use uuid::Uuid;

/// The CloudEvents `id` of an envelope: a UUID (what this library writes: v7, so ids sort by
/// creation time) or any other non-empty string a foreign producer chose, as CloudEvents allows
/// (its own example is `A234-1234-1234`). A foreign id is kept exactly as written, so it is
/// written back, deduplicated and partitioned by the same text.
///
/// ```
/// use event_runtime::envelope::EventId;
///
/// let ours = EventId::now_v7();
/// assert!(ours.as_uuid().is_some());
/// let foreign: EventId = "A234-1234-1234".parse().unwrap();
/// assert_eq!(foreign.to_string(), "A234-1234-1234");
/// assert_eq!(foreign.as_uuid(), None);
/// assert!("".parse::<EventId>().is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventId(Repr);

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Repr {
    Uuid(Uuid),
    Text(Arc<str>),
}

/// Why a string is not an event id: it is empty.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("an event id must not be empty")]
pub struct EmptyId;

impl EventId {
    /// A new UUIDv7 id.
    pub fn now_v7() -> Self {
        EventId(Repr::Uuid(Uuid::now_v7()))
    }

    /// The UUID, when the id is one written in its canonical lower-case hyphenated form.
    pub fn as_uuid(&self) -> Option<Uuid> {
        match &self.0 {
            Repr::Uuid(uuid) => Some(*uuid),
            Repr::Text(_) => None,
        }
    }

    /// The id as text, written into `buf` when it is a UUID (no allocation).
    pub fn encode<'a>(&'a self, buf: &'a mut [u8; 45]) -> &'a str {
        match &self.0 {
            Repr::Uuid(uuid) => uuid.hyphenated().encode_lower(buf),
            Repr::Text(text) => text,
        }
    }
}

impl FromStr for EventId {
    type Err = EmptyId;

    /// Any non-empty string. One that is a UUID in canonical form (lower-case, hyphenated) is
    /// held as a UUID; any other is kept as written.
    fn from_str(id: &str) -> Result<Self, EmptyId> {
        if id.is_empty() {
            return Err(EmptyId);
        }
        match Uuid::try_parse(id) {
            Ok(uuid) if id.len() == 36 && !id.bytes().any(|b| b.is_ascii_uppercase()) => {
                Ok(EventId(Repr::Uuid(uuid)))
            }
            _ => Ok(EventId(Repr::Text(id.into()))),
        }
    }
}

impl From<Uuid> for EventId {
    fn from(uuid: Uuid) -> Self {
        EventId(Repr::Uuid(uuid))
    }
}

impl PartialEq<Uuid> for EventId {
    fn eq(&self, other: &Uuid) -> bool {
        self.as_uuid() == Some(*other)
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.encode(&mut [0; 45]))
    }
}

impl fmt::Debug for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::EventId;

    #[test]
    fn canonical_uuids_are_uuids_and_anything_else_is_kept_as_written() {
        let canonical = "0193a1c4-2b6e-7f00-8a11-22b3c4d5e6f7";
        let id: EventId = canonical.parse().unwrap();
        assert!(id.as_uuid().is_some());
        assert_eq!(id.to_string(), canonical);
        for kept in [
            "0193A1C4-2B6E-7F00-8A11-22B3C4D5E6F7",
            "0193a1c42b6e7f008a1122b3c4d5e6f7",
            "urn:uuid:0193a1c4-2b6e-7f00-8a11-22b3c4d5e6f7",
            "A234-1234-1234",
            " x ",
            "é",
        ] {
            let id: EventId = kept.parse().unwrap();
            assert_eq!(id.as_uuid(), None, "{kept}");
            assert_eq!(id.to_string(), kept);
        }
        assert!("".parse::<EventId>().is_err());
    }
}
