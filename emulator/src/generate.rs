//! Deterministic synthetic fleets for benchmarks (`--generate-fleet
//! accounts=50,regions=3,instances=5000`): the same shape always gives the same accounts, ids,
//! names and addresses, so benchmark runs compare. It only builds a [`Fleet`]; it serves nothing.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::error::EmulatorError;
use crate::fleet::{AccountSpec, Env, Fleet};
use crate::instances::{
    CURRENT_AGENT_VERSION, InstanceSpec, InstanceState, PingStatus, Platform, private_dns_name,
};

/// How big a generated fleet is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FleetShape {
    /// Number of accounts (1..=10000).
    pub accounts: usize,
    /// Number of regions (1..=REGIONS.len()).
    pub regions: usize,
    /// Number of instances (1..=1000000), spread round-robin over accounts and regions.
    pub instances: usize,
}

/// Parses `accounts=N,regions=N,instances=N` (any order; omitted keys keep 3, 2 and 30).
impl FromStr for FleetShape {
    type Err = EmulatorError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || EmulatorError::BadFleetShape(text.to_owned());
        let mut shape = Self {
            accounts: 3,
            regions: 2,
            instances: 30,
        };
        for part in text.split(',').filter(|p| !p.trim().is_empty()) {
            let (key, value) = part.split_once('=').ok_or_else(bad)?;
            let value: usize = value.trim().parse().map_err(|_| bad())?;
            match key.trim() {
                "accounts" => shape.accounts = value,
                "regions" => shape.regions = value,
                "instances" => shape.instances = value,
                _ => return Err(bad()),
            }
        }
        let in_range = (1..=10_000).contains(&shape.accounts)
            && (1..=REGIONS.len()).contains(&shape.regions)
            && (1..=1_000_000).contains(&shape.instances);
        if !in_range {
            return Err(bad());
        }
        Ok(shape)
    }
}

impl fmt::Display for FleetShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "accounts={},regions={},instances={}",
            self.accounts, self.regions, self.instances
        )
    }
}

/// The fleet of `shape`. The first account is the management account; every tenth instance
/// runs an agent too old for muxed port forwarding, every fiftieth is stopped.
pub fn generate(shape: FleetShape) -> Fleet {
    let mut rng = SplitMix64(0x706f_7374_6572_6e00 ^ shape.instances as u64);
    let regions: Vec<String> = REGIONS[..shape.regions]
        .iter()
        .map(|r| (*r).to_owned())
        .collect();
    let accounts: Vec<AccountSpec> = (0..shape.accounts)
        .map(|index| {
            let env = [Env::Dev, Env::Stg, Env::Prod][index % 3];
            let team = TEAMS[(index / 3) % TEAMS.len()];
            let round = index / (3 * TEAMS.len());
            let alias = if round == 0 {
                format!("{team}-{env}")
            } else {
                format!("{team}-{env}-{round}")
            };
            let mut roles = vec![
                "OrganizationAccountAccessRole".to_owned(),
                "PosternAccess".to_owned(),
            ];
            if env == Env::Dev {
                roles.push("Developer".to_owned());
            }
            AccountSpec {
                id: format!("{:012}", 100_000_000_000 + (index as u64) * 7_919_111 + 17),
                email: format!("aws+{alias}@example.com"),
                alias,
                env,
                roles,
            }
        })
        .collect();
    let instances = (0..shape.instances)
        .map(|index| {
            let account = &accounts[index % accounts.len()];
            let region = &regions[(index / accounts.len()) % regions.len()];
            let service = SERVICES[(rng.next() % SERVICES.len() as u64) as usize];
            let serial = index / (accounts.len() * regions.len()) + 1;
            let octets = rng.next().to_be_bytes();
            let private_ip = format!(
                "10.{}.{}.{}",
                (index % accounts.len()) % 250,
                octets[0],
                octets[1].max(4)
            );
            let mut tags = BTreeMap::new();
            tags.insert("env".to_owned(), account.env.to_string());
            tags.insert("service".to_owned(), service.to_owned());
            let stopped = index % 50 == 49;
            InstanceSpec {
                id: format!("i-0{:016x}", rng.next()),
                name: format!("{service}-{}-{serial}", account.env),
                agent_version: if index % 10 == 9 {
                    "3.0.161.0".to_owned()
                } else {
                    CURRENT_AGENT_VERSION.to_owned()
                },
                account: account.id.clone(),
                region: region.clone(),
                tags,
                private_dns: private_dns_name(&private_ip, region),
                private_ip,
                platform: Platform::Linux,
                platform_name: "Amazon Linux".to_owned(),
                platform_version: "2023".to_owned(),
                instance_type: "t3.medium".to_owned(),
                state: if stopped {
                    InstanceState::Stopped
                } else {
                    InstanceState::Running
                },
                ping_status: if stopped {
                    PingStatus::ConnectionLost
                } else {
                    PingStatus::Online
                },
            }
        })
        .collect();
    Fleet {
        management_account: accounts[0].id.clone(),
        accounts,
        regions,
        instances,
    }
}

/// splitmix64: tiny, seedable, and stable across versions (unlike `rand`'s `StdRng`).
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

const REGIONS: &[&str] = &[
    "us-east-1",
    "eu-west-1",
    "ap-southeast-2",
    "us-west-2",
    "eu-central-1",
    "ap-northeast-1",
];
const TEAMS: &[&str] = &[
    "payments", "orders", "search", "identity", "data", "platform", "mobile", "growth",
];
const SERVICES: &[&str] = &[
    "api", "worker", "web", "cron", "kafka", "redis", "etl", "gateway", "batch", "ingest",
];

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn parses_the_shape_syntax() {
        let shape: FleetShape = "accounts=50,regions=3,instances=5000".parse().unwrap();
        assert_eq!(
            shape,
            FleetShape {
                accounts: 50,
                regions: 3,
                instances: 5000
            }
        );
        assert!("accounts=0".parse::<FleetShape>().is_err());
        assert!("regions=99".parse::<FleetShape>().is_err());
        assert!("hosts=3".parse::<FleetShape>().is_err());
    }

    #[test]
    fn is_deterministic_and_unique() {
        let shape: FleetShape = "accounts=50,regions=3,instances=5000".parse().unwrap();
        let fleet = generate(shape);
        assert_eq!(fleet, generate(shape));
        assert_eq!(fleet.accounts.len(), 50);
        assert_eq!(fleet.regions.len(), 3);
        assert_eq!(fleet.instances.len(), 5000);
        let ids: HashSet<_> = fleet.instances.iter().map(|i| &i.id).collect();
        assert_eq!(ids.len(), 5000);
        let accounts: HashSet<_> = fleet.accounts.iter().map(|a| &a.id).collect();
        assert_eq!(accounts.len(), 50);
        let aliases: HashSet<_> = fleet.accounts.iter().map(|a| &a.alias).collect();
        assert_eq!(aliases.len(), 50);
    }

    #[test]
    fn survives_a_toml_round_trip() {
        let fleet = generate("accounts=4,regions=2,instances=40".parse().unwrap());
        let again: Fleet = fleet.to_toml().parse().unwrap();
        assert_eq!(again, fleet);
    }
}
