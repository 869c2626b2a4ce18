//! [`KafkaTransport`]: the runtime's transport contract on a Kafka cluster.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use event_runtime::transport::{
    Bytes, Claim, Headers, OutgoingRecord, Position, Record, Sharing, Slot, Transport,
    TransportError, TransportErrorKind, now_ms, offset_for_time_by_bisection,
};
use rdkafka::Message;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers as _, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use crate::config::KafkaConfig;
use crate::group::{Member, Refused};

/// Idle read cursors kept per partition.
const CURSORS_PER_PARTITION: usize = 4;
/// How long a revocation waits for the runtime to drain and release its partitions before the
/// coordinator may hand them over: well beyond the runtime's default drain (10 s) and a round,
/// for groups that raise `drain_timeout` (it ends as soon as they are released).
const REVOKE_WITHIN: Duration = Duration::from_secs(60);
/// The consumer group of read cursors. They only `assign`, never join or commit.
const READER_GROUP: &str = "event-kafka-reader";

/// A consumer assigned to one partition, and what it read ahead.
struct Cursor {
    consumer: StreamConsumer,
    /// The app's name of the topic (without the prefix), for the records read.
    topic: Arc<str>,
    /// The offset the next record handed out will have.
    position: u64,
    /// Records read (by `wait`) but not handed out yet, from `position` on.
    buffered: VecDeque<Record>,
}

/// A group member of one instance, with the session it was made with.
type Joined = (Arc<Member>, Duration);

struct Inner {
    config: KafkaConfig,
    producer: FutureProducer,
    admin: AdminClient<DefaultClientContext>,
    /// Partition counts of topics known to exist (counts never change).
    topics: Mutex<HashMap<String, u32>>,
    cursors: Mutex<HashMap<(String, u32), Vec<Cursor>>>,
    groups: Mutex<HashMap<String, Arc<BaseConsumer>>>,
    /// Group members of the instances on this transport, by (group, instance), with the
    /// session they were made with.
    members: Mutex<HashMap<(String, String), Joined>>,
    epochs: Arc<AtomicU64>,
}

/// The Kafka engine. Cloning shares the clients. See the crate docs.
#[derive(Clone)]
pub struct KafkaTransport {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for KafkaTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaTransport")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn unknown(topic: &str, operation: &str) -> TransportError {
    TransportError::new(
        TransportErrorKind::UnknownTopic,
        format!("{operation} {topic}"),
        format!("topic `{topic}` does not exist"),
    )
}

fn bad_partition(topic: &str, partition: u32, count: u32) -> TransportError {
    TransportError::new(
        TransportErrorKind::InvalidPartition,
        format!("partition {partition} of {topic}"),
        format!("topic `{topic}` has {count} partitions"),
    )
}

/// The header that lists, by index, the headers of a Kafka record that could not be read.
pub const UNREADABLE_HEADERS: &str = "x-evt-unreadable-headers";

/// A stored Kafka message as a [`Record`] of `topic` (the name shared by the records of one
/// cursor): headers verbatim in one block (a null value reads as empty). librdkafka owns the
/// message's buffers, so key, headers and payload are copied once each.
///
/// Kafka allows any bytes in a header's name, but rdkafka's reader panics on a name that is not
/// UTF-8 (`Headers::try_get` unwraps `to_str`). Such a header (only a foreign producer writes
/// one) is left out, its index listed in [`UNREADABLE_HEADERS`], and the rest of the record is
/// read: a panic here would stop the partition on that record for ever.
pub(crate) fn to_record<M: Message>(message: &M, topic: &Arc<str>) -> Record {
    let headers = message
        .headers()
        .map(|headers| {
            let mut block = Headers::builder();
            let mut unreadable = Vec::new();
            for idx in 0..headers.count() {
                let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    headers
                        .try_get(idx)
                        .map(|h| block.push(h.key, h.value.unwrap_or_default()))
                }));
                if read.is_err() {
                    unreadable.push(idx.to_string());
                }
            }
            if !unreadable.is_empty() {
                block.push(UNREADABLE_HEADERS, unreadable.join(",").as_bytes());
            }
            block.finish()
        })
        .unwrap_or_default();
    Record {
        topic: Arc::clone(topic),
        partition: message.partition().max(0) as u32,
        offset: message.offset().max(0) as u64,
        timestamp_ms: message.timestamp().to_millis().unwrap_or(0),
        key: message.key().map(Bytes::copy_from_slice),
        headers,
        payload: Bytes::copy_from_slice(message.payload().unwrap_or_default()),
    }
}

/// Our headers as Kafka headers, verbatim and in order.
pub(crate) fn to_headers(headers: &Headers) -> OwnedHeaders {
    headers.iter().fold(
        OwnedHeaders::new_with_capacity(headers.len()),
        |h, (key, value)| {
            h.insert(Header {
                key,
                value: Some(value),
            })
        },
    )
}

impl KafkaTransport {
    /// Creates the clients for the cluster of `config`. librdkafka connects lazily: an
    /// unreachable cluster shows on the first call.
    ///
    /// # Errors
    ///
    /// A configuration librdkafka rejects.
    pub fn connect(config: KafkaConfig) -> Result<Self, TransportError> {
        let mut producer_config = config.client_config();
        producer_config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "1")
            .set(
                "message.timeout.ms",
                config.request_timeout.as_millis().to_string(),
            );
        let producer: FutureProducer = producer_config
            .create()
            .map_err(|e| error_of(&config, TransportErrorKind::Other, "connect", &e))?;
        let admin: AdminClient<DefaultClientContext> = config
            .client_config()
            .create()
            .map_err(|e| error_of(&config, TransportErrorKind::Other, "connect", &e))?;
        Ok(KafkaTransport {
            inner: Arc::new(Inner {
                config,
                producer,
                admin,
                topics: Mutex::default(),
                cursors: Mutex::default(),
                groups: Mutex::default(),
                members: Mutex::default(),
                epochs: Arc::default(),
            }),
        })
    }

    fn error(&self, operation: &str, err: &KafkaError) -> TransportError {
        use RDKafkaErrorCode as Code;
        let kind = match err.rdkafka_error_code() {
            Some(Code::UnknownTopicOrPartition | Code::UnknownTopic) => {
                TransportErrorKind::UnknownTopic
            }
            Some(Code::UnknownPartition) => TransportErrorKind::InvalidPartition,
            // Failures that the same request will meet again: not worth a retry.
            Some(
                Code::MessageSizeTooLarge
                | Code::InvalidMessageSize
                | Code::MessageBatchTooLarge
                | Code::InvalidMessage
                | Code::InvalidRecord
                | Code::InvalidRequiredAcks
                | Code::InvalidConfig
                | Code::InvalidArgument
                | Code::InvalidTopic
                | Code::TopicAuthorizationFailed
                | Code::GroupAuthorizationFailed
                | Code::ClusterAuthorizationFailed
                | Code::TransactionalIdAuthorizationFailed
                | Code::SaslAuthenticationFailed
                | Code::Authentication
                | Code::UnsupportedVersion
                | Code::UnsupportedForMessageFormat
                | Code::UnsupportedCompressionType
                | Code::PolicyViolation,
            ) => TransportErrorKind::Other,
            _ => TransportErrorKind::Unavailable,
        };
        error_of(&self.inner.config, kind, operation, err)
    }

    /// Runs blocking librdkafka calls off the async workers.
    async fn blocking<R: Send + 'static>(
        &self,
        operation: &str,
        f: impl FnOnce(&Inner) -> Result<R, KafkaError> + Send + 'static,
    ) -> Result<R, TransportError> {
        let inner = self.inner.clone();
        match tokio::task::spawn_blocking(move || f(&inner)).await {
            Ok(result) => result.map_err(|e| self.error(operation, &e)),
            Err(join) => Err(TransportError::new(
                TransportErrorKind::Other,
                operation,
                format!("the blocking call failed: {join}"),
            )),
        }
    }

    /// Every topic with its partition count, from the cluster's metadata (internal topics left
    /// out).
    async fn metadata(&self) -> Result<Vec<(String, u32)>, TransportError> {
        self.blocking("read metadata", |inner| {
            let metadata = inner
                .producer
                .client()
                .fetch_metadata(None, inner.config.request_timeout)?;
            Ok(metadata
                .topics()
                .iter()
                .filter(|t| t.error().is_none() && !t.name().starts_with("__"))
                .filter_map(|t| {
                    let name = inner.config.app_name(t.name())?;
                    Some((name.to_owned(), t.partitions().len() as u32))
                })
                .filter(|(_, n)| *n > 0)
                .collect())
        })
        .await
    }

    /// The partition count of `topic`, or `None` when it does not exist.
    async fn partitions(&self, topic: &str) -> Result<Option<u32>, TransportError> {
        if let Some(count) = lock(&self.inner.topics).get(topic) {
            return Ok(Some(*count));
        }
        let all = self.metadata().await?;
        let mut known = lock(&self.inner.topics);
        for (name, count) in &all {
            known.insert(name.clone(), *count);
        }
        Ok(known.get(topic).copied())
    }

    async fn existing(&self, topic: &str, operation: &str) -> Result<u32, TransportError> {
        self.partitions(topic)
            .await?
            .ok_or_else(|| unknown(topic, operation))
    }

    /// The consumer that reads and writes `group`'s positions.
    /// Every consumer group under the prefix that committed a position on a topic under the
    /// prefix: `(group, topic, partition, next offset)`, sorted, in the app's names. What
    /// `evt lag` lists. The groups come from the cluster (`ListGroups`), their positions from
    /// one `OffsetFetch` per group.
    ///
    /// # Errors
    ///
    /// The cluster's, when it cannot be reached or refuses the requests.
    pub async fn group_positions(&self) -> Result<Vec<(String, String, u32, u64)>, TransportError> {
        let groups = self.groups().await?;
        let topics = self.topics().await?;
        let mut out = Vec::new();
        for group in groups {
            // Not kept: a cluster may have many groups this process never uses.
            let consumer = self.group_client(&group)?;
            let mut list = TopicPartitionList::new();
            for (topic, partitions) in &topics {
                for partition in 0..*partitions {
                    list.add_partition(&self.inner.config.kafka_name(topic), partition as i32);
                }
            }
            let operation = format!("read the positions of {group}");
            let offsets = self
                .blocking(&operation, move |inner| {
                    consumer.committed_offsets(list, inner.config.request_timeout)
                })
                .await?;
            for element in offsets.elements() {
                if let (Offset::Offset(next), Some(topic)) = (
                    element.offset(),
                    self.inner.config.app_name(element.topic()),
                ) && next >= 0
                {
                    out.push((
                        group.clone(),
                        topic.to_owned(),
                        element.partition().max(0) as u32,
                        next as u64,
                    ));
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Every consumer group the cluster knows under the prefix, sorted, in the app's names;
    /// also those that never committed a position (`ListGroups`).
    ///
    /// # Errors
    ///
    /// The cluster's, when it cannot be reached or refuses the request.
    pub async fn groups(&self) -> Result<Vec<String>, TransportError> {
        let timeout = self.inner.config.request_timeout;
        let mut groups: Vec<String> = self
            .blocking("list consumer groups", move |inner| {
                let list = inner.producer.client().fetch_group_list(None, timeout)?;
                Ok(list
                    .groups()
                    .iter()
                    .filter_map(|g| inner.config.app_name(g.name()).map(str::to_owned))
                    .collect())
            })
            .await?;
        groups.sort();
        groups.dedup();
        Ok(groups)
    }

    /// The client of `group` for positions (never subscribed), kept for the next call.
    fn group(&self, group: &str) -> Result<Arc<BaseConsumer>, TransportError> {
        let mut groups = lock(&self.inner.groups);
        if let Some(consumer) = groups.get(group) {
            return Ok(consumer.clone());
        }
        let consumer = Arc::new(self.group_client(group)?);
        groups.insert(group.to_owned(), consumer.clone());
        Ok(consumer)
    }

    /// A new client of `group` for positions, never subscribed.
    fn group_client(&self, group: &str) -> Result<BaseConsumer, TransportError> {
        self.inner
            .config
            .client_config()
            .set("group.id", self.inner.config.kafka_name(group))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .create()
            .map_err(|e| self.error(&format!("open group {group}"), &e))
    }

    /// A cursor of `topic`/`partition` positioned at `from`: an idle one already there, else
    /// an idle one moved there, else a new one.
    fn take_cursor(
        &self,
        topic: &str,
        partition: u32,
        from: u64,
    ) -> Result<Cursor, TransportError> {
        let reused = {
            let mut cursors = lock(&self.inner.cursors);
            cursors
                .get_mut(&(topic.to_owned(), partition))
                .and_then(|idle| {
                    let at = idle.iter().position(|c| c.position == from).unwrap_or(0);
                    (at < idle.len()).then(|| idle.swap_remove(at))
                })
        };
        let consumer = match reused {
            Some(cursor) if cursor.position == from => return Ok(cursor),
            Some(cursor) => cursor.consumer,
            None => self
                .inner
                .config
                .client_config()
                .set("group.id", READER_GROUP)
                .set("enable.auto.commit", "false")
                .set("enable.auto.offset.store", "false")
                .set("auto.offset.reset", "earliest")
                .set("fetch.wait.max.ms", "50")
                .create()
                .map_err(|e| self.error(&format!("read {topic}"), &e))?,
        };
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(
                &self.inner.config.kafka_name(topic),
                partition as i32,
                Offset::Offset(from as i64),
            )
            .map_err(|e| self.error(&format!("read {topic}"), &e))?;
        consumer
            .assign(&assignment)
            .map_err(|e| self.error(&format!("read {topic}"), &e))?;
        Ok(Cursor {
            consumer,
            topic: topic.into(),
            position: from,
            buffered: VecDeque::new(),
        })
    }

    fn put_cursor(&self, topic: &str, partition: u32, cursor: Cursor) {
        let mut cursors = lock(&self.inner.cursors);
        let idle = cursors.entry((topic.to_owned(), partition)).or_default();
        if idle.len() < CURSORS_PER_PARTITION {
            idle.push(cursor);
        }
    }

    /// The next record of `cursor`, waiting up to `timeout`. Records before the cursor's
    /// position (never expected) are skipped.
    async fn next(
        &self,
        cursor: &mut Cursor,
        operation: &str,
        timeout: Duration,
    ) -> Result<Option<Record>, TransportError> {
        if let Some(record) = cursor.buffered.pop_front() {
            cursor.position = record.offset + 1;
            return Ok(Some(record));
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, cursor.consumer.recv()).await {
                Err(_elapsed) => return Ok(None),
                Ok(Err(err)) => return Err(self.error(operation, &err)),
                Ok(Ok(message)) => {
                    let record = to_record(&message, &cursor.topic);
                    if record.offset >= cursor.position {
                        cursor.position = record.offset + 1;
                        return Ok(Some(record));
                    }
                }
            }
        }
    }

    /// The member of `group` for `instance`, joined for `topics` (Kafka names) with a session of
    /// `ttl`; a member made for other topics or another session is replaced.
    async fn member(
        &self,
        group: &str,
        instance: &str,
        topics: Vec<String>,
        ttl: Duration,
    ) -> Result<Arc<Member>, TransportError> {
        let key = (group.to_owned(), instance.to_owned());
        let stale = {
            let mut members = lock(&self.inner.members);
            match members.get(&key) {
                Some((member, session)) if member.topics() == topics && *session == ttl => {
                    return Ok(member.clone());
                }
                _ => members.remove(&key),
            }
        };
        if let Some((stale, _)) = stale {
            // Leaving joins a thread and closes the client: off the async workers.
            let _ = tokio::task::spawn_blocking(move || drop(stale)).await;
        }
        let (config, kafka_group) = (
            self.inner.config.clone(),
            self.inner.config.kafka_name(group),
        );
        let (instance_id, epochs) = (instance.to_owned(), self.inner.epochs.clone());
        let revoke_within = REVOKE_WITHIN;
        let operation = format!("join group {group}");
        let member = tokio::task::spawn_blocking(move || {
            Member::join(
                &config,
                &kafka_group,
                &instance_id,
                topics,
                ttl,
                revoke_within,
                epochs,
            )
        })
        .await
        .map_err(|join| {
            TransportError::new(
                TransportErrorKind::Other,
                operation.clone(),
                join.to_string(),
            )
        })?
        .map_err(|e| self.error(&operation, &e))?;
        let member = Arc::new(member);
        lock(&self.inner.members).insert(key, (member.clone(), ttl));
        Ok(member)
    }

    /// The member of `group` holding `partition` of `topic` (Kafka name), with its instance
    /// and session, and the partition's epoch.
    fn holder(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
    ) -> Option<(String, Arc<Member>, Duration, u64)> {
        let members = lock(&self.inner.members);
        members.iter().filter(|((g, _), _)| g == group).find_map(
            |((_, instance), (member, ttl))| {
                let epoch = member.epoch(topic, partition as i32)?;
                Some((instance.clone(), member.clone(), *ttl, epoch))
            },
        )
    }

    /// The high watermark of one partition.
    async fn high(&self, topic: &str, partition: u32) -> Result<u64, TransportError> {
        let name = self.inner.config.kafka_name(topic);
        self.blocking(&format!("end offsets of {topic}"), move |inner| {
            let (_, high) = inner.producer.client().fetch_watermarks(
                &name,
                partition as i32,
                inner.config.request_timeout,
            )?;
            Ok(high.max(0) as u64)
        })
        .await
    }
}

fn error_of(
    config: &KafkaConfig,
    kind: TransportErrorKind,
    operation: &str,
    err: &KafkaError,
) -> TransportError {
    // No source: the engine's error could carry what the message redacts.
    TransportError::new(kind, operation, config.redact(&err.to_string()))
}

impl Transport for KafkaTransport {
    async fn ensure_topic(&self, topic: &str, partitions: u32) -> Result<u32, TransportError> {
        if let Some(count) = self.partitions(topic).await? {
            return Ok(count);
        }
        let operation = format!("create topic {topic}");
        if let Some(creator) = self.inner.config.topic_creator.clone() {
            let name = self.inner.config.kafka_name(topic);
            let created = tokio::task::spawn_blocking(move || creator(&name, partitions.max(1)))
                .await
                .unwrap_or_else(|e| Err(e.to_string()));
            // A concurrent creation wins; the metadata below tells.
            if let Err(message) = created
                && self.partitions(topic).await?.is_none()
            {
                return Err(TransportError::new(
                    TransportErrorKind::Unavailable,
                    operation,
                    self.inner.config.redact(&message),
                ));
            }
        } else {
            let name = self.inner.config.kafka_name(topic);
            let new = NewTopic::new(
                &name,
                partitions.max(1) as i32,
                TopicReplication::Fixed(self.inner.config.replication_factor),
            );
            let options =
                AdminOptions::new().operation_timeout(Some(self.inner.config.request_timeout));
            let results = self
                .inner
                .admin
                .create_topics([&new], &options)
                .await
                .map_err(|e| self.error(&operation, &e))?;
            for result in results {
                match result {
                    Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                    Err((_, code)) => {
                        return Err(self.error(&operation, &KafkaError::AdminOp(code)));
                    }
                }
            }
        }
        // The metadata may lag the creation on a real cluster.
        let deadline = Instant::now() + self.inner.config.request_timeout;
        loop {
            if let Some(count) = self.partitions(topic).await? {
                return Ok(count);
            }
            if Instant::now() >= deadline {
                return Err(TransportError::new(
                    TransportErrorKind::Unavailable,
                    operation,
                    "the created topic did not show in the metadata",
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn append(
        &self,
        topic: &str,
        records: Vec<OutgoingRecord>,
    ) -> Result<Vec<Position>, TransportError> {
        let operation = format!("append to {topic}");
        let count = self.existing(topic, "append to").await?;
        if let Some(bad) = records.iter().find(|r| r.partition >= count) {
            return Err(bad_partition(topic, bad.partition, count));
        }
        let timestamp = now_ms();
        let name = self.inner.config.kafka_name(topic);
        let mut deliveries = Vec::with_capacity(records.len());
        for record in &records {
            let mut message = FutureRecord::to(&name)
                .partition(record.partition as i32)
                .payload(&record.payload[..])
                .headers(to_headers(&record.headers))
                .timestamp(timestamp);
            if let Some(key) = &record.key {
                message = message.key(&key[..]);
            }
            // Enqueue in order (the idempotent producer keeps it per partition); wait while the
            // local queue is full.
            loop {
                match self.inner.producer.send_result(message) {
                    Ok(delivery) => {
                        deliveries.push(delivery);
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        message = back;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err((err, _)) => return Err(self.error(&operation, &err)),
                }
            }
        }
        let mut positions = Vec::with_capacity(deliveries.len());
        for delivery in deliveries {
            match delivery.await {
                Ok(Ok(delivered)) => positions.push(Position {
                    partition: delivered.partition.max(0) as u32,
                    offset: delivered.offset.max(0) as u64,
                }),
                Ok(Err((err, _))) => return Err(self.error(&operation, &err)),
                Err(_canceled) => {
                    return Err(TransportError::new(
                        TransportErrorKind::Unavailable,
                        operation,
                        "the producer was closed before the delivery report",
                    ));
                }
            }
        }
        Ok(positions)
    }

    async fn fetch(
        &self,
        topic: &str,
        partition: u32,
        from: u64,
        max: usize,
    ) -> Result<Vec<Record>, TransportError> {
        let operation = format!("fetch from {topic}");
        let count = self.existing(topic, "fetch from").await?;
        if partition >= count {
            return Err(bad_partition(topic, partition, count));
        }
        if max == 0 {
            return Ok(Vec::new());
        }
        let mut cursor = self.take_cursor(topic, partition, from)?;
        let mut out = Vec::new();
        while out.len() < max {
            let Some(record) = cursor.buffered.pop_front() else {
                break;
            };
            cursor.position = record.offset + 1;
            out.push(record);
        }
        // What librdkafka already fetched into the cursor's local queue comes first, without
        // asking the broker anything.
        while out.len() < max {
            match self.next(&mut cursor, &operation, Duration::ZERO).await {
                Ok(Some(record)) => out.push(record),
                Ok(None) => break,
                // Reported now when nothing was read; otherwise what was read is returned and
                // the next fetch meets the engine's state again.
                Err(err) if out.is_empty() => return Err(err),
                Err(_) => break,
            }
        }
        if out.is_empty() {
            // Nothing local: what is stored now is read to the end (or `max`); nothing is
            // waited for beyond it.
            let high = self.high(topic, partition).await?;
            let deadline = Instant::now() + self.inner.config.request_timeout;
            while out.len() < max && cursor.position < high {
                let left = deadline.saturating_duration_since(Instant::now());
                match self.next(&mut cursor, &operation, left).await? {
                    Some(record) => out.push(record),
                    None => {
                        return Err(TransportError::new(
                            TransportErrorKind::Unavailable,
                            operation,
                            "stored records were not delivered in time",
                        ));
                    }
                }
            }
        }
        self.put_cursor(topic, partition, cursor);
        Ok(out)
    }

    async fn wait(&self, topic: &str, partition: u32, from: u64, timeout: Duration) {
        let exists = matches!(self.partitions(topic).await, Ok(Some(n)) if partition < n);
        if !exists {
            tokio::time::sleep(timeout).await;
            return;
        }
        let Ok(mut cursor) = self.take_cursor(topic, partition, from) else {
            tokio::time::sleep(timeout).await;
            return;
        };
        if cursor.buffered.is_empty()
            && let Ok(Some(record)) = self.next(&mut cursor, "wait", timeout).await
        {
            // Kept for the next fetch from `from`.
            cursor.position = record.offset;
            cursor.buffered.push_back(record);
        }
        self.put_cursor(topic, partition, cursor);
    }

    async fn committed(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
    ) -> Result<u64, TransportError> {
        let consumer = self.group(group)?;
        let name = self.inner.config.kafka_name(topic);
        let mut list = TopicPartitionList::new();
        list.add_partition(&name, partition as i32);
        let operation = format!("read the position of {group} on {topic}");
        let offsets = self
            .blocking(&operation, move |inner| {
                consumer.committed_offsets(list, inner.config.request_timeout)
            })
            .await?;
        Ok(
            match offsets
                .find_partition(&name, partition as i32)
                .map(|p| p.offset())
            {
                Some(Offset::Offset(n)) if n >= 0 => n as u64,
                _ => 0,
            },
        )
    }

    async fn commit(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        next_offset: u64,
    ) -> Result<(), TransportError> {
        let consumer = self.group(group)?;
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(
            &self.inner.config.kafka_name(topic),
            partition as i32,
            Offset::Offset(next_offset as i64),
        )
        .map_err(|e| self.error("commit", &e))?;
        let operation = format!("commit the position of {group} on {topic}");
        self.blocking(&operation, move |_| {
            consumer.commit(&list, CommitMode::Sync)
        })
        .await
    }

    /// Kafka's consumer-group protocol assigns the partitions: see the crate docs.
    fn system(&self) -> &'static str {
        "kafka"
    }

    fn sharing(&self) -> Sharing {
        Sharing::Engine
    }

    async fn assignment(
        &self,
        group: &str,
        instance: &str,
        topics: &[(String, u32)],
        ttl: Duration,
    ) -> Result<Vec<(String, u32)>, TransportError> {
        let config = &self.inner.config;
        let mut names: Vec<String> = topics.iter().map(|(t, _)| config.kafka_name(t)).collect();
        names.sort();
        names.dedup();
        let member = self.member(group, instance, names, ttl).await?;
        Ok(member
            .assignment()
            .into_iter()
            .filter_map(|(topic, partition)| {
                Some((
                    config.app_name(&topic)?.to_owned(),
                    u32::try_from(partition).ok()?,
                ))
            })
            .collect())
    }

    /// The committed offset, with this transport's member of `group` that holds the partition
    /// (if any) as the claim, and the partition's epoch there as the revision.
    async fn slot(&self, group: &str, topic: &str, partition: u32) -> Result<Slot, TransportError> {
        let next_offset = self.committed(group, topic, partition).await?;
        let name = self.inner.config.kafka_name(topic);
        Ok(match self.holder(group, &name, partition) {
            Some((owner, _, ttl, epoch)) => Slot {
                next_offset,
                claim: Some(Claim {
                    owner,
                    until_ms: now_ms() + i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 4),
                }),
                revision: epoch,
            },
            None => Slot {
                next_offset,
                claim: None,
                revision: 0,
            },
        })
    }

    /// Commits through the member that holds the partition under the epoch `expected`;
    /// `None` when no member here does (any more) or the coordinator fenced it.
    async fn swap_slot(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        next_offset: u64,
        claim: Option<&Claim>,
        expected: u64,
    ) -> Result<Option<u64>, TransportError> {
        let name = self.inner.config.kafka_name(topic);
        let Some((_, member, _, epoch)) = self.holder(group, &name, partition) else {
            return Ok(None);
        };
        if epoch != expected {
            return Ok(None);
        }
        let release = claim.is_none();
        let operation = format!("commit the position of {group} on {topic}");
        let written = tokio::task::spawn_blocking(move || {
            member.write(&name, partition as i32, next_offset, epoch, release)
        })
        .await
        .map_err(|join| {
            TransportError::new(
                TransportErrorKind::Other,
                operation.clone(),
                join.to_string(),
            )
        })?
        .map_err(|e| self.error(&operation, &e))?;
        Ok(match written {
            Ok(()) => Some(expected),
            Err(Refused::NotAssigned | Refused::Fenced) => None,
        })
    }

    async fn leave(&self, group: &str, instance: &str) -> Result<(), TransportError> {
        let member = lock(&self.inner.members).remove(&(group.to_owned(), instance.to_owned()));
        if let Some(member) = member {
            let _ = tokio::task::spawn_blocking(move || drop(member)).await;
        }
        Ok(())
    }

    async fn end_offsets(&self, topic: &str) -> Result<Vec<u64>, TransportError> {
        let count = self.existing(topic, "end offsets of").await?;
        let mut ends = Vec::with_capacity(count as usize);
        for partition in 0..count {
            ends.push(self.high(topic, partition).await?);
        }
        Ok(ends)
    }

    /// The broker's time index (ListOffsets by timestamp, `offsets_for_times`): the first offset
    /// whose record timestamp is at or after `timestamp_ms`; the end offset when none is.
    async fn offset_for_time(
        &self,
        topic: &str,
        partition: u32,
        timestamp_ms: i64,
    ) -> Result<u64, TransportError> {
        let count = self.existing(topic, "offset for time in").await?;
        if partition >= count {
            return Err(bad_partition(topic, partition, count));
        }
        let consumer = self.group(READER_GROUP)?;
        let name = self.inner.config.kafka_name(topic);
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(&name, partition as i32, Offset::Offset(timestamp_ms))
            .map_err(|e| self.error("offset for time", &e))?;
        let operation = format!("offset for time in {topic}");
        let found = self
            .blocking(&operation, move |inner| {
                consumer.offsets_for_times(list, inner.config.request_timeout)
            })
            .await?;
        let candidate = match found
            .find_partition(&name, partition as i32)
            .map(|p| p.offset())
        {
            Some(Offset::Offset(n)) if n >= 0 => n as u64,
            // No record at or after the time.
            _ => self.high(topic, partition).await?,
        };
        // Trust, but verify with two reads: the record there is at or after the time and the
        // one before it is not. Brokers without a proper time index (librdkafka's mock cluster,
        // tansu 0.6) fail this; the bisection then finds it.
        let at = self.fetch(topic, partition, candidate, 1).await?;
        let at_ok = at.first().is_none_or(|r| r.timestamp_ms >= timestamp_ms);
        let before_ok = candidate == 0
            || self
                .fetch(topic, partition, candidate - 1, 1)
                .await?
                .first()
                .is_none_or(|r| r.offset >= candidate || r.timestamp_ms < timestamp_ms);
        if at_ok && before_ok {
            Ok(candidate)
        } else {
            offset_for_time_by_bisection(self, topic, partition, timestamp_ms).await
        }
    }

    async fn topics(&self) -> Result<Vec<(String, u32)>, TransportError> {
        let mut all = self.metadata().await?;
        {
            let mut known = lock(&self.inner.topics);
            for (name, count) in &all {
                known.insert(name.clone(), *count);
            }
        }
        all.sort();
        Ok(all)
    }
}
