//! The CloudEvents attributes of an [`Envelope`], listed once. Every format — the JSON event
//! format, binary content mode in both bindings, the protobuf event format — writes and reads the
//! optional text attributes by walking [`Text::ALL`], and refuses extensions that would shadow
//! any attribute ([`is_reserved`]). Only the attributes whose values have a type of their own
//! (`id` a UUID, `time` a timestamp, `eventversion` an integer, `sequence` a padded number) are
//! spelled out by each format, because each format encodes those types its own way.

use std::borrow::Cow;
use std::collections::BTreeMap;

use crate::envelope::EventId;
use time::OffsetDateTime;

use crate::envelope::{Envelope, ExtensionValue, TraceContext};

/// An optional attribute whose value is text, in the order every format writes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Text {
    /// `subject`.
    Subject,
    /// `dataschema` (a URI; the protobuf format says so).
    DataSchema,
    /// `partitionkey` (the Partitioning extension).
    PartitionKey,
    /// `correlationid`.
    CorrelationId,
    /// `causationid`.
    CausationId,
    /// `traceparent` (the Distributed Tracing extension).
    TraceParent,
    /// `tracestate`, kept only beside a `traceparent`.
    TraceState,
    /// `dedupekey`.
    DedupeKey,
}

/// The attributes each format encodes itself, with their own value types (binary mode reads
/// them into slots in this order).
pub(crate) const TYPED: [&str; 8] = [
    "specversion",
    "id",
    "source",
    "type",
    "time",
    "datacontenttype",
    "eventversion",
    "sequence",
];

impl Text {
    /// Every text attribute, in writing order.
    pub(crate) const ALL: [Text; 8] = [
        Text::Subject,
        Text::DataSchema,
        Text::PartitionKey,
        Text::CorrelationId,
        Text::CausationId,
        Text::TraceParent,
        Text::TraceState,
        Text::DedupeKey,
    ];

    /// The attribute's CloudEvents name.
    pub(crate) const fn name(self) -> &'static str {
        match self {
            Text::Subject => "subject",
            Text::DataSchema => "dataschema",
            Text::PartitionKey => "partitionkey",
            Text::CorrelationId => "correlationid",
            Text::CausationId => "causationid",
            Text::TraceParent => "traceparent",
            Text::TraceState => "tracestate",
            Text::DedupeKey => "dedupekey",
        }
    }

    /// Whether the value is a URI (the protobuf format types it `ce_uri`).
    pub(crate) const fn is_uri(self) -> bool {
        matches!(self, Text::DataSchema)
    }

    /// The text attribute called `name`, if there is one.
    pub(crate) fn named(name: &str) -> Option<Text> {
        Some(match name {
            "subject" => Text::Subject,
            "dataschema" => Text::DataSchema,
            "partitionkey" => Text::PartitionKey,
            "correlationid" => Text::CorrelationId,
            "causationid" => Text::CausationId,
            "traceparent" => Text::TraceParent,
            "tracestate" => Text::TraceState,
            "dedupekey" => Text::DedupeKey,
            _ => return None,
        })
    }

    /// The attribute's value on `envelope`.
    pub(crate) fn get<M>(self, envelope: &Envelope<M>) -> Option<&str> {
        match self {
            Text::Subject => envelope.subject.as_deref(),
            Text::DataSchema => envelope.dataschema.as_deref(),
            Text::PartitionKey => envelope.partition_key.as_deref(),
            Text::CorrelationId => envelope.correlation_id.as_deref(),
            Text::CausationId => envelope.causation_id.as_deref(),
            Text::TraceParent => envelope.trace.as_ref().map(|t| t.traceparent.as_str()),
            Text::TraceState => envelope
                .trace
                .as_ref()
                .and_then(|t| t.tracestate.as_deref()),
            Text::DedupeKey => envelope.dedupe_key.as_deref(),
        }
    }

    /// The attribute's values present on `envelope`, in writing order.
    pub(crate) fn present<M>(envelope: &Envelope<M>) -> impl Iterator<Item = (Text, &str)> {
        Text::ALL
            .into_iter()
            .filter_map(move |attr| attr.get(envelope).map(|value| (attr, value)))
    }
}

/// The `datacontenttype` read, JSON when there was none.
pub(crate) fn content_type<S: AsRef<str> + Into<String>>(read: Option<S>) -> Cow<'static, str> {
    match read {
        None => Cow::Borrowed(crate::codec::JSON),
        // The codecs' own types, without a copy per message.
        Some(read) if read.as_ref() == crate::codec::JSON => Cow::Borrowed(crate::codec::JSON),
        Some(read) if read.as_ref() == crate::codec::PROTOBUF => {
            Cow::Borrowed(crate::codec::PROTOBUF)
        }
        Some(read) => Cow::Owned(read.into()),
    }
}

/// Whether `name` is an attribute of its own (or `data`), which no extension may be called.
pub(crate) fn is_reserved(name: &str) -> bool {
    name == "data" || TYPED.contains(&name) || Text::named(name).is_some()
}

/// The text attributes read from one message.
#[derive(Default)]
pub(crate) struct TextValues([Option<String>; Text::ALL.len()]);

impl TextValues {
    /// Records `value` for `attr`; `false` (and nothing changed) when it was already read.
    pub(crate) fn set(&mut self, attr: Text, value: String) -> bool {
        let slot = &mut self.0[attr as usize];
        if slot.is_some() {
            return false;
        }
        *slot = Some(value);
        true
    }

    /// Every text attribute `take` finds by name.
    ///
    /// # Errors
    ///
    /// The first of `take`'s.
    pub(crate) fn read<E>(
        mut take: impl FnMut(&'static str) -> Result<Option<String>, E>,
    ) -> Result<Self, E> {
        let mut values = TextValues::default();
        for attr in Text::ALL {
            values.0[attr as usize] = take(attr.name())?;
        }
        Ok(values)
    }

    /// Whether `attr` was read.
    pub(crate) fn has(&self, attr: Text) -> bool {
        self.0[attr as usize].is_some()
    }

    /// The envelope of these text attributes and the rest of what a format read.
    pub(crate) fn envelope<M>(self, typed: Typed<M>) -> Envelope<M> {
        let [
            subject,
            dataschema,
            partition_key,
            correlation_id,
            causation_id,
            traceparent,
            tracestate,
            dedupe_key,
        ] = self.0;
        Envelope {
            id: typed.id,
            source: Cow::Owned(typed.source),
            ty: Cow::Owned(typed.ty),
            version: typed.version,
            subject,
            time: typed.time,
            content_type: typed.content_type,
            dataschema,
            partition_key,
            correlation_id,
            causation_id,
            // A `tracestate` without a `traceparent` is dropped, in every format alike.
            trace: traceparent.map(|traceparent| TraceContext {
                traceparent,
                tracestate,
            }),
            dedupe_key,
            sequence: typed.sequence,
            extensions: typed.extensions,
            data: typed.data,
        }
    }
}

/// What a format reads besides the text attributes: the attributes of their own types, the
/// extensions and the data.
pub(crate) struct Typed<M> {
    pub(crate) id: EventId,
    pub(crate) source: String,
    pub(crate) ty: String,
    pub(crate) version: u32,
    pub(crate) time: OffsetDateTime,
    /// `datacontenttype` ([`content_type`]).
    pub(crate) content_type: Cow<'static, str>,
    pub(crate) sequence: Option<u64>,
    pub(crate) extensions: BTreeMap<String, ExtensionValue>,
    pub(crate) data: M,
}

#[cfg(test)]
mod tests {
    use super::{Text, TextValues, is_reserved};

    #[test]
    fn the_table_is_consistent() {
        for (i, attr) in Text::ALL.into_iter().enumerate() {
            assert_eq!(attr as usize, i, "ALL is in declaration order");
            assert_eq!(Text::named(attr.name()), Some(attr));
            assert!(is_reserved(attr.name()));
        }
        for name in ["id", "time", "eventversion", "sequence", "data"] {
            assert!(is_reserved(name), "{name}");
        }
        assert!(!is_reserved("tenant"));
        let mut values = TextValues::default();
        assert!(values.set(Text::Subject, "a".into()));
        assert!(!values.set(Text::Subject, "b".into()), "a duplicate");
        assert!(values.has(Text::Subject) && !values.has(Text::DedupeKey));
    }
}
