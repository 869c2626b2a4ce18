//! Credentials never appear in `Debug` output, error messages or the client's logs: user and
//! password, token, creds content and file, and credentials in the URL, against a server that
//! requires them.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex, OnceLock};

use event_nats::{Auth, NatsConfig, NatsTransport, Secret};
use event_runtime::transport::{OutgoingRecord, Transport, TransportError, TransportErrorKind};

use event_conformance::fixture::tempdir;
use event_conformance::servers::NatsServer;

/// Everything logged through `tracing` in this process, at every level.
fn captured_logs() -> Arc<Mutex<String>> {
    static LOGS: OnceLock<Arc<Mutex<String>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(String::new()));
        tracing::subscriber::set_global_default(Capture(logs.clone()))
            .expect("no other subscriber in this test binary");
        logs
    })
    .clone()
}

struct Capture(Arc<Mutex<String>>);

struct Visitor<'a>(&'a mut String);

impl tracing::field::Visit for Visitor<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, "{}={value:?} ", field.name());
    }
}

impl tracing::Subscriber for Capture {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        let mut logs = self.0.lock().unwrap();
        let _ = write!(logs, "span {} ", span.metadata().name());
        span.record(&mut Visitor(&mut logs));
        logs.push('\n');
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, values: &tracing::span::Record<'_>) {
        values.record(&mut Visitor(&mut self.0.lock().unwrap()));
    }
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut logs = self.0.lock().unwrap();
        let _ = write!(
            logs,
            "{} {}: ",
            event.metadata().level(),
            event.metadata().target()
        );
        event.record(&mut Visitor(&mut logs));
        logs.push('\n');
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

fn secret(name: &str) -> String {
    format!("{name}-{}", uuid::Uuid::now_v7().simple())
}

/// Display, Debug and every source of `err`.
fn all_text(err: &TransportError) -> String {
    let mut text = format!("{err} | {err:?}");
    let mut source = std::error::Error::source(err);
    while let Some(next) = source {
        let _ = write!(text, " | {next} | {next:?}");
        source = next.source();
    }
    text
}

fn assert_clean(text: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(!text.contains(secret), "`{secret}` leaked into: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_errors_carry_no_credentials_even_without_a_server() {
    let logs = captured_logs();
    let password = secret("pw");
    let in_url = secret("urlpw");
    // Nothing listens on this port.
    let port = event_conformance::servers::free_port();
    let config =
        NatsConfig::new(format!("nats://bob:{in_url}@127.0.0.1:{port}")).auth(Auth::UserPassword {
            user: "bob".into(),
            password: Secret::new(password.clone()),
        });
    let mut config = config;
    config.connect_timeout = std::time::Duration::from_millis(500);
    let err = NatsTransport::connect(config.clone()).await.unwrap_err();
    assert_eq!(err.kind, TransportErrorKind::Unavailable, "{err}");
    assert!(
        err.operation.contains("[redacted]@127.0.0.1"),
        "{}",
        err.operation
    );
    assert_clean(&all_text(&err), &[&password, &in_url]);
    assert_clean(&format!("{config:?} {config:#?}"), &[&password, &in_url]);
    assert_clean(&logs.lock().unwrap(), &[&password, &in_url]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_never_leak_against_a_server_that_requires_them() {
    let Some(binary) = NatsServer::binary() else {
        return;
    };
    let logs = captured_logs();
    let password = secret("pw");
    let wrong = secret("wrongpw");
    let in_url = secret("urlpw");
    let token = secret("token");
    let wrong_token = secret("wrongtoken");
    let creds_jwt = format!("eyJ{}", secret("jwt"));
    let creds_seed = format!("SUA{}", secret("seed").to_uppercase());
    let secrets = [
        password.as_str(),
        wrong.as_str(),
        in_url.as_str(),
        token.as_str(),
        wrong_token.as_str(),
        creds_jwt.as_str(),
        creds_seed.as_str(),
    ];

    let dir = tempdir("credentials");
    let server = NatsServer::start(
        &binary,
        &dir.join("userpass"),
        &["--user", "evt", "--pass", &password],
    );
    let config = |auth| {
        let mut config = NatsConfig::new(server.url())
            .auth(auth)
            .prefix(format!("c{}", uuid::Uuid::now_v7().simple()));
        config.connect_timeout = std::time::Duration::from_secs(2);
        config
    };

    // The right password works, and nothing shows it.
    let good = config(Auth::UserPassword {
        user: "evt".into(),
        password: Secret::new(password.clone()),
    });
    let transport = NatsTransport::connect(good.clone()).await.unwrap();
    transport.ensure_topic("t", 1).await.unwrap();
    transport
        .append(
            "t",
            vec![OutgoingRecord {
                partition: 0,
                key: None,
                headers: vec![].into(),
                payload: b"x".to_vec().into(),
            }],
        )
        .await
        .unwrap();
    assert_eq!(transport.fetch("t", 0, 0, 10).await.unwrap().len(), 1);
    assert_clean(&format!("{good:?} {transport:?} {transport:#?}"), &secrets);

    // A wrong password, credentials in the URL, a token, creds content and a creds file: every
    // failure says what failed and shows none of them.
    let mut failures = Vec::new();
    failures.push(
        NatsTransport::connect(config(Auth::UserPassword {
            user: "evt".into(),
            password: Secret::new(wrong.clone()),
        }))
        .await
        .unwrap_err(),
    );
    let mut url_config = config(Auth::None);
    url_config.url = format!("nats://evt:{in_url}@127.0.0.1:{}", server.port());
    assert_clean(&format!("{url_config:?}"), &secrets);
    failures.push(NatsTransport::connect(url_config).await.unwrap_err());
    failures.push(
        NatsTransport::connect(config(Auth::Token(Secret::new(wrong_token.clone()))))
            .await
            .unwrap_err(),
    );
    let creds = format!(
        "-----BEGIN NATS USER JWT-----\n{creds_jwt}\n------END NATS USER JWT------\n\n\
         -----BEGIN USER NKEY SEED-----\n{creds_seed}\n------END USER NKEY SEED------\n"
    );
    failures.push(
        NatsTransport::connect(config(Auth::Creds(Secret::new(creds.clone()))))
            .await
            .unwrap_err(),
    );
    let creds_file = dir.join("user.creds");
    std::fs::write(&creds_file, &creds).unwrap();
    failures.push(
        NatsTransport::connect(config(Auth::CredsFile(creds_file.clone())))
            .await
            .unwrap_err(),
    );
    for err in &failures {
        assert_clean(&all_text(err), &secrets);
    }
    assert!(
        all_text(&failures[0]).contains("authorization violation"),
        "{}",
        all_text(&failures[0])
    );
    drop(server);

    // A token server.
    let server = NatsServer::start(&binary, &dir.join("token"), &["--auth", &token]);
    let mut with_token = NatsConfig::new(server.url())
        .auth(Auth::Token(Secret::new(token.clone())))
        .prefix(format!("c{}", uuid::Uuid::now_v7().simple()));
    with_token.connect_timeout = std::time::Duration::from_secs(2);
    let transport = NatsTransport::connect(with_token.clone()).await.unwrap();
    assert_eq!(transport.ensure_topic("t", 2).await.unwrap(), 2);
    assert_clean(&format!("{with_token:?} {transport:?}"), &secrets);
    let mut bad = with_token.clone();
    bad.auth = Auth::Token(Secret::new(wrong_token.clone()));
    let err = NatsTransport::connect(bad).await.unwrap_err();
    assert_clean(&all_text(&err), &secrets);
    drop(transport);
    drop(server);

    let logs = logs.lock().unwrap().clone();
    assert!(!logs.is_empty(), "the client logged nothing at all?");
    assert_clean(&logs, &secrets);
}
