//! What the gate is given: one [`Candidate`] per event version the code declares, and the
//! [`CheckOptions`] of a run. Above [`report`](super::report), whose errors it returns.

use event_model::attr::Date;
use serde_json::Value;

use crate::compat::{self, CompatibilityMode, ProtoCategory};

use super::report::{ErrorKind, RegistryError};

/// `deprecated(since = "...", sunset = "...", note = "...")` of one event version.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Deprecation {
    /// When the version was deprecated.
    pub since: Option<Date>,
    /// After this date producers must stop publishing the version.
    pub sunset: Option<Date>,
    /// What to use instead.
    pub note: Option<String>,
}

impl From<&event_model::attr::Deprecation> for Deprecation {
    fn from(value: &event_model::attr::Deprecation) -> Self {
        Deprecation {
            since: value.since,
            sunset: value.sunset,
            note: value.note.clone(),
        }
    }
}

/// One version of one event as the code declares it now.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    /// The wire name: `orders.order_placed`.
    pub event: String,
    /// The owning bounded context: `orders`.
    pub context: String,
    /// The version.
    pub version: u32,
    /// The JSON Schema document.
    pub schema: Value,
    /// The `.proto` text, when one is emitted.
    pub proto: Option<String>,
    /// The event's compatibility mode (`#[event(compatibility = "...")]`); the newest
    /// candidate's mode is the event's.
    pub mode: CompatibilityMode,
    /// The version's deprecation, if any.
    pub deprecation: Option<Deprecation>,
    /// The oldest version this version's upcaster chain reads (`upcast_from` / `upcast_json`),
    /// if it has one.
    pub upcast_from: Option<u32>,
    /// Whether producers still publish this version. `None`: only the newest version of each
    /// event among the candidates is produced.
    pub produced: Option<bool>,
}

impl Candidate {
    /// A candidate in the default mode (`BACKWARD`), without proto, deprecation or upcaster.
    pub fn new(
        event: impl Into<String>,
        context: impl Into<String>,
        version: u32,
        schema: Value,
    ) -> Self {
        Candidate {
            event: event.into(),
            context: context.into(),
            version,
            schema,
            proto: None,
            mode: CompatibilityMode::default(),
            deprecation: None,
            upcast_from: None,
            produced: None,
        }
    }

    /// Reads name, version, context and deprecation from the schema's `x-event` object, and
    /// `compatibility` and `upcast_from` when the emitter writes them there.
    pub fn from_schema(schema: Value, proto: Option<String>) -> Result<Self, RegistryError> {
        let invalid = |message: String| {
            RegistryError::single(ErrorKind::InvalidCandidate, None, None, message)
        };
        let meta = schema
            .get("x-event")
            .and_then(Value::as_object)
            .ok_or_else(|| invalid("the schema has no `x-event` object naming the event".into()))?;
        let text = |key: &str| meta.get(key).and_then(Value::as_str).map(str::to_owned);
        let event = text("name").ok_or_else(|| invalid("`x-event.name` is missing".into()))?;
        let context = text("context")
            .ok_or_else(|| invalid(format!("{event}: `x-event.context` is missing")))?;
        let version = meta
            .get("version")
            .and_then(Value::as_u64)
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| invalid(format!("{event}: `x-event.version` is missing")))?;
        let mode = match text("compatibility") {
            Some(mode) => mode.parse().map_err(|err: compat::UnknownMode| {
                invalid(format!("{event} v{version}: {err}"))
            })?,
            None => CompatibilityMode::default(),
        };
        let date = |value: Option<&Value>, what: &str| -> Result<Option<Date>, RegistryError> {
            match value.and_then(Value::as_str) {
                None => Ok(None),
                Some(text) => Date::parse(text)
                    .map(Some)
                    .map_err(|err| invalid(format!("{event} v{version}: {what}: {err}"))),
            }
        };
        let deprecation = match meta.get("deprecated") {
            Some(Value::Object(deprecated)) => Some(Deprecation {
                since: date(deprecated.get("since"), "deprecated.since")?,
                sunset: date(deprecated.get("sunset"), "deprecated.sunset")?,
                note: deprecated
                    .get("note")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            }),
            Some(Value::Bool(true)) => Some(Deprecation::default()),
            _ => None,
        };
        let upcast_from = meta
            .get("upcast_from")
            .and_then(Value::as_u64)
            .and_then(|v| u32::try_from(v).ok());
        Ok(Candidate {
            event,
            context,
            version,
            schema,
            proto,
            mode,
            deprecation,
            upcast_from,
            produced: None,
        })
    }

    /// Sets the `.proto` text.
    pub fn with_proto(mut self, proto: impl Into<String>) -> Self {
        self.proto = Some(proto.into());
        self
    }

    /// Sets the compatibility mode.
    pub fn with_mode(mut self, mode: CompatibilityMode) -> Self {
        self.mode = mode;
        self
    }

    /// Sets the deprecation.
    pub fn with_deprecation(mut self, deprecation: Deprecation) -> Self {
        self.deprecation = Some(deprecation);
        self
    }

    /// Sets the oldest version the upcaster chain reads.
    pub fn with_upcast_from(mut self, version: u32) -> Self {
        self.upcast_from = Some(version);
        self
    }

    /// Says whether producers still publish this version.
    pub fn with_produced(mut self, produced: bool) -> Self {
        self.produced = Some(produced);
        self
    }

    pub(super) fn label(&self) -> String {
        format!("{} v{}", self.event, self.version)
    }
}

/// What a version past its sunset date does to the build.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SunsetPolicy {
    /// Fail ([`ErrorKind::Sunset`]).
    #[default]
    Error,
    /// Add a line to [`Report::warnings`](super::Report::warnings).
    Warn,
}

/// How [`SchemaRegistry::check_and_update`](super::SchemaRegistry::check_and_update) runs.
#[derive(Clone, Debug)]
pub struct CheckOptions {
    /// Today's date, for sunset dates.
    pub today: Date,
    /// What a version past its sunset does.
    pub sunset: SunsetPolicy,
    /// Write the files and the lock (`true`), or only check and list what would be written
    /// (`false`, for CI).
    pub write: bool,
    /// Which buf category the `.proto` files are checked with.
    pub proto_category: ProtoCategory,
}

impl CheckOptions {
    /// Writing, failing on sunsets, buf `WIRE_JSON`.
    pub fn new(today: Date) -> Self {
        CheckOptions {
            today,
            sunset: SunsetPolicy::Error,
            write: true,
            proto_category: ProtoCategory::WireJson,
        }
    }
}
