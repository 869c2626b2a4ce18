//! [`Envelope`]: a message plus its CloudEvents 1.0.2 context attributes and our extensions.
//!
//! | attribute | CloudEvents | here |
//! |---|---|---|
//! | `id` | required | UUIDv7 ([`Envelope::id`]) |
//! | `source` | required | `/<context>` unless set |
//! | `specversion` | required | always `1.0` |
//! | `type` | required | the descriptor's wire name |
//! | `subject`, `time`, `datacontenttype`, `dataschema` | optional | as named |
//! | `eventversion` | extension | schema version of `data` |
//! | `partitionkey` | partitioning extension | from `#[event(key)]` |
//! | `correlationid`, `causationid` | extension | see [`Envelope::caused_by`] |
//! | `traceparent`, `tracestate` | distributed tracing extension | W3C Trace Context |
//! | `dedupekey` | extension | from `#[event(dedupe)]` |
//! | `sequence` | sequence extension | position in its partition, zero-padded |
//!
//! Unknown extensions read from the wire are kept in [`Envelope::extensions`] and written back.

use std::borrow::Cow;
use std::collections::BTreeMap;

use time::OffsetDateTime;

mod id;

pub use id::{EmptyId, EventId};

use crate::error::{DecodeError, EncodeError};
use crate::message::{Command, DomainEvent, Message};

/// A message with its CloudEvents attributes.
#[derive(Clone, Debug, PartialEq)]
pub struct Envelope<M> {
    /// `id`: a UUIDv7 for the envelopes this library creates, so ids sort by creation time; a
    /// foreign producer's id as it wrote it.
    pub id: EventId,
    /// `source`: a URI-reference naming the producer.
    pub source: Cow<'static, str>,
    /// `type`: the wire name.
    pub ty: Cow<'static, str>,
    /// `eventversion`: the schema version of `data`.
    pub version: u32,
    /// `subject`.
    pub subject: Option<String>,
    /// `time`.
    pub time: OffsetDateTime,
    /// `datacontenttype`.
    pub content_type: Cow<'static, str>,
    /// `dataschema`.
    pub dataschema: Option<String>,
    /// `partitionkey`.
    pub partition_key: Option<String>,
    /// `correlationid`: the id of the first envelope of the flow.
    pub correlation_id: Option<String>,
    /// `causationid`: the id of the envelope that caused this one.
    pub causation_id: Option<String>,
    /// `traceparent` and `tracestate`.
    pub trace: Option<TraceContext>,
    /// `dedupekey`.
    pub dedupe_key: Option<String>,
    /// `sequence`: the position in its partition, set by the transport.
    pub sequence: Option<u64>,
    /// Extensions this library does not interpret, preserved as read.
    pub extensions: BTreeMap<String, ExtensionValue>,
    /// The message (or, for a [`RawEnvelope`], its encoded bytes).
    pub data: M,
}

/// W3C Trace Context carried on an envelope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceContext {
    /// `traceparent`, e.g. `00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01`.
    pub traceparent: String,
    /// `tracestate`, vendor-specific.
    pub tracestate: Option<String>,
}

/// The value of an extension attribute this library does not interpret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExtensionValue {
    /// A string (also URI, URI-reference and timestamp in the JSON and binary formats).
    String(String),
    /// An integer.
    Integer(i32),
    /// A boolean.
    Boolean(bool),
    /// Bytes.
    Binary(Vec<u8>),
}

/// The context carried from one envelope to the envelopes it causes: correlation, causation and
/// trace. A handler gets it from the incoming envelope and passes it to what it emits.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Causation {
    /// Correlation id of the flow.
    pub correlation_id: Option<String>,
    /// Id of the causing envelope.
    pub causation_id: Option<String>,
    /// Trace context to continue.
    pub trace: Option<TraceContext>,
}

/// An encoded payload with its wire name and version, before typed decoding.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct RawData(pub Vec<u8>);

/// An envelope whose data is still encoded: what transports carry and consumers route on.
pub type RawEnvelope = Envelope<RawData>;

impl<M: Message> Envelope<M> {
    pub(crate) fn new(data: M) -> Self {
        let descriptor = data.descriptor();
        let id = EventId::now_v7();
        // Created while serving a request: its correlation id and trace context; inside an
        // OpenTelemetry span (a handler's `process`, an HTTP server span), that span's context.
        let (correlation_id, trace) = match crate::request::current() {
            Some(ctx) => (ctx.correlation_id, ctx.trace),
            None => (id.to_string(), None),
        };
        let trace = crate::telemetry::current_trace().or(trace);
        Envelope {
            correlation_id: Some(correlation_id),
            id,
            source: Cow::Owned(["/", descriptor.context].concat()),
            ty: Cow::Borrowed(descriptor.name),
            version: descriptor.version,
            subject: None,
            time: OffsetDateTime::now_utc(),
            content_type: Cow::Borrowed(descriptor.content_type),
            dataschema: None,
            partition_key: data.partition_key(),
            causation_id: None,
            trace,
            dedupe_key: data.dedupe_key(),
            sequence: None,
            extensions: BTreeMap::new(),
            data,
        }
    }

    /// Encodes the payload with the type's codec.
    ///
    /// # Errors
    ///
    /// The codec's error.
    pub fn to_raw(&self) -> Result<RawEnvelope, EncodeError> {
        let mut bytes = Vec::new();
        self.data.encode_payload(&mut bytes)?;
        Ok(self.with_data(RawData(bytes)))
    }
}

impl<E: DomainEvent> Envelope<E> {
    /// Wraps a domain event: a new UUIDv7 id, the time now, the source `/<context>`, the key and
    /// dedupe key from its attributes, and a correlation id equal to its own id (it starts a flow
    /// unless [`caused_by`](Envelope::caused_by) says otherwise).
    pub fn event(event: E) -> Self {
        Envelope::new(event)
    }
}

impl<C: Command> Envelope<C> {
    /// Wraps a command, with the same defaults as [`Envelope::event`].
    pub fn command(command: C) -> Self {
        Envelope::new(command)
    }
}

impl<M> Envelope<M> {
    /// Marks this envelope as caused by `cause`: same correlation id (the cause's, or the cause's
    /// id when it had none), causation id = the cause's id, and the cause's trace context.
    #[must_use]
    pub fn caused_by(self, cause: &impl AsCausation) -> Self {
        self.with_causation(cause.causation())
    }

    /// Applies a [`Causation`] taken from an incoming envelope.
    #[must_use]
    pub fn with_causation(mut self, causation: Causation) -> Self {
        if causation.correlation_id.is_some() {
            self.correlation_id = causation.correlation_id;
        }
        self.causation_id = causation.causation_id;
        // The creation context: the current span's (see `Envelope::event`), else the cause's.
        if let Some(trace) = crate::telemetry::current_trace().or(causation.trace) {
            self.trace = Some(trace);
        }
        self
    }

    /// Sets `source`.
    #[must_use]
    pub fn with_source(mut self, source: impl Into<Cow<'static, str>>) -> Self {
        self.source = source.into();
        self
    }

    /// Sets `subject`.
    #[must_use]
    pub fn with_subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    /// Sets the W3C trace context.
    #[must_use]
    pub fn with_trace(mut self, trace: TraceContext) -> Self {
        self.trace = Some(trace);
        self
    }

    /// The context to pass to envelopes caused by this one.
    pub fn causation(&self) -> Causation {
        let id = || self.id.encode(&mut [0; 45]).to_owned();
        Causation {
            correlation_id: Some(self.correlation_id.clone().unwrap_or_else(id)),
            causation_id: Some(id()),
            trace: self.trace.clone(),
        }
    }

    /// The same attributes around other data.
    pub fn with_data<N>(&self, data: N) -> Envelope<N> {
        Envelope {
            id: self.id.clone(),
            source: self.source.clone(),
            ty: self.ty.clone(),
            version: self.version,
            subject: self.subject.clone(),
            time: self.time,
            content_type: self.content_type.clone(),
            dataschema: self.dataschema.clone(),
            partition_key: self.partition_key.clone(),
            correlation_id: self.correlation_id.clone(),
            causation_id: self.causation_id.clone(),
            trace: self.trace.clone(),
            dedupe_key: self.dedupe_key.clone(),
            sequence: self.sequence,
            extensions: self.extensions.clone(),
            data,
        }
    }

    /// The same attributes around `f(data)`, moving them instead of cloning.
    pub fn map_data<N>(self, f: impl FnOnce(M) -> N) -> Envelope<N> {
        Envelope {
            id: self.id.clone(),
            source: self.source,
            ty: self.ty,
            version: self.version,
            subject: self.subject,
            time: self.time,
            content_type: self.content_type,
            dataschema: self.dataschema,
            partition_key: self.partition_key,
            correlation_id: self.correlation_id,
            causation_id: self.causation_id,
            trace: self.trace,
            dedupe_key: self.dedupe_key,
            sequence: self.sequence,
            extensions: self.extensions,
            data: f(self.data),
        }
    }

    /// The key a dedupe store uses: the dedupe key if the type declares one, else the id.
    pub fn effective_dedupe_key(&self) -> Cow<'_, str> {
        match &self.dedupe_key {
            Some(key) => Cow::Borrowed(key),
            None => Cow::Owned(self.id.to_string()),
        }
    }
}

impl RawEnvelope {
    /// Like [`RawEnvelope::decode`], consuming the envelope instead of copying its attributes.
    ///
    /// # Errors
    ///
    /// As [`RawEnvelope::decode`].
    pub fn into_decoded<M: Message>(self) -> Result<Envelope<M>, DecodeError> {
        let data = M::decode_payload(&self.ty, self.version, &self.data.0)?;
        let mut envelope = self.map_data(|_| data);
        envelope.version = envelope.data.descriptor().version;
        Ok(envelope)
    }

    /// Decodes the payload into `M`, lifting older versions through its upcaster chain.
    ///
    /// # Errors
    ///
    /// [`DecodeError::UnknownType`] when `M` does not represent this `type`,
    /// [`DecodeError::FutureVersion`] for a version newer than `M` knows, and the upcaster and
    /// payload errors of [`Message::decode_payload`].
    pub fn decode<M: Message>(&self) -> Result<Envelope<M>, DecodeError> {
        let data = M::decode_payload(&self.ty, self.version, &self.data.0)?;
        let mut envelope = self.with_data(data);
        // After upcasting the envelope describes what the consumer holds.
        let descriptor = envelope.data.descriptor();
        envelope.version = descriptor.version;
        Ok(envelope)
    }
}

/// Anything a causation context can be taken from.
pub trait AsCausation {
    /// The context to carry forward.
    fn causation(&self) -> Causation;
}

impl<M> AsCausation for Envelope<M> {
    fn causation(&self) -> Causation {
        Envelope::causation(self)
    }
}

impl AsCausation for Causation {
    fn causation(&self) -> Causation {
        self.clone()
    }
}
