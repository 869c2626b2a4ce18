//! Names on the server. A topic or group name becomes one token that is valid in a subject, a
//! stream name and a KV key: ASCII letters and digits stay, every other byte is `_XX` (hex), and
//! the empty name is `_`. The mapping is injective, so distinct topics never share a stream.

/// The token of `name`.
pub(crate) fn token(name: &str) -> String {
    if name.is_empty() {
        return "_".to_owned();
    }
    let mut out = String::with_capacity(name.len());
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() {
            out.push(byte as char);
        } else {
            out.push('_');
            out.push_str(&format!("{byte:02X}"));
        }
    }
    out
}

/// The name of `token`, or `None` if it is not one [`token`] writes.
pub(crate) fn untoken(token: &str) -> Option<String> {
    if token == "_" {
        return Some(String::new());
    }
    let bytes = token.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'_' => {
                let hex = token.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b if b.is_ascii_alphanumeric() => {
                out.push(b);
                i += 1;
            }
            _ => return None,
        }
    }
    String::from_utf8(out).ok()
}

/// Whether `prefix` may prefix subjects, stream names and bucket names.
pub(crate) fn valid_prefix(prefix: &str) -> bool {
    !prefix.is_empty()
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The names of one deployment (one prefix).
#[derive(Clone, Debug)]
pub(crate) struct Names {
    prefix: String,
}

impl Names {
    pub(crate) fn new(prefix: &str) -> Self {
        Names {
            prefix: prefix.to_owned(),
        }
    }

    /// The subject a partition's records are published to.
    pub(crate) fn subject(&self, topic: &str, partition: u32) -> String {
        format!("{}.{}.{partition}", self.prefix, token(topic))
    }

    /// `<prefix>.<topic>.`: the subject of a partition without its number.
    pub(crate) fn subject_prefix(&self, topic: &str) -> String {
        format!("{}.{}.", self.prefix, token(topic))
    }

    /// The stream holding one partition: stream sequence = offset + 1.
    pub(crate) fn stream(&self, topic: &str, partition: u32) -> String {
        format!("{}-{}-{partition}", self.prefix, token(topic))
    }

    /// The KV bucket of topics (key: topic token, value: partition count).
    pub(crate) fn topics_bucket(&self) -> String {
        format!("{}-topics", self.prefix)
    }

    /// The KV bucket of consumer-group positions.
    pub(crate) fn positions_bucket(&self) -> String {
        format!("{}-positions", self.prefix)
    }

    /// The KV bucket of consumer-group members (key: group token, value: one
    /// `<until_ms> <instance>` line per member).
    pub(crate) fn members_bucket(&self) -> String {
        format!("{}-members", self.prefix)
    }

    /// The key of one group position: `<group>.<topic>.<partition>`.
    pub(crate) fn position_key(group: &str, topic: &str, partition: u32) -> String {
        format!("{}.{}.{partition}", token(group), token(topic))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_are_safe() {
        for name in [
            "",
            "_",
            "orders",
            "orders.commands",
            "a-b_c d",
            "ünï/cödé*>",
            "_41",
        ] {
            let t = token(name);
            assert!(
                t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
                "{t}"
            );
            assert_eq!(untoken(&t).as_deref(), Some(name), "{t}");
        }
        assert_ne!(token("_41"), token("A"));
        assert_eq!(untoken("a.b"), None);
        assert_eq!(untoken("_4"), None);
    }

    #[test]
    fn names() {
        let names = Names::new("evt");
        assert_eq!(
            names.subject("orders.commands", 3),
            "evt.orders_2Ecommands.3"
        );
        assert_eq!(names.stream("orders", 0), "evt-orders-0");
        assert_eq!(
            Names::position_key("billing", "orders", 2),
            "billing.orders.2"
        );
        assert!(valid_prefix("evt_1") && !valid_prefix("a.b") && !valid_prefix(""));
    }
}
