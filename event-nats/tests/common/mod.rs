//! A `nats-server` of the test's own, on a free loopback port, that the test can kill and
//! restart (the engine's reliability and credential tests need to control the server).
#![allow(dead_code, unreachable_pub)]

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `nats-server` binary, or `None` to skip; panics when `CI` is set without one.
pub fn server_binary() -> Option<PathBuf> {
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
    assert!(
        std::env::var_os("CI").is_none(),
        "nats-server is not installed, but CI is set: these tests must run in CI \
         (scripts/test.sh installs it; or set EVT_NATS_SERVER)"
    );
    eprintln!("skipped: nats-server is not installed (scripts/test.sh installs it)");
    None
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A new empty directory.
pub fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "evt-nats-{name}-{}-{}",
        std::process::id(),
        uuid::Uuid::now_v7().simple()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A running server with JetStream; killed (SIGKILL) when dropped.
pub struct Server {
    binary: PathBuf,
    pub port: u16,
    pub store: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
}

impl Server {
    /// Starts a server with JetStream storing in `store`, plus `args`.
    pub fn start(binary: &Path, store: &Path, args: &[&str]) -> Server {
        std::fs::create_dir_all(store).unwrap();
        let mut server = Server {
            binary: binary.to_owned(),
            port: free_port(),
            store: store.to_owned(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            child: None,
        };
        server.restart();
        server
    }

    /// The client URL.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts the server again on the same port and store (after [`Server::kill`]).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = std::fs::File::create(
            self.store
                .join(format!("server-{}.log", uuid::Uuid::now_v7().simple())),
        )
        .unwrap();
        let mut child = Command::new(&self.binary)
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(&self.store)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start nats-server");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("nats-server exited at start: {status}");
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                break;
            }
            assert!(Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child = Some(child);
    }

    /// SIGKILL: no shutdown, no flush.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}
