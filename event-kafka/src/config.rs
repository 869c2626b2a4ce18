//! Connection settings, with credentials that never print.

use std::fmt;

/// A credential: its `Debug` and `Display` are `[redacted]`; [`Secret::expose`] reads it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a credential.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The credential itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// SASL user and password (`sasl.username` / `sasl.password`).
#[derive(Clone, PartialEq, Eq)]
pub struct Sasl {
    /// `sasl.mechanism`: `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub mechanism: String,
    /// The user name.
    pub username: Secret,
    /// The password.
    pub password: Secret,
}

impl fmt::Debug for Sasl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sasl")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .field("password", &self.password)
            .finish()
    }
}

/// TLS to the brokers (`security.protocol` `SSL`, or `SASL_SSL` with [`Sasl`]): the CA that
/// signed the brokers' certificates and, for mutual TLS, the client's certificate and key. Paths
/// are PEM files; `None` leaves librdkafka's default (the system's CA store for `ca`).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Tls {
    /// `ssl.ca.location`.
    pub ca: Option<std::path::PathBuf>,
    /// `ssl.certificate.location`, for mutual TLS.
    pub certificate: Option<std::path::PathBuf>,
    /// `ssl.key.location`, for mutual TLS.
    pub key: Option<std::path::PathBuf>,
    /// `ssl.key.password`, when the key is encrypted.
    pub key_password: Option<Secret>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("ca", &self.ca)
            .field("certificate", &self.certificate)
            .field("key", &self.key)
            .field("key_password", &self.key_password)
            .finish()
    }
}

/// Creates a topic by other means than the admin API (see [`KafkaConfig::create_topics_with`]).
pub type TopicCreator = std::sync::Arc<dyn Fn(&str, u32) -> Result<(), String> + Send + Sync>;

/// Where and how to reach the cluster.
#[derive(Clone)]
pub struct KafkaConfig {
    /// `bootstrap.servers`, e.g. `127.0.0.1:9092`.
    pub bootstrap_servers: String,
    /// SASL credentials; `None` for an unauthenticated cluster.
    pub sasl: Option<Sasl>,
    /// TLS settings; `None` for plaintext.
    pub tls: Option<Tls>,
    /// The replication factor of topics created by `ensure_topic`; `-1` is the broker's
    /// default (`default.replication.factor`, Kafka 2.4+).
    pub replication_factor: i32,
    /// `client.id` of every client this transport creates.
    pub client_id: String,
    /// How long a metadata, watermark, commit or delivery call may take.
    pub request_timeout: std::time::Duration,
    /// Namespace of every topic and consumer group this transport touches: the app's topic
    /// `orders` is the Kafka topic `<prefix>.orders`, its group `billing` the Kafka group
    /// `<prefix>.billing`, and [`Transport::topics`](event_runtime::transport::Transport::topics)
    /// lists only the topics under the prefix. Empty (the default): names are used as they are.
    pub prefix: String,
    /// Further librdkafka settings (`batch.size`, `compression.type`, ...), applied to every
    /// client after the transport's own, so they win. See librdkafka's CONFIGURATION.md.
    pub client_options: Vec<(String, String)>,
    /// Creates topics instead of the admin API's `CreateTopics` (librdkafka's mock cluster has
    /// none); `None` uses the admin API.
    pub(crate) topic_creator: Option<TopicCreator>,
}

impl fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaConfig")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("sasl", &self.sasl)
            .field("tls", &self.tls)
            .field("replication_factor", &self.replication_factor)
            .field("client_id", &self.client_id)
            .field("request_timeout", &self.request_timeout)
            .field("prefix", &self.prefix)
            .field(
                "client_options",
                &self
                    .client_options
                    .iter()
                    .map(|(k, _)| k)
                    .collect::<Vec<_>>(),
            )
            .field("topic_creator", &self.topic_creator.is_some())
            .finish()
    }
}

impl KafkaConfig {
    /// Settings for the cluster at `bootstrap_servers`, no credentials.
    pub fn new(bootstrap_servers: impl Into<String>) -> Self {
        KafkaConfig {
            bootstrap_servers: bootstrap_servers.into(),
            sasl: None,
            tls: None,
            replication_factor: -1,
            client_id: "event-kafka".to_owned(),
            request_timeout: std::time::Duration::from_secs(30),
            prefix: String::new(),
            client_options: Vec::new(),
            topic_creator: None,
        }
    }

    /// SASL `PLAIN` with `username` and `password` (over TLS with [`KafkaConfig::tls`], else
    /// over plaintext).
    #[must_use]
    pub fn sasl_plain(self, username: impl Into<String>, password: impl Into<String>) -> Self {
        self.sasl("PLAIN", username, password)
    }

    /// SASL `SCRAM-SHA-512` with `username` and `password`.
    #[must_use]
    pub fn sasl_scram_sha512(
        self,
        username: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        self.sasl("SCRAM-SHA-512", username, password)
    }

    /// SASL `SCRAM-SHA-256` with `username` and `password`.
    #[must_use]
    pub fn sasl_scram_sha256(
        self,
        username: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        self.sasl("SCRAM-SHA-256", username, password)
    }

    fn sasl(
        mut self,
        mechanism: &str,
        username: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        self.sasl = Some(Sasl {
            mechanism: mechanism.to_owned(),
            username: Secret::new(username),
            password: Secret::new(password),
        });
        self
    }

    /// TLS to the brokers (see [`Tls`]).
    #[must_use]
    pub fn tls(mut self, tls: Tls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Sets the namespace of topics and groups (see [`KafkaConfig::prefix`](Self::prefix)):
    /// several apps, environments or test runs can share one cluster without meeting.
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Sets a librdkafka property on every client (see
    /// [`KafkaConfig::client_options`](Self::client_options)). Values never appear in `Debug`.
    #[must_use]
    pub fn client_option(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.client_options.push((key.into(), value.into()));
        self
    }

    /// How long a metadata, watermark, commit or delivery call may take (default 30 s). A
    /// publish during a broker outage fails after this long (`message.timeout.ms`), with the
    /// records it could not deliver reported in the error.
    #[must_use]
    pub fn request_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// The Kafka name of the app's topic or group `name`.
    pub(crate) fn kafka_name(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }

    /// The app's name of the Kafka topic `name`, or `None` when it is outside the prefix.
    pub(crate) fn app_name<'a>(&self, name: &'a str) -> Option<&'a str> {
        if self.prefix.is_empty() {
            Some(name)
        } else {
            name.strip_prefix(self.prefix.as_str())?.strip_prefix('.')
        }
    }

    /// The replication factor of created topics.
    #[must_use]
    pub fn replication_factor(mut self, factor: i32) -> Self {
        self.replication_factor = factor;
        self
    }

    /// Creates topics with `creator` (topic, partitions) instead of the admin API: for a
    /// cluster without `CreateTopics`, such as [`crate::mock::MockKafka`]. It runs on a blocking
    /// thread.
    #[must_use]
    pub fn create_topics_with(mut self, creator: TopicCreator) -> Self {
        self.topic_creator = Some(creator);
        self
    }

    /// The base librdkafka configuration every client of the transport starts from.
    pub(crate) fn client_config(&self) -> rdkafka::ClientConfig {
        let mut config = rdkafka::ClientConfig::new();
        config
            .set("bootstrap.servers", &self.bootstrap_servers)
            .set("client.id", &self.client_id)
            // Never create a topic by reading or writing it: only `ensure_topic` creates.
            .set("allow.auto.create.topics", "false")
            .set("log_level", "3");
        let protocol = match (&self.sasl, &self.tls) {
            (None, None) => "PLAINTEXT",
            (Some(_), None) => "SASL_PLAINTEXT",
            (None, Some(_)) => "SSL",
            (Some(_), Some(_)) => "SASL_SSL",
        };
        config.set("security.protocol", protocol);
        if let Some(sasl) = &self.sasl {
            config
                .set("sasl.mechanism", &sasl.mechanism)
                .set("sasl.username", sasl.username.expose())
                .set("sasl.password", sasl.password.expose());
        }
        if let Some(tls) = &self.tls {
            let path = |p: &std::path::PathBuf| p.display().to_string();
            if let Some(ca) = &tls.ca {
                config.set("ssl.ca.location", path(ca));
            }
            if let Some(certificate) = &tls.certificate {
                config.set("ssl.certificate.location", path(certificate));
            }
            if let Some(key) = &tls.key {
                config.set("ssl.key.location", path(key));
            }
            if let Some(password) = &tls.key_password {
                config.set("ssl.key.password", password.expose());
            }
        }
        for (key, value) in &self.client_options {
            config.set(key, value);
        }
        config
    }

    /// `message` with every credential replaced by `[redacted]`.
    pub(crate) fn redact(&self, message: &str) -> String {
        let mut message = message.to_owned();
        let secrets = self
            .sasl
            .iter()
            .flat_map(|sasl| [&sasl.password, &sasl.username])
            .chain(self.tls.iter().filter_map(|tls| tls.key_password.as_ref()));
        for secret in secrets {
            if !secret.expose().is_empty() {
                message = message.replace(secret.expose(), "[redacted]");
            }
        }
        message
    }
}
