//! Compile-fail tests of the derives: every mistake a user can make in `#[event(...)]` or
//! `#[command(...)]` or `#[handler(...)]` must be one clear error on the span the user wrote.
//!
//! Regenerate the expected output with `TRYBUILD=overwrite cargo test -p event-tests --test ui`
//! and read every changed `.stderr` before committing it.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    // One folder per category; `pass/` is not one of them. A new folder must be listed here.
    for category in [
        "attr",
        "codec",
        "context",
        "deprecated",
        "handler",
        "key",
        "kind",
        "name",
        "saga",
        "serde",
        "shape",
        "sla",
        "upcast",
        "version",
    ] {
        t.compile_fail(format!("tests/ui/{category}/*.rs"));
    }
    t.pass("tests/ui/pass/*.rs");
}
