//! `session-manager-plugin` compatibility: the official plugin's command-line contract
//! (SPEC.md §9). The command line runs the sessions (`cli`); this module only parses.

mod contract;

pub use contract::{
    ContractError, DocumentKind, Invocation, PLUGIN_VERSION, PluginStart, RESPONSE_ENV_PREFIX,
    ResponseSource, parse,
};
