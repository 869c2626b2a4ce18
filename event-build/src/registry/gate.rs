//! The build gate: [`SchemaRegistry::check_and_update`] checks every candidate against what is
//! published (compatibility, unchanged contracts, version order, field numbers, sunsets) and,
//! when all pass, publishes the new versions. The top of the registry.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;

use serde_json::Value;

use crate::compat::{self, CompatibilityMode, Direction, ProtoCategory, SchemaVersion};
use crate::example;

use super::contract::{
    Digests, collect_field_numbers, contract_digest_json, contract_digests, json_changes,
    pretty_json, strip_annotations, with_newline,
};
use super::input::{Candidate, CheckOptions, SunsetPolicy};
use super::lock::{EventLock, LOCK_FILE, Lock, Numbering, ROOT_SCOPE, VersionLock};
use super::report::{ErrorKind, EventVersion, Problem, RegistryError, Report, RetiredNumber};
use super::store::{SchemaRegistry, Stored};

impl SchemaRegistry {
    /// Checks the candidates against the registry and, when they all pass, publishes the new
    /// versions and refreshes changed annotations (see the module documentation).
    ///
    /// Returns every problem found in one [`RegistryError`]; nothing is written then.
    pub fn check_and_update(
        &mut self,
        candidates: &[Candidate],
        options: &CheckOptions,
    ) -> Result<Report, RegistryError> {
        let mut run = Run {
            registry: self,
            lock: self.lock.clone(),
            options,
            report: Report::default(),
            problems: Vec::new(),
            writes: BTreeMap::new(),
        };
        let by_event = run.validate(candidates);
        for (event, candidates) in by_event {
            run.event(&event, &candidates);
        }
        let Run {
            lock,
            mut report,
            problems,
            mut writes,
            ..
        } = run;
        if !problems.is_empty() {
            return Err(RegistryError { problems });
        }

        let lock_text = pretty_json(&serde_json::to_value(&lock).unwrap_or(Value::Null));
        writes.insert(self.dir.join(LOCK_FILE), lock_text);
        for (path, content) in writes {
            let unchanged = fs::read(&path).is_ok_and(|existing| existing == content.as_bytes());
            if unchanged {
                continue;
            }
            if options.write {
                if let Some(parent) = path.parent() {
                    fs::create_dir_all(parent)
                        .map_err(|err| RegistryError::io(parent, "create", &err))?;
                }
                fs::write(&path, &content)
                    .map_err(|err| RegistryError::io(&path, "write", &err))?;
            }
            report.changed_files.push(path);
        }
        if options.write {
            self.lock = lock;
        }
        Ok(report)
    }
}

struct Run<'r> {
    registry: &'r SchemaRegistry,
    lock: Lock,
    options: &'r CheckOptions,
    report: Report,
    problems: Vec<Problem>,
    writes: BTreeMap<PathBuf, String>,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

impl Run<'_> {
    fn problem(&mut self, kind: ErrorKind, candidate: &Candidate, message: String) {
        self.problems.push(Problem {
            kind,
            event: Some(candidate.event.clone()),
            version: Some(candidate.version),
            message,
            violation: None,
        });
    }

    fn validate(&mut self, candidates: &[Candidate]) -> BTreeMap<String, Vec<Candidate>> {
        let mut by_event: BTreeMap<String, Vec<Candidate>> = BTreeMap::new();
        for candidate in candidates {
            let label = candidate.label();
            if !valid_name(&candidate.event) || !valid_name(&candidate.context) {
                let message = format!(
                    "{label}: the event name `{}` and context `{}` become directory names in the registry; use letters, digits, `.`, `_` and `-` only",
                    candidate.event, candidate.context
                );
                self.problem(ErrorKind::InvalidCandidate, candidate, message);
                continue;
            }
            if candidate.version == 0 {
                self.problem(
                    ErrorKind::InvalidCandidate,
                    candidate,
                    format!("{label}: versions start at 1"),
                );
                continue;
            }
            if !candidate.schema.is_object() {
                self.problem(
                    ErrorKind::InvalidCandidate,
                    candidate,
                    format!("{label}: the JSON schema is not an object"),
                );
                continue;
            }
            let list = by_event.entry(candidate.event.clone()).or_default();
            if list.iter().any(|c| c.version == candidate.version) {
                let message =
                    format!("{label} is declared twice; each version of an event is one Rust type");
                self.problem(ErrorKind::InvalidCandidate, candidate, message);
                continue;
            }
            list.push(candidate.clone());
        }
        for list in by_event.values_mut() {
            list.sort_by_key(|c| c.version);
        }
        by_event
    }

    fn event(&mut self, event: &str, candidates: &[Candidate]) {
        let Some(newest) = candidates.last() else {
            return;
        };
        let mode = newest.mode;
        let context = newest.context.clone();

        for candidate in candidates {
            if candidate.context != context {
                let message = format!(
                    "{} is declared in context `{}` but {} in `{context}`; all versions of an event belong to one context",
                    candidate.label(),
                    candidate.context,
                    newest.label()
                );
                self.problem(ErrorKind::ContextChanged, candidate, message);
                return;
            }
        }
        if let Some(existing) = self.lock.events.get(event)
            && existing.context != context
        {
            let message = format!(
                "{event} is published in context `{}` (schemas/{}/{event}/) but the code now puts it in `{context}`; an event's context decides its topic, so moving it is a new event: give it a new name (#[event(name = \"...\")]) and deprecate this one",
                existing.context, existing.context
            );
            self.problem(ErrorKind::ContextChanged, newest, message);
            return;
        }

        // Sunsets.
        for candidate in candidates {
            self.sunset(candidate, candidate.version == newest.version);
        }

        // The published versions, loaded from disk for the checks.
        let mut published: BTreeMap<u32, Stored> = BTreeMap::new();
        if let Some(existing) = self.lock.events.get(event) {
            for version in existing
                .versions
                .iter()
                .map(|v| v.version)
                .collect::<Vec<_>>()
            {
                match self.registry.load(event, &context, version) {
                    Ok(stored) => {
                        published.insert(version, stored);
                    }
                    Err(err) => self.problems.extend(err.problems),
                }
            }
        }

        let entry = self
            .lock
            .events
            .entry(event.to_owned())
            .or_insert_with(|| EventLock {
                context: context.clone(),
                compatibility: mode.as_str().to_owned(),
                versions: Vec::new(),
                field_numbers: BTreeMap::new(),
            });
        let old_mode = entry.mode();
        if old_mode != mode && !entry.versions.is_empty() {
            self.report
                .mode_changes
                .push((event.to_owned(), old_mode, mode));
        }
        entry.compatibility = mode.as_str().to_owned();

        let mut added_any = false;
        for candidate in candidates {
            let digests = match contract_digests(candidate) {
                Ok(digests) => digests,
                Err(message) => {
                    self.problem(ErrorKind::InvalidCandidate, candidate, message);
                    continue;
                }
            };
            let recorded = self
                .lock
                .events
                .get(event)
                .and_then(|e| e.version(candidate.version))
                .cloned();
            if let Some(recorded) = recorded {
                self.published_version(
                    candidate,
                    &recorded,
                    &digests,
                    published.get(&candidate.version),
                );
                continue;
            }
            if !self.new_version(candidate, mode, &digests, &published) {
                // The rest of this event's new versions would only repeat the problem.
                break;
            }
            published.insert(
                candidate.version,
                Stored {
                    schema: candidate.schema.clone(),
                    proto: candidate.proto.clone(),
                },
            );
            added_any = true;
        }

        self.examples(event, &context, &published);

        if added_any && let Some(newest_published) = published.values().next_back() {
            let version = published.keys().next_back().copied().unwrap_or_default();
            let live = collect_field_numbers(&newest_published.schema);
            let entry = self
                .lock
                .events
                .get_mut(event)
                .expect("entry inserted above");
            for (scope, numbers) in &mut entry.field_numbers {
                let live_scope = live.get(scope);
                let dropped: Vec<(String, u32)> = numbers
                    .assigned
                    .iter()
                    .filter(|(path, _)| live_scope.is_none_or(|l| !l.assigned.contains_key(*path)))
                    .map(|(path, n)| (path.clone(), *n))
                    .collect();
                for (path, number) in dropped {
                    numbers.assigned.remove(&path);
                    numbers.retired.insert(number);
                    numbers.retired_names.insert(path.clone());
                    self.report.retired.push(RetiredNumber {
                        event: event.to_owned(),
                        version,
                        scope: scope.clone(),
                        path,
                        number,
                    });
                }
            }
        }
    }

    /// One example payload per published version: a stored one must match its version's schema,
    /// a missing one is generated from it.
    fn examples(&mut self, event: &str, context: &str, published: &BTreeMap<u32, Stored>) {
        for (&version, stored) in published {
            let path = self.registry.example_path(context, event, version);
            let mut problem = |message: String| {
                self.problems.push(Problem {
                    kind: ErrorKind::InvalidExample,
                    event: Some(event.to_owned()),
                    version: Some(version),
                    message,
                    violation: None,
                });
            };
            let text = match fs::read_to_string(&path) {
                Ok(text) => text,
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                    // A schema the generator can only guess at (any value somewhere) or cannot
                    // satisfy (a `pattern` none of its candidates matches): the user writes the
                    // example.
                    let why = match example::generated(&stored.schema) {
                        Ok(payload) => match example::validate(&stored.schema, &payload).first() {
                            None => {
                                self.writes.insert(path, pretty_json(&payload));
                                continue;
                            }
                            Some(mismatch) => mismatch.to_string(),
                        },
                        Err(why) => why,
                    };
                    self.report.warnings.push(format!(
                        "{event} v{version}: no example could be generated from the schema ({why}); write one to {}",
                        path.display()
                    ));
                    continue;
                }
                Err(err) => {
                    problem(format!("{}: cannot read: {err}", path.display()));
                    continue;
                }
            };
            let payload = match serde_json::from_str::<Value>(&text) {
                Ok(payload) => payload,
                Err(err) => {
                    problem(format!("{}: not JSON: {err}", path.display()));
                    continue;
                }
            };
            let mismatches = example::validate(&stored.schema, &payload);
            if !mismatches.is_empty() {
                let list: Vec<String> = mismatches.iter().map(|m| format!("  {m}")).collect();
                problem(format!(
                    "{}: the example of {event} v{version} does not match that version's schema:\n{}\nFix it, or delete the file and the next build writes one generated from the schema.",
                    path.display(),
                    list.join("\n")
                ));
            }
        }
    }

    fn sunset(&mut self, candidate: &Candidate, newest: bool) {
        let Some(deprecation) = &candidate.deprecation else {
            return;
        };
        let Some(sunset) = deprecation.sunset else {
            return;
        };
        let produced = candidate.produced.unwrap_or(newest);
        if !produced || self.options.today <= sunset {
            return;
        }
        let instead = deprecation
            .note
            .as_deref()
            .map(|note| format!(" ({note})"))
            .unwrap_or_default();
        let why = if candidate.produced.is_some() {
            "the build marks it as produced".to_owned()
        } else {
            format!("it is the newest version of {}", candidate.event)
        };
        let message = format!(
            "{} passed its sunset date {sunset} (today is {}) and is still produced ({why}): stop publishing it{instead}: publish a newer version (#[event(version = {}, upcast_from = ...)]) and keep v{} only to upcast old events, or move the date in #[event(deprecated(sunset = \"YYYY-MM-DD\"))]",
            candidate.label(),
            self.options.today,
            candidate.version + 1,
            candidate.version
        );
        match self.options.sunset {
            SunsetPolicy::Error => self.problem(ErrorKind::Sunset, candidate, message),
            SunsetPolicy::Warn => self.report.warnings.push(message),
        }
    }

    fn published_version(
        &mut self,
        candidate: &Candidate,
        recorded: &VersionLock,
        digests: &Digests,
        stored: Option<&Stored>,
    ) {
        let id = EventVersion {
            event: candidate.event.clone(),
            version: candidate.version,
        };
        let proto_changed = match (&recorded.proto, &digests.proto) {
            (Some(a), Some(b)) => a != b,
            // A proto emitted for the first time for a published version is recorded, not a change.
            _ => false,
        };
        if recorded.schema == digests.schema && !proto_changed {
            let mut refreshed = false;
            let schema_path =
                self.registry
                    .schema_path(&candidate.context, &candidate.event, candidate.version);
            let text = pretty_json(&candidate.schema);
            if fs::read(&schema_path).map_or(true, |existing| existing != text.as_bytes()) {
                self.writes.insert(schema_path, text);
                refreshed = true;
            }
            if let Some(proto) = &candidate.proto {
                let proto_path = self.registry.proto_path(
                    &candidate.context,
                    &candidate.event,
                    candidate.version,
                );
                let text = with_newline(proto);
                if fs::read(&proto_path).map_or(true, |existing| existing != text.as_bytes()) {
                    self.writes.insert(proto_path, text);
                    refreshed = true;
                }
                if recorded.proto.is_none()
                    && let Some(entry) = self.lock.events.get_mut(&candidate.event)
                    && let Some(version) = entry
                        .versions
                        .iter_mut()
                        .find(|v| v.version == candidate.version)
                {
                    version.proto = digests.proto.clone();
                }
            }
            if refreshed {
                self.report.refreshed.push(id);
            } else {
                self.report.unchanged.push(id);
            }
            return;
        }

        // Where did it change?
        let mut places = Vec::new();
        if recorded.schema != digests.schema {
            match stored {
                Some(stored) if contract_digest_json(&stored.schema) == recorded.schema => {
                    let mut changes = Vec::new();
                    json_changes(
                        &strip_annotations(&stored.schema),
                        &strip_annotations(&candidate.schema),
                        &mut Vec::new(),
                        &mut changes,
                    );
                    places.extend(changes.into_iter().take(3).map(|(pointer, detail)| {
                        format!("{} ({detail})", field_pointer(&pointer))
                    }));
                    if places.is_empty() {
                        places.push("its JSON schema".into());
                    }
                }
                Some(_) => {
                    let path = self.registry.schema_path(
                        &candidate.context,
                        &candidate.event,
                        candidate.version,
                    );
                    let message = format!(
                        "{} no longer matches the digest in {LOCK_FILE}: it was edited by hand; restore it from version control",
                        path.display()
                    );
                    self.problem(ErrorKind::InvalidLock, candidate, message);
                    return;
                }
                None => places.push("its JSON schema".into()),
            }
        }
        if proto_changed {
            let detail = stored
                .and_then(|s| s.proto.as_deref())
                .zip(candidate.proto.as_deref())
                .and_then(|(old, new)| {
                    compat::diff_proto(
                        old,
                        new,
                        candidate.schema.get("title").and_then(Value::as_str),
                        ProtoCategory::WireJson,
                    )
                    .ok()
                })
                .and_then(|diffs| diffs.into_iter().next())
                .map(|d| format!(" at {} ({})", field_pointer(&d.pointer), d.detail))
                .unwrap_or_default();
            places.push(format!("v{}.proto{detail}", candidate.version));
        }
        let (version, next) = (candidate.version, candidate.version + 1);
        let type_name = candidate
            .schema
            .get("title")
            .and_then(Value::as_str)
            .unwrap_or("<the old type>");
        let message = format!(
            "published schemas never change: {} changed at {} [PUBLISHED_CHANGED]. Fix: bump the version: keep v{version} exactly as published (rename its type, e.g. {}V{version}) and put the change in v{next} (#[event(version = {next}, upcast_from = {}V{version})])",
            candidate.label(),
            places.join(", "),
            compat::strip_version_suffix(type_name),
            compat::strip_version_suffix(type_name),
        );
        self.problem(ErrorKind::PublishedChanged, candidate, message);
    }

    /// Checks and records a version that is not published yet. Returns whether it was added.
    fn new_version(
        &mut self,
        candidate: &Candidate,
        mode: CompatibilityMode,
        digests: &Digests,
        published: &BTreeMap<u32, Stored>,
    ) -> bool {
        let event = candidate.event.as_str();
        let label = candidate.label();
        let newest = self.lock.events.get(event).and_then(EventLock::newest);
        if let Some(newest) = newest
            && candidate.version != newest + 1
        {
            let message = if candidate.version < newest {
                format!(
                    "{label} is not in the registry but v{newest} is: published history only grows at the end; v{} cannot be added before it (if the type is only kept to upcast from, it was never published: remove it or give it the published schema)",
                    candidate.version
                )
            } else {
                let missing: Vec<String> = (newest + 1..candidate.version)
                    .map(|v| format!("v{v}"))
                    .collect();
                format!(
                    "{label} skips {}: the newest published version is v{newest}, so the next one is v{} (#[event(version = {})])",
                    missing.join(", "),
                    newest + 1,
                    newest + 1
                )
            };
            self.problem(ErrorKind::VersionGap, candidate, message);
            return false;
        }

        // Compatibility against the published versions.
        let versions: Vec<SchemaVersion<'_>> = published
            .iter()
            .map(|(version, stored)| SchemaVersion {
                version: *version,
                schema: &stored.schema,
                proto: stored.proto.as_deref(),
            })
            .collect();
        let this = SchemaVersion {
            version: candidate.version,
            schema: &candidate.schema,
            proto: candidate.proto.as_deref(),
        };
        let violations =
            match compat::check_with(event, mode, self.options.proto_category, &this, &versions) {
                Ok(violations) => violations,
                Err(err) => {
                    self.problem(
                        ErrorKind::InvalidCandidate,
                        candidate,
                        format!("{label}: {err}"),
                    );
                    return false;
                }
            };
        let mut failed = false;
        for violation in violations {
            // The upcaster reads the old version with its own type, so new consumers never
            // decode old data with the new schema: the backward half is covered, and so is the
            // protobuf half unless the mode also promises old consumers the new data.
            let covered = candidate
                .upcast_from
                .is_some_and(|from| violation.old_version >= from);
            let waived = covered
                && match violation.direction {
                    Direction::Backward => true,
                    Direction::Wire => !mode.checks_forward(),
                    Direction::Forward => false,
                };
            if waived {
                self.report.waived.push(violation);
            } else {
                failed = true;
                self.problems.push(Problem {
                    kind: ErrorKind::Incompatible,
                    event: Some(event.to_owned()),
                    version: Some(candidate.version),
                    message: violation.to_string(),
                    violation: Some(violation),
                });
            }
        }

        // Field numbers against the lock.
        let numbers = collect_field_numbers(&candidate.schema);
        let recorded = self
            .lock
            .events
            .get(event)
            .map(|e| e.field_numbers.clone())
            .unwrap_or_default();
        for (scope, candidate_numbers) in &numbers {
            let fields = &candidate_numbers.assigned;
            let empty = Numbering::default();
            let known = recorded.get(scope).unwrap_or(&empty);
            let mut seen: BTreeMap<u32, &String> = BTreeMap::new();
            for (path, &number) in fields {
                let place = field_place(scope, path);
                if let Some(other) = seen.insert(number, path) {
                    let message = format!(
                        "{label}: {place} and {} both have protobuf number {number} [FIELD_NUMBER_DUPLICATE]. Fix: give one of them another number (#[event(tag = {})]) or let the emitter choose",
                        field_place(scope, other),
                        known.next_free(number)
                    );
                    self.problem(ErrorKind::FieldNumber, candidate, message);
                    failed = true;
                    continue;
                }
                if let Some(&old) = known.assigned.get(path) {
                    if old != number {
                        let message = format!(
                            "{label}: {place} has protobuf number {old} in the published versions and {number} in v{} [FIELD_NUMBER_CHANGED]; a field's number is permanent. Fix: keep {old} (#[event(tag = {old})] or drop the tag); to change the field's type incompatibly, rename the field so it gets a new number and {old} is retired",
                            candidate.version
                        );
                        self.problem(ErrorKind::FieldNumber, candidate, message);
                        failed = true;
                    }
                } else if known.retired.contains(&number) {
                    let message = format!(
                        "{label}: {place} uses protobuf number {number}, which was retired when an earlier version dropped its field; retired numbers are never reused [FIELD_NUMBER_RETIRED]. Fix: use a fresh number such as {} (#[event(tag = {})] or drop the tag and let the emitter choose from the lock)",
                        known.next_free(1),
                        known.next_free(1)
                    );
                    self.problem(ErrorKind::FieldNumber, candidate, message);
                    failed = true;
                } else if let Some((owner, _)) = known
                    .assigned
                    .iter()
                    .find(|(p, n)| **n == number && *p != path)
                {
                    let dropped_here = !fields.contains_key(owner);
                    let message = if dropped_here {
                        format!(
                            "{label}: {place} uses protobuf number {number}, which was {}'s; v{} drops that field, so its number is retired and never reused [FIELD_NUMBER_RETIRED]. Fix: use a fresh number such as {} (#[event(tag = {})] or drop the tag and let the emitter choose from the lock)",
                            field_place(scope, owner),
                            candidate.version,
                            known.next_free(1),
                            known.next_free(1)
                        )
                    } else {
                        format!(
                            "{label}: {place} uses protobuf number {number}, which belongs to {} [FIELD_NUMBER_TAKEN]. Fix: use a fresh number such as {} (#[event(tag = {})] or drop the tag)",
                            field_place(scope, owner),
                            known.next_free(1),
                            known.next_free(1)
                        )
                    };
                    self.problem(ErrorKind::FieldNumber, candidate, message);
                    failed = true;
                }
            }
        }
        if failed {
            return false;
        }

        // Publish.
        let entry = self
            .lock
            .events
            .get_mut(event)
            .expect("entry inserted before");
        entry.versions.push(VersionLock {
            version: candidate.version,
            schema: digests.schema.clone(),
            proto: digests.proto.clone(),
        });
        entry.versions.sort_by_key(|v| v.version);
        for (scope, candidate_numbers) in numbers {
            let scope_numbers = entry.field_numbers.entry(scope).or_default();
            scope_numbers.assigned.extend(candidate_numbers.assigned);
            // Numbers the emitter already reserves (`x-proto-reserved`) stay retired.
            scope_numbers.retired.extend(candidate_numbers.retired);
        }
        self.writes.insert(
            self.registry
                .schema_path(&candidate.context, event, candidate.version),
            pretty_json(&candidate.schema),
        );
        if let Some(proto) = &candidate.proto {
            self.writes.insert(
                self.registry
                    .proto_path(&candidate.context, event, candidate.version),
                with_newline(proto),
            );
        }
        self.report.published.push(EventVersion {
            event: event.to_owned(),
            version: candidate.version,
        });
        true
    }
}

fn field_place(scope: &str, path: &str) -> String {
    if scope == ROOT_SCOPE {
        return format!("field `{path}`");
    }
    let owner = scope.trim_start_matches('#').trim_start_matches('/');
    let owner = owner
        .strip_prefix("$defs/")
        .or_else(|| owner.strip_prefix("definitions/"))
        .unwrap_or(owner);
    format!("field `{}.{path}` ({scope})", owner.replace('/', "."))
}

/// `/properties/total/type` → `/properties/total`: the pointer of the field that changed.
fn field_pointer(pointer: &str) -> String {
    let segments: Vec<&str> = pointer.split('/').collect();
    let mut end = segments.len();
    for i in (1..segments.len()).rev() {
        if i >= 2 && segments[i - 1] == "properties" {
            end = i + 1;
            break;
        }
    }
    let cut = segments[..end].join("/");
    if cut.is_empty() {
        "the event itself".to_owned()
    } else {
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers_name_fields() {
        assert_eq!(field_pointer("/properties/total/type"), "/properties/total");
        assert_eq!(
            field_pointer("/properties/lines/items/properties/sku/format"),
            "/properties/lines/items/properties/sku"
        );
        assert_eq!(field_pointer("/required/1"), "/required/1");
    }
}
