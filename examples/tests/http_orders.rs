//! The HTTP entry example: a request with an `X-Correlation-Id` and a `traceparent` places an
//! order; the response names the correlation id and the payments handler sees both on the event.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// The example's process, killed when the test ends, failed or not.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn an_http_request_places_an_order_and_its_context_reaches_the_handler() {
    let mut server = Server(
        Command::new(env!("CARGO_BIN_EXE_http_orders"))
            .env("EVT_HTTP_ADDR", "127.0.0.1:0")
            .stdout(Stdio::piped())
            .spawn()
            .expect("the example starts"),
    );
    let child = &mut server.0;
    // Lines read on a thread of their own, so that a silent example fails the test in time.
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.unwrap_or_default()).is_err() {
                break;
            }
        }
    });
    let next = || {
        lines
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| {
                panic!("the example printed nothing more in 20 s");
            })
    };
    let first = next();
    let addr = first
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line: {first}"))
        .to_owned();

    let mut stream = TcpStream::connect(&addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "POST /orders/o-42 HTTP/1.1\r\nHost: {addr}\r\nX-Correlation-Id: checkout-7\r\ntraceparent: {TRACEPARENT}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let head = response.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 202"), "{response}");
    assert!(head.contains("x-correlation-id: checkout-7"), "{response}");

    let handled = next();
    drop(server);
    assert_eq!(
        handled,
        format!("payments   charging o-42 (correlation checkout-7, traceparent {TRACEPARENT})")
    );
}
