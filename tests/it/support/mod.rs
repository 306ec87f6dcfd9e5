//! What the integration tests share, each helper once: the emulator harness (in-process and as
//! a child process), `postern forward` as a child, a scratch home, loopback servers, test data,
//! bounded waits, `doctor`'s check lines, and the outside programs the tests drive (tmux, sshd, moto).

pub(crate) mod aws;
pub(crate) mod data;
pub(crate) mod doctor;
pub(crate) mod emulator;
pub(crate) mod fixtures;
pub(crate) mod forward;
pub(crate) mod home;
pub(crate) mod moto;
pub(crate) mod net;
pub(crate) mod poll;
pub(crate) mod process;
pub(crate) mod sshd;
pub(crate) mod tmux;
