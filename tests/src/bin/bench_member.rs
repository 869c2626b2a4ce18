//! One instance of the instances benchmark's `billing` service (`benches/instances.rs`) on
//! Kafka, in a process of its own: the benchmark SIGKILLs it to time a failover (an app dropped
//! in the benchmark's own process leaves its consumer group cleanly as its client closes, which
//! is not a crash). It runs until it is killed, or until its stdin closes (the benchmark ended,
//! however it did).
//!
//! Environment: `BENCH_KAFKA_BOOTSTRAP` (the broker), `BENCH_PREFIX` (the run's namespace),
//! `BENCH_INSTANCE` (its id), `BENCH_CLAIM_TTL_MS` (`GroupOptions::claim_ttl`, the session).

use std::time::Duration;

use event_kafka::{KafkaConfig, KafkaTransport};
use event_runtime::{App, Stores};
use event_tests::billing;

type Error = Box<dyn std::error::Error + Send + Sync>;

fn var(name: &str) -> Result<String, Error> {
    std::env::var(name).map_err(|_| format!("{name} is not set").into())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    std::thread::spawn(|| {
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new());
        std::process::exit(0);
    });
    let config = KafkaConfig::new(var("BENCH_KAFKA_BOOTSTRAP")?).prefix(&var("BENCH_PREFIX")?);
    let transport = KafkaTransport::connect(config)?;
    let ttl = Duration::from_millis(var("BENCH_CLAIM_TTL_MS")?.parse()?);
    let app = App::new(transport, Stores::in_memory().await?);
    let app = billing::wire(app, &var("BENCH_INSTANCE")?, ttl, |_| {});
    let _running = app.start().await?;
    std::future::pending::<()>().await;
    Ok(())
}
