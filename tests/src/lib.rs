//! Integration, compile-fail, property and golden tests live under `tests/`; this library only
//! makes the README's example a doc test, so the README cannot drift from the API.

#[doc = include_str!("../../README.md")]
pub struct ReadmeExample;
