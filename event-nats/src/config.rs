//! How to reach the server and how to lay the log out on it. Credentials live here only, wrapped
//! so that no `Debug` output, log line or error message can carry them.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// A credential. `Debug` prints `[redacted]`; there is no `Display`, and the value is read only
/// by the connection code of this crate.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret(value.to_owned())
    }
}

/// How the client authenticates.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub enum Auth {
    /// No credentials (or credentials in the URL, `nats://user:password@host`, which are
    /// redacted the same way).
    #[default]
    None,
    /// User and password.
    UserPassword {
        /// The user name (shown in `Debug`; it identifies, it does not authenticate).
        user: String,
        /// The password.
        password: Secret,
    },
    /// A token.
    Token(Secret),
    /// A `.creds` file (JWT and NKey seed), read at connect time. The path is shown, never the
    /// content.
    CredsFile(PathBuf),
    /// The content of a `.creds` file.
    Creds(Secret),
}

/// Where JetStream keeps the streams and buckets this transport creates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Storage {
    /// On disk (the default): survives a server restart.
    #[default]
    File,
    /// In memory: lost when the server stops. For tests.
    Memory,
}

/// How records are written on NATS. Readers take both, whatever this says: a consumer reads
/// what earlier releases and foreign producers wrote in either mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ContentMode {
    /// The NATS protocol binding's structured content mode (the default): the message body is the
    /// whole event in the CloudEvents JSON event format (`data` embedded when the content type is
    /// JSON, `data_base64` otherwise), `content-type: application/cloudevents+json`, plus the
    /// headers the transport needs (`Nats-Msg-Id`, `x-evt-key`). CloudEvents 1.0.2's NATS
    /// binding defines this mode only, so any NATS CloudEvents reader understands it. A record
    /// this mode cannot carry exactly is written in binary mode (see the crate docs).
    #[default]
    Structured,
    /// Binary content mode, as releases before structured mode wrote: every attribute in a
    /// `ce-<attribute>` header, the payload as the body.
    Binary,
}

/// Configuration of a [`crate::NatsTransport`].
///
/// ```
/// use event_nats::{Auth, NatsConfig, Secret};
///
/// let config = NatsConfig::new("nats://127.0.0.1:4222")
///     .auth(Auth::UserPassword { user: "shop".into(), password: Secret::new("s3cret") })
///     .prefix("shop");
/// assert!(!format!("{config:?}").contains("s3cret"));
/// ```
#[derive(Clone)]
pub struct NatsConfig {
    /// Server URL(s), comma-separated: `nats://host:4222`, `tls://host:4222`. Credentials in the
    /// URL (`nats://user:password@host`, `nats://token@host`) are used when [`NatsConfig::auth`]
    /// is [`Auth::None`] (ignored otherwise), handed to the client as credentials rather than
    /// as part of the address, and redacted like [`Auth`] ones.
    pub url: String,
    /// Credentials.
    pub auth: Auth,
    /// Namespace of every name this transport creates: subjects `<prefix>.<topic>.<partition>`,
    /// streams `<prefix>-<topic>-<partition>`, buckets `<prefix>-topics` and
    /// `<prefix>-positions`. ASCII letters, digits and `_`. Default `evt`.
    pub prefix: String,
    /// Storage of streams and buckets. Default [`Storage::File`].
    pub storage: Storage,
    /// Replicas of streams and buckets (1 on a single server). Default 1.
    pub replicas: usize,
    /// JetStream's duplicate window: a record appended again with the same CloudEvents id within
    /// it is not stored twice (`Nats-Msg-Id`). Default 2 minutes.
    pub duplicate_window: Duration,
    /// How long a partition keeps records; zero keeps them forever (the default). Expired records
    /// leave a gap of offsets, like Kafka's retention.
    pub max_age: Duration,
    /// Bound of every JetStream API request and publish acknowledgement. Default 5 seconds.
    pub request_timeout: Duration,
    /// Bound of the initial connection. Default 5 seconds.
    pub connect_timeout: Duration,
    /// Longest pause between two reconnection attempts. Default 2 seconds.
    pub max_reconnect_delay: Duration,
    /// Connection name shown by the server's monitoring.
    pub name: Option<String>,
    /// How records are written. Default [`ContentMode::Structured`].
    pub content_mode: ContentMode,
}

impl NatsConfig {
    /// Defaults for the server at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        NatsConfig {
            url: url.into(),
            auth: Auth::None,
            prefix: "evt".to_owned(),
            storage: Storage::File,
            replicas: 1,
            duplicate_window: Duration::from_secs(120),
            max_age: Duration::ZERO,
            request_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            max_reconnect_delay: Duration::from_secs(2),
            name: None,
            content_mode: ContentMode::Structured,
        }
    }

    /// Sets the credentials.
    #[must_use]
    pub fn auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }

    /// Sets the name prefix.
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Sets the storage.
    #[must_use]
    pub fn storage(mut self, storage: Storage) -> Self {
        self.storage = storage;
        self
    }

    /// Sets how records are written.
    #[must_use]
    pub fn content_mode(mut self, mode: ContentMode) -> Self {
        self.content_mode = mode;
        self
    }

    /// The URL with any `user:password@` part replaced by `[redacted]@`.
    pub fn redacted_url(&self) -> String {
        redact_url(&self.url)
    }

    /// Every secret string of this configuration, to scrub from messages.
    pub(crate) fn secrets(&self) -> Vec<String> {
        let mut secrets = Vec::new();
        match &self.auth {
            Auth::None | Auth::CredsFile(_) => {}
            Auth::UserPassword { password, .. } => secrets.push(password.expose().to_owned()),
            Auth::Token(token) => secrets.push(token.expose().to_owned()),
            Auth::Creds(creds) => {
                secrets.push(creds.expose().to_owned());
                // Each line of a creds file (the JWT, the seed) on its own, too.
                secrets.extend(
                    creds
                        .expose()
                        .lines()
                        .map(str::trim)
                        .filter(|l| l.len() >= 8 && !l.starts_with("---"))
                        .map(str::to_owned),
                );
            }
        }
        for url in self.url.split(',') {
            if let Some(userinfo) = userinfo(url) {
                // `user:password` whole, and the password (not the user name) alone; a
                // userinfo without `:` is a token.
                secrets.push(userinfo.to_owned());
                if let Some((_, password)) = userinfo.split_once(':') {
                    secrets.push(password.to_owned());
                    secrets.push(percent_decode(password));
                }
            }
        }
        secrets.retain(|s| !s.is_empty());
        // Longest first, so that a secret containing another is replaced whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets
    }
}

impl fmt::Debug for NatsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsConfig")
            .field("url", &self.redacted_url())
            .field("auth", &self.auth)
            .field("prefix", &self.prefix)
            .field("storage", &self.storage)
            .field("replicas", &self.replicas)
            .field("duplicate_window", &self.duplicate_window)
            .field("max_age", &self.max_age)
            .field("request_timeout", &self.request_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("max_reconnect_delay", &self.max_reconnect_delay)
            .field("name", &self.name)
            .field("content_mode", &self.content_mode)
            .finish()
    }
}

/// The `user:password` part of `scheme://user:password@host`, if any.
fn userinfo(url: &str) -> Option<&str> {
    let url = url.trim();
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    authority.rsplit_once('@').map(|(userinfo, _)| userinfo)
}

/// `url` (comma-separated list allowed) without any userinfo, and the first userinfo found
/// (percent-decoded): what the client is given, so that credentials in the URL reach the client
/// as credentials and never as part of an address it may log.
pub(crate) fn split_url_credentials(url: &str) -> (String, Option<String>) {
    let mut found = None;
    let stripped = url
        .split(',')
        .map(|one| match userinfo(one) {
            Some(userinfo) => {
                found.get_or_insert_with(|| percent_decode(userinfo));
                one.replacen(&format!("{userinfo}@"), "", 1)
            }
            None => one.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(",");
    (stripped, found)
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(byte) = text
                .get(i + 1..i + 3)
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `url` (comma-separated list allowed) with every userinfo replaced by `[redacted]`.
pub(crate) fn redact_url(url: &str) -> String {
    url.split(',')
        .map(|one| match userinfo(one) {
            // Replace `userinfo@` as a whole: a short token must not match inside the scheme.
            Some(userinfo) => one.replacen(&format!("{userinfo}@"), "[redacted]@", 1),
            None => one.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Replaces every secret of a configuration in messages.
#[derive(Clone, Default)]
pub(crate) struct Redactor {
    secrets: Vec<String>,
}

impl Redactor {
    pub(crate) fn new(config: &NatsConfig) -> Self {
        Redactor {
            secrets: config.secrets(),
        }
    }

    pub(crate) fn scrub(&self, message: impl fmt::Display) -> String {
        let mut text = message.to_string();
        for secret in &self.secrets {
            if text.contains(secret.as_str()) {
                text = text.replace(secret.as_str(), "[redacted]");
            }
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_secrets() {
        let configs = [
            NatsConfig::new("nats://alice:pw-in-url@127.0.0.1:4222,nats://h2:4222"),
            NatsConfig::new("nats://127.0.0.1:4222").auth(Auth::UserPassword {
                user: "alice".into(),
                password: Secret::new("pw-in-auth"),
            }),
            NatsConfig::new("nats://127.0.0.1:4222").auth(Auth::Token("tok-123456".into())),
            NatsConfig::new("nats://127.0.0.1:4222").auth(Auth::Creds(Secret::new(
                "-----BEGIN NATS USER JWT-----\neyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ\n------END NATS USER JWT------\n",
            ))),
        ];
        for config in configs {
            let debug = format!("{config:?} {:#?}", config);
            for secret in ["pw-in-url", "pw-in-auth", "tok-123456", "eyJ0eXAi"] {
                assert!(!debug.contains(secret), "{debug}");
            }
            assert!(!config.redacted_url().contains("pw-in-url"));
        }
    }

    #[test]
    fn urls_are_redacted_and_secrets_scrubbed() {
        assert_eq!(
            redact_url("nats://u:p@h:1,tls://h2:2,x:y@h3"),
            "nats://[redacted]@h:1,tls://h2:2,[redacted]@h3"
        );
        // A one-letter token that also occurs in the scheme is still the part redacted.
        assert_eq!(redact_url("nats://a@h:1"), "nats://[redacted]@h:1");
        let config = NatsConfig::new("nats://u:hunter2@h:1").auth(Auth::Token("t0ken".into()));
        assert_eq!(
            split_url_credentials("nats://u:p%40ss@h:1,nats://h2:2"),
            (
                "nats://h:1,nats://h2:2".to_owned(),
                Some("u:p@ss".to_owned())
            )
        );
        assert_eq!(
            split_url_credentials("tok@h:1"),
            ("h:1".to_owned(), Some("tok".to_owned()))
        );
        let scrub = Redactor::new(&config);
        assert_eq!(
            scrub.scrub("bad t0ken for u:hunter2 (hunter2)"),
            "bad [redacted] for [redacted] ([redacted])"
        );
    }
}
