//! How the `binary_headers` and `record` targets read their input: a text framing that the
//! fuzzer mutates well and a person can read and write, so the seeds are plain files.
//!
//! ```text
//! ce_specversion:1.0          one header per line: name, the first `:`, value
//! content-type:application/json
//!                             an empty line ends the headers
//! {"parcel":"p-1"}            the payload: every byte to the end, as is
//! ```
//!
//! In names and values `%XX` (two hex digits) is the byte `0xXX`, so any byte can be written
//! (`%0A` for a newline in a value, `%3A` for a colon in a name, `%25` for `%`); a `%` not
//! followed by two hex digits is itself. A line without `:` is a header with an empty value.
//! Without an empty line the whole input is headers. Names are read as UTF-8, invalid sequences
//! replaced, since the APIs take them as `&str`.
//!
//! For records, the lines `@key:<bytes>` and `@timestamp:<milliseconds>` set the record's key and
//! append time (an unreadable timestamp is 0, no time); every other line is a header. (A record
//! header really called `@key` cannot be written; no decoder gives that name a meaning.)

use event_runtime::transport::Record;

/// Headers and a payload, as read from a fuzz input.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Framed {
    /// The headers, in input order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The payload.
    pub payload: Vec<u8>,
}

fn hex(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

fn unescape(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        if text[i] == b'%'
            && let (Some(hi), Some(lo)) = (
                text.get(i + 1).copied().and_then(hex),
                text.get(i + 2).copied().and_then(hex),
            )
        {
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(text[i]);
            i += 1;
        }
    }
    out
}

fn escape(bytes: &[u8], colon: bool, out: &mut Vec<u8>) {
    for &b in bytes {
        if b == b'%' || b == b'\n' || (colon && b == b':') || !(0x20..0x7f).contains(&b) {
            out.extend_from_slice(format!("%{b:02X}").as_bytes());
        } else {
            out.push(b);
        }
    }
}

/// Reads headers and a payload.
pub fn parse(data: &[u8]) -> Framed {
    let mut framed = Framed::default();
    let mut rest = data;
    loop {
        let (line, after) = match rest.iter().position(|&b| b == b'\n') {
            Some(end) => (&rest[..end], Some(&rest[end + 1..])),
            None => (rest, None),
        };
        if line.is_empty() {
            // The empty line: the payload follows. (Also the end of an input that ends with
            // a newline, or an empty input.)
            framed.payload = after.unwrap_or_default().to_vec();
            return framed;
        }
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => (&line[..colon], &line[colon + 1..]),
            None => (line, &[][..]),
        };
        framed.headers.push((
            String::from_utf8_lossy(&unescape(name)).into_owned(),
            unescape(value),
        ));
        match after {
            Some(after) => rest = after,
            None => return framed,
        }
    }
}

/// Writes headers and a payload so that [`parse`] reads them back.
pub fn write(headers: &[(String, Vec<u8>)], payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in headers {
        escape(name.as_bytes(), true, &mut out);
        out.push(b':');
        escape(value, false, &mut out);
        out.push(b'\n');
    }
    out.push(b'\n');
    out.extend_from_slice(payload);
    out
}

/// The pseudo-header that sets [`Record::key`].
pub const KEY: &str = "@key";
/// The pseudo-header that sets [`Record::timestamp_ms`].
pub const TIMESTAMP: &str = "@timestamp";

/// Reads a stored record: [`parse`], with the `@key` and `@timestamp` lines taken out.
pub fn record(data: &[u8]) -> Record {
    let Framed { headers, payload } = parse(data);
    let mut record = Record {
        topic: "fuzz".into(),
        partition: 0,
        offset: 0,
        timestamp_ms: 0,
        key: None,
        headers: Default::default(),
        payload: payload.into(),
    };
    let mut block = event_runtime::transport::Headers::builder();
    for (name, value) in headers {
        match name.as_str() {
            KEY => record.key = Some(value.into()),
            TIMESTAMP => {
                record.timestamp_ms = std::str::from_utf8(&value)
                    .ok()
                    .and_then(|text| text.parse().ok())
                    .unwrap_or(0);
            }
            _ => block.push(&name, &value),
        }
    }
    record.headers = block.finish();
    record
}

/// Writes a record so that [`record`] reads it back (topic, partition and offset are not kept:
/// no decoder reads them).
pub fn write_record(record: &Record) -> Vec<u8> {
    let mut headers = Vec::with_capacity(record.headers.len() + 2);
    if let Some(key) = &record.key {
        headers.push((KEY.to_owned(), key.to_vec()));
    }
    if record.timestamp_ms != 0 {
        headers.push((
            TIMESTAMP.to_owned(),
            record.timestamp_ms.to_string().into_bytes(),
        ));
    }
    headers.extend(
        record
            .headers
            .iter()
            .map(|(name, value)| (name.to_owned(), value.to_vec())),
    );
    write(&headers, &record.payload)
}

#[cfg(test)]
mod tests {
    use super::{Framed, parse, record, write, write_record};

    #[test]
    fn any_headers_round_trip() {
        let headers = vec![
            ("ce_id".to_owned(), b"a:b%c\nd".to_vec()),
            ("odd:name%".to_owned(), vec![0, 0xff, b'\r']),
            (String::new(), Vec::new()),
        ];
        let payload = b"\n\nline\n".to_vec();
        let framed = parse(&write(&headers, &payload));
        assert_eq!(framed, Framed { headers, payload });
    }

    #[test]
    fn plain_text_reads_as_written() {
        let framed = parse(b"a:1\nb\nc:x:y\n\nbody");
        let names: Vec<&str> = framed.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(framed.headers[2].1, b"x:y");
        assert_eq!(framed.payload, b"body");
        assert_eq!(
            parse(b"%4g%41").headers[0].0,
            "%4gA",
            "a bad escape is itself"
        );
        assert_eq!(parse(b"").headers, []);
    }

    #[test]
    fn records_round_trip() {
        let written = record(b"@key:k\n@timestamp:-5\ncontent-type:x\n\np");
        assert_eq!(written.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(written.timestamp_ms, -5);
        assert_eq!(written.headers.len(), 1);
        assert_eq!(record(&write_record(&written)), written);
    }
}
