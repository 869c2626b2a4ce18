//! The catalog site in a real browser: Debian's chromium, headless, loads every page from the
//! file system (no server, no network) and must report no console error, and Mermaid must have
//! turned each flow chart into an `<svg>` with a node for every context. Every page must fit a
//! 1400 px window and a 390 px phone screen without scrolling sideways.
//!
//! Chromium is `$CHROMIUM`, else `/usr/bin/chromium`, else `chromium` on the `PATH`
//! (`scripts/install-chromium.sh` installs it). Without it the test is skipped with a message,
//! except under CI (`CI` set), where it fails. With `EVENT_BUILD_KEEP_SITE` set, the generated
//! site is left in the temporary directory (its path is printed) to look at.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use event_build::catalog::{self, Catalog, Options};

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn find_chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    let debian = PathBuf::from("/usr/bin/chromium");
    if debian.is_file() {
        return Some(debian);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("chromium"))
            .find(|candidate| candidate.is_file())
    })
}

fn temp_dir(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("event-build-browser-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// What chromium printed for one page.
struct Loaded {
    dom: String,
    log: String,
}

/// Loads `page` in headless chromium, lets its scripts run (5 s of virtual time), and returns
/// the DOM and the browser log.
fn load(chromium: &Path, page: &Path, profile: &Path, extra: &[String]) -> Loaded {
    let url = format!("file://{}", page.display());
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=5000",
        ])
        .args(extra)
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(&url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromium.display()));
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for chromium") {
            break status;
        }
        if Instant::now() > deadline {
            // Only the process this test started.
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish loading {url} in 120 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let dom = out.join().expect("stdout reader");
    let log = err.join().expect("stderr reader");
    assert!(
        status.success(),
        "chromium failed on {url}: {status}\n{log}"
    );
    Loaded { dom, log }
}

/// The console errors and uncaught exceptions in chromium's log.
fn console_problems(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|line| {
            line.contains("Uncaught")
                || line.contains(":CONSOLE")
                || line.contains("console error")
                || line.contains("Failed to load resource")
                || line.contains("ERR_FILE_NOT_FOUND")
        })
        .collect()
}

/// The rendered diagrams: the content of each `<pre class="mermaid" ...>` element.
fn diagrams(dom: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = dom;
    while let Some(start) = rest.find("<pre class=\"mermaid\"") {
        let after = &rest[start..];
        let end = after.find("</pre>").unwrap_or(after.len());
        out.push(&after[..end]);
        rest = &after[end..];
    }
    out
}

#[test]
fn every_page_loads_without_console_errors_and_the_diagrams_render() {
    let Some(chromium) = find_chromium() else {
        if std::env::var_os("CI").is_some() {
            panic!(
                "chromium is not installed, and CI must run the catalog's browser test: \
                 run scripts/install-chromium.sh (apt-get install chromium) or set CHROMIUM"
            );
        }
        eprintln!(
            "SKIPPED: chromium is not installed (run scripts/install-chromium.sh, or set \
             CHROMIUM to its path); the catalog site was not tested in a browser"
        );
        return;
    };
    let model = event_build::Config::new()
        .crate_dir(manifest_dir().join("tests/fixtures/shop"))
        .generate()
        .expect("the fixture scans")
        .model;
    let options = Options {
        service: Some("shop".into()),
        registry_dir: None,
    };
    let catalog = Catalog::build(&model, &options).expect("builds");
    let dir = temp_dir("site");
    catalog::write_with(&model, &dir, &options).expect("writes");
    let site = dir.join("site");

    let mut pages: Vec<(String, Vec<String>)> = vec![
        ("index.html".into(), catalog.contexts.clone()),
        ("flows.html".into(), catalog.contexts.clone()),
    ];
    for m in &catalog.messages {
        let mut contexts: Vec<String> = catalog
            .flows
            .iter()
            .filter(|f| f.message == m.name)
            .flat_map(|f| std::iter::once(f.from.clone()).chain(f.to.clone()))
            .collect();
        contexts.sort();
        contexts.dedup();
        pages.push((format!("events/{}.html", m.slug()), contexts));
    }

    let mut failures = Vec::new();
    for (page, contexts) in &pages {
        let profile = temp_dir("profile");
        let loaded = load(&chromium, &site.join(page), &profile, &[]);
        let _ = std::fs::remove_dir_all(&profile);
        let problems = console_problems(&loaded.log);
        if !problems.is_empty() {
            failures.push(format!(
                "{page}: console errors:\n  {}",
                problems.join("\n  ")
            ));
        }
        let rendered = diagrams(&loaded.dom);
        if rendered.is_empty() {
            failures.push(format!("{page}: no mermaid container in the DOM"));
        }
        for (i, diagram) in rendered.iter().enumerate() {
            if !diagram.contains("<svg") {
                failures.push(format!(
                    "{page}: the diagram did not render:\n{}",
                    diagram.chars().take(400).collect::<String>()
                ));
                continue;
            }
            // The first diagram of a page is its flows between contexts; the flows page then
            // draws each saga.
            if i > 0 {
                continue;
            }
            for context in contexts {
                if !diagram.contains(&format!(">{context}<")) {
                    failures.push(format!("{page}: no node for context {context}"));
                }
            }
        }
        if page == "flows.html" {
            for saga in &catalog.sagas {
                let drawn = rendered.iter().skip(1).any(|d| {
                    d.contains("<svg")
                        && saga
                            .steps
                            .iter()
                            .all(|step| d.contains(&step.command.rust_type))
                        && d.contains(">failed<")
                });
                if !drawn {
                    failures.push(format!(
                        "{page}: saga {} is not drawn with its steps' commands and its end",
                        saga.name
                    ));
                }
            }
        }
    }
    assert!(!catalog.sagas.is_empty(), "the fixture declares a saga");
    // The inline script ran: the diff shown by default is the newest pair, the others hidden.
    let profile = temp_dir("profile");
    let order = load(
        &chromium,
        &site.join("events/orders.order_placed.html"),
        &profile,
        &[],
    );
    let _ = std::fs::remove_dir_all(&profile);
    assert!(
        order.dom.contains("<section data-diff=\"2-3\">"),
        "v2 → v3 shown"
    );
    assert!(
        order
            .dom
            .contains("<section data-diff=\"1-3\" hidden=\"\">"),
        "others hidden"
    );

    // The search box filters the index: `?q=` fills it (as typing would), and only the rows that
    // match every word stay visible.
    let profile = temp_dir("profile");
    let searched = load(
        &chromium,
        &site.join("index.html?q=payments%20amount"),
        &profile,
        &[],
    );
    let _ = std::fs::remove_dir_all(&profile);
    let rows: Vec<&str> = searched.dom.split("<tr data-search=\"").skip(1).collect();
    assert!(!rows.is_empty(), "no searchable rows");
    for row in &rows {
        let text = row.split('"').next().unwrap_or_default();
        let visible = !row.split('>').next().unwrap_or_default().contains("hidden");
        let matches = text.contains("payments") && text.contains("amount");
        assert_eq!(
            visible, matches,
            "search `payments amount` on the row `{text}`"
        );
    }
    assert!(
        rows.iter()
            .any(|r| !r.split('>').next().unwrap_or_default().contains("hidden")),
        "the search matched nothing"
    );

    // The field table, the example and the verdicted diff are on the page.
    for needle in [
        "<table class=\"fields\">",
        "<pre class=\"example\">",
        "valid against the v3 schema",
        "<p class=\"verdict\">Under <code>BACKWARD</code>",
        "<pre class=\"schema proto\">",
    ] {
        assert!(
            order.dom.contains(needle),
            "`{needle}` missing on the order page"
        );
    }

    // Every page fits a desktop window and a phone's width: nothing wider than the viewport
    // (wide tables and schemas scroll inside their own box). A copy of each page records the
    // document's width next to the window's once the diagrams have rendered, and tells the
    // frame around it. Headless chromium's window is at least 500 px wide, so the phone's
    // 390 px is an iframe of that width in a page that shows what the copy measured.
    // The measure names the outermost element that sticks out, to say what to fix.
    const MEASURE: &str = "<script>window.addEventListener('load', function () { setTimeout(function () { var d = document.documentElement, w = window.innerWidth, m = d.scrollWidth + '/' + w; function clipped(e) { for (var a = e.parentElement; a && a !== document.body; a = a.parentElement) { if (getComputedStyle(a).overflowX !== 'visible') { return true; } } return false; } document.querySelectorAll('body *').forEach(function (e) { if (m.indexOf(' ') < 0 && e.getBoundingClientRect().right > w + 1 && !clipped(e)) { m += ' ' + e.tagName.toLowerCase() + '.' + e.className + ' ' + (e.textContent || '').slice(0, 40).replace(/[\"<>]/g, ''); } }); d.setAttribute('data-layout', m); if (window.parent !== window) { window.parent.postMessage(m, '*'); } }, 1000); });</script>";
    for width in [1400, 390] {
        for (page, _) in &pages {
            let original = site.join(page);
            let copy = original.with_extension("measure.html");
            let html = std::fs::read_to_string(&original).expect("page");
            std::fs::write(&copy, html.replace("</body>", &format!("{MEASURE}</body>")))
                .expect("copy");
            let shown = if width == 1400 {
                copy.clone()
            } else {
                let frame = original.with_extension(format!("w{width}.html"));
                let name = copy
                    .file_name()
                    .and_then(|n| n.to_str())
                    .expect("a file name");
                std::fs::write(
                    &frame,
                    format!(
                        "<!DOCTYPE html><html><body style=\"margin:0\"><iframe src=\"{name}\" style=\"width:{width}px;height:900px;border:0\"></iframe><script>window.addEventListener('message', function (e) {{ document.documentElement.setAttribute('data-layout', e.data); }});</script></body></html>"
                    ),
                )
                .expect("frame");
                frame
            };
            let profile = temp_dir("profile");
            let loaded = load(
                &chromium,
                &shown,
                &profile,
                &["--window-size=1400,900".to_owned()],
            );
            let _ = std::fs::remove_dir_all(&profile);
            let layout = loaded
                .dom
                .split("data-layout=\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .unwrap_or_default()
                .to_owned();
            let fits = layout
                .split(' ')
                .next()
                .unwrap_or_default()
                .split_once('/')
                .and_then(|(doc, window)| {
                    Some((doc.parse::<u32>().ok()?, window.parse::<u32>().ok()?))
                })
                .is_some_and(|(doc, window)| doc <= window && window <= width);
            if !fits {
                failures.push(format!(
                    "{page} at {width} px: the document is wider than the window (document/window: `{layout}`)"
                ));
            }
        }
    }

    if std::env::var_os("EVENT_BUILD_KEEP_SITE").is_some() {
        eprintln!("EVENT_BUILD_KEEP_SITE: the site is in {}", site.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    assert!(
        failures.is_empty(),
        "{} problem(s) in the browser:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!("{} pages loaded in {}", pages.len(), chromium.display());
}
