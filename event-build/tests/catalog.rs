//! The event catalog and the AsyncAPI document of the fixture crate `tests/fixtures/shop`:
//! golden files under `tests/golden_catalog/` (rewrite them with
//! `EVENT_BUILD_BLESS=1 cargo test -p event-build --test catalog`, then read the diff), the
//! shape of the AsyncAPI 3.0 document, the registry's versions, and the `Config` hook.

use std::path::{Path, PathBuf};

use event_build::catalog::{self, Options};
use event_build::model::Model;
use serde_json::Value;

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn shop_model() -> Model {
    event_build::Config::new()
        .crate_dir(manifest_dir().join("tests/fixtures/shop"))
        .generate()
        .expect("the fixture scans")
        .model
}

fn options() -> Options {
    Options {
        service: Some("shop".into()),
        registry_dir: None,
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("event-build-catalog-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// The golden files: the whole of the JSON, Markdown and AsyncAPI, and one HTML page.
const GOLDEN: &[&str] = &[
    "catalog.json",
    "catalog.md",
    "asyncapi.json",
    "site/events/orders.order_placed.html",
];

#[test]
fn shop_catalog_matches_the_golden_files() {
    let files = catalog::render(&shop_model(), &options()).expect("renders");
    let golden_dir = manifest_dir().join("tests/golden_catalog");
    let bless = std::env::var_os("EVENT_BUILD_BLESS").is_some();
    let mut problems = Vec::new();
    for relative in GOLDEN {
        let content = std::str::from_utf8(&files[*relative]).expect("UTF-8");
        let path = golden_dir.join(relative);
        if bless {
            std::fs::create_dir_all(path.parent().expect("has a parent")).expect("mkdir");
            std::fs::write(&path, content).expect("write golden file");
            continue;
        }
        let expected = std::fs::read_to_string(&path).unwrap_or_default();
        if expected != content {
            let line = expected
                .lines()
                .zip(content.lines())
                .position(|(a, b)| a != b)
                .map_or_else(
                    || expected.lines().count().min(content.lines().count()) + 1,
                    |i| i + 1,
                );
            problems.push(format!(
                "{relative}: differs from line {line}\n  golden:    {}\n  generated: {}",
                expected.lines().nth(line - 1).unwrap_or("<end of file>"),
                content.lines().nth(line - 1).unwrap_or("<end of file>")
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{} golden file(s) differ (rerun with EVENT_BUILD_BLESS=1 to accept the new output):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn the_site_has_a_page_per_message_and_ships_mermaid() {
    let model = shop_model();
    let files = catalog::render(&model, &options()).expect("renders");
    for name in [
        "site/index.html",
        "site/flows.html",
        "site/mermaid.min.js",
        "site/mermaid.LICENSE",
    ] {
        assert!(files.contains_key(name), "{name} missing");
    }
    let mut names: Vec<&str> = model.messages.iter().map(|m| m.name.as_str()).collect();
    names.dedup();
    for name in names {
        let page = format!("site/events/{name}.html");
        let html = std::str::from_utf8(&files[&page]).expect("UTF-8");
        assert!(
            html.contains("<pre class=\"mermaid\">"),
            "{page}: no diagram"
        );
        // Nothing is loaded from the network.
        for needle in ["http://", "https://", "//cdn"] {
            assert!(
                !html.contains(&format!("src=\"{needle}"))
                    && !html.contains(&format!("href=\"{needle}")),
                "{page} loads {needle}"
            );
        }
    }
    let mermaid = &files["site/mermaid.min.js"];
    assert!(mermaid.len() > 1_000_000, "the real mermaid bundle");
    assert!(
        std::str::from_utf8(&files["site/mermaid.LICENSE"])
            .unwrap()
            .contains("MIT")
    );
}

#[test]
fn the_order_page_has_every_version_and_every_diff_pair() {
    let files = catalog::render(&shop_model(), &options()).expect("renders");
    let html = std::str::from_utf8(&files["site/events/orders.order_placed.html"]).unwrap();
    for v in 1..=3 {
        assert!(
            html.contains(&format!("<section data-version=\"{v}\"")),
            "v{v}"
        );
        for w in 1..=3 {
            assert!(
                html.contains(&format!("<section data-diff=\"{v}-{w}\"")),
                "{v}-{w}"
            );
        }
    }
    // Producers and consumers from the code, owner context, SLA.
    assert!(html.contains("<code>orders::place</code>"));
    assert!(html.contains("<code>payments::bill</code>"));
    assert!(html.contains("max latency 500 ms"));
    // The deprecated message shows its schedule.
    let delivered = std::str::from_utf8(&files["site/events/shipping.delivered.html"]).unwrap();
    assert!(
        delivered
            .contains("deprecated since 2026-01-01, sunset 2026-12-31: use shipping.handed_over")
    );
}

#[test]
fn html_escapes_everything_it_did_not_write_itself() {
    let mut model = shop_model();
    let evil = "<script>alert('x')</script> & \"quoted\"";
    model.messages[0].description = Some(evil.to_string());
    let files = catalog::render(&model, &options()).expect("renders");
    for (path, content) in &files {
        if !path.ends_with(".html") {
            continue;
        }
        let html = std::str::from_utf8(content).unwrap();
        assert!(!html.contains("<script>alert"), "{path} does not escape");
    }
    let page = std::str::from_utf8(&files["site/events/inventory.stock-reserved.html"]).unwrap();
    assert!(
        page.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;quoted&quot;")
    );
}

#[test]
fn catalog_json_lists_producers_consumers_keys_and_slas() {
    let files = catalog::render(&shop_model(), &options()).expect("renders");
    let json: Value = serde_json::from_slice(&files["catalog.json"]).unwrap();
    assert_eq!(json["format"], 1);
    let order = json["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "orders.order_placed")
        .unwrap();
    assert_eq!(order["context"], "orders");
    assert_eq!(order["latest_version"], 3);
    assert_eq!(order["versions"].as_array().unwrap().len(), 3);
    assert_eq!(order["versions"][2]["sla"]["max_latency_ms"], 500);
    assert_eq!(order["versions"][2]["dedupe_fields"][0], "order_id");
    assert_eq!(
        order["versions"][2]["schema"]["$id"],
        "urn:event:orders.order_placed:v3"
    );
    assert_eq!(order["producers"][0]["function"], "orders::place");
    assert_eq!(order["consumers"][0]["group"], "billing");
    assert_eq!(order["diffs"].as_array().unwrap().len(), 2);
    let flows = json["flows"].as_array().unwrap();
    assert!(
        flows
            .iter()
            .any(|f| f["from"] == "orders" && f["to"] == "billing")
    );
    assert!(flows.iter().any(|f| f["from"] == "billing"
        && f["message"] == "payments.charge_card"
        && f["to"] == "payments"));
}

/// The registry's published versions are listed even when the code no longer has them.
#[test]
fn registry_versions_are_included() {
    let registry = temp_dir("registry");
    let dir = registry.join("shipping/shipping.dispatched");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("v1.schema.json"),
        r#"{"description": "The parcel left.", "type": "object", "properties": {"shipmentId": {"type": "string"}}, "required": ["shipmentId"]}"#,
    )
    .unwrap();
    std::fs::copy(
        manifest_dir().join("tests/golden/schemas/shipping/shipping.dispatched/v2.schema.json"),
        dir.join("v2.schema.json"),
    )
    .unwrap();
    std::fs::write(dir.join("notes.txt"), "not a schema").unwrap();
    let options = Options {
        service: Some("shop".into()),
        registry_dir: Some(registry.clone()),
    };
    let catalog = catalog::Catalog::build(&shop_model(), &options).unwrap();
    let dispatched = catalog.message("shipping.dispatched").unwrap();
    let versions: Vec<(u32, bool, Option<bool>)> = dispatched
        .versions
        .iter()
        .map(|v| (v.version, v.in_code, v.published))
        .collect();
    assert_eq!(versions, [(1, false, Some(true)), (2, true, Some(true))]);
    let packed = catalog.message("shipping.packed").unwrap();
    assert_eq!(packed.versions[0].published, Some(false));
    let files = catalog::render(&shop_model(), &options).unwrap();
    let html = std::str::from_utf8(&files["site/events/shipping.dispatched.html"]).unwrap();
    assert!(html.contains("registry only"));
    assert!(html.contains("<section data-diff=\"1-2\""));
    std::fs::remove_dir_all(&registry).unwrap();
}

fn resolve<'a>(doc: &'a Value, reference: &Value) -> &'a Value {
    let pointer = reference["$ref"]
        .as_str()
        .unwrap_or_else(|| panic!("not a $ref: {reference}"))
        .strip_prefix('#')
        .expect("local ref");
    doc.pointer(pointer)
        .unwrap_or_else(|| panic!("dangling $ref {pointer}"))
}

/// Every `$ref` in `value` resolves inside `doc`.
fn check_refs(doc: &Value, value: &Value) {
    match value {
        Value::Object(map) => {
            if map.contains_key("$ref") {
                resolve(doc, value);
            }
            map.values().for_each(|v| check_refs(doc, v));
        }
        Value::Array(items) => items.iter().for_each(|v| check_refs(doc, v)),
        _ => {}
    }
}

#[test]
fn asyncapi_has_the_required_3_0_shape() {
    let files = catalog::render(&shop_model(), &options()).expect("renders");
    let doc: Value = serde_json::from_slice(&files["asyncapi.json"]).unwrap();
    assert_eq!(doc["asyncapi"], "3.0.0");
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    let channels = doc["channels"].as_object().expect("channels");
    assert!(!channels.is_empty());
    for (id, channel) in channels {
        assert!(channel["address"].is_string(), "{id}: address");
        assert!(
            channel["bindings"]["kafka"]["topic"].is_string(),
            "{id}: kafka topic"
        );
        for message in channel["messages"].as_object().expect("messages").values() {
            let message = resolve(&doc, message);
            assert!(message["payload"].is_object(), "{id}: payload");
            assert!(
                message["payload"].get("$defs").is_none(),
                "$defs moved to components"
            );
            assert!(
                message["bindings"]["kafka"]["key"].is_object(),
                "{id}: kafka key"
            );
            let correlation = resolve(&doc, &message["correlationId"]);
            assert_eq!(correlation["location"], "$message.header#/ce_correlationid");
            assert!(message["headers"]["properties"]["ce_correlationid"].is_object());
        }
    }
    // Events on the owner's topic, commands on `<context>.commands`.
    assert_eq!(channels["orders"]["address"], "orders");
    assert_eq!(
        channels["payments.commands"]["address"],
        "payments.commands"
    );
    let operations = doc["operations"].as_object().expect("operations");
    let mut actions = (0, 0);
    for (id, operation) in operations {
        let action = operation["action"].as_str().expect("action");
        assert!(action == "send" || action == "receive", "{id}: {action}");
        if action == "send" {
            actions.0 += 1
        } else {
            actions.1 += 1
        }
        let channel = resolve(&doc, &operation["channel"]);
        let channel_ref = operation["channel"]["$ref"].as_str().unwrap();
        for message in operation["messages"].as_array().expect("messages") {
            // AsyncAPI 3.0: an operation's messages are those of its channel.
            let reference = message["$ref"].as_str().unwrap();
            assert!(
                reference.starts_with(&format!("{channel_ref}/messages/")),
                "{id}: {reference}"
            );
            resolve(&doc, message);
        }
        assert!(channel.is_object());
    }
    assert!(actions.0 >= 4 && actions.1 >= 4, "{actions:?}");
    // The producers and handlers of the code.
    assert_eq!(operations["send.orders.order_placed"]["action"], "send");
    let bill = &operations["receive.payments.bill.orders"];
    assert_eq!(bill["action"], "receive");
    assert_eq!(bill["bindings"]["kafka"]["groupId"]["enum"][0], "billing");
    let key = &doc["components"]["messages"]["orders.order_placed.v3"]["bindings"]["kafka"]["key"];
    assert_eq!(key["x-key-fields"][0], "order_id");
    check_refs(&doc, &doc);
}

#[test]
fn config_writes_the_catalog_when_asked_and_only_what_changed() {
    let out = temp_dir("config-out");
    let catalog_dir = out.join("catalog");
    let mut config = event_build::Config::new();
    config
        .crate_dir(manifest_dir().join("tests/fixtures/shop"))
        .out_dir(out.join("build"))
        .catalog_dir(&catalog_dir);
    config.emit().expect("emits");
    for file in [
        "catalog.json",
        "catalog.md",
        "asyncapi.json",
        "site/index.html",
        "site/flows.html",
        "site/mermaid.min.js",
    ] {
        assert!(catalog_dir.join(file).is_file(), "{file}");
    }
    let model: Model =
        serde_json::from_str(&std::fs::read_to_string(out.join("build/model.json")).unwrap())
            .unwrap();
    // What `evt catalog` calls, from model.json: nothing changed, nothing written.
    let written = catalog::write_with(
        &model,
        &catalog_dir,
        &Options {
            service: Some(std::env::var("CARGO_PKG_NAME").unwrap()),
            registry_dir: Some(manifest_dir().join("tests/fixtures/shop/schemas")),
        },
    )
    .unwrap();
    assert_eq!(written, Vec::<PathBuf>::new());
    let written = catalog::write(&model, Path::new(&out.join("other"))).unwrap();
    assert!(written.len() > 10);
    std::fs::remove_dir_all(&out).unwrap();
}

/// Every `href` of the site that points inside it resolves: the page exists and, for a
/// `#fragment`, holds that `id`.
fn assert_links_resolve(files: &std::collections::BTreeMap<String, Vec<u8>>) {
    let mut checked = 0;
    for (page, bytes) in files {
        if !page.starts_with("site/") || !page.ends_with(".html") {
            continue;
        }
        let html = std::str::from_utf8(bytes).expect("UTF-8");
        let dir = Path::new(page).parent().unwrap();
        for link in html.split("href=\"").skip(1) {
            let link = &link[..link.find('"').unwrap()];
            if link.contains("://") || link.starts_with("mailto:") || link.starts_with("data:") {
                continue;
            }
            let (path, fragment) = link.split_once('#').unwrap_or((link, ""));
            let target = if path.is_empty() {
                page.clone()
            } else {
                let mut parts: Vec<&str> = dir.iter().map(|p| p.to_str().unwrap()).collect();
                for part in path.split('/') {
                    match part {
                        ".." => {
                            parts.pop();
                        }
                        "." | "" => {}
                        part => parts.push(part),
                    }
                }
                parts.join("/")
            };
            let Some(target_bytes) = files.get(&target) else {
                panic!("{page}: `{link}` leads to {target}, which the site does not have");
            };
            if !fragment.is_empty() {
                let target_html = std::str::from_utf8(target_bytes).unwrap();
                assert!(
                    target_html.contains(&format!("id=\"{fragment}\"")),
                    "{page}: `{link}` leads to {target}, which has no id `{fragment}`"
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 0, "no links checked");
}

#[test]
fn every_link_of_the_shop_site_resolves() {
    let files = catalog::render(&shop_model(), &options()).expect("renders");
    assert_links_resolve(&files);
}

/// An event built in a helper at the crate root (the quickstart's `fn order(..)`) is produced by
/// its owning context, not by a context named after the function, and every link resolves.
#[test]
fn a_producer_outside_handlers_and_modules_acts_for_the_events_owner() {
    let dir = temp_dir("root-producer");
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(
        dir.join("Cargo.toml"),
        "[package]\nname = \"root-producer\"\nversion = \"0.1.0\"\nedition = \"2024\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("src/main.rs"),
        r#"
use event_runtime::{DomainEvent, Envelope};

#[derive(DomainEvent)]
#[event(context = "orders", name = "orders.order_placed", version = 1)]
pub struct OrderPlaced { #[event(key)] pub order_id: String }

fn order(id: &str) -> Envelope<OrderPlaced> {
    Envelope::event(OrderPlaced { order_id: id.into() })
}

fn main() { let _ = order("o-1"); }
"#,
    )
    .unwrap();
    let model = event_build::Config::new()
        .crate_dir(&dir)
        .generate()
        .expect("scans")
        .model;
    let files = catalog::render(&model, &options()).expect("renders");
    let json: Value = serde_json::from_slice(&files["catalog.json"]).unwrap();
    let placed = json["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "orders.order_placed")
        .expect("the event");
    let contexts: Vec<&Value> = placed["producers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| &p["context"])
        .collect();
    assert_eq!(contexts, ["orders"], "{placed:#}");
    let orders = std::str::from_utf8(&files["site/contexts/orders.html"]).expect("an orders page");
    let produces = &orders[orders
        .find("<h2>Produces</h2>")
        .expect("a Produces section")..];
    let produces = &produces[..produces.find("<h2>Consumes</h2>").unwrap_or(produces.len())];
    assert!(produces.contains("orders.order_placed"), "{orders}");
    assert_links_resolve(&files);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The quickstart's model (examples/src/bin/quickstart.rs).
fn quickstart_model() -> Model {
    event_build::Config::new()
        .crate_dir(manifest_dir().join("../examples"))
        .sources(["src/bin/quickstart.rs"])
        .generate()
        .expect("the quickstart scans")
        .model
}

/// Runs `tests/asyncapi/<script> <file> <args>` with node and the modules of
/// [`asyncapi_parser`]: its stdout, or on failure stdout and stderr.
fn node(modules: &Path, script: &str, file: &Path, args: &[String]) -> Result<String, String> {
    let output = std::process::Command::new("node")
        .arg(manifest_dir().join("tests/asyncapi").join(script))
        .arg(file)
        .args(args)
        .env("NODE_PATH", modules)
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if output.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "{stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// The node_modules holding `@asyncapi/parser` (`scripts/install-asyncapi-parser.sh`), or `None`
/// to skip: under `CI` a missing parser fails the test instead.
fn asyncapi_parser() -> Option<PathBuf> {
    let dir = std::env::var_os("EVT_ASYNCAPI_PARSER")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/evt-asyncapi"))
        })?;
    let modules = dir.join("node_modules");
    if modules.join("@asyncapi/parser").is_dir() && modules.join("ajv").is_dir() {
        return Some(modules);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "@asyncapi/parser is not in {} but CI is set (scripts/install-asyncapi-parser.sh installs it)",
        modules.display()
    );
    eprintln!(
        "skipped: @asyncapi/parser is not in {} (scripts/install-asyncapi-parser.sh)",
        modules.display()
    );
    None
}

/// Every AsyncAPI document event-build writes (the shop fixture's and the quickstart's) passes
/// the official parser, and a tuple field accepts a tuple when read as the draft-07 the
/// document declares (2020-12's `prefixItems` + `items: false`, read as draft-07, accepts none).
#[test]
fn asyncapi_documents_pass_the_official_parser() {
    let Some(modules) = asyncapi_parser() else {
        return;
    };
    let dir = temp_dir("asyncapi-parser");
    let quickstart = quickstart_model();
    for (name, model) in [("shop", shop_model()), ("quickstart", quickstart)] {
        let files = catalog::render(&model, &options()).expect("renders");
        let path = dir.join(format!("{name}.json"));
        std::fs::write(&path, &files["asyncapi.json"]).unwrap();
        let doc: Value = serde_json::from_slice(&files["asyncapi.json"]).unwrap();
        let mut samples = Vec::new();
        if name == "shop" {
            // `bin: (String, u16)` of inventory.stock-reserved.
            let message = "inventory.stock-reserved.v1";
            let pointer = format!("/components/messages/{message}/payload/schema/properties/bin");
            assert_eq!(
                doc["components"]["messages"][message]["payload"]["schemaFormat"],
                catalog::asyncapi::PAYLOAD_SCHEMA_FORMAT
            );
            samples.push(format!(r#"{pointer}=["A3",7]"#));
        }
        let stdout = node(&modules, "validate.cjs", &path, &samples)
            .unwrap_or_else(|out| panic!("{name}: @asyncapi/parser refused the document:\n{out}"));
        for sample in &samples {
            let pointer = sample.split('=').next().unwrap();
            assert!(
                stdout.contains(&format!("is valid at {pointer}")),
                "{stdout}"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The example payload of every message version (the shop fixture's and the quickstart's) is
/// valid against its schema for ajv, a full JSON Schema 2020-12 validator, and for our own
/// check; the catalog shows it on the message's page.
#[test]
fn generated_examples_pass_a_full_json_schema_validator() {
    let Some(modules) = asyncapi_parser() else {
        return;
    };
    let quickstart = quickstart_model();
    let mut cases = Vec::new();
    for model in [shop_model(), quickstart] {
        let catalog = catalog::Catalog::build(&model, &options()).expect("builds");
        for m in &catalog.messages {
            for v in &m.versions {
                assert!(
                    v.example_problems.is_empty(),
                    "{} v{}: {:?}",
                    m.name,
                    v.version,
                    v.example_problems
                );
                cases.push(serde_json::json!({
                    "name": format!("{} v{}", m.name, v.version),
                    "schema": v.schema,
                    "example": v.example,
                }));
            }
        }
    }
    let dir = temp_dir("examples-ajv");
    let path = dir.join("cases.json");
    std::fs::write(&path, serde_json::to_vec(&cases).unwrap()).unwrap();
    let stdout = node(&modules, "validate_examples.cjs", &path, &[])
        .unwrap_or_else(|out| panic!("ajv refused an example:\n{out}"));
    assert_eq!(stdout.matches("valid: ").count(), cases.len(), "{stdout}");
    let _ = std::fs::remove_dir_all(&dir);
}
