//! Who is calling: the SigV4 `Authorization` header's credential scope (access key id, region,
//! service) and the credentials the emulator issued (AssumeRole, GetSessionToken), with their
//! accounts and expiry. Signatures are not verified: the emulator accepts any secret.
//!
//! Any access key the emulator did not issue is "base credentials" acting in the fleet's
//! management account. Secret keys and session tokens are never logged and redact in `Debug`.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use rand::Rng;

/// The credential scope of a SigV4 `Authorization` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SigningScope {
    /// The access key id (not secret).
    pub(crate) access_key_id: String,
    /// The region the request was signed for.
    pub(crate) region: String,
    /// The signing name of the service (`sts`, `ec2`, `ssm`, `organizations`).
    pub(crate) service: String,
}

impl SigningScope {
    /// Reads `AWS4-HMAC-SHA256 Credential=AKID/DATE/REGION/SERVICE/aws4_request, …`; `None`
    /// when the header has another shape.
    pub(crate) fn parse(authorization: &str) -> Option<Self> {
        let rest = authorization.strip_prefix("AWS4-HMAC-SHA256")?.trim_start();
        let credential = rest
            .split(',')
            .map(str::trim)
            .find_map(|part| part.strip_prefix("Credential="))?;
        let mut parts = credential.split('/');
        let access_key_id = parts.next()?.to_owned();
        let _date = parts.next()?;
        let region = parts.next()?.to_owned();
        let service = parts.next()?.to_owned();
        if access_key_id.is_empty() || region.is_empty() || parts.next() != Some("aws4_request") {
            return None;
        }
        Some(Self {
            access_key_id,
            region,
            service,
        })
    }
}

/// The identity a request acts as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Principal {
    /// The account it acts in.
    pub(crate) account: String,
    /// Its ARN, as GetCallerIdentity reports it.
    pub(crate) arn: String,
    /// Its unique id, as GetCallerIdentity reports it.
    pub(crate) user_id: String,
    /// What kind of credentials these are.
    pub(crate) kind: PrincipalKind,
}

/// What kind of credentials a request carried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PrincipalKind {
    /// Long-term base credentials (any access key the emulator did not issue).
    User,
    /// Credentials from AssumeRole.
    AssumedRole {
        /// The role name.
        role: String,
    },
    /// Credentials from GetSessionToken, with or without MFA.
    Session {
        /// Whether an MFA code was given.
        mfa: bool,
    },
}

impl Principal {
    /// The base credentials' identity in `account`.
    pub(crate) fn base_user(account: &str) -> Self {
        Self {
            account: account.to_owned(),
            arn: format!("arn:aws:iam::{account}:user/{BASE_USER}"),
            user_id: format!("AIDA{}", pseudo_id(account, 17)),
            kind: PrincipalKind::User,
        }
    }

    /// The identity of a role session.
    pub(crate) fn assumed_role(account: &str, role: &str, session_name: &str) -> Self {
        let role_id = format!("AROA{}", pseudo_id(&format!("{account}/{role}"), 17));
        Self {
            account: account.to_owned(),
            arn: format!("arn:aws:sts::{account}:assumed-role/{role}/{session_name}"),
            user_id: format!("{role_id}:{session_name}"),
            kind: PrincipalKind::AssumedRole {
                role: role.to_owned(),
            },
        }
    }

    /// The identity behind GetSessionToken credentials: the same user, flagged.
    pub(crate) fn with_session(&self, mfa: bool) -> Self {
        Self {
            kind: PrincipalKind::Session { mfa },
            ..self.clone()
        }
    }
}

/// Temporary credentials handed to a client.
#[derive(Clone, Debug)]
pub(crate) struct IssuedCredentials {
    /// `ASIA…`.
    pub(crate) access_key_id: String,
    /// The secret access key.
    pub(crate) secret_access_key: Secret,
    /// The session token.
    pub(crate) session_token: Secret,
    /// When they stop working.
    pub(crate) expiration: SystemTime,
}

/// Why a request's credentials were refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CredentialProblem {
    /// Issued by the emulator, past their expiration.
    Expired,
    /// An issued access key presented with another session token.
    InvalidToken,
}

/// The credentials the emulator issued. Entries stay until the emulator stops: a test fleet
/// issues few, and an expired key must keep answering "expired", not become base credentials.
#[derive(Debug, Default)]
pub(crate) struct CredentialStore {
    issued: Mutex<HashMap<String, Issued>>,
}

#[derive(Debug)]
struct Issued {
    principal: Principal,
    session_token: Secret,
    expiration: SystemTime,
}

impl CredentialStore {
    /// Issues credentials acting as `principal` until `now + lifetime`.
    pub(crate) fn issue(
        &self,
        principal: Principal,
        lifetime: Duration,
        now: SystemTime,
    ) -> IssuedCredentials {
        let mut rng = rand::rng();
        let access_key_id = format!("ASIA{}", random_text(&mut rng, 16, UPPER_ALNUM));
        let credentials = IssuedCredentials {
            access_key_id: access_key_id.clone(),
            secret_access_key: Secret(random_text(&mut rng, 40, BASE64ISH)),
            session_token: Secret(format!(
                "IQoJb3JpZ2luX2VjE{}",
                random_text(&mut rng, 300, BASE64ISH)
            )),
            expiration: now + lifetime,
        };
        tracing::debug!(%access_key_id, account = %principal.account, arn = %principal.arn, "credentials issued");
        self.lock().insert(
            access_key_id,
            Issued {
                principal,
                session_token: credentials.session_token.clone(),
                expiration: credentials.expiration,
            },
        );
        credentials
    }

    /// The principal `access_key_id` acts as at `now`: the issued one, or `base` for keys the
    /// emulator did not issue.
    pub(crate) fn resolve(
        &self,
        access_key_id: &str,
        session_token: Option<&str>,
        now: SystemTime,
        base: &Principal,
    ) -> Result<Principal, CredentialProblem> {
        let issued = self.lock();
        let Some(entry) = issued.get(access_key_id) else {
            return Ok(base.clone());
        };
        if session_token.is_some_and(|token| token != entry.session_token.expose()) {
            return Err(CredentialProblem::InvalidToken);
        }
        if now >= entry.expiration {
            return Err(CredentialProblem::Expired);
        }
        Ok(entry.principal.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Issued>> {
        // Inserts and lookups are single operations: a poisoned map is still consistent.
        self.issued
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A secret string (secret key, session token): `Debug` shows nothing of it.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Secret(String);

impl Secret {
    /// The text, for the response body only.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// A stable pseudo-random id of `len` uppercase alphanumerics derived from `seed`, so ARNs and
/// unique ids stay the same across runs.
fn pseudo_id(seed: &str, len: usize) -> String {
    let mut state = seed.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            UPPER_ALNUM[((state >> 33) % UPPER_ALNUM.len() as u64) as usize] as char
        })
        .collect()
}

fn random_text(rng: &mut impl Rng, len: usize, alphabet: &[u8]) -> String {
    (0..len)
        .map(|_| alphabet[rng.random_range(0..alphabet.len())] as char)
        .collect()
}

/// The user name of base credentials.
const BASE_USER: &str = "postern-emulator";
const UPPER_ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const BASE64ISH: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_credential_scope() {
        let header = "AWS4-HMAC-SHA256 Credential=ASIAEXAMPLE/20250101/eu-west-1/ec2/aws4_request, \
                      SignedHeaders=host;x-amz-date, Signature=abcdef";
        assert_eq!(
            SigningScope::parse(header),
            Some(SigningScope {
                access_key_id: "ASIAEXAMPLE".to_owned(),
                region: "eu-west-1".to_owned(),
                service: "ec2".to_owned(),
            })
        );
        assert_eq!(SigningScope::parse("Bearer x"), None);
        assert_eq!(
            SigningScope::parse("AWS4-HMAC-SHA256 Credential=AK/20250101/us-east-1/ssm"),
            None
        );
    }

    #[test]
    fn issued_keys_act_as_their_principal_until_they_expire() {
        let store = CredentialStore::default();
        let base = Principal::base_user("111111111111");
        let role = Principal::assumed_role("222222222222", "PosternAccess", "alice");
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let issued = store.issue(role.clone(), Duration::from_secs(60), now);
        assert!(issued.access_key_id.starts_with("ASIA"));
        let token = issued.session_token.expose();
        assert_eq!(
            store.resolve(&issued.access_key_id, Some(token), now, &base),
            Ok(role)
        );
        assert_eq!(
            store.resolve(
                &issued.access_key_id,
                Some(token),
                now + Duration::from_secs(60),
                &base
            ),
            Err(CredentialProblem::Expired)
        );
        assert_eq!(
            store.resolve(&issued.access_key_id, Some("forged"), now, &base),
            Err(CredentialProblem::InvalidToken)
        );
        assert_eq!(store.resolve("AKIDOTHER", None, now, &base), Ok(base));
    }

    #[test]
    fn secrets_redact_in_debug() {
        let store = CredentialStore::default();
        let issued = store.issue(
            Principal::base_user("111111111111"),
            Duration::from_secs(1),
            SystemTime::UNIX_EPOCH,
        );
        let text = format!("{issued:?} {store:?}");
        assert!(!text.contains(issued.secret_access_key.expose()));
        assert!(!text.contains(issued.session_token.expose()));
    }

    #[test]
    fn ids_are_stable() {
        assert_eq!(
            Principal::assumed_role("222222222222", "R", "s"),
            Principal::assumed_role("222222222222", "R", "s")
        );
        assert!(
            Principal::base_user("111111111111")
                .arn
                .ends_with(":user/postern-emulator")
        );
    }
}
