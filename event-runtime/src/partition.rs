//! Partition keys and the partitioner.
//!
//! [`partition_for_key`] is bit-for-bit the Java Kafka client's default for keyed records
//! (`BuiltInPartitioner.partitionForKey`: `toPositive(murmur2(key)) % partitions`), so an event
//! lands on the same partition whichever client writes it.
//!
//! ```
//! use event_runtime::partition::{murmur2, partition_for_key};
//!
//! // Known answer from Kafka's own `UtilsTest.testMurmur2`.
//! assert_eq!(murmur2(b"foobar"), -790_332_482);
//! assert_eq!(partition_for_key(b"foobar", 12), (-790_332_482i32 & 0x7fff_ffff) as u32 % 12);
//! ```

use std::fmt::Write as _;

/// Kafka's murmur2 (`org.apache.kafka.common.utils.Utils.murmur2`), returning Java's signed `int`.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;

    let length = data.len();
    // Java computes `seed ^ length` on ints; the length is truncated the same way.
    let mut h: u32 = SEED ^ (length as u32);
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    // Java sign-extends nothing here: it masks each byte with 0xff before shifting.
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// Kafka's `Utils.toPositive`: clears the sign bit (not `abs`, which overflows on `i32::MIN`).
pub fn to_positive(number: i32) -> u32 {
    (number & 0x7fff_ffff) as u32
}

/// The partition the Java client picks for a keyed record with `partitions` partitions.
///
/// # Panics
///
/// If `partitions` is zero: a topic always has at least one partition.
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    assert!(partitions > 0, "a topic has at least one partition");
    to_positive(murmur2(key)) % partitions
}

/// A value that can be part of a partition key or a dedupe key.
///
/// Implemented for strings, integers, `bool`, `char` and UUIDs: values with one exact textual
/// form. Floating-point numbers are deliberately left out (`0.1 + 0.2` and `0.3` would land on
/// different partitions), as are collections.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be used as a partition or dedupe key",
    label = "this field is marked as a key",
    note = "keys must have one exact textual form: use a string, an integer, a bool, a char or a UUID (floats and collections are not allowed); or compute the key with #[event(key_with = path::to::fn)]"
)]
pub trait KeyPart {
    /// Appends this value's textual form to `out`.
    fn write_key(&self, out: &mut String);
}

impl<T: KeyPart + ?Sized> KeyPart for &T {
    fn write_key(&self, out: &mut String) {
        (**self).write_key(out);
    }
}

impl KeyPart for str {
    fn write_key(&self, out: &mut String) {
        out.push_str(self);
    }
}

impl KeyPart for String {
    fn write_key(&self, out: &mut String) {
        out.push_str(self);
    }
}

impl KeyPart for std::borrow::Cow<'_, str> {
    fn write_key(&self, out: &mut String) {
        out.push_str(self);
    }
}

impl KeyPart for uuid::Uuid {
    fn write_key(&self, out: &mut String) {
        let _ = write!(out, "{}", self.hyphenated());
    }
}

impl<T: KeyPart> KeyPart for Box<T> {
    fn write_key(&self, out: &mut String) {
        (**self).write_key(out);
    }
}

macro_rules! display_key {
    ($($ty:ty),*) => {$(
        impl KeyPart for $ty {
            fn write_key(&self, out: &mut String) {
                let _ = write!(out, "{self}");
            }
        }
    )*};
}

display_key!(
    u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize, bool, char
);

/// The separator between the parts of a composite key: `tenant-7/order-42`.
pub const KEY_SEPARATOR: char = '/';

/// Builds a composite key from its parts, in declaration order, separated by [`KEY_SEPARATOR`].
pub fn composite_key(parts: &[&dyn KeyPart]) -> String {
    let mut out = String::new();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            out.push(KEY_SEPARATOR);
        }
        part.write_key(&mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every vector of Apache Kafka's `UtilsTest.testMurmur2`.
    #[test]
    fn murmur2_matches_kafka_known_answers() {
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ];
        for (key, expected) in cases {
            assert_eq!(murmur2(key), expected, "{}", String::from_utf8_lossy(key));
        }
    }

    #[test]
    fn to_positive_clears_the_sign_bit_like_java() {
        assert_eq!(to_positive(-1), 0x7fff_ffff);
        assert_eq!(to_positive(i32::MIN), 0);
        assert_eq!(to_positive(42), 42);
        // -973932308 & 0x7fffffff = 1173551340; 1173551340 % 10 = 0
        assert_eq!(partition_for_key(b"21", 10), 0);
        assert_eq!(partition_for_key(b"abc", 7), 479_470_107 % 7);
    }

    #[test]
    fn composite_keys_keep_declaration_order() {
        assert_eq!(
            composite_key(&[&"tenant-7", &42u64, &true]),
            "tenant-7/42/true"
        );
        assert_eq!(composite_key(&[]), "");
    }
}
