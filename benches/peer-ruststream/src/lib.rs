//! Nothing here: the comparison is `benches/peers.rs`.
