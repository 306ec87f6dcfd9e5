//! The instances the emulator serves. Every session on any of them runs on this machine; the
//! agent version each one reports is configurable so tests can pick an old agent (basic port
//! forwarding, no TerminateSession flag) or a current one. The other facts (account, region,
//! tags, addresses, state, ping status) are what EC2 and SSM describe; they never change what a
//! session does.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::EmulatorError;

/// One emulated node: an EC2 instance (`i-…`) or an SSM managed instance (`mi-…`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceSpec {
    /// Instance id (`i-…` or `mi-…`).
    pub id: String,
    /// The `Name` tag (for `mi-` instances, the name they were registered with).
    pub name: String,
    /// The SSM agent version reported in handshakes and by DescribeInstanceInformation.
    pub agent_version: String,
    /// The 12-digit account that owns it.
    pub account: String,
    /// Its region.
    pub region: String,
    /// Tags other than `Name`.
    pub tags: BTreeMap<String, String>,
    /// Private IPv4 address.
    pub private_ip: String,
    /// Private DNS name.
    pub private_dns: String,
    /// Operating system family.
    pub platform: Platform,
    /// Operating system name as SSM reports it (`Amazon Linux`, `Ubuntu`, …).
    pub platform_name: String,
    /// Operating system version as SSM reports it.
    pub platform_version: String,
    /// EC2 instance type.
    pub instance_type: String,
    /// EC2 state.
    pub state: InstanceState,
    /// SSM ping status; `Unmanaged` instances have no agent registered.
    pub ping_status: PingStatus,
}

impl InstanceSpec {
    /// A running, online Linux instance with the given id and agent version, a name derived
    /// from the id, in the default account and region.
    pub fn new(id: &str, agent_version: &str) -> Self {
        let private_ip = derived_private_ip(id);
        Self {
            id: id.to_owned(),
            name: format!("emulated-{id}"),
            agent_version: agent_version.to_owned(),
            account: DEFAULT_ACCOUNT.to_owned(),
            region: crate::config::DEFAULT_REGION.to_owned(),
            tags: BTreeMap::new(),
            private_dns: private_dns_name(&private_ip, crate::config::DEFAULT_REGION),
            private_ip,
            platform: Platform::Linux,
            platform_name: "Amazon Linux".to_owned(),
            platform_version: "2023".to_owned(),
            instance_type: "t3.micro".to_owned(),
            state: InstanceState::Running,
            ping_status: PingStatus::Online,
        }
    }

    /// Whether this is an SSM managed (non-EC2) instance.
    pub fn is_managed_instance(&self) -> bool {
        self.id.starts_with("mi-")
    }

    /// Whether StartSession may reach it: running (or a managed instance) and online.
    pub fn is_connected(&self) -> bool {
        self.ping_status == PingStatus::Online
            && (self.is_managed_instance() || self.state == InstanceState::Running)
    }

    /// Moves the instance to `region`, keeping its private DNS name consistent.
    pub(crate) fn place(&mut self, account: &str, region: &str) {
        self.account = account.to_owned();
        if self.region != region {
            self.region = region.to_owned();
            self.private_dns = private_dns_name(&self.private_ip, region);
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
        if !is_valid_instance_id(id) || !is_valid_agent_version(version) {
            return Err(EmulatorError::BadInstanceSpec(text.to_owned()));
        }
        Ok(Self::new(id, version))
    }
}

/// Operating system family, as SSM's `PlatformType` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Platform {
    /// Linux.
    Linux,
    /// Windows (EC2 reports `platform = windows`).
    Windows,
    /// macOS.
    MacOS,
}

impl Platform {
    /// SSM's `PlatformType` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Linux => "Linux",
            Self::Windows => "Windows",
            Self::MacOS => "MacOS",
        }
    }
}

/// EC2 instance state, with the numeric code EC2 reports beside the name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InstanceState {
    /// pending (0).
    Pending,
    /// running (16).
    Running,
    /// shutting-down (32).
    ShuttingDown,
    /// terminated (48).
    Terminated,
    /// stopping (64).
    Stopping,
    /// stopped (80).
    Stopped,
}

impl InstanceState {
    /// The state's name, as in the `instance-state-name` filter.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::ShuttingDown => "shutting-down",
            Self::Terminated => "terminated",
            Self::Stopping => "stopping",
            Self::Stopped => "stopped",
        }
    }

    /// EC2's state code (the low byte).
    pub fn code(self) -> u16 {
        match self {
            Self::Pending => 0,
            Self::Running => 16,
            Self::ShuttingDown => 32,
            Self::Terminated => 48,
            Self::Stopping => 64,
            Self::Stopped => 80,
        }
    }
}

/// SSM ping status. `Unmanaged` (not an SSM value) marks an instance without a registered agent:
/// DescribeInstanceInformation omits it and StartSession refuses it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PingStatus {
    /// Online.
    Online,
    /// ConnectionLost.
    ConnectionLost,
    /// Inactive.
    Inactive,
    /// No agent registered.
    Unmanaged,
}

impl PingStatus {
    /// SSM's value (`Unmanaged` has none; it is never reported).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Online => "Online",
            Self::ConnectionLost => "ConnectionLost",
            Self::Inactive => "Inactive",
            Self::Unmanaged => "Unmanaged",
        }
    }
}

impl fmt::Display for PingStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The built-in instances: a current agent (muxed port forwarding), an agent too old for mux
/// (≤ 3.0.196.0: basic port forwarding) and one too old for the TerminateSession flag
/// (≤ 2.3.722.0), per SPEC.md §6.9. All in the default account and region.
pub fn default_instances() -> Vec<InstanceSpec> {
    [
        (CURRENT_AGENT_INSTANCE, "web-1", CURRENT_AGENT_VERSION),
        ("i-0e2d4f6a8c0b1d3e5", "legacy-batch-1", "3.0.161.0"),
        ("i-03c5e7a9b1d3f5a7c", "ancient-bastion", "2.3.672.0"),
    ]
    .into_iter()
    .map(|(id, name, version)| InstanceSpec {
        name: name.to_owned(),
        ..InstanceSpec::new(id, version)
    })
    .collect()
}

/// Whether `id` looks like an EC2 (`i-` + 8 or 17 hex digits) or managed (`mi-` + 17 hex
/// digits) instance id. The emulator accepts any non-empty alphanumeric suffix, as part 1 did.
pub(crate) fn is_valid_instance_id(id: &str) -> bool {
    let suffix = id.strip_prefix("i-").or_else(|| id.strip_prefix("mi-"));
    suffix.is_some_and(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// Whether `version` is dotted decimal (`3.3.0.0`).
pub(crate) fn is_valid_agent_version(version: &str) -> bool {
    !version.is_empty()
        && version
            .split('.')
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
}

/// A private address in 10.0.0.0/8 derived from the id, so fleets need not list one.
pub(crate) fn derived_private_ip(id: &str) -> String {
    let hash = id
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
        .to_be_bytes();
    format!("10.{}.{}.{}", hash[0], hash[1], hash[2].max(4))
}

/// EC2's private DNS name for `ip` in `region` (`ip-10-0-0-1.ec2.internal` in us-east-1,
/// `ip-10-0-0-1.<region>.compute.internal` elsewhere).
pub(crate) fn private_dns_name(ip: &str, region: &str) -> String {
    let host = format!("ip-{}", ip.replace('.', "-"));
    if region == "us-east-1" {
        format!("{host}.ec2.internal")
    } else {
        format!("{host}.{region}.compute.internal")
    }
}

/// Instance id of the built-in instance with a current agent.
pub(crate) const CURRENT_AGENT_INSTANCE: &str = "i-0a1b2c3d4e5f60718";
/// The agent version SPEC.md was written against (agent commit 1c217c89).
pub(crate) const CURRENT_AGENT_VERSION: &str = "3.3.0.0";
/// The account of instances and credentials when no fleet says otherwise.
pub(crate) const DEFAULT_ACCOUNT: &str = "123456789012";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_id_and_version() {
        let spec: InstanceSpec = "i-0123456789abcdef0=3.0.161.0".parse().unwrap();
        assert_eq!(spec.id, "i-0123456789abcdef0");
        assert_eq!(spec.agent_version, "3.0.161.0");
        assert_eq!(spec.account, DEFAULT_ACCOUNT);
        assert!(spec.is_connected());
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

    #[test]
    fn private_dns_follows_the_region_convention() {
        assert_eq!(
            private_dns_name("10.1.2.3", "us-east-1"),
            "ip-10-1-2-3.ec2.internal"
        );
        assert_eq!(
            private_dns_name("10.1.2.3", "eu-west-1"),
            "ip-10-1-2-3.eu-west-1.compute.internal"
        );
    }

    #[test]
    fn stopped_or_offline_instances_are_not_connected() {
        let mut spec = InstanceSpec::new("i-0123456789abcdef0", "3.3.0.0");
        spec.state = InstanceState::Stopped;
        assert!(!spec.is_connected());
        let mut managed = InstanceSpec::new("mi-0123456789abcdef0", "3.3.0.0");
        assert!(managed.is_connected());
        managed.ping_status = PingStatus::ConnectionLost;
        assert!(!managed.is_connected());
    }
}
