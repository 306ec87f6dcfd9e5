//! One row of the index and the scope (account x region) it was listed in.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Where instances are listed: one account (or the single profile's identity) in one region.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Scope {
    /// Cache key of the identity: the account id, or the profile label with a single profile.
    pub account: String,
    /// Short name shown to the user (account alias, or the profile name).
    pub alias: String,
    /// Environment (dev, stg, prod), when known.
    pub env: Option<String>,
    /// The region.
    pub region: String,
}

/// One instance: EC2 facts (absent for `mi-` managed nodes) joined with SSM agent facts (absent
/// when the agent never registered).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    /// `i-…` or `mi-…`.
    pub id: String,
    /// The Name tag (or the SSM-registered name of a managed node); empty when none.
    pub name: String,
    /// The owning account id (EC2 reservation owner), else the scope's account key.
    pub account: String,
    /// The scope's alias.
    pub alias: String,
    /// The scope's environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// The region.
    pub region: String,
    /// EC2 state (running, stopped…), empty for managed nodes.
    #[serde(default)]
    pub state: String,
    /// Private IPv4 address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_ip: Option<String>,
    /// Public IPv4 address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_ip: Option<String>,
    /// Private DNS name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_dns: Option<String>,
    /// VPC id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpc_id: Option<String>,
    /// Subnet id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet_id: Option<String>,
    /// EC2 instance type (`t3.micro`…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_type: Option<String>,
    /// Launch time, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_time: Option<String>,
    /// Tags (EC2).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// SSM ping status (Online, ConnectionLost, Inactive); `None` when SSM does not know it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ping_status: Option<String>,
    /// SSM agent version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_version: Option<String>,
    /// Platform as SSM reports it (name and version), else EC2's platform details.
    #[serde(default)]
    pub platform: String,
}

/// The fields of an instance a picker row or a `postern list` line shows, borrowed (from an
/// [`Instance`], or in place from the cache file).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary<'a> {
    /// `i-…` or `mi-…`.
    pub id: &'a str,
    /// The Name tag; empty when none.
    pub name: &'a str,
    /// The owning account id.
    pub account: &'a str,
    /// The scope's alias.
    pub alias: &'a str,
    /// The scope's environment.
    pub env: Option<&'a str>,
    /// The region.
    pub region: &'a str,
    /// Private IPv4 address.
    pub private_ip: Option<&'a str>,
    /// SSM ping status.
    pub ping_status: Option<&'a str>,
    /// Platform.
    pub platform: &'a str,
}

impl Instance {
    /// Whether a session can be started: the agent is online.
    pub fn is_online(&self) -> bool {
        self.summary().is_online()
    }

    /// The agent status column: the ping status, or `no-agent`.
    pub fn agent_status(&self) -> &str {
        self.ping_status.as_deref().unwrap_or("no-agent")
    }

    /// Whether the instance belongs to a production environment.
    pub fn is_prod(&self) -> bool {
        self.summary().is_prod()
    }

    /// The fields a row shows.
    pub fn summary(&self) -> Summary<'_> {
        Summary {
            id: &self.id,
            name: &self.name,
            account: &self.account,
            alias: &self.alias,
            env: self.env.as_deref(),
            region: &self.region,
            private_ip: self.private_ip.as_deref(),
            ping_status: self.ping_status.as_deref(),
            platform: &self.platform,
        }
    }
}

impl<'a> Summary<'a> {
    /// Whether a session can be started: the agent is online.
    pub fn is_online(&self) -> bool {
        self.ping_status == Some("Online")
    }

    /// The agent status column: the ping status, or `no-agent`.
    pub fn agent_status(&self) -> &'a str {
        self.ping_status.unwrap_or("no-agent")
    }

    /// Whether the instance belongs to a production environment.
    pub fn is_prod(&self) -> bool {
        matches!(self.env, Some("prod" | "production"))
    }

    /// Whether the instance belongs to a staging environment.
    pub fn is_staging(&self) -> bool {
        matches!(self.env, Some("stg" | "staging"))
    }

    /// An instance of these fields alone (the others empty).
    pub fn into_instance(self) -> Instance {
        let owned = |s: Option<&str>| s.map(str::to_owned);
        Instance {
            id: self.id.to_owned(),
            name: self.name.to_owned(),
            account: self.account.to_owned(),
            alias: self.alias.to_owned(),
            env: owned(self.env),
            region: self.region.to_owned(),
            private_ip: owned(self.private_ip),
            ping_status: owned(self.ping_status),
            platform: self.platform.to_owned(),
            ..Instance::default()
        }
    }
}

impl Scope {
    /// The AWS account id in the cache key (`318402957716`, or with an endpoint's digest
    /// `318402957716-1a2b3c4d5e6f`); `None` for the single profile's label.
    pub fn account_id(&self) -> Option<&str> {
        let id = self.account.split('-').next()?;
        (id.len() == 12 && id.bytes().all(|b| b.is_ascii_digit())).then_some(id)
    }
}

/// `alias (account id) region`, or `alias region` when there is no account id to add (the
/// single profile) or the alias is the id: what a user knows the scope by, never a cache key.
impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.account_id() {
            Some(id) if id != self.alias => write!(f, "{} ({id}) {}", self.alias, self.region),
            _ => write!(f, "{} {}", self.alias, self.region),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(account: &str, alias: &str) -> Scope {
        Scope {
            account: account.to_owned(),
            alias: alias.to_owned(),
            env: None,
            region: "eu-west-1".to_owned(),
        }
    }

    #[test]
    fn a_scope_shows_the_account_id_never_the_cache_key() {
        // (cache key, alias, shown)
        let cases = [
            (
                "318402957716",
                "acme-dev",
                "acme-dev (318402957716) eu-west-1",
            ),
            (
                "318402957716-1a2b3c4d5e6f",
                "acme-dev",
                "acme-dev (318402957716) eu-west-1",
            ),
            ("profile-ops-1a2b3c4d5e6f", "ops", "ops eu-west-1"),
            ("318402957716", "318402957716", "318402957716 eu-west-1"),
        ];
        for (account, alias, shown) in cases {
            assert_eq!(
                scope(account, alias).to_string(),
                shown,
                "cache key {account}"
            );
        }
        assert_eq!(scope("profile-ops", "ops").account_id(), None);
    }
}
