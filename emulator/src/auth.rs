//! Who is calling: the credentials the emulator knows (its base credentials, random per run
//! unless the configuration names them, and every set it issued through AssumeRole or
//! GetSessionToken, with their accounts, session tokens and expiry), and whether a request
//! came through a loopback host name. Signatures are checked against these secrets by
//! [`crate::sigv4`]; an access key the emulator does not know is refused.
//!
//! Secret keys and session tokens are never logged and redact in `Debug`.

use std::collections::HashMap;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use rand::Rng;
use serde::Serialize;

/// Long-term credentials acting in the fleet's management account: the emulator's own, printed
/// in its ready line. `Debug` hides the secret.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct BaseCredentials {
    access_key_id: String,
    secret_access_key: String,
}

impl BaseCredentials {
    /// Credentials with this access key id and secret.
    pub fn new(access_key_id: impl Into<String>, secret_access_key: impl Into<String>) -> Self {
        Self {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
        }
    }

    /// A fresh random `AKIA…` key and secret, as each emulator run makes by default.
    pub fn random() -> Self {
        let mut rng = rand::rng();
        Self::new(
            format!("AKIA{}", random_text(&mut rng, 16, UPPER_ALNUM)),
            random_text(&mut rng, 40, BASE64ISH),
        )
    }

    /// The access key id.
    pub fn access_key_id(&self) -> &str {
        &self.access_key_id
    }

    /// The secret access key.
    pub fn secret_access_key(&self) -> &str {
        &self.secret_access_key
    }
}

impl fmt::Debug for BaseCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BaseCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
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
    /// The emulator's long-term base credentials.
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
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum CredentialProblem {
    /// Issued by the emulator, past their expiration.
    Expired,
    /// An issued access key presented without its session token or with another one, or base
    /// credentials presented with a session token.
    InvalidToken,
    /// An access key the emulator neither holds nor issued.
    UnknownAccessKey,
    /// The `Authorization` header (or the `X-Amz-Date` it needs) is missing parts.
    IncompleteSignature(&'static str),
    /// The signature is not the one the key's secret gives for this request.
    BadSignature,
    /// Signed further than 15 minutes from the emulator's clock.
    SignatureExpired {
        /// The request's `X-Amz-Date`.
        signed_at: String,
    },
}

/// A key the emulator knows, looked up before its signature is checked.
#[derive(Debug)]
pub(crate) struct KnownKey {
    principal: Principal,
    secret: Secret,
    /// The session token issued with the key; `None` for base credentials.
    session_token: Option<Secret>,
    /// When issued credentials stop working; `None` for base credentials.
    expiration: Option<SystemTime>,
}

impl KnownKey {
    /// The secret the request must have been signed with.
    pub(crate) fn secret(&self) -> &str {
        self.secret.expose()
    }

    /// The principal, once the signature verified, if the session token is the key's and the
    /// key has not expired at `now`.
    pub(crate) fn admit(
        self,
        session_token: Option<&str>,
        now: SystemTime,
    ) -> Result<Principal, CredentialProblem> {
        if session_token != self.session_token.as_ref().map(Secret::expose) {
            return Err(CredentialProblem::InvalidToken);
        }
        if self.expiration.is_some_and(|expiration| now >= expiration) {
            return Err(CredentialProblem::Expired);
        }
        Ok(self.principal)
    }
}

/// The credentials the emulator knows: its base credentials and those it issued. Issued entries
/// stay until the emulator stops: a test fleet issues few, and an expired key must keep
/// answering "expired", not become unknown.
#[derive(Debug)]
pub(crate) struct CredentialStore {
    base: BaseCredentials,
    base_principal: Principal,
    issued: Mutex<HashMap<String, Issued>>,
}

#[derive(Debug)]
struct Issued {
    principal: Principal,
    secret: Secret,
    session_token: Secret,
    expiration: SystemTime,
}

impl CredentialStore {
    /// A store knowing `base`, acting as `base_principal`, and nothing issued yet.
    pub(crate) fn new(base: BaseCredentials, base_principal: Principal) -> Self {
        Self {
            base,
            base_principal,
            issued: Mutex::default(),
        }
    }

    /// The base credentials.
    pub(crate) fn base(&self) -> &BaseCredentials {
        &self.base
    }

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
                secret: credentials.secret_access_key.clone(),
                session_token: credentials.session_token.clone(),
                expiration: credentials.expiration,
            },
        );
        credentials
    }

    /// The key `access_key_id` names: the base credentials or issued ones; `None` when the
    /// emulator knows no such key.
    pub(crate) fn lookup(&self, access_key_id: &str) -> Option<KnownKey> {
        if access_key_id == self.base.access_key_id {
            return Some(KnownKey {
                principal: self.base_principal.clone(),
                secret: Secret(self.base.secret_access_key.clone()),
                session_token: None,
                expiration: None,
            });
        }
        let issued = self.lock();
        let entry = issued.get(access_key_id)?;
        Some(KnownKey {
            principal: entry.principal.clone(),
            secret: entry.secret.clone(),
            session_token: Some(entry.session_token.clone()),
            expiration: Some(entry.expiration),
        })
    }

    /// The principal of issued credentials presented whole (access key, secret and session
    /// token, as the federation endpoint takes them) and unexpired at `now`. Base credentials
    /// have no session and are refused as the federation endpoint refuses long-term keys.
    pub(crate) fn session_principal(
        &self,
        access_key_id: &str,
        secret_access_key: &str,
        session_token: &str,
        now: SystemTime,
    ) -> Result<Principal, CredentialProblem> {
        let issued = self.lock();
        let entry = issued
            .get(access_key_id)
            .ok_or(CredentialProblem::UnknownAccessKey)?;
        if entry.secret.expose() != secret_access_key {
            return Err(CredentialProblem::BadSignature);
        }
        if entry.session_token.expose() != session_token {
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

/// Whether a `Host` header names a loopback address (127.0.0.0/8, `[::1]`, `localhost` or a
/// name under `.localhost`, which RFC 6761 §6.3 reserves for loopback), with or without a port.
/// Anything else (a missing header, another name, which a DNS-rebinding page in a browser would
/// send) is refused before authentication.
pub(crate) fn is_loopback_host(host: Option<&str>) -> bool {
    let Some(host) = host else {
        return false;
    };
    let (name, port) = match host.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((name, after)) => (name, after.strip_prefix(':')),
            None => return false,
        },
        None => match host.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        },
    };
    if port.is_some_and(|port| port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit())) {
        return false;
    }
    if host.starts_with('[') {
        return name.parse::<Ipv6Addr>().is_ok_and(|ip| ip.is_loopback());
    }
    is_localhost_name(name) || name.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
}

/// Whether `url` (`--public-url`) is `http` or `https` to a loopback host: the emulator is
/// advertised on this machine only.
pub(crate) fn is_loopback_base(url: &url::Url) -> bool {
    let loopback = match url.host() {
        Some(url::Host::Domain(name)) => is_localhost_name(name),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    loopback && matches!(url.scheme(), "http" | "https")
}

/// `localhost` or a name under it (RFC 6761 §6.3: always a loopback address).
fn is_localhost_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost")
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

pub(crate) fn random_text(rng: &mut impl Rng, len: usize, alphabet: &[u8]) -> String {
    (0..len)
        .map(|_| alphabet[rng.random_range(0..alphabet.len())] as char)
        .collect()
}

/// The user name of base credentials.
const BASE_USER: &str = "postern-emulator";
const UPPER_ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
pub(crate) const BASE64ISH: &[u8] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> CredentialStore {
        CredentialStore::new(
            BaseCredentials::new("AKIABASE", "base-secret"),
            Principal::base_user("111111111111"),
        )
    }

    #[test]
    fn base_keys_act_as_the_base_user_without_a_token() {
        let store = store();
        let now = SystemTime::UNIX_EPOCH;
        let key = store.lookup("AKIABASE").unwrap();
        assert_eq!(key.secret(), "base-secret");
        assert_eq!(
            key.admit(None, now),
            Ok(Principal::base_user("111111111111"))
        );
        assert_eq!(
            store.lookup("AKIABASE").unwrap().admit(Some("token"), now),
            Err(CredentialProblem::InvalidToken)
        );
    }

    #[test]
    fn unknown_keys_are_not_known() {
        assert!(store().lookup("AKIDOTHER").is_none());
        assert!(store().lookup("").is_none());
    }

    #[test]
    fn issued_keys_act_as_their_principal_until_they_expire() {
        let store = store();
        let role = Principal::assumed_role("222222222222", "PosternAccess", "alice");
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let issued = store.issue(role.clone(), Duration::from_secs(60), now);
        assert!(issued.access_key_id.starts_with("ASIA"));
        let token = issued.session_token.expose();
        let key = || store.lookup(&issued.access_key_id).unwrap();
        assert_eq!(key().secret(), issued.secret_access_key.expose());
        assert_eq!(key().admit(Some(token), now), Ok(role));
        assert_eq!(
            key().admit(Some(token), now + Duration::from_secs(60)),
            Err(CredentialProblem::Expired)
        );
        assert_eq!(
            key().admit(Some("forged"), now),
            Err(CredentialProblem::InvalidToken)
        );
        assert_eq!(key().admit(None, now), Err(CredentialProblem::InvalidToken));
    }

    #[test]
    fn secrets_redact_in_debug() {
        let store = store();
        let issued = store.issue(
            Principal::base_user("111111111111"),
            Duration::from_secs(1),
            SystemTime::UNIX_EPOCH,
        );
        let key = store.lookup(&issued.access_key_id).unwrap();
        let text = format!("{issued:?} {store:?} {key:?}");
        assert!(!text.contains(issued.secret_access_key.expose()));
        assert!(!text.contains(issued.session_token.expose()));
        assert!(!text.contains("base-secret"));
    }

    #[test]
    fn random_base_credentials_differ_per_run() {
        let (a, b) = (BaseCredentials::random(), BaseCredentials::random());
        assert!(a.access_key_id().starts_with("AKIA"));
        assert_eq!(a.secret_access_key().len(), 40);
        assert_ne!(a, b);
    }

    #[test]
    fn only_loopback_hosts_pass() {
        for host in [
            "127.0.0.1:8080",
            "127.1.2.3",
            "localhost",
            "LOCALHOST:1",
            "[::1]:443",
            "[::1]",
            "ssm.localhost:8443",
            "A.B.LOCALHOST",
        ] {
            assert!(is_loopback_host(Some(host)), "{host}");
        }
        for host in [
            "evil.example",
            "evil.example:80",
            "10.0.0.1:80",
            "0.0.0.0:80",
            "localhost.evil.example",
            "evillocalhost",
            "localhost.",
            "127.0.0.1.nip.io",
            "[::2]:80",
            "::1",
            "127.0.0.1:",
            "127.0.0.1:80x",
            "[::1",
            "",
        ] {
            assert!(!is_loopback_host(Some(host)), "{host}");
        }
        assert!(!is_loopback_host(None));
    }

    #[test]
    fn public_urls_are_http_to_loopback_only() {
        let ok = |s: &str| is_loopback_base(&url::Url::parse(s).unwrap());
        assert!(ok("https://localhost:8443"));
        assert!(ok("https://ssm.localhost:8443/"));
        assert!(ok("http://127.0.0.1:1"));
        assert!(ok("https://[::1]:1"));
        assert!(!ok("https://example.com"));
        assert!(!ok("https://10.0.0.1:443"));
        assert!(!ok("ftp://localhost"));
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
