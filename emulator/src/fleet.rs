//! Fleets: the accounts, regions and instances one emulator serves, read from a TOML file
//! (`fleets/sample.toml` is the reference), built in (`Fleet::sample`, the default fleet), or
//! generated (`crate::generate`). This module parses and validates; it serves nothing.
//!
//! ```toml
//! management_account = "111111111111"   # base credentials act here (default: first account)
//! regions = ["eu-west-1", "us-east-1"]  # default: the instances' regions
//!
//! [[accounts]]
//! id = "111111111111"
//! alias = "acme-shared"
//! env = "prod"                          # dev | stg | prod
//! roles = ["PosternAccess"]             # role names AssumeRole may use in this account
//!
//! [[instances]]
//! id = "i-0123456789abcdef0"
//! name = "api-1"                        # the Name tag
//! account = "111111111111"              # default: the management account
//! region = "eu-west-1"                  # default: the first region
//! agent_version = "3.3.0.0"             # old versions select basic port forwarding
//! tags = { team = "payments" }
//! # also: private_ip, private_dns, platform (Linux|Windows|MacOS), platform_name,
//! # platform_version, instance_type, state (running|stopped|…), ping_status
//! # (Online|ConnectionLost|Inactive|Unmanaged)
//! ```

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::config::DEFAULT_REGION;
use crate::error::EmulatorError;
use crate::instances::{
    CURRENT_AGENT_VERSION, DEFAULT_ACCOUNT, InstanceSpec, InstanceState, PingStatus, Platform,
    default_instances, derived_private_ip, is_valid_agent_version, is_valid_instance_id,
    private_dns_name,
};

/// Accounts, regions and instances.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fleet {
    /// The account base credentials (the emulator's long-term keys) act in; also the
    /// organization's management account for ListAccounts.
    pub management_account: String,
    /// The accounts, in file order.
    pub accounts: Vec<AccountSpec>,
    /// The regions, in file order.
    pub regions: Vec<String>,
    /// The instances, in file order.
    pub instances: Vec<InstanceSpec>,
}

/// One AWS account of a fleet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AccountSpec {
    /// 12-digit account id.
    pub id: String,
    /// Account alias (also its name in Organizations).
    pub alias: String,
    /// Environment.
    pub env: Env,
    /// Role names AssumeRole may assume in this account.
    pub roles: Vec<String>,
    /// The account's root email, as Organizations reports it.
    #[serde(skip)]
    pub email: String,
}

/// An account's environment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Env {
    /// Development.
    Dev,
    /// Staging.
    Stg,
    /// Production.
    Prod,
}

impl Env {
    /// `dev`, `stg` or `prod`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dev => "dev",
            Self::Stg => "stg",
            Self::Prod => "prod",
        }
    }
}

impl fmt::Display for Env {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Fleet {
    /// Reads and validates the fleet file at `path`.
    pub fn load(path: &Path) -> Result<Self, EmulatorError> {
        let text = std::fs::read_to_string(path).map_err(|source| EmulatorError::FleetRead {
            path: path.to_owned(),
            source,
        })?;
        text.parse().map_err(|reason| EmulatorError::FleetInvalid {
            path: path.to_owned(),
            reason,
        })
    }

    /// The sample fleet shipped in `fleets/sample.toml` (compiled in, so `postern demo` needs
    /// no file).
    pub fn sample() -> Self {
        // The sample is checked by the `sample_fleet_is_valid` test.
        SAMPLE_FLEET
            .parse()
            .expect("fleets/sample.toml is valid (tested)")
    }

    /// The fleet served without a fleet file: the built-in instances in one account and
    /// `region`.
    pub fn builtin(region: &str) -> Self {
        let instances = default_instances()
            .into_iter()
            .map(|mut spec| {
                spec.place(DEFAULT_ACCOUNT, region);
                spec
            })
            .collect();
        Self {
            management_account: DEFAULT_ACCOUNT.to_owned(),
            accounts: vec![AccountSpec {
                id: DEFAULT_ACCOUNT.to_owned(),
                alias: "emulator".to_owned(),
                env: Env::Dev,
                roles: DEFAULT_ROLES.iter().map(|r| (*r).to_owned()).collect(),
                email: default_email("emulator"),
            }],
            regions: vec![region.to_owned()],
            instances,
        }
    }

    /// The account with id `id`.
    pub fn account(&self, id: &str) -> Option<&AccountSpec> {
        self.accounts.iter().find(|a| a.id == id)
    }

    /// The fleet as a TOML document that parses back to it.
    pub fn to_toml(&self) -> String {
        let raw = RawFleet {
            management_account: Some(self.management_account.clone()),
            regions: self.regions.clone(),
            accounts: self
                .accounts
                .iter()
                .map(|a| RawAccount {
                    id: a.id.clone(),
                    alias: a.alias.clone(),
                    env: a.env,
                    roles: a.roles.clone(),
                    email: Some(a.email.clone()),
                })
                .collect(),
            instances: self.instances.iter().map(RawInstance::from).collect(),
        };
        // Strings, enums, vectors and string maps always serialize to TOML.
        toml::to_string(&raw).expect("a fleet serializes to TOML")
    }

    /// Adds `spec`, or replaces the agent version of the instance with its id. New instances go
    /// to the management account and the first region.
    pub(crate) fn upsert_agent_version(&mut self, mut spec: InstanceSpec) {
        match self.instances.iter_mut().find(|known| known.id == spec.id) {
            Some(known) => known.agent_version = spec.agent_version,
            None => {
                let region = self.regions.first().cloned().unwrap_or_default();
                spec.place(&self.management_account, &region);
                self.instances.push(spec);
            }
        }
    }
}

/// Parses and validates a fleet document; the error names the offending item.
impl FromStr for Fleet {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let raw: RawFleet = toml::from_str(text).map_err(|err| err.to_string())?;
        raw.validate()
    }
}

/// The file's shape, as serde reads and writes it.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawFleet {
    #[serde(skip_serializing_if = "Option::is_none")]
    management_account: Option<String>,
    #[serde(default)]
    regions: Vec<String>,
    #[serde(default)]
    accounts: Vec<RawAccount>,
    #[serde(default)]
    instances: Vec<RawInstance>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawAccount {
    id: String,
    alias: String,
    env: Env,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawInstance {
    id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    account: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    region: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    agent_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    private_ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    private_dns: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    platform: Option<Platform>,
    #[serde(skip_serializing_if = "Option::is_none")]
    platform_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    platform_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    instance_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<InstanceState>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ping_status: Option<PingStatus>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    tags: BTreeMap<String, String>,
}

impl From<&InstanceSpec> for RawInstance {
    fn from(spec: &InstanceSpec) -> Self {
        Self {
            id: spec.id.clone(),
            name: Some(spec.name.clone()),
            account: Some(spec.account.clone()),
            region: Some(spec.region.clone()),
            agent_version: Some(spec.agent_version.clone()),
            private_ip: Some(spec.private_ip.clone()),
            private_dns: Some(spec.private_dns.clone()),
            platform: Some(spec.platform),
            platform_name: Some(spec.platform_name.clone()),
            platform_version: Some(spec.platform_version.clone()),
            instance_type: Some(spec.instance_type.clone()),
            state: Some(spec.state),
            ping_status: Some(spec.ping_status),
            tags: spec.tags.clone(),
        }
    }
}

impl RawFleet {
    fn validate(self) -> Result<Fleet, String> {
        let mut accounts = Vec::with_capacity(self.accounts.len());
        let mut seen = HashSet::new();
        for raw in self.accounts {
            if raw.id.len() != 12 || !raw.id.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("account id {:?} is not 12 digits", raw.id));
            }
            if !seen.insert(raw.id.clone()) {
                return Err(format!("account {} is listed twice", raw.id));
            }
            if let Some(role) = raw.roles.iter().find(|r| !is_valid_role_name(r)) {
                return Err(format!("account {}: invalid role name {role:?}", raw.id));
            }
            accounts.push(AccountSpec {
                email: raw.email.unwrap_or_else(|| default_email(&raw.alias)),
                id: raw.id,
                alias: raw.alias,
                env: raw.env,
                roles: raw.roles,
            });
        }
        if accounts.is_empty() {
            // A part-1 fleet file (instances only): one default account.
            accounts = Fleet::builtin(DEFAULT_REGION).accounts;
        }
        let management_account = self
            .management_account
            .unwrap_or_else(|| accounts[0].id.clone());
        if !accounts.iter().any(|a| a.id == management_account) {
            return Err(format!(
                "management_account {management_account} is not one of the accounts"
            ));
        }
        let mut regions = self.regions;
        if regions.is_empty() {
            for region in self.instances.iter().filter_map(|i| i.region.as_ref()) {
                if !regions.contains(region) {
                    regions.push(region.clone());
                }
            }
        }
        if regions.is_empty() {
            regions.push(DEFAULT_REGION.to_owned());
        }
        let mut ids = HashSet::new();
        let mut instances = Vec::with_capacity(self.instances.len());
        for raw in self.instances {
            if !ids.insert(raw.id.clone()) {
                return Err(format!("instance {} is listed twice", raw.id));
            }
            instances.push(raw.into_spec(
                &management_account,
                &regions[0],
                |id| accounts.iter().any(|a| a.id == id),
                &regions,
            )?);
        }
        if instances.is_empty() {
            return Err("no [[instances]] found".to_owned());
        }
        Ok(Fleet {
            management_account,
            accounts,
            regions,
            instances,
        })
    }
}

impl RawInstance {
    fn into_spec(
        self,
        management_account: &str,
        first_region: &str,
        known_account: impl Fn(&str) -> bool,
        regions: &[String],
    ) -> Result<InstanceSpec, String> {
        let id = self.id;
        if !is_valid_instance_id(&id) {
            return Err(format!("instance id {id:?} is not i-… or mi-…"));
        }
        let agent_version = self
            .agent_version
            .unwrap_or_else(|| CURRENT_AGENT_VERSION.to_owned());
        if !is_valid_agent_version(&agent_version) {
            return Err(format!(
                "instance {id}: agent_version {agent_version:?} is not dotted decimal"
            ));
        }
        let account = self
            .account
            .unwrap_or_else(|| management_account.to_owned());
        if !known_account(&account) {
            return Err(format!(
                "instance {id}: account {account} is not one of the accounts"
            ));
        }
        let region = self.region.unwrap_or_else(|| first_region.to_owned());
        if !regions.contains(&region) {
            return Err(format!(
                "instance {id}: region {region} is not one of the regions"
            ));
        }
        let private_ip = self.private_ip.unwrap_or_else(|| derived_private_ip(&id));
        if private_ip.parse::<std::net::Ipv4Addr>().is_err() {
            return Err(format!(
                "instance {id}: private_ip {private_ip:?} is not an IPv4 address"
            ));
        }
        let state = self.state.unwrap_or(InstanceState::Running);
        let ping_status = self.ping_status.unwrap_or(
            if state == InstanceState::Running || id.starts_with("mi-") {
                PingStatus::Online
            } else {
                PingStatus::ConnectionLost
            },
        );
        let platform = self.platform.unwrap_or(Platform::Linux);
        let (default_name, default_version) = match platform {
            Platform::Linux => ("Amazon Linux", "2023"),
            Platform::Windows => ("Microsoft Windows Server 2022 Datacenter", "10.0.20348"),
            Platform::MacOS => ("macOS", "14.4"),
        };
        let mut tags = self.tags;
        // A Name given among the tags counts as the name.
        let name = self
            .name
            .or_else(|| tags.remove("Name"))
            .unwrap_or_else(|| format!("emulated-{id}"));
        tags.remove("Name");
        Ok(InstanceSpec {
            private_dns: self
                .private_dns
                .unwrap_or_else(|| private_dns_name(&private_ip, &region)),
            id,
            name,
            agent_version,
            account,
            region,
            tags,
            private_ip,
            platform,
            platform_name: self
                .platform_name
                .unwrap_or_else(|| default_name.to_owned()),
            platform_version: self
                .platform_version
                .unwrap_or_else(|| default_version.to_owned()),
            instance_type: self.instance_type.unwrap_or_else(|| "t3.micro".to_owned()),
            state,
            ping_status,
        })
    }
}

/// IAM role names: 1-64 of `[A-Za-z0-9+=,.@_-]`.
fn is_valid_role_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b))
}

fn default_email(alias: &str) -> String {
    format!("aws+{alias}@example.com")
}

/// Roles of the built-in account.
const DEFAULT_ROLES: &[&str] = &["OrganizationAccountAccessRole", "PosternAccess"];
/// `fleets/sample.toml`.
const SAMPLE_FLEET: &str = include_str!("../../fleets/sample.toml");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_fleet_is_valid() {
        let fleet: Fleet = SAMPLE_FLEET.parse().unwrap();
        assert!((3..=4).contains(&fleet.accounts.len()));
        assert_eq!(fleet.regions.len(), 2);
        assert!(fleet.instances.len() >= 24);
        let envs: HashSet<_> = fleet.accounts.iter().map(|a| a.env).collect();
        assert_eq!(envs.len(), 3, "dev, stg and prod");
        assert!(fleet.instances.iter().any(|i| i.is_managed_instance()));
        assert!(
            fleet
                .instances
                .iter()
                .any(|i| !postern_protocol::version::client_uses_mux(&i.agent_version)),
            "some old agents for basic-mode tests"
        );
    }

    #[test]
    fn reads_a_part_one_fleet_of_instances_only() {
        let text = r#"
# sample
[[instances]]
id = "i-0123456789abcdef0"
name = "web-1"   # tag Name
agent_version = "3.0.161.0"
platform = "Linux"

[[instances]]
id = "mi-0123456789abcdef1"
"#;
        let fleet: Fleet = text.parse().unwrap();
        assert_eq!(fleet.instances.len(), 2);
        assert_eq!(fleet.instances[0].name, "web-1");
        assert_eq!(fleet.instances[0].agent_version, "3.0.161.0");
        assert_eq!(fleet.instances[1].agent_version, CURRENT_AGENT_VERSION);
        assert_eq!(fleet.instances[1].account, DEFAULT_ACCOUNT);
        assert_eq!(fleet.regions, [DEFAULT_REGION]);
    }

    #[test]
    fn rejects_instances_without_id_or_in_unknown_accounts() {
        let err = "[[instances]]\nname = \"x\"\n"
            .parse::<Fleet>()
            .unwrap_err();
        assert!(err.contains("missing field `id`"), "{err}");
        let text = r#"
[[accounts]]
id = "111111111111"
alias = "a"
env = "dev"
[[instances]]
id = "i-0123456789abcdef0"
account = "222222222222"
"#;
        let err = text.parse::<Fleet>().unwrap_err();
        assert!(err.contains("222222222222"), "{err}");
    }

    #[test]
    fn rejects_unknown_keys_and_environments() {
        let err = "regions = [\"us-east-1\"]\ncolour = 1\n"
            .parse::<Fleet>()
            .unwrap_err();
        assert!(err.contains("colour"), "{err}");
        let text = "[[accounts]]\nid = \"111111111111\"\nalias = \"a\"\nenv = \"qa\"\n";
        let err = text.parse::<Fleet>().unwrap_err();
        assert!(err.contains("qa"), "{err}");
    }

    #[test]
    fn round_trips_through_toml() {
        let fleet = Fleet::sample();
        let again: Fleet = fleet.to_toml().parse().unwrap();
        assert_eq!(again, fleet);
    }

    #[test]
    fn stopped_instances_default_to_connection_lost() {
        let text = "[[instances]]\nid = \"i-0123456789abcdef0\"\nstate = \"stopped\"\n";
        let fleet: Fleet = text.parse().unwrap();
        assert_eq!(fleet.instances[0].ping_status, PingStatus::ConnectionLost);
    }
}
