//! Scan + emit time for generated crates of 50 and 500 events (median of 5 runs each, a fresh
//! output directory every run), and the cost per event of the large crate relative to the small
//! one: about 1.0 means the build step grows linearly with the number of events.
//!
//! `cargo bench -p event-build --bench scan`

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Events per module (one bounded context per module).
const PER_MODULE: usize = 10;

/// Writes a crate with `events` events (plus nested types, a command and handlers) to `dir`.
fn write_crate(dir: &Path, events: usize) {
    let src = dir.join("src");
    std::fs::create_dir_all(&src).expect("mkdir");
    let modules = events.div_ceil(PER_MODULE);
    let mut lib = String::from("//! A generated shop.\n\n");
    for m in 0..modules {
        let _ = writeln!(lib, "pub mod ctx{m};");
        let mut module = format!(
            r#"//! Context {m}.

use std::collections::BTreeMap;

use event_runtime::{{Command, Context, DomainEvent, Envelope, HandlerError, handler}};
use serde::{{Deserialize, Serialize}};

/// A line.
#[derive(Serialize, Deserialize)]
pub struct Line {{
    pub sku: String,
    pub quantity: u32,
    pub price: Money,
}}

/// Money.
#[derive(Serialize, Deserialize)]
pub struct Money {{
    pub amount_cents: i64,
    pub currency: Currency,
}}

/// Currencies.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Currency {{ Eur, Usd }}

/// A state.
#[derive(Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum State {{ Open {{ since: u64 }}, Closed, Failed {{ reason: String }} }}

/// Do something.
#[derive(Command, Serialize, Deserialize)]
#[command(context = "ctx{m}")]
pub struct DoSomething{m} {{
    #[command(key)]
    pub id: String,
}}
"#
        );
        for e in 0..PER_MODULE.min(events - m * PER_MODULE) {
            let _ = write!(
                module,
                r#"
/// Event {e} of context {m}.
#[derive(DomainEvent, Serialize, Deserialize)]
#[event(context = "ctx{m}", version = {version}, sla(max_latency = "500ms"))]
pub struct Happened{e} {{
    /// The entity.
    #[event(key)]
    pub id: String,
    pub at: uuid::Uuid,
    pub lines: Vec<Line>,
    pub total: Money,
    #[serde(default)]
    pub note: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub state: State,
}}

/// Reacts to event {e}.
#[handler(group = "group{m}_{e}")]
pub async fn on_{e}(event: Envelope<Happened{e}>, ctx: Context) -> Result<(), HandlerError> {{
    ctx.send(DoSomething{m} {{ id: event.data.id }})?;
    Ok(())
}}
"#,
                version = e % 3 + 1,
            );
        }
        std::fs::write(src.join(format!("ctx{m}.rs")), module).expect("write module");
    }
    std::fs::write(src.join("lib.rs"), lib).expect("write lib.rs");
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn measure(root: &Path, events: usize) -> Duration {
    let dir = root.join(format!("crate-{events}"));
    write_crate(&dir, events);
    let samples = (0..5)
        .map(|run| {
            let out = dir.join(format!("out-{run}"));
            let start = Instant::now();
            let report = event_build::Config::new()
                .crate_dir(&dir)
                .out_dir(&out)
                .emit()
                .expect("the generated crate builds");
            let elapsed = start.elapsed();
            // Every event and command version has a schema and a proto, plus model.json.
            assert_eq!(
                report.generated.model.messages.len(),
                events + events.div_ceil(PER_MODULE)
            );
            elapsed
        })
        .collect();
    median(samples)
}

fn main() {
    let root: PathBuf =
        std::env::temp_dir().join(format!("event-build-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let small = measure(&root, 50);
    let large = measure(&root, 500);
    let _ = std::fs::remove_dir_all(&root);
    let per_event = |d: Duration, n: u32| d.as_secs_f64() * 1e6 / f64::from(n);
    println!(
        "scan + emit,  50 events: {:>8.2} ms ({:.1} µs/event, median of 5)",
        small.as_secs_f64() * 1e3,
        per_event(small, 50)
    );
    println!(
        "scan + emit, 500 events: {:>8.2} ms ({:.1} µs/event, median of 5)",
        large.as_secs_f64() * 1e3,
        per_event(large, 500)
    );
    println!(
        "per-event cost, 500 vs 50: {:.2}x (1.0 = linear growth)",
        per_event(large, 500) / per_event(small, 50)
    );
}
