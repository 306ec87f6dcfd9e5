//! The instances the emulator serves. Every session on any of them runs on this machine; the
//! agent version each one reports is configurable so tests can pick an old agent (basic port
//! forwarding, no TerminateSession flag) or a current one.

use std::str::FromStr;

use crate::emulator::error::EmulatorError;

/// One emulated managed node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceSpec {
    /// Instance id (`i-…` or `mi-…`).
    pub id: String,
    /// The `Name` tag.
    pub name: String,
    /// The SSM agent version reported in handshakes.
    pub agent_version: String,
}

impl InstanceSpec {
    /// An instance with the given id and agent version and a name derived from the id.
    pub fn new(id: &str, agent_version: &str) -> Self {
        Self {
            id: id.to_owned(),
            name: format!("emulated-{id}"),
            agent_version: agent_version.to_owned(),
        }
    }
}

/// Parses `ID=AGENT_VERSION`, the `--instance` flag's syntax.
impl FromStr for InstanceSpec {
    type Err = EmulatorError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (id, version) = text
            .split_once('=')
            .ok_or_else(|| EmulatorError::BadInstanceSpec(text.to_owned()))?;
        let valid_id = (id.starts_with("i-") || id.starts_with("mi-")) && id.len() > 3;
        let valid_version = !version.is_empty()
            && version
                .split('.')
                .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()));
        if !valid_id || !valid_version {
            return Err(EmulatorError::BadInstanceSpec(text.to_owned()));
        }
        Ok(Self::new(id, version))
    }
}

/// The built-in instances: a current agent (muxed port forwarding), an agent too old for mux
/// (≤ 3.0.196.0: basic port forwarding) and one too old for the TerminateSession flag
/// (≤ 2.3.722.0), per SPEC.md §6.9.
pub fn default_instances() -> Vec<InstanceSpec> {
    vec![
        InstanceSpec {
            id: CURRENT_AGENT_INSTANCE.to_owned(),
            name: "web-1".to_owned(),
            agent_version: CURRENT_AGENT_VERSION.to_owned(),
        },
        InstanceSpec {
            id: "i-0e2d4f6a8c0b1d3e5".to_owned(),
            name: "legacy-batch-1".to_owned(),
            agent_version: "3.0.161.0".to_owned(),
        },
        InstanceSpec {
            id: "i-03c5e7a9b1d3f5a7c".to_owned(),
            name: "ancient-bastion".to_owned(),
            agent_version: "2.3.672.0".to_owned(),
        },
    ]
}

/// Instance id of the built-in instance with a current agent.
pub(crate) const CURRENT_AGENT_INSTANCE: &str = "i-0a1b2c3d4e5f60718";
/// The agent version SPEC.md was written against (agent commit 1c217c89).
pub(crate) const CURRENT_AGENT_VERSION: &str = "3.3.0.0";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_id_and_version() {
        let spec: InstanceSpec = "i-0123456789abcdef0=3.0.161.0".parse().unwrap();
        assert_eq!(spec.id, "i-0123456789abcdef0");
        assert_eq!(spec.agent_version, "3.0.161.0");
    }

    #[test]
    fn rejects_missing_version_or_bad_id() {
        assert!("i-0123".parse::<InstanceSpec>().is_err());
        assert!("host=3.0.0.0".parse::<InstanceSpec>().is_err());
        assert!("i-0123=3.x".parse::<InstanceSpec>().is_err());
    }

    #[test]
    fn default_set_spans_the_version_thresholds() {
        let versions: Vec<_> = default_instances()
            .into_iter()
            .map(|i| i.agent_version)
            .collect();
        assert_eq!(versions, ["3.3.0.0", "3.0.161.0", "2.3.672.0"]);
    }
}
