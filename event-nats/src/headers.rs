//! Header translation at the boundary. The runtime hands the transport CloudEvents in the Kafka
//! binary binding (`ce_` attributes). In binary content mode they travel under the NATS
//! binding's names (`ce-`) and come back as `ce_` names; in structured mode
//! ([`crate::structured`]) they are in the body, and what is left of the headers goes through
//! the same mapping.
//!
//! | record (trait side) | NATS message |
//! |---|---|
//! | `ce_<attr>` | `ce-<attr>` |
//! | `content-type`, other names | same name |
//! | key | `x-evt-key` (or `x-evt-key-b64`, base64, when not printable) |
//! | — | `Nats-Msg-Id` = the `ce_id` value (JetStream's duplicate detection) |
//! | a header NATS cannot carry verbatim | inside `x-evt-extra` (base64 of a length-prefixed list) |
//!
//! NATS cannot carry verbatim: values that are not UTF-8, contain control characters or
//! begin/end with whitespace (the client trims them), names with `:`/spaces/non-ASCII, and names
//! this mapping reserves (`ce-*`, `x-evt-*`, `Nats-*`, which the server interprets). Those go in
//! `x-evt-extra`, so every record round-trips byte for byte. A NATS header block is a map: the
//! transport returns headers sorted by name (values of one name keep their order).

use async_nats::{HeaderMap, HeaderName};
use base64::Engine as _;
use bytes::Bytes;
use event_runtime::cloudevents::STRUCTURED_JSON;
use event_runtime::transport::Headers;

pub(crate) const KEY: &str = "x-evt-key";
pub(crate) const KEY_B64: &str = "x-evt-key-b64";
pub(crate) const EXTRA: &str = "x-evt-extra";
const MSG_ID: &str = "Nats-Msg-Id";
const MSG_ID_NAME: HeaderName = HeaderName::from_static(MSG_ID);
const KEY_NAME: HeaderName = HeaderName::from_static(KEY);
const CONTENT_TYPE_NAME: HeaderName = HeaderName::from_static("content-type");

const KAFKA_PREFIX: &str = "ce_";

const NATS_PREFIX: &str = "ce-";

fn starts_with_ignore_case(name: &str, prefix: &str) -> bool {
    name.len() >= prefix.len()
        && name.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

/// Whether the NATS client carries a text value unchanged.
pub(crate) fn clean(text: &str) -> bool {
    !text.chars().any(char::is_control) && text.trim() == text
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_graphic() && c != ':')
}

/// Whether a record header name travels as itself (after `ce_` -> `ce-`), or in `x-evt-extra`.
fn verbatim_name(name: &str) -> bool {
    !(starts_with_ignore_case(name, NATS_PREFIX)
        || starts_with_ignore_case(name, "x-evt-")
        || starts_with_ignore_case(name, "nats-")
        || !valid_name(name))
}

/// The headers of a record on the wire. `Nats-Msg-Id` is `msg_id`, or else the `ce_id`
/// header's value.
pub(crate) fn to_wire<'a>(
    key: Option<&[u8]>,
    headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    msg_id: Option<&str>,
) -> HeaderMap {
    let mut map = HeaderMap::new();
    let derive_msg_id = msg_id.is_none();
    if let Some(id) = msg_id {
        map.insert(MSG_ID_NAME, id);
    }
    let mut extra: Vec<(&str, &[u8])> = Vec::new();
    for (name, value) in headers {
        let text = match std::str::from_utf8(value) {
            Ok(text) if verbatim_name(name) && clean(text) => text,
            _ => {
                extra.push((name, value));
                continue;
            }
        };
        if derive_msg_id && name == "ce_id" && !text.is_empty() {
            map.insert(MSG_ID_NAME, text);
        }
        if starts_with_ignore_case(name, KAFKA_PREFIX) {
            let mut nats = String::with_capacity(name.len());
            nats.push_str(NATS_PREFIX);
            nats.push_str(&name[KAFKA_PREFIX.len()..]);
            map.append(nats, text);
        } else {
            map.append(name, text);
        }
    }
    if let Some(key) = key {
        match std::str::from_utf8(key) {
            Ok(text) if clean(text) => map.insert(KEY_NAME, text),
            _ => map.insert(
                KEY_B64,
                base64::engine::general_purpose::STANDARD.encode(key),
            ),
        }
    }
    if !extra.is_empty() {
        map.insert(
            EXTRA,
            base64::engine::general_purpose::STANDARD.encode(encode_list(&extra)),
        );
    }
    map
}

/// The headers of a record in structured content mode: `content-type:
/// application/cloudevents+json`, `Nats-Msg-Id` = `msg_id`, the key, and `others` (the record's
/// headers that are not CloudEvents attributes) as [`to_wire`] maps them.
pub(crate) fn to_wire_structured(
    key: Option<&[u8]>,
    others: &[(&str, &[u8])],
    msg_id: Option<&str>,
) -> HeaderMap {
    // The common case, a published event: three headers, named without parsing.
    let key = match key.map(std::str::from_utf8) {
        None => None,
        Some(Ok(text)) if clean(text) => Some(text),
        Some(_) => return structured_slow(key, others, msg_id),
    };
    if !others.is_empty() {
        return structured_slow(key.map(str::as_bytes), others, msg_id);
    }
    let mut map = HeaderMap::new();
    map.insert(CONTENT_TYPE_NAME, STRUCTURED_JSON);
    if let Some(id) = msg_id {
        map.insert(MSG_ID_NAME, id);
    }
    if let Some(key) = key {
        map.insert(KEY_NAME, key);
    }
    map
}

fn structured_slow(
    key: Option<&[u8]>,
    others: &[(&str, &[u8])],
    msg_id: Option<&str>,
) -> HeaderMap {
    let content_type = ("content-type", STRUCTURED_JSON.as_bytes());
    to_wire(
        key,
        others.iter().copied().chain(std::iter::once(content_type)),
        msg_id,
    )
}

/// The key and record headers of a message from the wire, the headers sorted by name. A foreign
/// `x-evt-extra` or `x-evt-key-b64` that does not decode is kept as it is (the consumer then
/// sees it).
pub(crate) fn from_wire(map: Option<&HeaderMap>) -> (Option<Bytes>, Headers) {
    let Some(map) = map else {
        return (None, Headers::new());
    };
    let mut key = None;
    // Borrowed (name, value) pairs; a `ce-` name is read as `ce_` when written out.
    let mut headers: Vec<(&str, bool, &[u8])> = Vec::with_capacity(map.len());
    let mut extra = Vec::new();
    // The map's order is a hash's: sorting the wire names first makes the result the same on
    // every delivery where wire names collide (`ce-x` and `CE-x`, a key in both forms).
    let mut names: Vec<(&str, &Vec<async_nats::HeaderValue>)> =
        map.iter().map(|(n, v)| (n.as_ref(), v)).collect();
    names.sort_by(|a, b| a.0.cmp(b.0));
    for (name, values) in names {
        for value in values {
            let text = value.as_str();
            if name == KEY {
                key = Some(Bytes::copy_from_slice(text.as_bytes()));
            } else if name == KEY_B64
                && let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(text)
            {
                key = Some(Bytes::from(bytes));
            } else if name == EXTRA
                && let Some(list) = base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .ok()
                    .and_then(|bytes| decode_list(&bytes))
            {
                extra.extend(list);
            } else if starts_with_ignore_case(name, "nats-") {
                // Set by this transport (Nats-Msg-Id) or by the server; never a record header.
            } else if starts_with_ignore_case(name, NATS_PREFIX) {
                headers.push((&name[NATS_PREFIX.len()..], true, text.as_bytes()));
            } else {
                headers.push((name, false, text.as_bytes()));
            }
        }
    }
    headers.extend(
        extra
            .iter()
            .map(|(name, value)| (name.as_str(), false, value.as_slice())),
    );
    fn full<'a>((name, prefixed, _): &(&'a str, bool, &[u8])) -> (&'static str, &'a str) {
        (if *prefixed { KAFKA_PREFIX } else { "" }, *name)
    }
    // By the full name; stable, so the values of one name keep their order.
    headers.sort_by(|a, b| {
        let (a, b) = (full(a), full(b));
        a.0.bytes()
            .chain(a.1.bytes())
            .cmp(b.0.bytes().chain(b.1.bytes()))
    });
    let mut block = Headers::builder();
    for header in &headers {
        let (prefix, name) = full(header);
        block.push_parts(&[prefix, name], header.2);
    }
    (key, block.finish())
}

/// `u32 count, (u32 name length, name, u32 value length, value)*`, little endian.
fn encode_list(items: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(items.len() as u32).to_le_bytes());
    for (name, value) in items {
        out.extend_from_slice(&(name.len() as u32).to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
        out.extend_from_slice(value);
    }
    out
}

fn decode_list(mut bytes: &[u8]) -> Option<Vec<(String, Vec<u8>)>> {
    fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        if bytes.len() < n {
            return None;
        }
        let (head, rest) = bytes.split_at(n);
        *bytes = rest;
        Some(head)
    }
    fn len(bytes: &mut &[u8]) -> Option<usize> {
        Some(u32::from_le_bytes(take(bytes, 4)?.try_into().ok()?) as usize)
    }
    let count = len(&mut bytes)?;
    let mut out = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        let n = len(&mut bytes)?;
        let name = String::from_utf8(take(&mut bytes, n)?.to_vec()).ok()?;
        let n = len(&mut bytes)?;
        out.push((name, take(&mut bytes, n)?.to_vec()));
    }
    bytes.is_empty().then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(headers: &[(String, Vec<u8>)]) -> impl Iterator<Item = (&str, &[u8])> {
        headers.iter().map(|(n, v)| (n.as_str(), v.as_slice()))
    }

    fn owned(headers: &Headers) -> Vec<(String, Vec<u8>)> {
        headers
            .iter()
            .map(|(n, v)| (n.to_owned(), v.to_vec()))
            .collect()
    }

    fn round_trip(key: Option<&[u8]>, headers: Vec<(String, Vec<u8>)>) {
        let wire = to_wire(key, list(&headers), None);
        let (back_key, back) = from_wire(Some(&wire));
        let mut expected = headers.clone();
        expected.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(owned(&back), expected);
        assert_eq!(back_key.as_deref(), key);
    }

    #[test]
    fn cloudevents_travel_in_the_nats_binding() {
        let headers = vec![
            ("ce_id".to_owned(), b"0190-abc".to_vec()),
            ("ce_type".to_owned(), b"orders.placed".to_vec()),
            ("content-type".to_owned(), b"application/json".to_vec()),
        ];
        let wire = to_wire(Some(b"o-1"), list(&headers), None);
        assert_eq!(wire.get("ce-id").map(|v| v.as_str()), Some("0190-abc"));
        assert_eq!(
            wire.get("ce-type").map(|v| v.as_str()),
            Some("orders.placed")
        );
        assert_eq!(
            wire.get("Nats-Msg-Id").map(|v| v.as_str()),
            Some("0190-abc")
        );
        assert_eq!(wire.get(KEY).map(|v| v.as_str()), Some("o-1"));
        assert!(wire.get("ce_id").is_none());
        round_trip(Some(b"o-1"), headers);
    }

    #[test]
    fn structured_mode_has_three_headers_and_the_others_as_in_binary_mode() {
        let structured = (
            "content-type".to_owned(),
            STRUCTURED_JSON.as_bytes().to_vec(),
        );
        let wire = to_wire_structured(Some(b"o-1"), &[], Some("id-1"));
        assert_eq!(wire.len(), 3);
        assert_eq!(wire.get("Nats-Msg-Id").map(|v| v.as_str()), Some("id-1"));
        let (key, headers) = from_wire(Some(&wire));
        assert_eq!(key.as_deref(), Some(b"o-1".as_slice()));
        assert_eq!(owned(&headers), std::slice::from_ref(&structured));
        // A key NATS cannot carry verbatim, and headers other than attributes.
        let others = vec![
            ("x-evt-dlq-reason".to_owned(), b"handler".to_vec()),
            ("tenant".to_owned(), b"acme".to_vec()),
        ];
        let borrowed: Vec<(&str, &[u8])> = list(&others).collect();
        let wire = to_wire_structured(Some(b" k\xff"), &borrowed, None);
        assert!(wire.get("Nats-Msg-Id").is_none());
        let (key, headers) = from_wire(Some(&wire));
        assert_eq!(key.as_deref(), Some(b" k\xff".as_slice()));
        let mut expected = others;
        expected.push(structured);
        expected.sort();
        assert_eq!(owned(&headers), expected);
    }

    /// Wire names that collide once mapped (`ce-x`, `CE-x`; a key in both forms) come back in
    /// one order whatever the map's, so a redelivery reads the same key and the same lane.
    #[test]
    fn colliding_wire_names_come_back_in_one_order() {
        let pairs = [
            ("ce-x", "lower"),
            ("CE-x", "upper"),
            (KEY, "plain"),
            (KEY_B64, "YjY0"),
        ];
        let mut seen = None;
        for rotation in 0..pairs.len() {
            let mut map = HeaderMap::new();
            for (name, value) in pairs.iter().cycle().skip(rotation).take(pairs.len()) {
                map.insert(*name, *value);
            }
            let (key, headers) = from_wire(Some(&map));
            let read = (key, owned(&headers));
            assert_eq!(read.0.as_deref(), Some(&b"b64"[..]), "the base64 key wins");
            match &seen {
                None => seen = Some(read),
                Some(first) => assert_eq!(&read, first, "rotation {rotation}"),
            }
        }
        let (_, headers) = seen.unwrap();
        assert_eq!(
            headers,
            [
                ("ce_x".to_owned(), b"upper".to_vec()),
                ("ce_x".to_owned(), b"lower".to_vec())
            ]
        );
    }

    #[test]
    fn anything_else_round_trips_through_the_extra_header() {
        round_trip(
            Some(b"\xff key "),
            vec![
                ("ce_id".to_owned(), b"\xff".to_vec()),
                ("ce-literal".to_owned(), b"x".to_vec()),
                ("Nats-Msg-Id".to_owned(), b"forged".to_vec()),
                ("x-evt-key".to_owned(), b"forged".to_vec()),
                ("with space".to_owned(), b"v".to_vec()),
                ("padded".to_owned(), b" v ".to_vec()),
                ("multi".to_owned(), b"a\r\nb".to_vec()),
                ("empty".to_owned(), Vec::new()),
            ],
        );
        round_trip(None, Vec::new());
        let wire = to_wire(None, [("ce_id", &b"\xff"[..])], None);
        assert!(wire.get("Nats-Msg-Id").is_none());
    }
}
