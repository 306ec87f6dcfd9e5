//! Names derived from identities: role ARNs, the role session name CloudTrail shows, and the
//! redacting [`Secret`] newtype.

use std::fmt;

/// A secret string (secret key, session token, MFA code): `Debug` and `Display` redact it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that must send or print it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// `arn:aws:iam::ACCOUNT:role/ROLE`.
pub fn role_arn(account: &str, role: &str) -> String {
    format!("arn:aws:iam::{account}:role/{role}")
}

/// The role session name for a caller: the user name of an IAM user, the session name of an
/// assumed role (an SSO user's e-mail address), so CloudTrail in the target account shows the
/// human. Characters STS refuses become `-`; the result has 2 to 64 characters.
pub fn session_name(caller_arn: &str) -> String {
    let resource = caller_arn.rsplit(':').next().unwrap_or_default();
    let last = resource.rsplit('/').next().unwrap_or_default();
    let mut name: String = last
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_+=,.@-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(MAX_SESSION_NAME)
        .collect();
    if name.len() < 2 {
        name = FALLBACK_SESSION_NAME.to_owned();
    }
    name
}

/// Whether `arn` is an assumed-role session (so AssumeRole from it is role chaining).
pub(crate) fn is_assumed_role(arn: &str) -> bool {
    arn.contains(":assumed-role/")
}

/// STS's limit on RoleSessionName.
const MAX_SESSION_NAME: usize = 64;
const FALLBACK_SESSION_NAME: &str = "postern";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_names_name_the_human() {
        assert_eq!(
            session_name("arn:aws:iam::402918375561:user/alice"),
            "alice"
        );
        assert_eq!(
            session_name("arn:aws:iam::402918375561:user/team/bob"),
            "bob"
        );
        assert_eq!(
            session_name(
                "arn:aws:sts::402918375561:assumed-role/AWSReservedSSO_Admin_0123/alice@example.com"
            ),
            "alice@example.com"
        );
        assert_eq!(session_name("arn:aws:iam::1:root"), "root");
        assert_eq!(session_name("x"), "postern");
        assert_eq!(
            session_name(&format!("arn:aws:iam::1:user/{}", "a".repeat(80))).len(),
            64
        );
        assert_eq!(session_name("arn:aws:iam::1:user/a b"), "a-b");
    }

    #[test]
    fn secrets_do_not_leak_through_debug() {
        let secret = Secret::new("wJalrXUtnFEMI");
        assert_eq!(format!("{secret:?}"), "Secret(<redacted>)");
    }

    #[test]
    fn recognises_assumed_roles() {
        assert!(is_assumed_role("arn:aws:sts::1:assumed-role/R/s"));
        assert!(!is_assumed_role("arn:aws:iam::1:user/u"));
    }
}
