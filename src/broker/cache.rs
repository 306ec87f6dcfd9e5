//! The credentials cache: one 0600 JSON file per (source identity, role ARN) in a 0700
//! directory of the user's cache dir, written by [`write_private`] (atomic). Entries
//! expiring within the refresh margin count as missing, so a long session never starts on
//! credentials about to lapse. Also the per-account "last success" times `postern accounts`
//! shows. The files' formats are `postern_formats::credentials`.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use postern_formats::credentials::{CredentialEntry, LastSuccess, epoch_seconds};
use sha2::{Digest, Sha256};

use crate::broker::Secret;
use crate::private_file::{
    check_private_dir, create_private_dir, read_private, update_private, write_private,
};

/// Cached credentials of one role (or one GetSessionToken session).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CachedCredentials {
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: Secret,
    /// Session token.
    pub session_token: Secret,
    /// When they lapse.
    pub expiration: SystemTime,
}

/// The credentials cache under one directory.
#[derive(Clone, Debug)]
pub struct CredentialCache {
    dir: PathBuf,
}

impl CredentialCache {
    /// The cache under `root` (postern's cache dir).
    pub fn new(root: &Path) -> Self {
        Self {
            dir: root.join("credentials"),
        }
    }

    /// The file for `(source, key)`; `key` is a role ARN or a session-token marker.
    pub fn path(&self, source: &str, key: &str) -> PathBuf {
        let mut digest = Sha256::new();
        digest.update(source.as_bytes());
        digest.update([0]);
        digest.update(key.as_bytes());
        self.dir
            .join(format!("{}.json", hex::encode(digest.finalize())))
    }

    /// Cached credentials still valid for `margin` after `now`. Unreadable or foreign entries
    /// count as missing.
    pub fn load(
        &self,
        source: &str,
        key: &str,
        now: SystemTime,
        margin: Duration,
    ) -> Option<CachedCredentials> {
        let text = self.read(&self.path(source, key))?;
        let entry = CredentialEntry::decode(&text).ok()?;
        if !entry.is_for(source, key) {
            return None;
        }
        let expiration = entry.expires_at();
        if expiration < now + margin {
            return None;
        }
        Some(CachedCredentials {
            access_key_id: entry.access_key_id,
            secret_access_key: Secret::new(entry.secret_access_key),
            session_token: Secret::new(entry.session_token),
            expiration,
        })
    }

    /// Stores `credentials` for `(source, key)`, file mode 0600.
    pub fn store(
        &self,
        source: &str,
        key: &str,
        credentials: &CachedCredentials,
    ) -> std::io::Result<()> {
        let entry = CredentialEntry {
            source: source.to_owned(),
            key: key.to_owned(),
            access_key_id: credentials.access_key_id.clone(),
            secret_access_key: credentials.secret_access_key.expose().to_owned(),
            session_token: credentials.session_token.expose().to_owned(),
            expiration: epoch_seconds(credentials.expiration),
        };
        let json = entry.encode().map_err(std::io::Error::other)?;
        // The cache directory itself, not only `credentials/` in it, must be ours.
        create_private_dir(self.dir.parent().unwrap_or(&self.dir))?;
        write_private(&self.path(source, key), &json)
    }

    /// Records that `account` gave credentials at `now`.
    pub fn record_success(&self, account: &str, now: SystemTime) -> std::io::Result<()> {
        self.record_successes(&[(account.to_owned(), now)])
    }

    /// Records when each of `successes`' accounts gave credentials, in one write.
    pub fn record_successes(&self, successes: &[(String, SystemTime)]) -> std::io::Result<()> {
        // Accounts are assumed concurrently, and other postern processes write too: one
        // locked read-modify-write, so no update is lost.
        let mut failed = None;
        create_private_dir(self.dir.parent().unwrap_or(&self.dir))?;
        update_private(&self.last_success_path(), |old| {
            let mut last = old
                .and_then(|bytes| LastSuccess::decode(&bytes).ok())
                .unwrap_or_default();
            for (account, when) in successes {
                last.record(account, *when);
            }
            last.encode().unwrap_or_else(|e| {
                failed = Some(e);
                Vec::new()
            })
        })?;
        failed.map_or(Ok(()), |e| Err(std::io::Error::other(e)))
    }

    /// The recorded success times.
    pub fn last_success(&self) -> LastSuccess {
        self.read(&self.last_success_path())
            .and_then(|text| LastSuccess::decode(&text).ok())
            .unwrap_or_default()
    }

    /// A cache file, if present and still private (with its cache directory): cached
    /// credentials someone else could have written are never used.
    fn read(&self, path: &Path) -> Option<Vec<u8>> {
        let root = self.dir.parent().unwrap_or(&self.dir);
        let checked = match check_private_dir(root) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            checked => checked,
        };
        match checked.and_then(|()| read_private(path)) {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::warn!(error = %e, "ignoring the credentials cache");
                None
            }
        }
    }

    fn last_success_path(&self) -> PathBuf {
        self.dir.join("last-success.json")
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::time::UNIX_EPOCH;

    use super::*;

    fn sample(expiration: SystemTime) -> CachedCredentials {
        CachedCredentials {
            access_key_id: "ASIAEXAMPLE".to_owned(),
            secret_access_key: Secret::new("secret"),
            session_token: Secret::new("token"),
            expiration,
        }
    }

    #[test]
    fn credentials_someone_else_could_have_written_are_never_used() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("cache");
        std::fs::create_dir(&dir).unwrap();
        let cache = CredentialCache::new(&dir);
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let margin = Duration::from_secs(600);
        let creds = sample(now + Duration::from_secs(3600));
        cache.store("arn:user/a", "arn:role/R", &creds).unwrap();
        assert!(
            cache
                .load("arn:user/a", "arn:role/R", now, margin)
                .is_some()
        );

        // The cache directory opened to everyone: its entries are not trusted any more.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert_eq!(cache.load("arn:user/a", "arn:role/R", now, margin), None);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();

        // The cache directory reached through a symlink: neither read nor written.
        let link = root.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        let through_link = CredentialCache::new(&link);
        assert_eq!(
            through_link.load("arn:user/a", "arn:role/R", now, margin),
            None
        );
        let err = through_link
            .store("arn:user/a", "arn:role/S", &creds)
            .unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert!(!cache.path("arn:user/a", "arn:role/S").exists());
    }

    #[test]
    fn stores_private_files_and_reads_them_back() {
        let dir = tempfile::tempdir().unwrap();
        let cache = CredentialCache::new(dir.path());
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let creds = sample(now + Duration::from_secs(3600));
        cache.store("arn:user/a", "arn:role/R", &creds).unwrap();
        let path = cache.path("arn:user/a", "arn:role/R");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let dir_mode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dir_mode & 0o777, 0o700);
        let margin = Duration::from_secs(600);
        assert_eq!(
            cache.load("arn:user/a", "arn:role/R", now, margin),
            Some(creds)
        );
        // Another source or role is another entry.
        assert_eq!(cache.load("arn:user/b", "arn:role/R", now, margin), None);
        assert_eq!(cache.load("arn:user/a", "arn:role/S", now, margin), None);
    }

    #[test]
    fn entries_within_the_refresh_margin_are_misses() {
        let dir = tempfile::tempdir().unwrap();
        let cache = CredentialCache::new(dir.path());
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        cache
            .store("s", "r", &sample(now + Duration::from_secs(300)))
            .unwrap();
        assert!(
            cache
                .load("s", "r", now, Duration::from_secs(600))
                .is_none()
        );
        assert!(cache.load("s", "r", now, Duration::from_secs(60)).is_some());
    }

    #[test]
    fn records_last_success_per_account() {
        let dir = tempfile::tempdir().unwrap();
        let cache = CredentialCache::new(dir.path());
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        cache.record_success("318402957716", now).unwrap();
        assert_eq!(cache.last_success().of("318402957716"), Some(now));
        assert_eq!(cache.last_success().of("736250419937"), None);
    }
}
