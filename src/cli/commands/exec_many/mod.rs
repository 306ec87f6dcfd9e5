//! `postern exec` on several instances: every online instance a query matches (`--all`), or
//! the rows chosen with Tab in the picker. Each instance runs with its account's role after
//! that account's guardrails (asked once per account, naming how many of its instances will
//! run); at most `--parallel` sessions are open at once; output is streamed line by line with
//! the instance's name in front, grouped per instance, or one JSON object per instance; a
//! summary goes to stderr and the exit status says whether everything ran and succeeded.
//!
//! It must not hold more than `--parallel` sessions, nor keep more than a bounded amount of
//! output per running instance: hundreds of instances cost the same memory as `--parallel`.

mod output;
mod plan;
mod run;
mod summary;

pub use plan::{ExecManyPlan, FleetArgs, OutputMode};
pub(crate) use run::run;
