//! The publish path: [`Publisher`] (events to their context's topic, commands to their target
//! context's command topic), its errors, its outage policy ([`PublishRetry`]) and the one
//! partitioning rule every record goes through (the record key's partition, or the event id's),
//! which the outbox relay and the inbox use too. Below the consumer and the app: nothing here
//! imports them.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use tracing::Instrument;

use crate::cloudevents::binary::{self, BinaryMessage, Binding};
use crate::deprecation::Deprecations;
use crate::envelope::{Envelope, EventId, RawEnvelope, TraceContext};
use crate::error::EncodeError;
use crate::handler::Emitted;
use crate::message::{Command, DomainEvent, Message};
use crate::retry::PublishRetry;
use crate::telemetry::PendingSend;
use crate::transport::{
    Bytes, Headers, OutgoingRecord, Position, Transport, TransportError, command_topic, event_topic,
};

/// Why a publish failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The payload could not be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The engine refused or is unreachable.
    #[error(transparent)]
    Transport(#[from] TransportError),
}

/// Publishes events and sends commands. Cheap to clone.
///
/// An engine outage is ridden out for a bounded time ([`PublishRetry`], 10 s by default; see
/// [`crate::App::publish_retry`] and [`Publisher::with_retry`]), then reported as the publish's error.
pub struct Publisher<T> {
    pub(crate) transport: Arc<T>,
    pub(crate) partitions: u32,
    pub(crate) topics: Arc<Mutex<HashMap<String, u32>>>,
    pub(crate) retry: PublishRetry,
    pub(crate) deprecations: Arc<Deprecations>,
    /// What was sent, per topic (the metrics).
    pub(crate) sent: Arc<crate::telemetry::Sent>,
}

impl<T> Clone for Publisher<T> {
    fn clone(&self) -> Self {
        Publisher {
            transport: self.transport.clone(),
            partitions: self.partitions,
            topics: self.topics.clone(),
            retry: self.retry,
            deprecations: self.deprecations.clone(),
            sent: self.sent.clone(),
        }
    }
}

impl<T: Transport> Publisher<T> {
    pub(crate) async fn partitions_of(&self, topic: &str) -> Result<u32, TransportError> {
        if let Some(count) = self
            .topics
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(topic)
        {
            return Ok(*count);
        }
        let count = self.transport.ensure_topic(topic, self.partitions).await?;
        self.topics
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(topic.to_owned(), count);
        Ok(count)
    }

    /// The record for `envelope`: binary mode, partition from its key (or its id), with the
    /// `send` span's context `hop` in its protocol headers ([`crate::telemetry::stamp`]).
    fn record_for(
        envelope: &RawEnvelope,
        partitions: u32,
        hop: Option<&TraceContext>,
    ) -> Result<OutgoingRecord, EncodeError> {
        Ok(Self::message_record(
            binary::encode_parts(envelope, envelope.data.0.clone(), Binding::Kafka, hop)?,
            &envelope.id,
            partitions,
        ))
    }

    /// The record of a typed envelope, its payload encoded straight into the record: in binary
    /// mode, or in structured mode for an engine that stores that
    /// ([`Transport::structured_records`]); with `hop` as [`Self::record_for`].
    fn typed_record_for<M: Message>(
        envelope: &Envelope<M>,
        partitions: u32,
        structured: bool,
        hop: Option<&TraceContext>,
    ) -> Result<OutgoingRecord, EncodeError> {
        if structured {
            let mut payload = Vec::with_capacity(envelope.data.payload_len().unwrap_or(256) + 384);
            crate::cloudevents::structured::encode_with(envelope, &mut payload, |buf| {
                envelope.data.encode_payload(buf)
            })?;
            let mut id = uuid::Uuid::encode_buffer();
            let id = envelope.id.encode(&mut id);
            let mut headers = Headers::builder();
            headers.push(
                binary::CONTENT_TYPE_HEADER,
                crate::cloudevents::STRUCTURED_JSON.as_bytes(),
            );
            headers.push("ce_id", id.as_bytes());
            crate::telemetry::stamp(&mut headers, hop);
            let key = envelope
                .partition_key
                .as_ref()
                .map(|k| Bytes::copy_from_slice(k.as_bytes()));
            return Ok(Self::partitioned(
                key,
                headers.finish(),
                Bytes::from(payload),
                id,
                partitions,
            ));
        }
        Ok(Self::message_record(
            binary::to_binary_hop(envelope, Binding::Kafka, hop)?,
            &envelope.id,
            partitions,
        ))
    }

    fn message_record(message: BinaryMessage, id: &EventId, partitions: u32) -> OutgoingRecord {
        // The id is only written out for a record without a key.
        let mut buf = uuid::Uuid::encode_buffer();
        let id = match message.key {
            Some(_) => "",
            None => id.encode(&mut buf),
        };
        Self::partitioned(
            message.key,
            message.headers,
            message.payload,
            id,
            partitions,
        )
    }

    /// The one partitioning rule: the record key's partition, or the event id's.
    fn partitioned(
        key: Option<Bytes>,
        headers: Headers,
        payload: Bytes,
        id: &str,
        partitions: u32,
    ) -> OutgoingRecord {
        let key_bytes = key.as_deref().unwrap_or(id.as_bytes());
        OutgoingRecord {
            partition: crate::partition::partition_for_key(key_bytes, partitions),
            key,
            headers,
            payload,
        }
    }

    /// The `send` span of an append of `count` envelopes to `topic` (outside any span, a child
    /// of `created`, the envelopes' creation context), and its context, which the records
    /// encoded for it carry in their `traceparent` headers ([`crate::telemetry`]).
    fn send_span(
        &self,
        topic: &str,
        count: usize,
        created: Option<&TraceContext>,
    ) -> (tracing::Span, Option<TraceContext>) {
        let span = crate::telemetry::send_span(self.transport.system(), topic, count, created);
        let hop = crate::telemetry::hop_of(&span);
        (span, hop)
    }

    /// Appends `records` (encoded with its context) to `topic` in the `send` span `span`.
    pub(crate) async fn append(
        &self,
        topic: &str,
        records: Vec<OutgoingRecord>,
        span: tracing::Span,
    ) -> Result<Vec<Position>, TransportError> {
        let sent = self.sent.to(topic);
        let count = records.len() as u64;
        let started = std::time::Instant::now();
        let result = self
            .transport
            .append(topic, records)
            .instrument(span.clone())
            .await;
        sent.duration.observe(started.elapsed());
        match &result {
            Ok(_) => {
                sent.records
                    .fetch_add(count, std::sync::atomic::Ordering::Relaxed);
            }
            Err(err) => {
                sent.errors
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                crate::telemetry::append_failed(&span, err);
            }
        }
        result
    }

    /// The record for an envelope encoded earlier (the outbox's rows), partitioned exactly as
    /// [`Publisher::publish`] partitions it (`id` is the event id, `envelope.id.to_string()`).
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    pub(crate) async fn relay_record(
        &self,
        topic: &str,
        key: Option<Bytes>,
        headers: Headers,
        payload: Bytes,
        id: &str,
    ) -> Result<OutgoingRecord, TransportError> {
        let partitions = self.partitions_of(topic).await?;
        Ok(Self::partitioned(key, headers, payload, id, partitions))
    }

    /// The transport records are appended to.
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    pub(crate) fn transport_ref(&self) -> &T {
        &self.transport
    }

    /// This publisher with another outage policy.
    #[must_use]
    pub fn with_retry(mut self, retry: PublishRetry) -> Self {
        self.retry = retry;
        self
    }

    /// Publishes an event to its context's topic.
    ///
    /// # Errors
    ///
    /// Encoding or engine errors, the engine's once the [`PublishRetry`] gives up. On an error
    /// the event may still have been stored (an acknowledgement lost in an outage): publishing
    /// it again is safe, its id makes consumers drop the copy.
    pub async fn publish<E: DomainEvent>(
        &self,
        envelope: Envelope<E>,
    ) -> Result<Position, PublishError> {
        let topic = event_topic(envelope.data.descriptor().context);
        self.publish_typed(&topic, &envelope).await
    }

    /// Sends a command to its target context's command topic.
    ///
    /// # Errors
    ///
    /// Encoding or engine errors.
    pub async fn send<C: Command>(&self, envelope: Envelope<C>) -> Result<Position, PublishError> {
        let topic = command_topic(envelope.data.descriptor().context);
        self.publish_typed(&topic, &envelope).await
    }

    /// Counts a deprecated version; refuses one past its sunset.
    pub(crate) fn check_deprecation<M: Message>(&self, message: &M) -> Result<(), PublishError> {
        Ok(self.deprecations.published(message.descriptor())?)
    }

    /// One typed envelope to `topic`, encoded again only if an attempt fails.
    async fn publish_typed<M: Message>(
        &self,
        topic: &str,
        envelope: &Envelope<M>,
    ) -> Result<Position, PublishError> {
        self.check_deprecation(&envelope.data)?;
        self.retry
            .run(|| async {
                let partitions = self.partitions_of(topic).await?;
                let (span, hop) = self.send_span(topic, 1, envelope.trace.as_ref());
                let record = Self::typed_record_for(
                    envelope,
                    partitions,
                    self.transport.structured_records(),
                    hop.as_ref(),
                )
                .inspect_err(|_| crate::telemetry::send_failed(&span, "encode"))?;
                let positions = self.append(topic, vec![record], span).await?;
                Ok(positions[0])
            })
            .await
    }

    /// Publishes several events, one append per topic, in the given order per topic. Atomic on
    /// the SQLite and memory engines; on NATS and Kafka a failure can leave a prefix stored
    /// (publishing the batch again is safe: the ids make consumers drop the copies).
    ///
    /// # Errors
    ///
    /// Encoding or engine errors, the engine's once the [`PublishRetry`] gives up.
    pub async fn publish_all<E: DomainEvent>(
        &self,
        envelopes: Vec<Envelope<E>>,
    ) -> Result<Vec<Position>, PublishError> {
        for envelope in &envelopes {
            self.check_deprecation(&envelope.data)?;
        }
        let mut by_topic: BTreeMap<String, Vec<&Envelope<E>>> = BTreeMap::new();
        for envelope in &envelopes {
            by_topic
                .entry(event_topic(envelope.data.descriptor().context))
                .or_default()
                .push(envelope);
        }
        self.retry
            .run(|| async {
                // Every topic's records encoded before the first append: an encoding error
                // appends nothing.
                let mut batches = Vec::with_capacity(by_topic.len());
                for (topic, envelopes) in &by_topic {
                    let partitions = self.partitions_of(topic).await?;
                    let created = envelopes.first().and_then(|e| e.trace.as_ref());
                    let (span, hop) = self.send_span(topic, envelopes.len(), created);
                    let records = envelopes
                        .iter()
                        .map(|envelope| {
                            Self::typed_record_for(
                                envelope,
                                partitions,
                                self.transport.structured_records(),
                                hop.as_ref(),
                            )
                        })
                        .collect::<Result<Vec<_>, _>>()
                        .inspect_err(|_| crate::telemetry::send_failed(&span, "encode"))?;
                    batches.push((topic, records, PendingSend::new(span)));
                }
                let mut positions = Vec::with_capacity(envelopes.len());
                for (topic, records, span) in batches {
                    positions.extend(self.append(topic, records, span.release()).await?);
                }
                Ok(positions)
            })
            .await
    }

    /// Publishes an already-encoded envelope to `topic`.
    ///
    /// # Errors
    ///
    /// Encoding or engine errors.
    pub async fn publish_raw(
        &self,
        topic: &str,
        envelope: &RawEnvelope,
    ) -> Result<Position, PublishError> {
        self.retry
            .run(|| async {
                let partitions = self.partitions_of(topic).await?;
                let (span, hop) = self.send_span(topic, 1, envelope.trace.as_ref());
                let record = Self::record_for(envelope, partitions, hop.as_ref())
                    .inspect_err(|_| crate::telemetry::send_failed(&span, "encode"))?;
                let positions = self.append(topic, vec![record], span).await?;
                Ok(positions[0])
            })
            .await
    }

    /// Emitted envelopes by topic, in emission order within each.
    fn by_topic(emitted: Vec<Emitted>) -> BTreeMap<String, Vec<RawEnvelope>> {
        let mut by_topic: BTreeMap<String, Vec<RawEnvelope>> = BTreeMap::new();
        for item in emitted {
            by_topic.entry(item.topic).or_default().push(item.envelope);
        }
        by_topic
    }

    /// The `send` span of emitted `envelopes` to `topic` and their records, encoded with its
    /// context.
    fn emitted_records(
        &self,
        topic: &str,
        envelopes: &[RawEnvelope],
        partitions: u32,
    ) -> Result<(tracing::Span, Vec<OutgoingRecord>), TransportError> {
        let (span, hop) = self.send_span(topic, envelopes.len(), None);
        let records = envelopes
            .iter()
            .map(|envelope| Self::record_for(envelope, partitions, hop.as_ref()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| {
                crate::telemetry::send_failed(&span, "encode");
                TransportError::new(
                    crate::transport::TransportErrorKind::Other,
                    format!("publish to {topic}"),
                    err.to_string(),
                )
            })?;
        Ok((span, records))
    }

    pub(crate) async fn publish_emitted(
        &self,
        emitted: Vec<Emitted>,
    ) -> Result<(), TransportError> {
        // Every topic's records encoded before the first append: an encoding error appends
        // nothing.
        let mut batches = Vec::new();
        for (topic, envelopes) in Self::by_topic(emitted) {
            let partitions = self.partitions_of(&topic).await?;
            let (span, records) = self.emitted_records(&topic, &envelopes, partitions)?;
            batches.push((topic, records, PendingSend::new(span)));
        }
        for (topic, records, span) in batches {
            self.append(&topic, records, span.release()).await?;
        }
        Ok(())
    }

    /// Appends `emitted` to the log on `conn` (an inbox transaction of the SQLite engine's file);
    /// the partitions written, to wake once the transaction commits.
    #[cfg(feature = "sqlite")]
    pub(crate) async fn publish_emitted_in(
        &self,
        conn: &mut sqlx::SqliteConnection,
        emitted: Vec<Emitted>,
    ) -> Result<Vec<(String, u32)>, TransportError> {
        let mut written = Vec::new();
        // The send spans of the topics appended, pending until the last topic is: a later
        // topic's failure (or a cancellation) rolls the transaction back, and their appends with
        // it.
        let mut appended: Vec<PendingSend> = Vec::new();
        // Everything on `conn`, inside the inbox transaction: a topic this app has not seen yet
        // is created there too (another connection would wait for this transaction's lock).
        // Counts found here are not cached: the transaction may still roll back.
        for (topic, envelopes) in Self::by_topic(emitted) {
            let cached = self
                .topics
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(&topic)
                .copied();
            let partitions = match cached {
                Some(count) => count,
                None => {
                    crate::transport::sqlite::SqliteTransport::ensure_topic_on(
                        conn,
                        &topic,
                        self.partitions,
                    )
                    .await?
                }
            };
            let (span, records) = self.emitted_records(&topic, &envelopes, partitions)?;
            let positions =
                crate::transport::sqlite::SqliteTransport::append_on(conn, &topic, records)
                    .instrument(span.clone())
                    .await
                    .inspect_err(|err| crate::telemetry::append_failed(&span, err))?;
            for position in positions {
                written.push((topic.clone(), position.partition));
            }
            appended.push(PendingSend::new(span));
        }
        for span in appended {
            span.release();
        }
        written.sort_unstable();
        written.dedup();
        Ok(written)
    }
}
