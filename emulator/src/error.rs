//! Errors of the emulator as a library: starting it, parsing its inputs. Per-request and
//! per-session failures are answered on the wire (AWS errors, channel_closed), not here.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

use thiserror::Error;

/// Why the emulator could not start or stop cleanly.
#[derive(Debug, Error)]
pub enum EmulatorError {
    /// The listen address is not a loopback address (our misuse: the emulator is local only).
    #[error("listen address {0} is not loopback; the emulator serves this machine only")]
    NotLoopback(SocketAddr),
    /// Binding the listener failed.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address tried.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The violations log could not be opened.
    #[error("cannot open violations log {path}")]
    ViolationsLog {
        /// The path tried.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The fleet file could not be read.
    #[error("cannot read fleet file {path}")]
    FleetRead {
        /// The path tried.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The fleet file is not valid.
    #[error("invalid fleet file {path}: {reason}")]
    FleetInvalid {
        /// The path read.
        path: PathBuf,
        /// What is wrong, in the file's terms.
        reason: String,
    },
    /// An `--instance` value is not `ID=AGENT_VERSION`.
    #[error(
        "invalid instance {0:?}, expected ID=AGENT_VERSION such as i-0123456789abcdef0=3.3.0.0"
    )]
    BadInstanceSpec(String),
    /// A `--generate-fleet` value is not `accounts=N,regions=N,instances=N`.
    #[error(
        "invalid fleet shape {0:?}, expected accounts=N,regions=N,instances=N such as \
         accounts=50,regions=3,instances=5000 (at most 6 regions)"
    )]
    BadFleetShape(String),
    /// `--management-account` names no account of the fleet.
    #[error("management account {0} is not an account of the fleet")]
    UnknownAccount(String),
    /// No instances to serve.
    #[error("the emulator needs at least one instance")]
    NoInstances,
    /// `--public-url` names a host off loopback or a scheme other than http(s).
    #[error(
        "public URL {0} is not http(s) to a loopback host; the emulator serves this machine only"
    )]
    PublicUrlNotLoopback(String),
    /// The server task failed.
    #[error("emulator server failed")]
    Serve(#[source] io::Error),
}
