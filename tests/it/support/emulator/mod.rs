//! The emulator harness: in-process (control-plane calls with the real SDK clients, data
//! channels driven by the protocol crate) and as a `postern emulator` child process (for the
//! real binary).

mod channel;
mod in_process;
mod process;

pub(crate) use channel::Channel;
pub(crate) use in_process::{
    CURRENT, OLD, STEP, Started, account, assume, base, base_credentials, emulator, fleet_emulator,
    fleet_ids, id_of, resume_session, role_arn, sdk, ssm, start_session,
};
pub(crate) use process::EmulatorProcess;
