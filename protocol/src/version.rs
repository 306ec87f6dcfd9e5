//! Dotted version strings and the two upstream comparison rules that select protocol features
//! (SPEC §6.5, §6.7, §6.9): the official client's and the agent's. Both sides must reach the same
//! decision, so each rule is reproduced exactly, quirks included. Pure functions on strings.
//!
//! * Client rule (plugin `src/version/versionutil.go`, used by `src/version/versionvalidator.go`):
//!   numeric per component (Go `strconv.Atoi`), same number of components required, compared
//!   left to right and stopping at the first difference; any error means "not greater".
//! * Agent rule (agent `agent/versionutil/versionutil.go` `Compare(this, other, true)`): semver
//!   (coreos/go-semver) when both parse as semver; else per component, numerically when both
//!   components are integers and as text otherwise, then the one with fewer components is older.
//!   An empty version is therefore older than any other.

use std::cmp::Ordering;

use thiserror::Error;

/// Why the client rule could not compare two versions (it then answers "not greater").
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum VersionError {
    /// An empty string (plugin `NewVersion`).
    #[error("version is empty")]
    Empty,
    /// Different numbers of components (plugin `compare`).
    #[error("versions have {left} and {right} components")]
    ComponentCountMismatch {
        /// Components of the left version.
        left: usize,
        /// Components of the right version.
        right: usize,
    },
    /// A component that is not a (signed, 64-bit) decimal integer.
    #[error("version component {component:?} is not a number")]
    NotNumeric {
        /// The offending component.
        component: String,
    },
}

/// Parses a plain dotted-numeric version such as `1.2.707.0` into its components.
pub fn parse_dotted(version: &str) -> Result<Vec<u64>, VersionError> {
    if version.is_empty() {
        return Err(VersionError::Empty);
    }
    version
        .split('.')
        .map(|component| {
            component
                .parse::<u64>()
                .ok()
                .filter(|_| component.bytes().all(|byte| byte.is_ascii_digit()))
                .ok_or_else(|| VersionError::NotNumeric {
                    component: component.to_owned(),
                })
        })
        .collect()
}

/// The client rule's three-way comparison (plugin `versionutil.go` `compare`).
///
/// Components are parsed only as far as the comparison goes, as upstream does: `3.1.x.0`
/// compares greater than `3.0.196.0` but fails against `3.1.1511.0`.
pub fn plugin_compare(this: &str, other: &str) -> Result<Ordering, VersionError> {
    if this.is_empty() || other.is_empty() {
        return Err(VersionError::Empty);
    }
    let left: Vec<&str> = this.split('.').collect();
    let right: Vec<&str> = other.split('.').collect();
    if left.len() != right.len() {
        return Err(VersionError::ComponentCountMismatch {
            left: left.len(),
            right: right.len(),
        });
    }
    for (a, b) in left.iter().zip(&right) {
        let a = go_atoi(a).ok_or_else(|| VersionError::NotNumeric {
            component: (*a).to_owned(),
        })?;
        let b = go_atoi(b).ok_or_else(|| VersionError::NotNumeric {
            component: (*b).to_owned(),
        })?;
        match a.cmp(&b) {
            Ordering::Equal => {}
            unequal => return Ok(unequal),
        }
    }
    Ok(Ordering::Equal)
}

/// The client rule: `version` strictly greater than `threshold`; any error is "not greater"
/// (plugin `versionvalidator.go`).
pub fn plugin_is_greater(version: &str, threshold: &str) -> bool {
    plugin_compare(version, threshold) == Ok(Ordering::Greater)
}

/// The agent rule (agent `versionutil.go` `Compare` with `strictSort = true`).
pub fn agent_compare(this: &str, other: &str) -> Ordering {
    if let (Some(a), Some(b)) = (SemVer::parse(this), SemVer::parse(other)) {
        return a.compare(&b);
    }
    let left: Vec<&str> = this.split('.').collect();
    let right: Vec<&str> = other.split('.').collect();
    for (a, b) in left.iter().zip(&right) {
        let ordering = match (go_atoi(a), go_atoi(b)) {
            (Some(a), Some(b)) => a.cmp(&b),
            _ => a.cmp(b),
        };
        if ordering != Ordering::Equal {
            return ordering;
        }
    }
    left.len().cmp(&right.len())
}

/// A semantic version as coreos/go-semver parses it (`semver.go` `Set`): `MAJOR.MINOR.PATCH`
/// with optional `-pre.release` and `+metadata`; each number a signed 64-bit integer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SemVer {
    /// Major number.
    pub major: i64,
    /// Minor number.
    pub minor: i64,
    /// Patch number.
    pub patch: i64,
    /// Pre-release identifiers (empty when absent).
    pub pre_release: String,
    /// Build metadata (ignored when comparing).
    pub metadata: String,
}

impl SemVer {
    /// Parses as go-semver does, or `None`.
    pub fn parse(version: &str) -> Option<Self> {
        let (rest, metadata) = version.split_once('+').unwrap_or((version, ""));
        let (core, pre_release) = rest.split_once('-').unwrap_or((rest, ""));
        if !valid_identifiers(pre_release) || !valid_identifiers(metadata) {
            return None;
        }
        let mut parts = core.splitn(3, '.');
        let major = go_atoi(parts.next()?)?;
        let minor = go_atoi(parts.next()?)?;
        let patch = go_atoi(parts.next()?)?;
        Some(Self {
            major,
            minor,
            patch,
            pre_release: pre_release.to_owned(),
            metadata: metadata.to_owned(),
        })
    }

    /// go-semver `Compare`: numbers, then a version without pre-release is newer, then the
    /// pre-release identifiers one by one.
    pub fn compare(&self, other: &Self) -> Ordering {
        (self.major, self.minor, self.patch)
            .cmp(&(other.major, other.minor, other.patch))
            .then_with(
                || match (self.pre_release.is_empty(), other.pre_release.is_empty()) {
                    (true, true) => Ordering::Equal,
                    (true, false) => Ordering::Greater,
                    (false, true) => Ordering::Less,
                    (false, false) => compare_pre_release(&self.pre_release, &other.pre_release),
                },
            )
    }
}

/// Client: sends the TerminateSession flag in basic port mode (plugin `config.go`
/// `TerminateSessionFlagSupportedAfterThisAgentVersion`, `versionvalidator.go`
/// `DoesAgentSupportTerminateSessionFlag`).
pub fn client_sends_terminate_flag(agent_version: &str) -> bool {
    plugin_is_greater(agent_version, TERMINATE_SESSION_FLAG_AFTER_AGENT)
}

/// Client: uses smux for LocalPortForwarding (plugin `config.go`
/// `TCPMultiplexingSupportedAfterThisAgentVersion`, `versionvalidator.go`
/// `DoesAgentSupportTCPMultiplexing`).
pub fn client_uses_mux(agent_version: &str) -> bool {
    plugin_is_greater(agent_version, MUX_AFTER_AGENT)
}

/// Client: turns smux keepalive off (plugin `config.go`
/// `TCPMultiplexingWithSmuxKeepAliveDisabledAfterThisAgentVersion`).
pub fn client_disables_smux_keepalive(agent_version: &str) -> bool {
    plugin_is_greater(agent_version, SMUX_KEEPALIVE_OFF_AFTER_AGENT)
}

/// Agent: uses smux for LocalPortForwarding when the client is at least
/// [`MUX_MIN_CLIENT`] (agent `agent/session/plugins/port/port.go`).
pub fn agent_uses_mux(client_version: &str) -> bool {
    agent_compare(client_version, MUX_MIN_CLIENT) != Ordering::Less
}

/// Agent: turns smux keepalive off when the client is above [`SMUX_KEEPALIVE_OFF_AFTER_CLIENT`]
/// (agent `agent/session/plugins/port/port_mux.go`).
pub fn agent_disables_smux_keepalive(client_version: &str) -> bool {
    agent_compare(client_version, SMUX_KEEPALIVE_OFF_AFTER_CLIENT) == Ordering::Greater
}

/// Agent: adds the "Please update session manager plugin" note about StdOut/StdErr separation
/// to HandshakeComplete when the client is at most [`NO_OUTPUT_SEPARATION_CLIENT`] (agent
/// `agent/session/datachannel/datachannel.go` `getHandshakeCompletePayload`; only in sessions
/// that separate the streams).
pub fn agent_warns_no_output_separation(client_version: &str) -> bool {
    agent_compare(client_version, NO_OUTPUT_SEPARATION_CLIENT) != Ordering::Greater
}

fn compare_pre_release(a: &str, b: &str) -> Ordering {
    let left: Vec<&str> = a.split('.').collect();
    let right: Vec<&str> = b.split('.').collect();
    for (index, x) in left.iter().enumerate() {
        // go-semver `recursivePreReleaseCompare`: when `a` runs out first the result is 0.
        let Some(y) = right.get(index) else {
            return Ordering::Greater;
        };
        if let (Some(x), Some(y)) = (go_atoi(x), go_atoi(y)) {
            match x.cmp(&y) {
                Ordering::Equal => {}
                unequal => return unequal,
            }
        }
        match x.cmp(y) {
            Ordering::Equal => {}
            unequal => return unequal,
        }
    }
    Ordering::Equal
}

/// go-semver's identifier rule: empty, or dot-separated non-empty `[0-9A-Za-z-]+` parts.
fn valid_identifiers(identifiers: &str) -> bool {
    identifiers.is_empty()
        || identifiers.split('.').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-')
        })
}

/// Go `strconv.Atoi` on a 64-bit platform: optional sign, decimal digits, in `i64` range.
fn go_atoi(text: &str) -> Option<i64> {
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Agent versions above this get the TerminateSession flag (plugin `src/config/config.go`).
pub const TERMINATE_SESSION_FLAG_AFTER_AGENT: &str = "2.3.722.0";
/// Agent versions above this get smux port forwarding (plugin `src/config/config.go`).
pub const MUX_AFTER_AGENT: &str = "3.0.196.0";
/// Agent versions above this run smux without keepalive (plugin `src/config/config.go`).
pub const SMUX_KEEPALIVE_OFF_AFTER_AGENT: &str = "3.1.1511.0";
/// Lowest client version the agent multiplexes for (agent `port.go` `muxSupportedClientVersion`).
pub const MUX_MIN_CLIENT: &str = "1.1.70";
/// Client versions above this get smux without keepalive (agent `port_mux.go`).
pub const SMUX_KEEPALIVE_OFF_AFTER_CLIENT: &str = "1.2.331.0";
/// Client versions up to this one lack output separation (agent `datachannel.go`
/// `clientVersionWithoutOutputSeparation`).
pub const NO_OUTPUT_SEPARATION_CLIENT: &str = "1.2.295";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_dotted_numeric_versions() {
        assert_eq!(parse_dotted("1.2.707.0"), Ok(vec![1, 2, 707, 0]));
        assert_eq!(parse_dotted(""), Err(VersionError::Empty));
        assert_eq!(
            parse_dotted("1.+2"),
            Err(VersionError::NotNumeric {
                component: "+2".into()
            })
        );
        assert_eq!(
            parse_dotted("1..2"),
            Err(VersionError::NotNumeric {
                component: String::new()
            })
        );
    }

    #[test]
    fn plugin_rule_requires_equal_component_counts() {
        assert_eq!(
            plugin_compare("3.0.197", "3.0.196.0"),
            Err(VersionError::ComponentCountMismatch { left: 3, right: 4 })
        );
        assert!(!plugin_is_greater("3.0.197", "3.0.196.0"));
    }

    #[test]
    fn plugin_rule_is_strict_and_numeric() {
        assert!(!plugin_is_greater("3.0.196.0", "3.0.196.0"));
        assert!(plugin_is_greater("3.0.1000.0", "3.0.196.0"));
        assert!(
            plugin_is_greater("03.0.196.1", "3.0.196.0"),
            "Atoi accepts leading zeros"
        );
    }

    #[test]
    fn plugin_rule_parses_components_lazily() {
        assert_eq!(
            plugin_compare("3.1.x.0", "3.0.196.0"),
            Ok(Ordering::Greater)
        );
        assert_eq!(
            plugin_compare("3.1.x.0", "3.1.1511.0"),
            Err(VersionError::NotNumeric {
                component: "x".into()
            })
        );
    }

    #[test]
    fn agent_rule_uses_semver_when_both_parse() {
        assert_eq!(agent_compare("1.1.70", "1.1.70"), Ordering::Equal);
        assert_eq!(agent_compare("1.1.70-beta", "1.1.70"), Ordering::Less);
        assert_eq!(agent_compare("1.1.70+build", "1.1.70"), Ordering::Equal);
        assert_eq!(agent_compare("1.1.70-rc.2", "1.1.70-rc.10"), Ordering::Less);
    }

    #[test]
    fn agent_rule_breaks_ties_by_component_count() {
        assert_eq!(agent_compare("1.1.70.0", "1.1.70"), Ordering::Greater);
        assert_eq!(agent_compare("1.2.295", "1.2.295.0"), Ordering::Less);
    }

    #[test]
    fn agent_rule_treats_empty_as_oldest() {
        assert_eq!(agent_compare("", "0"), Ordering::Less);
        assert_eq!(agent_compare("", "1.1.70"), Ordering::Less);
    }

    #[test]
    fn agent_rule_compares_text_components_as_text() {
        assert_eq!(agent_compare("1.2.a.0", "1.2.b.0"), Ordering::Less);
        assert_eq!(agent_compare("1.2.a.0", "1.2.3.0"), Ordering::Greater);
    }
}
