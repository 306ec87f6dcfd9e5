//! One file per command: its arguments (clap), its validated plan, and its run.

pub(crate) mod broker;
pub(crate) mod command_document;
pub(crate) mod completions;
pub(crate) mod console;
pub(crate) mod cp;
pub(crate) mod demo;
pub(crate) mod doctor;
pub(crate) mod exec_many;
pub(crate) mod forward;
pub(crate) mod history;
pub(crate) mod install;
pub(crate) mod list;
pub(crate) mod plugin;
pub(crate) mod session;
pub(crate) mod setup;
pub(crate) mod ssh;
pub(crate) mod ssh_push_key;
pub(crate) mod sync;
pub(crate) mod tunnel;
