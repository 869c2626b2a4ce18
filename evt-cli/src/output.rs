//! Tables, times, payloads and the progress bar.

use std::io::{self, IsTerminal, Write};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use event_runtime::cloudevents::{self, Limits};
use event_runtime::envelope::RawEnvelope;
use event_runtime::transport::Record;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Prints `value` as the one JSON document of the command.
pub(crate) fn print_json(value: &Value) -> io::Result<()> {
    let mut out = io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    out.flush()
}

/// An RFC 3339 time in UTC.
pub(crate) fn time(value: OffsetDateTime) -> String {
    value
        .to_offset(time::UtcOffset::UTC)
        .format(&Rfc3339)
        .unwrap_or_else(|_| value.to_string())
}

/// The same helpers `evt trace` draws with: times, terminal-safe text, truncation.
pub(crate) use event_runtime::trace::{clean, time_ms, truncate};

/// `-` for nothing.
pub(crate) fn or_dash(text: Option<&str>) -> String {
    text.map_or_else(|| "-".to_owned(), clean)
}

/// Bytes as UTF-8 text when they are, else base64.
pub(crate) fn bytes_json(bytes: &[u8]) -> Value {
    match std::str::from_utf8(bytes) {
        Ok(text) => json!({ "text": text }),
        Err(_) => json!({ "base64": BASE64.encode(bytes) }),
    }
}

/// Bytes for a person: the text when UTF-8, else `base64:...`.
pub(crate) fn bytes_text(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => clean(text),
        Err(_) => format!("base64:{}", BASE64.encode(bytes)),
    }
}

/// A payload as JSON when it parses as JSON.
pub(crate) fn payload_as_json(payload: &[u8]) -> Option<Value> {
    serde_json::from_slice(payload).ok()
}

/// A payload for `--json`: `{"encoding": "json", "value": ...}` when it is JSON, else the
/// UTF-8 text (`"text"`), else `"base64"`.
pub(crate) fn payload_json(payload: &[u8]) -> Value {
    if let Some(value) = payload_as_json(payload) {
        return json!({ "encoding": "json", "value": value });
    }
    match std::str::from_utf8(payload) {
        Ok(text) => json!({ "encoding": "text", "value": text }),
        Err(_) => json!({ "encoding": "base64", "value": BASE64.encode(payload) }),
    }
}

/// The base64 of `bytes`.
pub(crate) fn base64(bytes: &[u8]) -> String {
    BASE64.encode(bytes)
}

/// The record's key as text.
pub(crate) fn record_key(record: &Record) -> Option<String> {
    record
        .key
        .as_deref()
        .map(|key| String::from_utf8_lossy(key).into_owned())
}

/// Decodes a record's CloudEvents attributes (binary mode, Kafka binding), as consumers do.
pub(crate) fn decode(record: &Record) -> Result<RawEnvelope, String> {
    event_runtime::transport::decode_record(record, &Limits::default())
        .map_err(|err| err.to_string())
}

/// An envelope's data for a person: compact JSON when it is JSON, else its size and type.
pub(crate) fn data_text(envelope: &RawEnvelope) -> String {
    let bytes = &envelope.data.0;
    if cloudevents::is_json(&envelope.content_type)
        && let Some(value) = payload_as_json(bytes)
    {
        return value.to_string();
    }
    format!(
        "<{} bytes of {}>",
        bytes.len(),
        clean(&envelope.content_type)
    )
}

/// An envelope's data for `--json`.
pub(crate) fn data_json(envelope: &RawEnvelope) -> (Value, Value) {
    let bytes = &envelope.data.0;
    if cloudevents::is_json(&envelope.content_type)
        && let Some(value) = payload_as_json(bytes)
    {
        return (value, Value::Null);
    }
    (Value::Null, Value::String(BASE64.encode(bytes)))
}

/// A plain text table: a header row and left-aligned columns.
pub(crate) struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(crate) fn new(headers: &[&'static str]) -> Self {
        Table {
            headers: headers.to_vec(),
            rows: Vec::new(),
        }
    }

    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub(crate) fn write(&self, out: &mut impl Write) -> io::Result<()> {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let header: Vec<String> = self.headers.iter().map(|h| (*h).to_owned()).collect();
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (i, (cell, width)) in row.iter().zip(&widths).enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                line.push_str(cell);
                let pad = width.saturating_sub(cell.chars().count());
                line.extend(std::iter::repeat_n(' ', pad));
            }
            writeln!(out, "{}", line.trim_end())?;
        }
        Ok(())
    }
}

/// A progress bar on stderr, drawn only when stderr is a terminal.
pub(crate) struct Progress {
    label: &'static str,
    total: usize,
    done: usize,
    enabled: bool,
    drawn: Option<Instant>,
}

impl Progress {
    /// A bar for `total` items, shown when stderr is a terminal and `total` is at least `min`.
    pub(crate) fn new(label: &'static str, total: usize, min: usize) -> Self {
        Progress {
            label,
            total,
            done: 0,
            enabled: total >= min && io::stderr().is_terminal(),
            drawn: None,
        }
    }

    pub(crate) fn advance(&mut self, by: usize) {
        self.done = (self.done + by).min(self.total);
        let due = self
            .drawn
            .is_none_or(|at| at.elapsed() >= Duration::from_millis(80));
        if self.enabled && (due || self.done == self.total) {
            self.draw();
        }
    }

    fn draw(&mut self) {
        const WIDTH: usize = 30;
        let filled = (self.done * WIDTH).checked_div(self.total).unwrap_or(WIDTH);
        let percent = (self.done * 100).checked_div(self.total).unwrap_or(100);
        let bar: String = std::iter::repeat_n('#', filled)
            .chain(std::iter::repeat_n('-', WIDTH - filled))
            .collect();
        let mut err = io::stderr().lock();
        let _ = write!(
            err,
            "\r{} [{bar}] {}/{} ({percent}%)",
            self.label, self.done, self.total
        );
        let _ = err.flush();
        self.drawn = Some(Instant::now());
    }

    /// Ends the bar's line.
    pub(crate) fn finish(&mut self) {
        if self.enabled && self.drawn.is_some() {
            let _ = writeln!(io::stderr());
            self.drawn = None;
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_and_trim() {
        let mut table = Table::new(&["ID", "REASON"]);
        table.row(vec!["1".into(), "boom".into()]);
        table.row(vec!["123".into(), "x".into()]);
        let mut out = Vec::new();
        table.write(&mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "ID   REASON\n1    boom\n123  x\n"
        );
    }
}
