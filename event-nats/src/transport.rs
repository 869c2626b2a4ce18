//! [`NatsTransport`]: the [`Transport`] contract on JetStream. See the crate docs for the layout.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, consumer, kv, stream};
use bytes::Bytes;
use event_runtime::transport::{
    Claim, OutgoingRecord, Position, Record, Sharing, Slot, Transport, TransportError,
    TransportErrorKind, now_ms,
};
use futures_util::StreamExt as _;

use crate::config::{Auth, ContentMode, NatsConfig, Redactor, Storage};
use crate::names::{Names, token, untoken, valid_prefix};
use crate::{headers, structured};

/// Idle read cursors kept per partition (one per reader position: groups at different offsets
/// each keep theirs).
const IDLE_CURSORS_PER_PARTITION: usize = 8;
/// How long the server keeps a read cursor's consumer nobody uses.
const CURSOR_INACTIVITY: Duration = Duration::from_secs(120);

/// The NATS JetStream engine. Cloning shares the connection.
#[derive(Clone)]
pub struct NatsTransport {
    inner: Arc<Inner>,
}

struct Inner {
    client: async_nats::Client,
    js: jetstream::Context,
    config: NatsConfig,
    names: Names,
    redactor: Redactor,
    topics_kv: kv::Store,
    /// Slots: `<next offset>`, or `<next offset> <until_ms> <owner>` while an instance claims
    /// the partition; the entry's revision is the slot's.
    positions_kv: kv::Store,
    members_kv: kv::Store,
    /// Topics whose partition count is known and whose streams were checked by this process.
    partitions: Mutex<HashMap<String, u32>>,
    /// Idle read cursors by (topic, partition).
    cursors: Mutex<HashMap<(String, u32), Vec<Cursor>>>,
}

impl fmt::Debug for NatsTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsTransport")
            .field("url", &self.inner.config.redacted_url())
            .field("prefix", &self.inner.config.prefix)
            .field("storage", &self.inner.config.storage)
            .finish_non_exhaustive()
    }
}

/// A reader position on one partition: an ephemeral pull consumer (no acks, so the server
/// advances it as it delivers) and what it delivered that nobody fetched yet.
struct Cursor {
    consumer: consumer::PullConsumer,
    stream: String,
    js: jetstream::Context,
    /// The stream sequence the server delivers next.
    next_seq: u64,
    buffer: VecDeque<Record>,
    /// A pull request sent ahead after a full batch, turned into records by a task of its own,
    /// so that the next batch streams in and is decoded while this one is handled.
    prefetch: Option<tokio::task::JoinHandle<Prefetched>>,
}

/// What a prefetch brought: its records in stream order, and the error that ended it early.
type Prefetched = (Vec<Record>, Option<TransportError>);

impl Cursor {
    /// The offset the next fetch through this cursor returns first.
    fn position(&self) -> u64 {
        self.buffer
            .front()
            .map_or(self.next_seq.saturating_sub(1), |r| r.offset)
    }
}

impl Drop for Cursor {
    fn drop(&mut self) {
        if let Some(task) = self.prefetch.take() {
            task.abort();
        }
        // Delete the consumer now rather than after its inactivity threshold; without a runtime
        // (process exit) the threshold does it.
        let name = self.consumer.cached_info().name.clone();
        let (js, stream) = (self.js.clone(), std::mem::take(&mut self.stream));
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let _ = js.delete_consumer_from_stream(name, stream).await;
            });
        }
    }
}

fn classify(text: &str) -> TransportErrorKind {
    let lower = text.to_ascii_lowercase();
    if lower.contains("not found") && lower.contains("stream") {
        TransportErrorKind::UnknownTopic
    } else if lower.contains("timed out")
        || lower.contains("timeout")
        || lower.contains("no responders")
        || lower.contains("disconnected")
        || lower.contains("connection")
        || lower.contains("broken pipe")
        || lower.contains("io error")
        || lower.contains("503")
    {
        TransportErrorKind::Unavailable
    } else {
        TransportErrorKind::Other
    }
}

impl Inner {
    /// An error whose message has every credential scrubbed. The engine's error is not attached
    /// as a source (its text could carry what the scrubbing removed); its text is the message.
    fn error(&self, operation: impl Into<String>, err: impl fmt::Display) -> TransportError {
        let message = self.redactor.scrub(err);
        TransportError::new(classify(&message), operation, message)
    }

    fn stream_config(&self, topic: &str, partition: u32) -> stream::Config {
        stream::Config {
            name: self.names.stream(topic, partition),
            description: Some(format!("event log: topic `{topic}`, partition {partition}")),
            subjects: vec![self.names.subject(topic, partition)],
            storage: storage_type(self.config.storage),
            num_replicas: self.config.replicas,
            retention: stream::RetentionPolicy::Limits,
            discard: stream::DiscardPolicy::Old,
            max_age: self.config.max_age,
            duplicate_window: self.config.duplicate_window,
            allow_direct: true,
            ..Default::default()
        }
    }

    fn cached_partitions(&self, topic: &str) -> Option<u32> {
        self.partitions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(topic)
            .copied()
    }

    /// The partition count of an existing topic.
    async fn partition_count(&self, topic: &str, operation: &str) -> Result<u32, TransportError> {
        if let Some(count) = self.cached_partitions(topic) {
            return Ok(count);
        }
        let op = || format!("{operation} {topic}");
        let value = self
            .topics_kv
            .get(token(topic))
            .await
            .map_err(|err| self.error(op(), err))?;
        let Some(value) = value else {
            return Err(TransportError::new(
                TransportErrorKind::UnknownTopic,
                op(),
                format!("topic `{topic}` does not exist"),
            ));
        };
        let count = parse_count(&value).ok_or_else(|| {
            TransportError::new(
                TransportErrorKind::Corrupt,
                op(),
                "bad partition count in the topics bucket",
            )
        })?;
        Ok(count)
    }

    async fn checked_partition(
        &self,
        topic: &str,
        partition: u32,
        operation: &str,
    ) -> Result<(), TransportError> {
        let count = self.partition_count(topic, operation).await?;
        if partition >= count {
            return Err(TransportError::new(
                TransportErrorKind::InvalidPartition,
                format!("{operation} {topic}/{partition}"),
                format!("topic `{topic}` has {count} partitions"),
            ));
        }
        Ok(())
    }

    /// An idle cursor of `(topic, partition)` at `from`, or a new one.
    async fn cursor(
        &self,
        topic: &str,
        partition: u32,
        from: u64,
    ) -> Result<(Cursor, bool), TransportError> {
        let reused = {
            let mut cursors = self
                .cursors
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            cursors
                .get_mut(&(topic.to_owned(), partition))
                .and_then(|idle| {
                    let index = idle.iter().position(|c| c.position() == from)?;
                    Some(idle.swap_remove(index))
                })
        };
        if let Some(cursor) = reused {
            return Ok((cursor, true));
        }
        let stream = self.names.stream(topic, partition);
        let config = consumer::pull::Config {
            deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                start_sequence: from + 1,
            },
            ack_policy: consumer::AckPolicy::None,
            replay_policy: consumer::ReplayPolicy::Instant,
            inactive_threshold: CURSOR_INACTIVITY,
            memory_storage: true,
            num_replicas: 1,
            ..Default::default()
        };
        let consumer = self
            .js
            .create_consumer_on_stream(config, &stream)
            .await
            .map_err(|err| self.error(format!("read {topic}/{partition}"), err))?;
        Ok((
            Cursor {
                consumer,
                stream,
                js: self.js.clone(),
                next_seq: from + 1,
                buffer: VecDeque::new(),
                prefetch: None,
            },
            false,
        ))
    }

    /// Returns a cursor that is in a known state to the idle set.
    fn park(&self, topic: &str, partition: u32, cursor: Cursor) {
        let evicted = {
            let mut cursors = self
                .cursors
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let idle = cursors.entry((topic.to_owned(), partition)).or_default();
            idle.push(cursor);
            (idle.len() > IDLE_CURSORS_PER_PARTITION).then(|| idle.remove(0))
        };
        drop(evicted);
    }

    /// Adds to the cursor's buffer what the server has for it now (up to `max`), without
    /// waiting for more: what a prefetch brought, or else what one no-wait pull brings.
    async fn pull_now(
        &self,
        topic: &str,
        partition: u32,
        cursor: &mut Cursor,
        max: usize,
    ) -> Result<(), TransportError> {
        let op = || format!("fetch from {topic}/{partition}");
        if let Some(task) = cursor.prefetch.take() {
            // The task ends by itself: the server ends the request, or its bound passes.
            let (records, failure) = task.await.unwrap_or_else(|err| {
                let err = TransportError::new(
                    TransportErrorKind::Other,
                    op(),
                    format!("the prefetch task failed: {err}"),
                );
                (Vec::new(), Some(err))
            });
            merge(cursor, records);
            if let Some(err) = failure {
                return Err(err);
            }
            if !cursor.buffer.is_empty() {
                return Ok(());
            }
        }
        let batch = cursor
            .consumer
            .fetch()
            .max_messages(max)
            .messages()
            .await
            .map_err(|err| self.error(op(), err))?;
        // A no-wait pull ends with the server's "no messages"; bound it in case the server never
        // answers (connection lost).
        let mut records = Vec::with_capacity(max.min(1024));
        let result = self
            .collect(
                topic,
                partition,
                batch,
                self.config.request_timeout,
                &mut records,
            )
            .await;
        merge(cursor, records);
        result
    }

    /// Sends a no-wait pull for `max` records without waiting for them; a task of its own turns
    /// what it brings into records, and the next [`Self::pull_now`] takes them. At most one pull
    /// is outstanding per cursor (requests drained separately could interleave), so records
    /// come in stream order.
    async fn prefetch(
        self: &Arc<Self>,
        topic: &str,
        partition: u32,
        cursor: &mut Cursor,
        max: usize,
    ) {
        if cursor.prefetch.is_some() {
            return;
        }
        let Ok(batch) = cursor.consumer.fetch().max_messages(max).messages().await else {
            return;
        };
        let (inner, topic) = (self.clone(), topic.to_owned());
        cursor.prefetch = Some(tokio::spawn(async move {
            let mut records = Vec::with_capacity(max.min(1024));
            let bound = inner.config.request_timeout;
            let failure = inner
                .collect(&topic, partition, batch, bound, &mut records)
                .await
                .err();
            (records, failure)
        }));
    }

    /// Turns every message of one pull request into a record, until the server ends it or
    /// `bound` passes. What came before an error stays in `out`.
    async fn collect(
        &self,
        topic: &str,
        partition: u32,
        mut batch: consumer::pull::Batch,
        bound: Duration,
        out: &mut Vec<Record>,
    ) -> Result<(), TransportError> {
        let op = || format!("fetch from {topic}/{partition}");
        let name: Arc<str> = topic.into();
        let pull = async {
            while let Some(message) = batch.next().await {
                let message = message.map_err(|err| self.error(op(), err))?;
                out.push(record(&name, partition, message).map_err(|err| self.error(op(), err))?);
            }
            Ok::<(), TransportError>(())
        };
        match tokio::time::timeout(bound, pull).await {
            Ok(result) => result,
            Err(_) => Err(TransportError::new(
                TransportErrorKind::Unavailable,
                op(),
                "the server did not answer the pull request in time",
            )),
        }
    }

    /// Waits up to `timeout` for one more record on the cursor.
    async fn pull_wait(
        &self,
        topic: &str,
        partition: u32,
        cursor: &mut Cursor,
        timeout: Duration,
    ) -> Result<(), TransportError> {
        let op = || format!("wait on {topic}/{partition}");
        if timeout < Duration::from_millis(10) {
            self.pull_now(topic, partition, cursor, 1).await?;
            if cursor.buffer.is_empty() {
                tokio::time::sleep(timeout).await;
            }
            return Ok(());
        }
        let batch = cursor
            .consumer
            .batch()
            .max_messages(1)
            .expires(timeout)
            .messages()
            .await
            .map_err(|err| self.error(op(), err))?;
        let mut records = Vec::new();
        let result = self
            .collect(
                topic,
                partition,
                batch,
                timeout + self.config.request_timeout,
                &mut records,
            )
            .await;
        merge(cursor, records);
        result
    }
}

/// Buffers delivered records on the cursor.
fn merge(cursor: &mut Cursor, records: Vec<Record>) {
    for record in records {
        accept(&mut cursor.buffer, &mut cursor.next_seq, record);
    }
}

/// Buffers one delivered record if it is past what the cursor delivered (`next_seq`).
fn accept(buffer: &mut VecDeque<Record>, next_seq: &mut u64, record: Record) -> bool {
    let seq = record.offset + 1;
    if seq < *next_seq {
        // Delivered again (cannot happen without acks, but never hand a record out twice).
        return false;
    }
    *next_seq = seq + 1;
    buffer.push_back(record);
    true
}

/// One delivered message as a record.
fn record(topic: &Arc<str>, partition: u32, message: jetstream::Message) -> Result<Record, String> {
    let info = message.info().map_err(|err| err.to_string())?;
    let seq = info.stream_sequence;
    let timestamp_ms = (info.published.unix_timestamp_nanos() / 1_000_000) as i64;
    let (key, headers) = headers::from_wire(message.message.headers.as_ref());
    Ok(Record {
        topic: Arc::clone(topic),
        partition,
        offset: seq.saturating_sub(1),
        timestamp_ms,
        key,
        headers,
        // The client's buffer, shared as it is.
        payload: message.message.payload,
    })
}

fn parse_count(value: &[u8]) -> Option<u32> {
    std::str::from_utf8(value).ok()?.trim().parse().ok()
}

impl NatsTransport {
    /// Connects, and creates the topics and positions buckets if they are missing.
    ///
    /// # Errors
    ///
    /// When the configuration is invalid, the server is unreachable, refuses the credentials or
    /// has no JetStream. No message carries a credential.
    pub async fn connect(config: NatsConfig) -> Result<Self, TransportError> {
        let redactor = Redactor::new(&config);
        let fail = |kind, message: String| {
            TransportError::new(
                kind,
                format!("connect to {}", config.redacted_url()),
                redactor.scrub(message),
            )
        };
        if !valid_prefix(&config.prefix) {
            return Err(fail(
                TransportErrorKind::Other,
                format!(
                    "prefix `{}` must be ASCII letters, digits and `_`",
                    config.prefix
                ),
            ));
        }
        // Credentials in the URL are handed to the client as credentials; the client only ever
        // sees the bare addresses (it logs them).
        let (url, url_credentials) = crate::config::split_url_credentials(&config.url);
        let options = match &config.auth {
            Auth::None => match url_credentials {
                None => async_nats::ConnectOptions::new(),
                Some(userinfo) => match userinfo.split_once(':') {
                    Some((user, password)) => async_nats::ConnectOptions::new()
                        .user_and_password(user.to_owned(), password.to_owned()),
                    None => async_nats::ConnectOptions::new().token(userinfo),
                },
            },
            Auth::UserPassword { user, password } => async_nats::ConnectOptions::new()
                .user_and_password(user.clone(), password.expose().to_owned()),
            Auth::Token(token) => {
                async_nats::ConnectOptions::new().token(token.expose().to_owned())
            }
            Auth::CredsFile(path) => async_nats::ConnectOptions::new()
                .credentials_file(path)
                .await
                .map_err(|err| {
                    fail(
                        TransportErrorKind::Other,
                        format!("cannot read creds file {}: {err}", path.display()),
                    )
                })?,
            Auth::Creds(creds) => async_nats::ConnectOptions::new()
                .credentials(creds.expose())
                .map_err(|err| {
                    fail(
                        TransportErrorKind::Other,
                        format!("invalid credentials: {err}"),
                    )
                })?,
        };
        let max_delay = config.max_reconnect_delay;
        let mut options = options
            .connection_timeout(config.connect_timeout)
            .request_timeout(Some(config.request_timeout))
            .max_reconnects(None)
            .reconnect_delay_callback(move |attempts| {
                let exp = u32::try_from(attempts.min(16)).unwrap_or(16);
                Duration::from_millis(10u64.saturating_mul(1 << exp)).min(max_delay)
            });
        if let Some(name) = &config.name {
            options = options.name(name);
        }
        // A comma-separated list is several servers (a cluster): the client takes them as a list
        // (it parses a single string as one address).
        let servers: Vec<&str> = url
            .split(',')
            .map(str::trim)
            .filter(|one| !one.is_empty())
            .collect();
        let client = options.connect(servers).await.map_err(|err| {
            let kind = match err.kind() {
                async_nats::ConnectErrorKind::AuthorizationViolation
                | async_nats::ConnectErrorKind::Authentication
                | async_nats::ConnectErrorKind::ServerParse => TransportErrorKind::Other,
                _ => TransportErrorKind::Unavailable,
            };
            fail(kind, err.to_string())
        })?;
        let js = jetstream::ContextBuilder::new()
            .timeout(config.request_timeout)
            .build(client.clone());
        let names = Names::new(&config.prefix);
        let topics_kv = open_bucket(
            &js,
            names.topics_bucket(),
            "event log topics: partition counts",
            &config,
            &redactor,
        )
        .await?;
        let positions_kv = open_bucket(
            &js,
            names.positions_bucket(),
            "event log consumer-group positions: next offset per group, topic and partition",
            &config,
            &redactor,
        )
        .await?;
        let members_kv = open_bucket(
            &js,
            names.members_bucket(),
            "event log consumer-group members: the instances of each group and until when",
            &config,
            &redactor,
        )
        .await?;
        Ok(NatsTransport {
            inner: Arc::new(Inner {
                client,
                js,
                names,
                redactor,
                topics_kv,
                positions_kv,
                members_kv,
                config,
                partitions: Mutex::default(),
                cursors: Mutex::default(),
            }),
        })
    }

    /// The JetStream context (for tools and benchmarks that go around the transport).
    pub fn jetstream(&self) -> &jetstream::Context {
        &self.inner.js
    }

    /// The stream that holds `partition` of `topic` (stream sequence = offset + 1).
    pub fn stream_name(&self, topic: &str, partition: u32) -> String {
        self.inner.names.stream(topic, partition)
    }

    /// The subject `partition` of `topic` is published to.
    pub fn subject(&self, topic: &str, partition: u32) -> String {
        self.inner.names.subject(topic, partition)
    }

    /// Every committed consumer-group position: `(group, topic, partition, next offset)`.
    ///
    /// # Errors
    ///
    /// The server's error.
    pub async fn group_positions(&self) -> Result<Vec<(String, String, u32, u64)>, TransportError> {
        let inner = &self.inner;
        let op = "list consumer positions";
        let mut keys = inner
            .positions_kv
            .keys()
            .await
            .map_err(|err| inner.error(op, err))?;
        let mut out = Vec::new();
        while let Some(key) = keys.next().await {
            let key = key.map_err(|err| inner.error(op, err))?;
            let mut parts = key.split('.');
            let (Some(group), Some(topic), Some(partition), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let (Some(group), Some(topic), Ok(partition)) =
                (untoken(group), untoken(topic), partition.parse::<u32>())
            else {
                continue;
            };
            let next = self.committed(&group, &topic, partition).await?;
            out.push((group, topic, partition, next));
        }
        out.sort();
        Ok(out)
    }

    /// Flushes what the client buffered and drops this handle's idle read cursors (their
    /// consumers are deleted on the server).
    pub async fn close(&self) {
        let idle: Vec<Cursor> = self
            .inner
            .cursors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .drain()
            .flat_map(|(_, cursors)| cursors)
            .collect();
        for cursor in idle {
            let name = cursor.consumer.cached_info().name.clone();
            let _ = self
                .inner
                .js
                .delete_consumer_from_stream(name, &cursor.stream)
                .await;
        }
        let _ = self.inner.client.flush().await;
    }
}

/// Opens the KV bucket `name`, creating it if missing. The bucket's stream is created here with
/// the configuration a KV bucket has, rather than through `create_key_value`, whose account
/// query cannot read a 2.9 server's answer.
async fn open_bucket(
    js: &jetstream::Context,
    name: String,
    description: &str,
    config: &NatsConfig,
    redactor: &Redactor,
) -> Result<kv::Store, TransportError> {
    let op = format!("open bucket {name}");
    let fail = |err: &dyn fmt::Display| {
        let message = redactor.scrub(err);
        TransportError::new(classify(&message), op.clone(), message)
    };
    match js.get_key_value(name.clone()).await {
        Ok(store) => return Ok(store),
        Err(err) if err.kind() == jetstream::context::KeyValueErrorKind::GetBucket => {}
        Err(err) => return Err(fail(&err)),
    }
    let stream = stream::Config {
        name: format!("KV_{name}"),
        description: Some(description.to_owned()),
        subjects: vec![format!("$KV.{name}.>")],
        max_messages_per_subject: 1,
        max_bytes: -1,
        max_messages: -1,
        max_message_size: -1,
        storage: storage_type(config.storage),
        num_replicas: config.replicas.max(1),
        allow_rollup: true,
        deny_delete: true,
        deny_purge: false,
        allow_direct: true,
        discard: stream::DiscardPolicy::New,
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    };
    js.get_or_create_stream(stream)
        .await
        .map_err(|err| fail(&err))?;
    js.get_key_value(name).await.map_err(|err| fail(&err))
}

/// A slot's value: `<next>` or `<next> <until_ms> <owner>`.
fn parse_slot(value: &[u8]) -> Option<(u64, Option<Claim>)> {
    let text = std::str::from_utf8(value).ok()?;
    let mut parts = text.trim().splitn(3, ' ');
    let next = parts.next()?.parse().ok()?;
    let claim = match (parts.next(), parts.next()) {
        (Some(until), Some(owner)) => Some(Claim {
            owner: owner.to_owned(),
            until_ms: until.parse().ok()?,
        }),
        (None, None) => None,
        _ => return None,
    };
    Some((next, claim))
}

impl Inner {
    /// Changes the members entry of `group` with `change` (a compare-and-set, retried on a
    /// concurrent change), dropping members lapsed for over an hour, and returns the live
    /// members, sorted.
    async fn update_members(
        &self,
        group: &str,
        change: impl Fn(&mut std::collections::BTreeMap<String, i64>),
    ) -> Result<Vec<String>, TransportError> {
        let op = || format!("update the members of {group}");
        let key = token(group);
        loop {
            let entry = self
                .members_kv
                .entry(key.clone())
                .await
                .map_err(|err| self.error(op(), err))?
                .filter(|e| e.operation == kv::Operation::Put);
            let mut members: std::collections::BTreeMap<String, i64> = entry
                .as_ref()
                .map(|e| String::from_utf8_lossy(&e.value).into_owned())
                .unwrap_or_default()
                .lines()
                .filter_map(|line| {
                    let (until, instance) = line.split_once(' ')?;
                    Some((instance.to_owned(), until.parse().ok()?))
                })
                .collect();
            change(&mut members);
            let now = now_ms();
            members.retain(|_, until| *until > now - 3_600_000);
            let value: String = members
                .iter()
                .map(|(instance, until)| format!("{until} {instance}\n"))
                .collect();
            let written = match entry {
                Some(entry) => match self
                    .members_kv
                    .update(key.clone(), Bytes::from(value), entry.revision)
                    .await
                {
                    Ok(_) => true,
                    Err(err) if err.kind() == kv::UpdateErrorKind::WrongLastRevision => false,
                    Err(err) => return Err(self.error(op(), err)),
                },
                None => match self
                    .members_kv
                    .create(key.clone(), Bytes::from(value))
                    .await
                {
                    Ok(_) => true,
                    Err(err) if err.kind() == kv::CreateErrorKind::AlreadyExists => false,
                    Err(err) => return Err(self.error(op(), err)),
                },
            };
            if written {
                return Ok(members
                    .into_iter()
                    .filter(|(_, until)| *until > now)
                    .map(|(instance, _)| instance)
                    .collect());
            }
        }
    }
}

fn storage_type(storage: Storage) -> stream::StorageType {
    match storage {
        Storage::File => stream::StorageType::File,
        Storage::Memory => stream::StorageType::Memory,
    }
}

impl Transport for NatsTransport {
    /// In [`ContentMode::Structured`], the default.
    fn structured_records(&self) -> bool {
        self.inner.config.content_mode == ContentMode::Structured
    }

    async fn ensure_topic(&self, topic: &str, partitions: u32) -> Result<u32, TransportError> {
        let inner = &self.inner;
        if let Some(count) = inner.cached_partitions(topic) {
            return Ok(count);
        }
        let op = || format!("create topic {topic}");
        let wanted = partitions.max(1);
        // The bucket decides the count: the first creator wins, everyone else reads it.
        let count = match inner
            .topics_kv
            .create(token(topic), Bytes::from(wanted.to_string()))
            .await
        {
            Ok(_) => wanted,
            Err(err) if err.kind() == kv::CreateErrorKind::AlreadyExists => {
                inner.partition_count(topic, "create topic").await?
            }
            Err(err) => return Err(inner.error(op(), err)),
        };
        // Streams are created after the count is fixed, and checked by every process once, so a
        // creator that died in between is repaired by the next one.
        let creates = (0..count).map(|partition| {
            let config = inner.stream_config(topic, partition);
            async move {
                inner
                    .js
                    .get_or_create_stream(config)
                    .await
                    .map(|_| ())
                    .map_err(|err| inner.error(op(), err))
            }
        });
        for result in futures_util::future::join_all(creates).await {
            result?;
        }
        inner
            .partitions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(topic.to_owned(), count);
        Ok(count)
    }

    async fn append(
        &self,
        topic: &str,
        records: Vec<OutgoingRecord>,
    ) -> Result<Vec<Position>, TransportError> {
        let inner = &self.inner;
        let op = || format!("append to {topic}");
        let count = inner.partition_count(topic, "append to").await?;
        if let Some(bad) = records.iter().find(|r| r.partition >= count) {
            return Err(TransportError::new(
                TransportErrorKind::InvalidPartition,
                op(),
                format!("partition {} is outside 0..{count}", bad.partition),
            ));
        }
        // Pipelined: every publish is sent before the first acknowledgement is awaited. One
        // connection keeps them in order, so each partition stores them in the order given.
        let mut acks = Vec::with_capacity(records.len());
        let subject_prefix = inner.names.subject_prefix(topic);
        // Each partition's subject once per call (a clone of one is a reference count).
        let mut subjects: Vec<Option<async_nats::Subject>> = vec![None; count as usize];
        let structured = inner.config.content_mode == ContentMode::Structured;
        for record in records {
            let (headers, payload) = if !structured {
                (
                    headers::to_wire(record.key.as_deref(), &record.headers, None),
                    record.payload.clone(),
                )
            } else if let Some(id) = structured::prewritten(&record.headers) {
                // Published events: the publisher wrote them in structured mode already.
                (
                    headers::to_wire_structured(record.key.as_deref(), &[], id),
                    record.payload.clone(),
                )
            } else if let Some(event) = structured::encode(&record.headers, &record.payload) {
                (
                    headers::to_wire_structured(record.key.as_deref(), &event.headers, event.id),
                    Bytes::from(event.body),
                )
            } else {
                (
                    headers::to_wire(record.key.as_deref(), &record.headers, None),
                    record.payload.clone(),
                )
            };
            let publish = jetstream::message::PublishMessage::build()
                .headers(headers)
                .payload(payload);
            let subject = subjects[record.partition as usize]
                .get_or_insert_with(|| format!("{subject_prefix}{}", record.partition).into())
                .clone();
            let ack = inner
                .js
                .send_publish(subject, publish)
                .await
                .map_err(|err| inner.error(op(), err))?;
            acks.push((record.partition, ack));
        }
        let mut positions = Vec::with_capacity(acks.len());
        for (partition, ack) in acks {
            let ack = ack.await.map_err(|err| inner.error(op(), err))?;
            positions.push(Position {
                partition,
                offset: ack.sequence.saturating_sub(1),
            });
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
        let inner = &self.inner;
        inner
            .checked_partition(topic, partition, "fetch from")
            .await?;
        if max == 0 {
            return Ok(Vec::new());
        }
        let mut attempt = 0;
        loop {
            let (mut cursor, reused) = inner.cursor(topic, partition, from).await?;
            let wanted = max.saturating_sub(cursor.buffer.len());
            let pulled = if wanted > 0 {
                inner.pull_now(topic, partition, &mut cursor, wanted).await
            } else {
                Ok(())
            };
            match pulled {
                Ok(()) => {
                    let take = cursor.buffer.len().min(max);
                    let records: Vec<Record> = cursor.buffer.drain(..take).collect();
                    if records.len() == max && cursor.buffer.is_empty() {
                        // A full batch: more is likely there; ask for it now.
                        inner.prefetch(topic, partition, &mut cursor, max).await;
                    }
                    inner.park(topic, partition, cursor);
                    return Ok(records);
                }
                // A parked cursor whose consumer is gone (server restart, inactivity): once more
                // with a new one.
                Err(_) if reused && attempt == 0 && cursor.buffer.is_empty() => attempt += 1,
                Err(err) => {
                    // What the cursor buffered before the failure is good; the cursor is not.
                    if cursor.buffer.is_empty() {
                        return Err(err);
                    }
                    let take = cursor.buffer.len().min(max);
                    return Ok(cursor.buffer.drain(..take).collect());
                }
            }
        }
    }

    async fn wait(&self, topic: &str, partition: u32, from: u64, timeout: Duration) {
        let inner = &self.inner;
        let deadline = tokio::time::Instant::now() + timeout;
        let pause = || {
            tokio::time::sleep_until(
                deadline.min(tokio::time::Instant::now() + Duration::from_millis(250)),
            )
        };
        if inner
            .checked_partition(topic, partition, "wait on")
            .await
            .is_err()
        {
            pause().await;
            return;
        }
        let Ok((mut cursor, _)) = inner.cursor(topic, partition, from).await else {
            pause().await;
            return;
        };
        if !cursor.buffer.is_empty() || cursor.prefetch.is_some() {
            inner.park(topic, partition, cursor);
            return;
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match inner.pull_wait(topic, partition, &mut cursor, left).await {
            Ok(()) => inner.park(topic, partition, cursor),
            Err(_) => {
                drop(cursor);
                pause().await;
            }
        }
    }

    async fn committed(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
    ) -> Result<u64, TransportError> {
        let inner = &self.inner;
        let value = inner
            .positions_kv
            .get(Names::position_key(group, topic, partition))
            .await
            .map_err(|err| {
                inner.error(
                    format!("read position of {group} on {topic}/{partition}"),
                    err,
                )
            })?;
        match value {
            None => Ok(0),
            Some(value) => parse_slot(&value).map(|(next, _)| next).ok_or_else(|| {
                TransportError::new(
                    TransportErrorKind::Corrupt,
                    format!("read position of {group} on {topic}/{partition}"),
                    "the stored position is not a number",
                )
            }),
        }
    }

    async fn commit(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        next_offset: u64,
    ) -> Result<(), TransportError> {
        let inner = &self.inner;
        inner
            .positions_kv
            .put(
                Names::position_key(group, topic, partition),
                Bytes::from(next_offset.to_string()),
            )
            .await
            .map_err(|err| inner.error(format!("commit {group} on {topic}/{partition}"), err))?;
        Ok(())
    }

    /// Instances share partitions through the positions bucket: a slot is one KV entry, and
    /// its compare-and-set is a KV update on the entry's revision (JetStream's expected last
    /// subject sequence). Members are one entry per group, updated the same way.
    fn system(&self) -> &'static str {
        "nats"
    }

    fn sharing(&self) -> Sharing {
        Sharing::Claims
    }

    async fn slot(&self, group: &str, topic: &str, partition: u32) -> Result<Slot, TransportError> {
        let inner = &self.inner;
        let op = || format!("read the slot of {group} on {topic}/{partition}");
        let entry = inner
            .positions_kv
            .entry(Names::position_key(group, topic, partition))
            .await
            .map_err(|err| inner.error(op(), err))?;
        let Some(entry) = entry.filter(|e| e.operation == kv::Operation::Put) else {
            return Ok(Slot::default());
        };
        let (next_offset, claim) = parse_slot(&entry.value).ok_or_else(|| {
            TransportError::new(
                TransportErrorKind::Corrupt,
                op(),
                "the stored slot cannot be read",
            )
        })?;
        Ok(Slot {
            next_offset,
            claim,
            revision: entry.revision,
        })
    }

    async fn swap_slot(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        next_offset: u64,
        claim: Option<&Claim>,
        expected: u64,
    ) -> Result<Option<u64>, TransportError> {
        let inner = &self.inner;
        let op = || format!("claim {topic}/{partition} for {group}");
        let key = Names::position_key(group, topic, partition);
        let value = Bytes::from(match claim {
            Some(claim) => format!("{next_offset} {} {}", claim.until_ms, claim.owner),
            None => next_offset.to_string(),
        });
        if expected == 0 {
            return match inner.positions_kv.create(key, value).await {
                Ok(revision) => Ok(Some(revision)),
                Err(err) if err.kind() == kv::CreateErrorKind::AlreadyExists => Ok(None),
                Err(err) => Err(inner.error(op(), err)),
            };
        }
        match inner.positions_kv.update(key, value, expected).await {
            Ok(revision) => Ok(Some(revision)),
            Err(err) if err.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(None),
            Err(err) => Err(inner.error(op(), err)),
        }
    }

    async fn beat(
        &self,
        group: &str,
        instance: &str,
        until_ms: i64,
    ) -> Result<Vec<String>, TransportError> {
        self.inner
            .update_members(group, |members| {
                members.insert(instance.to_owned(), until_ms);
            })
            .await
    }

    async fn leave(&self, group: &str, instance: &str) -> Result<(), TransportError> {
        self.inner
            .update_members(group, |members| {
                members.remove(instance);
            })
            .await
            .map(drop)
    }

    async fn end_offsets(&self, topic: &str) -> Result<Vec<u64>, TransportError> {
        let inner = &self.inner;
        let count = inner.partition_count(topic, "end offsets of").await?;
        let infos = (0..count).map(|partition| async move {
            let stream = inner
                .js
                .get_stream(inner.names.stream(topic, partition))
                .await
                .map_err(|err| inner.error(format!("end offsets of {topic}"), err))?;
            Ok::<u64, TransportError>(stream.cached_info().state.last_sequence)
        });
        futures_util::future::join_all(infos)
            .await
            .into_iter()
            .collect()
    }

    async fn topics(&self) -> Result<Vec<(String, u32)>, TransportError> {
        let inner = &self.inner;
        let op = "list topics";
        let mut keys = inner
            .topics_kv
            .keys()
            .await
            .map_err(|err| inner.error(op, err))?;
        let mut names = Vec::new();
        while let Some(key) = keys.next().await {
            let key = key.map_err(|err| inner.error(op, err))?;
            if let Some(name) = untoken(&key) {
                names.push(name);
            }
        }
        let mut topics = Vec::with_capacity(names.len());
        for name in names {
            let count = inner.partition_count(&name, op).await?;
            topics.push((name, count));
        }
        topics.sort();
        Ok(topics)
    }
}
