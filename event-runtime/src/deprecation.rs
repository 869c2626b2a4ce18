//! Deprecated message versions at run time.
//!
//! A version declared `#[event(deprecated(since = "...", sunset = "...", note = "..."))]` is
//! still published and consumed, but each use is counted ([`crate::Running::deprecated_uses`])
//! and the first use of each version in a process is logged (a `tracing` warning, target
//! `event_runtime::deprecation`). After its sunset date (UTC) publishing it is refused with
//! [`crate::error::EncodeError::Sunset`] (by the publisher and by a handler's `Context`), unless [`DeprecationPolicy::refuse_after_sunset`]
//! is off; consuming it never is (the records are in the log already).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use time::{Date, Month, OffsetDateTime};

use crate::error::EncodeError;
use crate::message::Descriptor;
use crate::registry::Registry;

/// What the runtime does with deprecated versions ([`crate::App::deprecation_policy`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeprecationPolicy {
    /// Refuse to publish or send a version whose sunset date has passed. Default `true`.
    pub refuse_after_sunset: bool,
}

impl Default for DeprecationPolicy {
    fn default() -> Self {
        DeprecationPolicy {
            refuse_after_sunset: true,
        }
    }
}

/// The uses of one deprecated version by this process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeprecatedUse {
    /// Wire name.
    pub name: &'static str,
    /// Version.
    pub version: u32,
    /// The declared sunset date, if any.
    pub sunset: Option<&'static str>,
    /// Envelopes of it published or sent.
    pub published: u64,
    /// Records of it consumed (before upcasting).
    pub consumed: u64,
}

/// The policy and the counts, shared by an app's publisher and consumers.
#[derive(Debug, Default)]
pub(crate) struct Deprecations {
    /// [`DeprecationPolicy::refuse_after_sunset`], changeable after publishers were handed out.
    refuse_after_sunset: AtomicBool,
    uses: Mutex<BTreeMap<(&'static str, u32), DeprecatedUse>>,
    /// Every deprecated version in the registry, for the consume path's lookup (usually none).
    known: Vec<&'static Descriptor>,
}

impl Deprecations {
    pub(crate) fn new(policy: DeprecationPolicy, registry: Option<&'static Registry>) -> Self {
        Deprecations {
            refuse_after_sunset: AtomicBool::new(policy.refuse_after_sunset),
            uses: Mutex::default(),
            known: registry
                .into_iter()
                .flat_map(Registry::iter)
                .filter(|d| d.deprecated.is_some())
                .collect(),
        }
    }

    /// Counts a publish of `descriptor`'s version if it is deprecated; `Err` when it is past
    /// its sunset and the policy refuses it.
    pub(crate) fn published(&self, descriptor: &'static Descriptor) -> Result<(), EncodeError> {
        let Some(deprecation) = descriptor.deprecated else {
            return Ok(());
        };
        if self.refuse_after_sunset.load(Ordering::Relaxed)
            && let Some(sunset) = deprecation.sunset
            && past(sunset, OffsetDateTime::now_utc().date())
        {
            return Err(EncodeError::Sunset {
                name: descriptor.name,
                version: descriptor.version,
                sunset,
                note: deprecation.note,
            });
        }
        self.count(descriptor, |uses| uses.published += 1, "published");
        Ok(())
    }

    /// Counts a consumed record of wire type `name` at `version`, if that version is deprecated.
    pub(crate) fn consumed(&self, name: &str, version: u32) {
        if self.known.is_empty() {
            return;
        }
        if let Some(descriptor) = self
            .known
            .iter()
            .find(|d| d.version == version && d.name == name)
        {
            self.count(descriptor, |uses| uses.consumed += 1, "consumed");
        }
    }

    fn count(
        &self,
        descriptor: &'static Descriptor,
        add: impl FnOnce(&mut DeprecatedUse),
        how: &str,
    ) {
        let mut uses = self
            .uses
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = uses
            .entry((descriptor.name, descriptor.version))
            .or_insert_with(|| {
                let deprecation = descriptor
                    .deprecated
                    .unwrap_or(crate::message::Deprecation {
                        since: None,
                        sunset: None,
                        note: None,
                    });
                tracing::warn!(
                    target: "event_runtime::deprecation",
                    message = descriptor.name,
                    version = descriptor.version,
                    since = deprecation.since,
                    sunset = deprecation.sunset,
                    note = deprecation.note,
                    "a deprecated message version was {how} (logged once per version)"
                );
                DeprecatedUse {
                    name: descriptor.name,
                    version: descriptor.version,
                    sunset: deprecation.sunset,
                    published: 0,
                    consumed: 0,
                }
            });
        add(entry);
    }

    pub(crate) fn set_policy(&self, policy: DeprecationPolicy) {
        self.refuse_after_sunset
            .store(policy.refuse_after_sunset, Ordering::Relaxed);
    }

    pub(crate) fn uses(&self) -> Vec<DeprecatedUse> {
        self.uses
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }
}

/// Whether `today` is after the `YYYY-MM-DD` date `sunset` (the last day it may be published).
/// A date that does not parse never passes (the derive checks the format at compile time).
fn past(sunset: &str, today: Date) -> bool {
    let mut parts = sunset.splitn(3, '-').map(str::parse::<i32>);
    let (Some(Ok(year)), Some(Ok(month)), Some(Ok(day))) =
        (parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let Ok(month) = Month::try_from(u8::try_from(month).unwrap_or(0)) else {
        return false;
    };
    match Date::from_calendar_date(year, month, u8::try_from(day).unwrap_or(0)) {
        Ok(sunset) => today > sunset,
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use time::{Date, Month};

    use super::past;

    #[test]
    fn the_sunset_day_itself_is_still_allowed() {
        let day = |d| Date::from_calendar_date(2026, Month::June, d).unwrap();
        assert!(!past("2026-06-30", day(30)));
        assert!(past("2026-06-29", day(30)));
        assert!(!past("2026-07-01", day(30)));
        for bad in ["", "2026-13-01", "2026-02-30", "soon", "2026-06"] {
            assert!(!past(bad, day(30)), "{bad}");
        }
    }
}
