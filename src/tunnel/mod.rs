//! Background tunnels (`postern up`, `status`, `down`): what a tunnel's supervisor records
//! about it in the private state directory, and how other postern processes find it, tell a
//! live supervisor from a dead one, and clean up after the dead.
//!
//! It must not start, signal or print: `cli` does.

mod record;
mod registry;

pub use record::{ListenerRecord, TunnelRecord, TunnelState};
pub use registry::{Hold, Registry};
