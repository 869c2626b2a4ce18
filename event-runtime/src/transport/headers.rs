//! [`Headers`]: a record's headers in one shared buffer, read in place.
//!
//! A record carries a dozen headers (the `ce_*` attributes, `content-type`). Held as a list of
//! owned strings they cost two allocations each on every encode, every fetch and every clone.
//! Here they are one immutable block, `u16 count, (u16 name length, name, u32 value length,
//! value)*` (little-endian; the form the SQL log, the dead letters and the outbox have always
//! stored), behind a reference-counted [`Bytes`]: cloning a record's headers copies a pointer,
//! and a reader borrows names and values straight from the block.

use std::fmt;

use bytes::Bytes;

use super::CORRUPT_HEADERS;

/// A record's headers: names (UTF-8) and byte values in the order written, in one shared
/// buffer: `u16 count, (u16 name length, name, u32 value length, value)*`, little-endian (the
/// form the SQL stores keep). Cloning copies a pointer; reading borrows from the buffer.
///
/// ```
/// use event_runtime::transport::Headers;
///
/// let mut builder = Headers::builder();
/// builder.push("ce_type", b"orders.order_placed");
/// builder.push("content-type", b"application/json");
/// let headers = builder.finish();
/// assert_eq!(headers.get("Content-Type"), Some(&b"application/json"[..]));
/// assert_eq!(headers.iter().map(|(name, _)| name).collect::<Vec<_>>(), ["ce_type", "content-type"]);
/// // The stored form reads back, and a damaged one is refused with where it broke.
/// assert_eq!(Headers::from_blob(headers.as_blob().to_vec()).unwrap(), headers);
/// assert!(Headers::from_blob(vec![1, 0, 9]).unwrap_err().contains("name length"));
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Headers {
    /// Always a complete, valid block (checked by [`Headers::from_blob`] or written by
    /// [`HeadersBuilder`]), so reading it cannot fail.
    blob: Bytes,
}

const EMPTY: &[u8] = &[0, 0];

impl Default for Headers {
    fn default() -> Self {
        Headers {
            blob: Bytes::from_static(EMPTY),
        }
    }
}

impl Headers {
    /// No headers.
    pub fn new() -> Self {
        Headers::default()
    }

    /// A builder for a new block (room for a typical event's dozen attributes).
    pub fn builder() -> HeadersBuilder {
        HeadersBuilder::with_capacity(512)
    }

    /// Reads a stored block, checking every length and that every name is UTF-8. The block is
    /// kept as it is (no copy when it is already a [`Bytes`]).
    ///
    /// # Errors
    ///
    /// A truncated or inconsistent block, or a name that is not UTF-8, naming the header and
    /// the part where it broke.
    pub fn from_blob(blob: impl Into<Bytes>) -> Result<Headers, String> {
        let blob = blob.into();
        let mut reader = Reader { rest: &blob };
        let count = reader.take(2, "count")?;
        let count = u16::from_le_bytes([count[0], count[1]]);
        for i in 0..count {
            let name = reader.sized(2, "name length")?;
            std::str::from_utf8(reader.take(name, "name")?)
                .map_err(|_| format!("header {i} name is not UTF-8"))?;
            let value = reader.sized(4, "value length")?;
            reader.take(value, "value")?;
        }
        if !reader.rest.is_empty() {
            return Err(format!(
                "{} trailing bytes after {count} headers",
                reader.rest.len()
            ));
        }
        Ok(Headers { blob })
    }

    /// A stored block as [`Headers::from_blob`] reads it, or, when it cannot be read, the
    /// [`CORRUPT_HEADERS`] header with the reason and `x-evt-corrupt-headers-raw` with the blob
    /// as it was: the consumer dead-letters such a record as malformed, and nothing is lost.
    pub fn stored(blob: impl Into<Bytes>) -> Headers {
        let blob = blob.into();
        Headers::from_blob(blob.clone()).unwrap_or_else(|reason| {
            let mut builder = HeadersBuilder::with_capacity(blob.len() + reason.len() + 64);
            builder.push(CORRUPT_HEADERS, reason.as_bytes());
            builder.push_parts(&[CORRUPT_HEADERS, "-raw"], &blob);
            builder.finish()
        })
    }

    /// The stored form (see the module docs).
    pub fn as_blob(&self) -> &[u8] {
        &self.blob
    }

    /// The number of headers.
    pub fn len(&self) -> usize {
        usize::from(u16::from_le_bytes([self.blob[0], self.blob[1]]))
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Names and values in the order written, borrowed from the block.
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            raw: self.raw_iter(),
        }
    }

    /// Names and values as bytes: [`Headers::iter`] without reading the names as UTF-8 again
    /// (the block was checked when it was made), for the lookups on the consume path.
    pub(crate) fn raw_iter(&self) -> RawIter<'_> {
        RawIter {
            rest: &self.blob[2..],
            left: self.len(),
        }
    }

    /// The first header named `name`, compared without regard to ASCII case (HTTP, NATS and
    /// Kafka header names are case-insensitive in practice).
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.raw_iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, value)| value)
    }

    /// The first values of headers `a` and `b` (any ASCII case), read in one pass.
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    pub(crate) fn get_pair(&self, a: &str, b: &str) -> (Option<&[u8]>, Option<&[u8]>) {
        let (mut first, mut second) = (None, None);
        for (name, value) in self.raw_iter() {
            if first.is_none() && name.eq_ignore_ascii_case(a.as_bytes()) {
                first = Some(value);
            } else if second.is_none() && name.eq_ignore_ascii_case(b.as_bytes()) {
                second = Some(value);
            }
            if first.is_some() && second.is_some() {
                break;
            }
        }
        (first, second)
    }

    /// A copy in which every header named `name` (any ASCII case) has `value`, or with
    /// `name: value` appended when there is none.
    #[must_use]
    pub fn with(&self, name: &str, value: &[u8]) -> Headers {
        let mut builder = HeadersBuilder::with_capacity(self.blob.len() + name.len() + value.len());
        let mut found = false;
        for (n, v) in self {
            if n.eq_ignore_ascii_case(name) {
                found = true;
                builder.push(n, value);
            } else {
                builder.push(n, v);
            }
        }
        if !found {
            builder.push(name, value);
        }
        builder.finish()
    }

    /// A builder that starts with these headers, to add more.
    pub fn to_builder(&self) -> HeadersBuilder {
        let mut builder = HeadersBuilder::with_capacity(self.blob.len() + 128);
        builder.buf.truncate(0);
        builder.buf.extend_from_slice(&self.blob);
        builder.count = self.len() as u16;
        builder
    }
}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(
                self.iter()
                    .map(|(name, value)| (name, String::from_utf8_lossy(value))),
            )
            .finish()
    }
}

impl<'a> IntoIterator for &'a Headers {
    type Item = (&'a str, &'a [u8]);
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl<N: AsRef<str>, V: AsRef<[u8]>> FromIterator<(N, V)> for Headers {
    fn from_iter<I: IntoIterator<Item = (N, V)>>(iter: I) -> Self {
        let mut builder = Headers::builder();
        for (name, value) in iter {
            builder.push(name.as_ref(), value.as_ref());
        }
        builder.finish()
    }
}

impl From<Vec<(String, Vec<u8>)>> for Headers {
    fn from(headers: Vec<(String, Vec<u8>)>) -> Self {
        headers.into_iter().collect()
    }
}

/// The headers of a [`Headers`] block in order: `(name, value)`.
#[derive(Clone, Debug)]
pub struct Iter<'a> {
    raw: RawIter<'a>,
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a str, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let (name, value) = self.raw.next()?;
        // Checked when the block was made, so this cannot fail; should it, iteration ends.
        Some((std::str::from_utf8(name).ok()?, value))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.raw.size_hint()
    }
}

/// [`Iter`] with names as bytes.
#[derive(Clone, Debug)]
pub(crate) struct RawIter<'a> {
    rest: &'a [u8],
    left: usize,
}

impl<'a> Iterator for RawIter<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        // The block was checked when it was made: these reads cannot run short. Should one
        // anyway, the iteration ends instead of panicking.
        let (name_len, rest) = self.rest.split_first_chunk::<2>()?;
        let (name, rest) = rest.split_at_checked(usize::from(u16::from_le_bytes(*name_len)))?;
        let (value_len, rest) = rest.split_first_chunk::<4>()?;
        let (value, rest) = rest.split_at_checked(u32::from_le_bytes(*value_len) as usize)?;
        self.rest = rest;
        Some((name, value))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.left))
    }
}

struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        if self.rest.len() < n {
            return Err(format!(
                "header blob truncated in {what}: need {n} bytes, have {}",
                self.rest.len()
            ));
        }
        let (head, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(head)
    }

    /// A little-endian length of `width` (2 or 4) bytes.
    fn sized(&mut self, width: usize, what: &str) -> Result<usize, String> {
        let bytes = self.take(width, what)?;
        Ok(bytes
            .iter()
            .rev()
            .fold(0usize, |len, byte| (len << 8) | usize::from(*byte)))
    }
}

/// Writes a [`Headers`] block: [`HeadersBuilder::push`] each header, then
/// [`HeadersBuilder::finish`].
///
/// A block holds at most 65,535 headers, each name at most 65,535 bytes and each value at most
/// 4 GiB. Input beyond that (a foreign message, never our own) is not dropped silently: the
/// finished block holds only the [`CORRUPT_HEADERS`] header saying so, so the consumer
/// dead-letters the record as malformed with its payload intact.
#[derive(Debug)]
pub struct HeadersBuilder {
    buf: Vec<u8>,
    count: u16,
    overflow: Option<String>,
}

impl HeadersBuilder {
    /// A builder whose buffer starts with `bytes` of capacity.
    pub fn with_capacity(bytes: usize) -> Self {
        let mut buf = Vec::with_capacity(bytes.max(2));
        buf.extend_from_slice(EMPTY);
        HeadersBuilder {
            buf,
            count: 0,
            overflow: None,
        }
    }

    /// Appends a header.
    pub fn push(&mut self, name: &str, value: &[u8]) {
        self.push_parts(&[name], value);
    }

    /// Appends a header whose name is the concatenation of `name` (a binding's prefix and an
    /// attribute name, say), without building the name first.
    pub fn push_parts(&mut self, name: &[&str], value: &[u8]) {
        let name_len: usize = name.iter().map(|part| part.len()).sum();
        let (Ok(name_len16), Ok(value_len32)) =
            (u16::try_from(name_len), u32::try_from(value.len()))
        else {
            self.overflow.get_or_insert_with(|| {
                format!(
                    "a header of {name_len} name bytes and {} value bytes is beyond the block's \
                     limits (65,535 and 4 GiB)",
                    value.len()
                )
            });
            return;
        };
        let Some(count) = self.count.checked_add(1) else {
            self.overflow
                .get_or_insert_with(|| "more than 65,535 headers".to_owned());
            return;
        };
        self.count = count;
        self.buf.reserve(6 + name_len + value.len());
        self.buf.extend_from_slice(&name_len16.to_le_bytes());
        for part in name {
            self.buf.extend_from_slice(part.as_bytes());
        }
        self.buf.extend_from_slice(&value_len32.to_le_bytes());
        self.buf.extend_from_slice(value);
    }

    /// Appends a header whose value `write` appends to the buffer it is given (a formatted
    /// timestamp, say), without a buffer of its own. An error from `write` leaves the builder as
    /// it was and is returned.
    ///
    /// # Errors
    ///
    /// `write`'s.
    pub(crate) fn push_with<E>(
        &mut self,
        name: &[&str],
        write: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
    ) -> Result<(), E> {
        let start = self.buf.len();
        self.push_parts(name, &[]);
        if self.buf.len() == start {
            // Beyond the limits already (recorded as overflow): nothing to write into.
            return Ok(());
        }
        let value_at = self.buf.len();
        let written = write(&mut self.buf);
        if written.is_err() || self.buf.len() < value_at {
            // Failed, or took back more than it wrote (a bug of ours): as if never called.
            self.buf.truncate(start);
            self.count -= 1;
            return written;
        }
        let len = self.buf.len() - value_at;
        match u32::try_from(len) {
            Ok(len) => self.buf[value_at - 4..value_at].copy_from_slice(&len.to_le_bytes()),
            Err(_) => {
                self.buf.truncate(start);
                self.count -= 1;
                self.overflow
                    .get_or_insert_with(|| format!("a header value of {len} bytes (over 4 GiB)"));
            }
        }
        Ok(())
    }

    /// The finished block.
    pub fn finish(mut self) -> Headers {
        if let Some(reason) = self.overflow {
            let mut corrupt = HeadersBuilder::with_capacity(64 + reason.len());
            corrupt.push(CORRUPT_HEADERS, reason.as_bytes());
            return corrupt.finish();
        }
        self.buf[..2].copy_from_slice(&self.count.to_le_bytes());
        Headers {
            blob: Bytes::from(self.buf),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Headers, HeadersBuilder};
    use crate::transport::CORRUPT_HEADERS;

    #[test]
    fn blocks_round_trip_and_truncation_is_named() {
        let headers: Headers = [("ce_type", &b"orders.placed"[..]), ("x", b"")]
            .into_iter()
            .collect();
        assert_eq!(headers.len(), 2);
        assert_eq!(
            headers.iter().collect::<Vec<_>>(),
            [("ce_type", &b"orders.placed"[..]), ("x", b"")]
        );
        let blob = headers.as_blob().to_vec();
        assert_eq!(Headers::from_blob(blob.clone()).unwrap(), headers);
        let err = Headers::from_blob(blob[..blob.len() - 3].to_vec()).unwrap_err();
        assert!(err.contains("truncated in value"), "{err}");
        assert!(
            Headers::from_blob(Vec::new())
                .unwrap_err()
                .contains("count")
        );
        let mut extra = blob.clone();
        extra.push(0);
        assert!(Headers::from_blob(extra).unwrap_err().contains("trailing"));
        let mut bad_name = blob;
        bad_name[4] = 0xff;
        assert!(
            Headers::from_blob(bad_name)
                .unwrap_err()
                .contains("header 0 name is not UTF-8")
        );
    }

    #[test]
    fn an_unreadable_stored_block_becomes_a_marker_that_keeps_it() {
        let headers = Headers::stored(vec![2, 0, 1]);
        let reason = String::from_utf8_lossy(headers.get(CORRUPT_HEADERS).unwrap()).into_owned();
        assert!(reason.contains("truncated in name length"), "{reason}");
        assert_eq!(
            headers.get("x-evt-corrupt-headers-raw"),
            Some(&[2, 0, 1][..])
        );
        let fine: Headers = [("a", "1")].into_iter().collect();
        assert_eq!(Headers::stored(fine.as_blob().to_vec()), fine);
    }

    #[test]
    fn lookups_ignore_ascii_case_and_take_the_first() {
        let headers: Headers = [("Content-Type", "a"), ("content-type", "b")]
            .into_iter()
            .collect();
        assert_eq!(headers.get("CONTENT-TYPE"), Some(&b"a"[..]));
        assert_eq!(headers.get("ce_id"), None);
        assert!(Headers::new().is_empty());
        assert_eq!(Headers::new().iter().count(), 0);
    }

    #[test]
    fn a_builder_extends_existing_headers_and_joins_name_parts() {
        let base: Headers = [("a", "1")].into_iter().collect();
        let mut builder = base.to_builder();
        builder.push_parts(&["ce_", "type"], b"t");
        let grown = builder.finish();
        assert_eq!(
            grown.iter().collect::<Vec<_>>(),
            [("a", &b"1"[..]), ("ce_type", b"t")]
        );
        assert_eq!(base.len(), 1, "the original block is unchanged");
        let replaced = grown.with("CE_TYPE", b"u").with("b", b"2");
        assert_eq!(
            replaced.iter().collect::<Vec<_>>(),
            [("a", &b"1"[..]), ("ce_type", b"u"), ("b", b"2")]
        );
    }

    #[test]
    fn a_value_written_in_place_is_sized_and_a_failed_write_leaves_nothing() {
        let mut builder = Headers::builder();
        builder
            .push_with(&["ce_", "time"], |buf| {
                buf.extend_from_slice(b"2026-12-03T00:00:00Z");
                Ok::<_, ()>(())
            })
            .unwrap();
        let failed = builder.push_with(&["x"], |buf| {
            buf.extend_from_slice(b"half");
            Err("no")
        });
        assert_eq!(failed, Err("no"));
        builder.push("y", b"1");
        let headers = builder.finish();
        assert_eq!(
            headers.iter().collect::<Vec<_>>(),
            [("ce_time", &b"2026-12-03T00:00:00Z"[..]), ("y", b"1")]
        );
        assert_eq!(
            Headers::from_blob(headers.as_blob().to_vec()).unwrap(),
            headers
        );
    }

    #[test]
    fn input_beyond_the_block_limits_becomes_a_corrupt_marker() {
        let mut builder = HeadersBuilder::with_capacity(0);
        builder.push(&"n".repeat(70_000), b"v");
        let headers = builder.finish();
        let reason = headers.get(CORRUPT_HEADERS).expect("marker");
        assert!(
            String::from_utf8_lossy(reason).contains("70000 name bytes"),
            "{headers:?}"
        );
        assert_eq!(headers.len(), 1);
    }
}
