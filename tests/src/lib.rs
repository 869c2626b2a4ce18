//! Integration, compile-fail, property and golden tests live under `tests/`; this library only
//! makes the README's example a doc test, so the README cannot drift from the API.

// The README shows whole programs (a build.rs and a binary), so their `fn main` is the point.
#[allow(clippy::needless_doctest_main)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeExample;
