//! Background tunnels: `postern up` (`up`) starts named tunnel sets through a detached
//! supervisor (`supervisor`, the hidden `tunnel-supervisor` command, handed its `launch`
//! document on stdin), `postern status` (`status`) shows them, `postern down` (`down`) stops
//! them.

mod down;
mod launch;
mod status;
mod supervisor;
mod up;

pub use down::DownArgs;
pub(crate) use down::down;
pub use status::StatusArgs;
pub(crate) use status::status;
pub use supervisor::SupervisorArgs;
pub(crate) use supervisor::supervise;
pub(crate) use up::up;
pub use up::{UpArgs, UpPlan};
