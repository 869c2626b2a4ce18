//! Real servers for an engine's tests: the shared servers of the test run, found through the
//! environment ([`server_url`], [`postgres_schema`]), and servers of a test's own that it can
//! kill and restart ([`NatsServer`], [`Tansu`], [`PostgresServer`]), on a free loopback port.
//!
//! `scripts/servers.sh` (sourced by `scripts/test.sh`) installs and starts the shared servers and
//! exports where they are: `EVT_NATS_URL`, `EVT_POSTGRES_URL`, `EVT_KAFKA_BOOTSTRAP`, and the
//! binaries for servers of a test's own, `EVT_NATS_SERVER` and `EVT_TANSU_BIN`.
//!
//! **The CI rule.** Whatever a test needs and this machine lacks (a variable not set, a binary
//! not installed) skips the test: the lookup prints the reason and returns `None`, and the test
//! returns. When the `CI` variable is set, the lookup panics instead: CI must run every engine.
//!
//! ```no_run
//! use event_conformance::servers::NatsServer;
//!
//! let Some(binary) = NatsServer::binary() else {
//!     return; // skipped, with the reason printed
//! };
//! let dir = event_conformance::fixture::tempdir("outage");
//! let mut server = NatsServer::start(&binary, &dir, &[]);
//! // ... connect to server.url() ...
//! server.kill(); // SIGKILL: no shutdown, no flush
//! server.restart(); // the same port and store
//! ```

use std::ffi::OsString;
use std::fs::File;
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a server may take to accept connections after it was started.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// `None`, with `reason` printed, or a panic under `CI` (see the [module docs](self)).
fn skip<T>(reason: &str, hint: &str) -> Option<T> {
    assert!(
        std::env::var_os("CI").is_none(),
        "{reason}, but CI is set: the tests on that server must run in CI ({hint})"
    );
    eprintln!("skipped: {reason} ({hint})");
    None
}

/// The server address in the environment variable `var` (`EVT_NATS_URL`, `EVT_POSTGRES_URL`,
/// `EVT_KAFKA_BOOTSTRAP`: scripts/test.sh starts the servers and sets them), or `None` to skip
/// the test with a message.
///
/// # Panics
///
/// When `var` is not set (or empty) and `CI` is: CI must run every engine.
pub fn server_url(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => skip(
            &format!("{var} is not set"),
            &format!("scripts/test.sh starts the server and sets {var}"),
        ),
    }
}

/// A pool on a new, empty schema of the database at `EVT_POSTGRES_URL`, and the schema's name
/// (every connection of the pool has it as its `search_path`, so tests never see each other's
/// tables); `None` to skip (see [`server_url`]).
///
/// # Panics
///
/// As [`server_url`]; and when the database cannot be reached or the schema not created.
pub async fn postgres_schema() -> Option<(sqlx::PgPool, String)> {
    use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
    let url = server_url("EVT_POSTGRES_URL")?;
    let options: PgConnectOptions = url.parse().expect("EVT_POSTGRES_URL is a PostgreSQL URL");
    let schema = crate::fixture::unique_prefix();
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(options.clone())
        .await
        .expect("connect to EVT_POSTGRES_URL");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    let pool = PgPoolOptions::new()
        .max_connections(8)
        .connect_with(options.options([("search_path", schema.as_str())]))
        .await
        .unwrap();
    Some((pool, schema))
}

/// A free TCP port on 127.0.0.1 (free when asked: the OS picks it).
///
/// # Panics
///
/// When no port can be bound.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A server process on a loopback port: started, waited for until it accepts connections,
/// killed by its PID (SIGKILL) on [`Process::kill`] and on drop.
#[derive(Debug)]
struct Process {
    name: &'static str,
    binary: PathBuf,
    args: Vec<OsString>,
    port: u16,
    /// Where each start writes its output (a new file per start), or nowhere.
    logs: Option<PathBuf>,
    child: Option<Child>,
}

impl Process {
    fn start(&mut self) {
        self.start_as(None);
    }

    /// Starts it, as the user `uid`/`gid` when given.
    fn start_as(&mut self, user: Option<(u32, u32)>) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        let (stdout, stderr) = match &self.logs {
            Some(dir) => {
                let log =
                    File::create(dir.join(format!("server-{}.log", uuid::Uuid::now_v7().simple())))
                        .unwrap();
                (Stdio::from(log.try_clone().unwrap()), Stdio::from(log))
            }
            None => (Stdio::null(), Stdio::null()),
        };
        let mut command = Command::new(&self.binary);
        if let Some((uid, gid)) = user {
            command.uid(uid).gid(gid);
        }
        let mut child = command
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|err| panic!("start {}: {err}", self.name));
        let deadline = Instant::now() + START_TIMEOUT;
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("{} exited at start: {status}", self.name);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{} did not start", self.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child = Some(child);
    }

    /// Sends `signal` (a `kill -s` name) and waits for the process to exit.
    fn stop_with(&mut self, signal: &str) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-s", signal, &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A `nats-server` of the test's own with JetStream, on a free loopback port, storing in a
/// directory of the test's (its log there too, a file per start); killed (SIGKILL) when
/// dropped. For tests that control the server: kill it mid-stream, restart it on the same port
/// and store, require credentials.
#[derive(Debug)]
pub struct NatsServer {
    process: Process,
    store: PathBuf,
}

impl NatsServer {
    /// The `nats-server` binary: `EVT_NATS_SERVER`, else `nats-server` on the `PATH`, in
    /// `/usr/sbin` or `/usr/local/bin`; `None` to skip.
    ///
    /// # Panics
    ///
    /// When there is none and `CI` is set.
    pub fn binary() -> Option<PathBuf> {
        let candidates = std::env::var_os("EVT_NATS_SERVER")
            .map(PathBuf::from)
            .into_iter()
            .chain(
                std::env::var_os("PATH")
                    .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
                    .unwrap_or_default()
                    .into_iter()
                    .map(|dir| dir.join("nats-server")),
            )
            .chain(["/usr/sbin/nats-server", "/usr/local/bin/nats-server"].map(PathBuf::from));
        for candidate in candidates {
            if candidate.is_file() {
                return Some(candidate);
            }
        }
        skip(
            "nats-server is not installed",
            "scripts/test.sh installs it; or set EVT_NATS_SERVER",
        )
    }

    /// Starts `binary` with JetStream (`-js`) on 127.0.0.1 and a free port, storing in `store`
    /// (created if missing), plus `args` (`--user`, `--auth`, ...), and waits until it accepts
    /// connections.
    ///
    /// # Panics
    ///
    /// When it cannot be started, exits, or does not listen within 15 seconds.
    pub fn start(binary: &Path, store: &Path, args: &[&str]) -> NatsServer {
        std::fs::create_dir_all(store).unwrap();
        let port = free_port();
        let mut server_args: Vec<OsString> = ["-js", "-a", "127.0.0.1", "-p", &port.to_string()]
            .map(OsString::from)
            .into();
        server_args.push("-sd".into());
        server_args.push(store.into());
        server_args.extend(args.iter().map(OsString::from));
        let mut process = Process {
            name: "nats-server",
            binary: binary.to_owned(),
            args: server_args,
            port,
            logs: Some(store.to_owned()),
            child: None,
        };
        process.start();
        NatsServer {
            process,
            store: store.to_owned(),
        }
    }

    /// The client URL, `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.process.port)
    }

    /// The port it listens on (the same after a restart).
    pub fn port(&self) -> u16 {
        self.process.port
    }

    /// The JetStream store directory.
    pub fn store(&self) -> &Path {
        &self.store
    }

    /// SIGKILL: no shutdown, no flush. Does nothing when it is not running.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Starts the server again on the same port and store (after [`NatsServer::kill`]) and
    /// waits until it accepts connections.
    ///
    /// # Panics
    ///
    /// When it is running, or as [`NatsServer::start`].
    pub fn restart(&mut self) {
        self.process.start();
    }
}

/// A tansu broker (a Kafka API broker) of the test's own, with in-memory storage, on a free
/// loopback port; killed (SIGKILL) when dropped.
#[derive(Debug)]
pub struct Tansu {
    process: Process,
}

impl Tansu {
    /// The tansu binary, `EVT_TANSU_BIN` (scripts/servers.sh builds it once and exports it);
    /// `None` to skip.
    ///
    /// # Panics
    ///
    /// When it is not set and `CI` is.
    pub fn binary() -> Option<PathBuf> {
        match std::env::var_os("EVT_TANSU_BIN") {
            Some(path) if !path.is_empty() => Some(PathBuf::from(path)),
            _ => skip(
                "EVT_TANSU_BIN is not set",
                "scripts/servers.sh builds and exports it",
            ),
        }
    }

    /// Starts `binary` as a broker listening on (and advertising) 127.0.0.1 and a free port,
    /// storing in memory, plus `args` (`--authentication`, ...), and waits until it accepts
    /// connections. Its output is discarded.
    ///
    /// # Panics
    ///
    /// When it cannot be started, exits, or does not listen within 15 seconds.
    pub fn start(binary: &Path, args: &[&str]) -> Tansu {
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let mut broker_args: Vec<OsString> = [
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
            "--storage-engine",
            "memory://tansu/",
        ]
        .map(OsString::from)
        .into();
        broker_args.extend(args.iter().map(OsString::from));
        let mut process = Process {
            name: "tansu",
            binary: binary.to_owned(),
            args: broker_args,
            port,
            logs: None,
            child: None,
        };
        process.start();
        Tansu { process }
    }

    /// The bootstrap address for a Kafka client, `127.0.0.1:<port>`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.process.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.process.port
    }

    /// SIGKILL. Does nothing when it is not running.
    pub fn kill(&mut self) {
        self.process.kill();
    }
}

/// A PostgreSQL server of the test's own (a new cluster in a directory of the test's, trust
/// authentication, `fsync=off`), on a free loopback port, run as the `postgres` user; killed when
/// dropped. For tests that take the database away under load: [`PostgresServer::restart`]
/// stops it as a crash does (immediate shutdown, recovery at the next start).
#[derive(Debug)]
pub struct PostgresServer {
    process: Process,
    user: (u32, u32),
    bin: PathBuf,
}

impl PostgresServer {
    /// The directory of the newest installed PostgreSQL's `initdb` and `postgres`
    /// (`/usr/lib/postgresql/<major>/bin`, Debian's layout), with the `postgres` user's ids;
    /// `None` to skip: not installed, or not root (the server refuses to run as root, and only
    /// root can run it as `postgres`).
    ///
    /// # Panics
    ///
    /// When there is none and `CI` is set.
    pub fn binaries() -> Option<(PathBuf, (u32, u32))> {
        let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let major = entry.file_name().to_str()?.parse().ok()?;
                let bin = entry.path().join("bin");
                bin.join("initdb").is_file().then_some((major, bin))
            })
            .collect();
        dirs.sort();
        let user = Command::new("id")
            .args(["-u", "postgres"])
            .output()
            .ok()
            .zip(Command::new("id").args(["-g", "postgres"]).output().ok())
            .and_then(|(uid, gid)| {
                let read = |out: std::process::Output| {
                    String::from_utf8(out.stdout)
                        .ok()?
                        .trim()
                        .parse::<u32>()
                        .ok()
                };
                Some((read(uid)?, read(gid)?))
            });
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|out| out.stdout.trim_ascii() == b"0");
        match (dirs.pop(), user) {
            (Some((_, bin)), Some(user)) if root => Some((bin, user)),
            _ => skip(
                "no PostgreSQL server binaries to run as the postgres user",
                "scripts/test.sh installs postgresql; the tests run as root",
            ),
        }
    }

    /// Creates a cluster in `dir` (created if missing) and starts it, with the database `evt`.
    ///
    /// # Panics
    ///
    /// When `initdb` fails, or as [`NatsServer::start`].
    pub fn start(bin: &Path, user: (u32, u32), dir: &Path) -> PostgresServer {
        std::fs::create_dir_all(dir).unwrap();
        let data = dir.join("data");
        let chown = Command::new("chown")
            .arg(format!("{}:{}", user.0, user.1))
            .arg(dir)
            .status()
            .unwrap();
        assert!(chown.success(), "chown {}", dir.display());
        let initdb = Command::new(bin.join("initdb"))
            .uid(user.0)
            .gid(user.1)
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",
            ])
            .stdout(Stdio::null())
            .output()
            .unwrap();
        assert!(
            initdb.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&initdb.stderr)
        );
        let port = free_port();
        let mut args: Vec<OsString> = vec!["-D".into(), data.into()];
        args.extend(
            [
                "-p",
                &port.to_string(),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                &format!("unix_socket_directories={}", dir.display()),
                "-c",
                "fsync=off",
            ]
            .map(OsString::from),
        );
        let mut process = Process {
            name: "postgres",
            binary: bin.join("postgres"),
            args,
            port,
            logs: Some(dir.to_owned()),
            child: None,
        };
        process.start_as(Some(user));
        let server = PostgresServer {
            process,
            user,
            bin: bin.to_owned(),
        };
        server.wait_ready();
        let created = Command::new(bin.join("createdb"))
            .uid(user.0)
            .gid(user.1)
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-U",
                "postgres",
                "evt",
            ])
            .status()
            .unwrap();
        assert!(created.success(), "createdb evt");
        server
    }

    /// `postgres://postgres@127.0.0.1:<port>/evt`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/evt", self.process.port)
    }

    /// Stops it as a crash does (SIGQUIT: an immediate shutdown, every connection cut, no
    /// checkpoint). Does nothing when it is not running.
    pub fn stop(&mut self) {
        self.process.stop_with("QUIT");
    }

    /// Starts it again on the same port and data (after [`PostgresServer::stop`]): it recovers
    /// from its write-ahead log; returns once it accepts connections.
    ///
    /// # Panics
    ///
    /// When it is running, or as [`NatsServer::start`].
    pub fn restart(&mut self) {
        self.process.start_as(Some(self.user));
        self.wait_ready();
    }

    /// Waits until it accepts queries: it listens before it has recovered ("the database
    /// system is starting up").
    fn wait_ready(&self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let ready = Command::new(self.bin.join("pg_isready"))
                .args([
                    "-q",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &self.process.port.to_string(),
                ])
                .status()
                .is_ok_and(|status| status.success());
            if ready {
                return;
            }
            assert!(Instant::now() < deadline, "postgres did not become ready");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
