//! The integration tests, one binary: the real `postern` binary and the real AWS SDK clients
//! against the emulator on loopback, and against programs we did not write (moto, OpenSSH,
//! tmux, the AWS CLI, xtaci/smux). One module per area; what they share lives once in
//! [`support`].
//!
//! One binary links the AWS SDK once, where a binary per file linked it for each.

mod support;

mod broker_accounts;
mod broker_creds;
mod cancelled_starts;
mod cli_console;
mod cli_cp;
mod cli_doctor;
mod cli_errors;
mod cli_escaping;
mod cli_exec;
mod cli_exec_all;
mod cli_forward;
mod cli_history;
mod cli_kms;
mod cli_list;
mod cli_picker_tmux;
mod cli_plugin;
mod cli_proxy;
mod cli_resilience;
mod cli_setup;
mod cli_shell_tmux;
mod cli_socks;
mod cli_ssh;
mod cli_ssh_push_key;
mod cli_tunnels;
mod discovery_emulator;
mod emulator_auth;
mod emulator_control;
mod emulator_control_fleet;
mod emulator_control_sts;
mod emulator_demo;
mod emulator_documents;
mod emulator_faults;
mod emulator_kms;
mod emulator_lifetime;
mod emulator_port;
mod emulator_throughput;
mod guardrails;
mod moto_ec2;
mod moto_instance_connect;
mod moto_kms;
mod moto_organizations;
mod moto_sts;
mod picker_skim;
mod smux_interop;
mod symbol_order;
