//! The credentials cache's file formats: one JSON entry per (source identity, role ARN), and
//! the per-account "last success" times (`last-success.json`). Reading, writing and checking
//! the files' modes is the `postern` package's `broker::cache`.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// One cached credentials file. The secrets are plain here, protected by the file's mode;
/// they never reach `Debug`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialEntry {
    /// The source identity the credentials were issued to.
    pub source: String,
    /// The role ARN, or a session-token marker.
    pub key: String,
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
    /// Session token.
    pub session_token: String,
    /// When they lapse, in seconds since the Unix epoch.
    pub expiration: u64,
}

/// When each account last gave credentials (`last-success.json`): account id to seconds
/// since the Unix epoch.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastSuccess(BTreeMap<String, u64>);

impl CredentialEntry {
    /// Parses a cache file's bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// The file's bytes.
    pub fn encode(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }

    /// Whether the entry was stored for `(source, key)` (a file found under another entry's
    /// name is not used).
    pub fn is_for(&self, source: &str, key: &str) -> bool {
        self.source == source && self.key == key
    }

    /// When the credentials lapse.
    pub fn expires_at(&self) -> SystemTime {
        from_epoch_seconds(self.expiration)
    }
}

impl fmt::Debug for CredentialEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialEntry")
            .field("source", &self.source)
            .field("key", &self.key)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("session_token", &"<redacted>")
            .field("expiration", &self.expiration)
            .finish()
    }
}

impl LastSuccess {
    /// Parses `last-success.json`'s bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// The file's bytes (pretty: people read it).
    pub fn encode(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec_pretty(self)
    }

    /// When `account` last gave credentials.
    pub fn of(&self, account: &str) -> Option<SystemTime> {
        self.0.get(account).map(|s| from_epoch_seconds(*s))
    }

    /// Records that `account` gave credentials at `when`.
    pub fn record(&mut self, account: &str, when: SystemTime) {
        self.0.insert(account.to_owned(), epoch_seconds(when));
    }
}

/// The last second RFC 3339 can write: 9999-12-31T23:59:59Z.
pub const LATEST_EPOCH_SECONDS: u64 = 253_402_300_799;

/// `secs` since the epoch as a time, clamped to [`LATEST_EPOCH_SECONDS`]: a number read from a
/// file or another machine can neither overflow the platform's time nor fail to print.
pub fn from_epoch_seconds(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs.min(LATEST_EPOCH_SECONDS))
}

/// `time` in whole seconds since the Unix epoch (0 before it).
pub fn epoch_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> CredentialEntry {
        CredentialEntry {
            source: "arn:aws:iam::402918375561:user/alice".to_owned(),
            key: "arn:aws:iam::318402957716:role/PosternAccess".to_owned(),
            access_key_id: "ASIAEXAMPLE".to_owned(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG".to_owned(),
            session_token: "FwoGZXIvYXdzEBYaDH".to_owned(),
            expiration: 1_800_003_600,
        }
    }

    #[test]
    fn entries_round_trip_and_name_what_they_are_for() {
        let bytes = entry().encode().unwrap();
        let back = CredentialEntry::decode(&bytes).unwrap();
        assert_eq!(back, entry());
        assert!(back.is_for(&entry().source, &entry().key));
        assert!(!back.is_for(&entry().source, "arn:aws:iam::318402957716:role/Other"));
        assert_eq!(
            back.expires_at(),
            UNIX_EPOCH + Duration::from_secs(1_800_003_600)
        );
    }

    #[test]
    fn debug_never_shows_the_secrets() {
        let debug = format!("{:?}", entry());
        assert!(debug.contains("ASIAEXAMPLE"), "{debug}");
        assert!(!debug.contains("wJalrXUtnFEMI"), "{debug}");
        assert!(!debug.contains("FwoGZXIvYXdz"), "{debug}");
    }

    #[test]
    fn rejects_entries_missing_a_field_or_of_another_shape() {
        assert!(CredentialEntry::decode(b"{\"source\":\"s\",\"key\":\"k\"}").is_err());
        assert!(CredentialEntry::decode(b"[]").is_err());
        assert!(CredentialEntry::decode(b"").is_err());
        let negative = String::from_utf8(entry().encode().unwrap())
            .unwrap()
            .replace("1800003600", "-1");
        assert!(CredentialEntry::decode(negative.as_bytes()).is_err());
    }

    #[test]
    fn times_past_year_9999_are_clamped_not_a_panic() {
        let latest = UNIX_EPOCH + Duration::from_secs(LATEST_EPOCH_SECONDS);
        assert_eq!(from_epoch_seconds(u64::MAX), latest);
        assert_eq!(
            humantime::format_rfc3339_seconds(from_epoch_seconds(u64::MAX)).to_string(),
            "9999-12-31T23:59:59Z"
        );
        let far = CredentialEntry {
            expiration: u64::MAX,
            ..entry()
        };
        assert_eq!(far.expires_at(), latest);
        let last = LastSuccess::decode(b"{\"318402957716\": 18446744073709551615}").unwrap();
        assert_eq!(last.of("318402957716"), Some(latest));
    }

    #[test]
    fn last_success_records_and_round_trips() {
        let mut last = LastSuccess::default();
        let when = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        last.record("318402957716", when);
        let back = LastSuccess::decode(&last.encode().unwrap()).unwrap();
        assert_eq!(back.of("318402957716"), Some(when));
        assert_eq!(back.of("736250419937"), None);
        assert_eq!(epoch_seconds(UNIX_EPOCH - Duration::from_secs(5)), 0);
    }
}
