//! Cost of the envelope over the bare payload codec, each measured against its baseline in the
//! same run:
//!
//! * `envelope_json`: `cloudevents::to_json` + `from_json` vs `serde_json::to_vec` + `from_slice`
//!   of the same ~1 KB order payload (goal <= 1.10x, the consumer-core issue's);
//! * `envelope_protobuf`: `cloudevents::to_protobuf` + `from_protobuf` vs prost `encode_to_vec` +
//!   `decode` of the same message (goal <= 1.15x);
//! * `upcast_json`: decoding a version 1 envelope into the version 3 type through a two-step
//!   `upcast_from` chain vs decoding an equivalent version 3 envelope (goal <= 2x).
//!
//! Run with `cargo bench -p event-runtime --bench codec`. After criterion has run, the mean point
//! estimates it wrote for this run (`<criterion home>/<group>/<id>/new/estimates.json`) are read
//! back and the ratios printed, followed by an interleaved A/B cross-check that is less sensitive
//! to other load on the machine. Timings are reported, never asserted.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use criterion::Criterion;
use event_runtime::cloudevents::{self, Limits};
use event_runtime::{DomainEvent, Envelope};
use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------------------------------------
// JSON payload: a realistic order, ~1 KB with 10 line items.

#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(context = "shop")]
struct OrderPlaced {
    #[event(key)]
    order_id: String,
    customer_id: String,
    currency: String,
    placed_at: String,
    shipping: Address,
    lines: Vec<LineItem>,
    subtotal_cents: u64,
    tax_cents: u64,
    total_cents: u64,
    #[serde(default)]
    coupon: Option<String>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Address {
    name: String,
    street: String,
    city: String,
    postal_code: String,
    country: String,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct LineItem {
    sku: String,
    title: String,
    quantity: u32,
    unit_price_cents: u64,
}

const TITLES: [&str; 10] = [
    "Espresso 1kg",
    "Pour-over dripper",
    "Filters (100)",
    "Kettle 0.9l",
    "Hand grinder",
    "Scale 0.1g",
    "Glass mug",
    "Milk frother",
    "Descaler (6)",
    "Gift card",
];

fn line_items() -> Vec<LineItem> {
    TITLES
        .iter()
        .enumerate()
        .map(|(i, title)| LineItem {
            sku: format!("SKU-{:06}", 100_000 + i * 7_919),
            title: (*title).to_owned(),
            quantity: (i as u32 % 3) + 1,
            unit_price_cents: 499 + i as u64 * 1_250,
        })
        .collect()
}

fn order() -> OrderPlaced {
    let lines = line_items();
    let subtotal_cents = lines
        .iter()
        .map(|l| u64::from(l.quantity) * l.unit_price_cents)
        .sum::<u64>();
    let tax_cents = subtotal_cents * 19 / 100;
    OrderPlaced {
        order_id: "ord-2026-11-000421".into(),
        customer_id: "cus-8f3a2c71".into(),
        currency: "EUR".into(),
        placed_at: "2026-11-26T10:15:42.123Z".into(),
        shipping: Address {
            name: "Erika Mustermann".into(),
            street: "Heidestrasse 17".into(),
            city: "Koeln".into(),
            postal_code: "51147".into(),
            country: "DE".into(),
        },
        lines,
        subtotal_cents,
        tax_cents,
        total_cents: subtotal_cents + tax_cents,
        coupon: Some("WELCOME10".into()),
    }
}

// ---------------------------------------------------------------------------------------------
// Protobuf payload: the same order as a prost message.

#[derive(Clone, PartialEq, prost::Message, DomainEvent)]
#[event(context = "shop", codec = protobuf)]
struct OrderPlacedProto {
    #[prost(string, tag = "1")]
    #[event(key)]
    order_id: String,
    #[prost(string, tag = "2")]
    customer_id: String,
    #[prost(string, tag = "3")]
    currency: String,
    #[prost(string, tag = "4")]
    placed_at: String,
    #[prost(message, optional, tag = "5")]
    shipping: Option<AddressProto>,
    #[prost(message, repeated, tag = "6")]
    lines: Vec<LineItemProto>,
    #[prost(uint64, tag = "7")]
    subtotal_cents: u64,
    #[prost(uint64, tag = "8")]
    tax_cents: u64,
    #[prost(uint64, tag = "9")]
    total_cents: u64,
    #[prost(string, optional, tag = "10")]
    coupon: Option<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct AddressProto {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(string, tag = "2")]
    street: String,
    #[prost(string, tag = "3")]
    city: String,
    #[prost(string, tag = "4")]
    postal_code: String,
    #[prost(string, tag = "5")]
    country: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct LineItemProto {
    #[prost(string, tag = "1")]
    sku: String,
    #[prost(string, tag = "2")]
    title: String,
    #[prost(uint32, tag = "3")]
    quantity: u32,
    #[prost(uint64, tag = "4")]
    unit_price_cents: u64,
}

fn order_proto() -> OrderPlacedProto {
    let o = order();
    OrderPlacedProto {
        order_id: o.order_id,
        customer_id: o.customer_id,
        currency: o.currency,
        placed_at: o.placed_at,
        shipping: Some(AddressProto {
            name: o.shipping.name,
            street: o.shipping.street,
            city: o.shipping.city,
            postal_code: o.shipping.postal_code,
            country: o.shipping.country,
        }),
        lines: o
            .lines
            .into_iter()
            .map(|l| LineItemProto {
                sku: l.sku,
                title: l.title,
                quantity: l.quantity,
                unit_price_cents: l.unit_price_cents,
            })
            .collect(),
        subtotal_cents: o.subtotal_cents,
        tax_cents: o.tax_cents,
        total_cents: o.total_cents,
        coupon: o.coupon,
    }
}

// ---------------------------------------------------------------------------------------------
// Upcast chain: V1 (whole-unit prices) -> V2 (cents + currency) -> V3 (sales channel, coupon).

#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(context = "sales", name = "sales.order_booked", version = 1)]
struct OrderBookedV1 {
    #[event(key)]
    order_id: String,
    customer_id: String,
    shipping: Address,
    lines: Vec<LineV1>,
    total: u64,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct LineV1 {
    sku: String,
    title: String,
    quantity: u32,
    unit_price: u64,
}

#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(
    context = "sales",
    name = "sales.order_booked",
    version = 2,
    upcast_from = OrderBookedV1
)]
struct OrderBookedV2 {
    #[event(key)]
    order_id: String,
    customer_id: String,
    currency: String,
    shipping: Address,
    lines: Vec<LineItem>,
    total_cents: u64,
}

impl From<OrderBookedV1> for OrderBookedV2 {
    fn from(v1: OrderBookedV1) -> Self {
        OrderBookedV2 {
            order_id: v1.order_id,
            customer_id: v1.customer_id,
            currency: "EUR".into(),
            shipping: v1.shipping,
            lines: v1
                .lines
                .into_iter()
                .map(|l| LineItem {
                    sku: l.sku,
                    title: l.title,
                    quantity: l.quantity,
                    unit_price_cents: l.unit_price * 100,
                })
                .collect(),
            total_cents: v1.total * 100,
        }
    }
}

#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(
    context = "sales",
    name = "sales.order_booked",
    version = 3,
    upcast_from = OrderBookedV2
)]
struct OrderBooked {
    #[event(key)]
    order_id: String,
    customer_id: String,
    channel: String,
    currency: String,
    shipping: Address,
    lines: Vec<LineItem>,
    total_cents: u64,
    #[serde(default)]
    coupon: Option<String>,
}

impl From<OrderBookedV2> for OrderBooked {
    fn from(v2: OrderBookedV2) -> Self {
        OrderBooked {
            order_id: v2.order_id,
            customer_id: v2.customer_id,
            channel: "web".into(),
            currency: v2.currency,
            shipping: v2.shipping,
            lines: v2.lines,
            total_cents: v2.total_cents,
            coupon: None,
        }
    }
}

fn booked_v1() -> OrderBookedV1 {
    let o = order();
    OrderBookedV1 {
        order_id: o.order_id,
        customer_id: o.customer_id,
        shipping: o.shipping,
        lines: o
            .lines
            .into_iter()
            .map(|l| LineV1 {
                sku: l.sku,
                title: l.title,
                quantity: l.quantity,
                unit_price: l.unit_price_cents / 100,
            })
            .collect(),
        total: o.total_cents / 100,
    }
}

// ---------------------------------------------------------------------------------------------
// The benchmark pairs: (group, baseline id, measured id, goal).

struct Pair {
    group: &'static str,
    what: &'static str,
    baseline: &'static str,
    measured: &'static str,
    goal: f64,
}

const PAIRS: [Pair; 3] = [
    Pair {
        group: "envelope_json",
        what: "JSON envelope encode+decode vs raw serde_json",
        baseline: "raw_serde_json",
        measured: "cloudevents_json",
        goal: 1.10,
    },
    Pair {
        group: "envelope_protobuf",
        what: "protobuf envelope encode+decode vs raw prost",
        baseline: "raw_prost",
        measured: "cloudevents_protobuf",
        goal: 1.15,
    },
    Pair {
        group: "upcast_json",
        what: "decode v1 -> v3 via upcast_from chain vs direct v3 decode",
        baseline: "direct_v3",
        measured: "upcast_v1_to_v3",
        goal: 2.0,
    },
];

/// The routines, built once; each closure runs one iteration.
struct Routines {
    json_raw: Box<dyn Fn()>,
    json_envelope: Box<dyn Fn()>,
    proto_raw: Box<dyn Fn()>,
    proto_envelope: Box<dyn Fn()>,
    upcast_direct: Box<dyn Fn()>,
    upcast_chain: Box<dyn Fn()>,
}

impl Routines {
    fn pair(&self, group: &str) -> (&dyn Fn(), &dyn Fn()) {
        match group {
            "envelope_json" => (&*self.json_raw, &*self.json_envelope),
            "envelope_protobuf" => (&*self.proto_raw, &*self.proto_envelope),
            "upcast_json" => (&*self.upcast_direct, &*self.upcast_chain),
            other => unreachable!("unknown group {other}"),
        }
    }
}

fn routines() -> Routines {
    let limits = Limits::default();

    // (a) JSON: check the round trips once (correctness, not timing).
    let payload = order();
    let envelope = Envelope::event(payload.clone());
    let payload_json = serde_json::to_vec(&payload).unwrap();
    let envelope_json = cloudevents::to_json(&envelope).unwrap();
    assert_eq!(
        serde_json::from_slice::<OrderPlaced>(&payload_json).unwrap(),
        payload
    );
    assert_eq!(
        cloudevents::from_json::<OrderPlaced>(&envelope_json, &limits).unwrap(),
        envelope
    );
    println!(
        "payload: JSON {} bytes ({} line items), JSON envelope {} bytes",
        payload_json.len(),
        payload.lines.len(),
        envelope_json.len()
    );

    // (b) protobuf.
    let proto = order_proto();
    let proto_envelope = Envelope::event(proto.clone());
    let proto_bytes = prost::Message::encode_to_vec(&proto);
    let proto_envelope_bytes = cloudevents::to_protobuf(&proto_envelope).unwrap();
    assert_eq!(
        <OrderPlacedProto as prost::Message>::decode(proto_bytes.as_slice()).unwrap(),
        proto
    );
    assert_eq!(
        cloudevents::from_protobuf::<OrderPlacedProto>(&proto_envelope_bytes, &limits).unwrap(),
        proto_envelope
    );
    println!(
        "payload: protobuf {} bytes, protobuf envelope {} bytes",
        proto_bytes.len(),
        proto_envelope_bytes.len()
    );

    // (c) upcast: a v1 envelope and the equivalent v3 envelope.
    let v1 = booked_v1();
    let v3 = OrderBooked::from(OrderBookedV2::from(v1.clone()));
    let v1_bytes = cloudevents::to_json(&Envelope::event(v1)).unwrap();
    let v3_bytes = cloudevents::to_json(&Envelope::event(v3.clone())).unwrap();
    let lifted = cloudevents::from_json::<OrderBooked>(&v1_bytes, &limits).unwrap();
    assert_eq!((lifted.version, &lifted.data), (3, &v3));
    let direct = cloudevents::from_json::<OrderBooked>(&v3_bytes, &limits).unwrap();
    assert_eq!((direct.version, &direct.data), (3, &v3));
    println!(
        "payload: v1 envelope {} bytes, v3 envelope {} bytes",
        v1_bytes.len(),
        v3_bytes.len()
    );

    Routines {
        json_raw: Box::new(move || {
            let bytes = serde_json::to_vec(black_box(&payload)).unwrap();
            let back: OrderPlaced = serde_json::from_slice(black_box(&bytes)).unwrap();
            black_box(back);
        }),
        json_envelope: Box::new(move || {
            let bytes = cloudevents::to_json(black_box(&envelope)).unwrap();
            let back = cloudevents::from_json::<OrderPlaced>(black_box(&bytes), &limits).unwrap();
            black_box(back);
        }),
        proto_raw: Box::new(move || {
            let bytes = prost::Message::encode_to_vec(black_box(&proto));
            let back =
                <OrderPlacedProto as prost::Message>::decode(black_box(bytes.as_slice())).unwrap();
            black_box(back);
        }),
        proto_envelope: Box::new(move || {
            let bytes = cloudevents::to_protobuf(black_box(&proto_envelope)).unwrap();
            let back =
                cloudevents::from_protobuf::<OrderPlacedProto>(black_box(&bytes), &limits).unwrap();
            black_box(back);
        }),
        upcast_direct: Box::new(move || {
            let back = cloudevents::from_json::<OrderBooked>(black_box(&v3_bytes), &limits);
            black_box(back.unwrap());
        }),
        upcast_chain: Box::new(move || {
            let back = cloudevents::from_json::<OrderBooked>(black_box(&v1_bytes), &limits);
            black_box(back.unwrap());
        }),
    }
}

// ---------------------------------------------------------------------------------------------
// Reading criterion's results back.

/// Where criterion writes, resolved as criterion does: `$CRITERION_HOME`, else
/// `$CARGO_TARGET_DIR/criterion`, else `<cargo metadata target_directory>/criterion`, else
/// `target/criterion`.
fn criterion_home() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(target).join("criterion");
    }
    let from_metadata = std::env::var_os("CARGO").and_then(|cargo| {
        let output = std::process::Command::new(cargo)
            .args(["metadata", "--format-version", "1", "--no-deps"])
            .output()
            .ok()?;
        let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).ok()?;
        metadata["target_directory"].as_str().map(PathBuf::from)
    });
    from_metadata.map_or_else(
        || PathBuf::from("target/criterion"),
        |t| t.join("criterion"),
    )
}

/// The mean point estimate (ns) criterion wrote for `group/id`, if it was written by this run.
fn criterion_mean(home: &std::path::Path, group: &str, id: &str, since: SystemTime) -> Option<f64> {
    let path = home.join(group).join(id).join("new").join("estimates.json");
    let modified = std::fs::metadata(&path).ok()?.modified().ok()?;
    if modified < since {
        return None; // left over from an earlier run
    }
    let estimates: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
    estimates["mean"]["point_estimate"].as_f64()
}

/// Interleaved A/B timing: alternating batches of `baseline` and `measured`, median per-iteration
/// time of each (ns). Alternating keeps a burst of background load from landing on one side only.
fn interleaved(baseline: &dyn Fn(), measured: &dyn Fn()) -> (f64, f64) {
    // Size a batch at roughly 2 ms of the slower routine.
    let start = Instant::now();
    let mut calibration = 0u32;
    while start.elapsed() < Duration::from_millis(20) {
        measured();
        calibration += 1;
    }
    let per_iter = start.elapsed().as_secs_f64() / f64::from(calibration);
    let batch = ((0.002 / per_iter) as u32).max(1);
    let time = |f: &dyn Fn()| {
        let t = Instant::now();
        for _ in 0..batch {
            f();
        }
        t.elapsed().as_nanos() as f64 / f64::from(batch)
    };
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for round in 0..101 {
        if round % 2 == 0 {
            a.push(time(baseline));
            b.push(time(measured));
        } else {
            b.push(time(measured));
            a.push(time(baseline));
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    (median(&mut a), median(&mut b))
}

fn verdict(ratio: f64, goal: f64) -> &'static str {
    if ratio <= goal { "MET" } else { "MISSED" }
}

impl Routines {
    /// A routine by the name `scripts/callgrind.sh` gives it.
    fn named(&self, name: &str) -> Option<&dyn Fn()> {
        Some(match name {
            "json_raw" => &*self.json_raw,
            "json_envelope" => &*self.json_envelope,
            "proto_raw" => &*self.proto_raw,
            "proto_envelope" => &*self.proto_envelope,
            "upcast_direct" => &*self.upcast_direct,
            "upcast_chain" => &*self.upcast_chain,
            _ => return None,
        })
    }
}

fn main() {
    let started = SystemTime::now();
    let benchmarking = std::env::args().any(|arg| arg == "--bench");
    let routines = routines();
    // `EVT_CALLGRIND=<routine>:<n>`: run one routine n times and nothing else, for an
    // instruction count under callgrind (scripts/callgrind.sh), which is stable where timings
    // are not.
    if let Ok(spec) = std::env::var("EVT_CALLGRIND") {
        let (name, n) = spec.split_once(':').expect("EVT_CALLGRIND=<routine>:<n>");
        let routine = routines
            .named(name)
            .unwrap_or_else(|| panic!("no routine `{name}`"));
        for _ in 0..n.parse::<u32>().expect("a count") {
            routine();
        }
        return;
    }

    let mut criterion = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    for pair in &PAIRS {
        let (baseline, measured) = routines.pair(pair.group);
        let mut group = criterion.benchmark_group(pair.group);
        group.bench_function(pair.baseline, |b| b.iter(baseline));
        group.bench_function(pair.measured, |b| b.iter(measured));
        group.finish();
    }
    criterion.final_summary();

    if !benchmarking {
        return; // `cargo test --benches`: every routine ran once, nothing was timed
    }
    let home = criterion_home();
    println!();
    println!(
        "== envelope overhead, this run (mean point estimates from {}) ==",
        home.display()
    );
    for pair in &PAIRS {
        let base = criterion_mean(&home, pair.group, pair.baseline, started);
        let measured = criterion_mean(&home, pair.group, pair.measured, started);
        match (base, measured) {
            (Some(base), Some(measured)) => {
                let ratio = measured / base;
                println!(
                    "{:<18} {:>10.0} ns vs {:>10.0} ns  ratio {:.3}x  goal <= {:.2}x  {}   ({})",
                    pair.group,
                    measured,
                    base,
                    ratio,
                    pair.goal,
                    verdict(ratio, pair.goal),
                    pair.what
                );
            }
            _ => println!(
                "{:<18} not measured by criterion in this run (filtered out or results discarded)",
                pair.group
            ),
        }
    }

    println!();
    println!("== interleaved A/B cross-check, this run (median of 101 alternating batches) ==");
    for pair in &PAIRS {
        let (baseline, measured) = routines.pair(pair.group);
        let (base, measured) = interleaved(baseline, measured);
        let ratio = measured / base;
        println!(
            "{:<18} {:>10.0} ns vs {:>10.0} ns  ratio {:.3}x  goal <= {:.2}x  {}",
            pair.group,
            measured,
            base,
            ratio,
            pair.goal,
            verdict(ratio, pair.goal)
        );
    }
}
