//! The instance index's rows and the index cache's file format.

pub mod instance;
pub mod snapshot;

pub use instance::{Instance, Scope, Summary};
pub use snapshot::{FormatError, Record, Snapshot, Stored};
