//! Deterministic test harness (feature `testkit`): golden-vector loading, the simulated
//! [`pair::Pair`] and the [`scripted::ScriptedPeer`]. Never used by shipped code paths.

pub mod pair;
pub mod scripted;
pub mod vectors;
