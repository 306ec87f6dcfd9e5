//! The throwaway ed25519 key pair of one `postern ssh --push-key` run: the public key goes to
//! EC2 Instance Connect, the private key lives only in a 0600 file inside a fresh 0700
//! directory (`$TMPDIR/postern-key-XXXXXX/id_ed25519`) that is removed when the key is dropped
//! or [`EphemeralKey::remove`]d, and never anywhere else (no log, no message, no cache).
//!
//! It must not print, and must not leave a key behind on any error path: the directory is a
//! [`tempfile::TempDir`], removed by its `Drop`.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use ssh_key::rand_core::OsRng;
use ssh_key::{Algorithm, LineEnding, PrivateKey};

/// A fresh ed25519 key pair whose private half is a 0600 file in a private temporary
/// directory, removed on drop.
#[derive(Debug)]
pub struct EphemeralKey {
    dir: tempfile::TempDir,
    path: PathBuf,
    public: String,
}

impl EphemeralKey {
    /// Generates a key pair (the OS's randomness) and writes its private key; `comment` names
    /// it in the public key (`postern@HOST`, say), as ssh-keygen's comment does.
    pub fn generate(comment: &str) -> std::io::Result<Self> {
        let mut key = PrivateKey::random(&mut OsRng, Algorithm::Ed25519).map_err(other)?;
        key.set_comment(comment);
        // A random name that did not exist, created 0700 (not through the umask).
        let dir = tempfile::Builder::new()
            .prefix(DIR_PREFIX)
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir()?;
        let path = dir.path().join(FILE_NAME);
        let private = key.to_openssh(LineEnding::LF).map_err(other)?;
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        file.write_all(private.as_bytes())?;
        file.sync_all()?;
        let public = key.public_key().to_openssh().map_err(other)?;
        Ok(Self { dir, path, public })
    }

    /// The private key file, for `ssh -i`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The directory holding it.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The public key, one OpenSSH line (`ssh-ed25519 AAAA… comment`).
    pub fn public_openssh(&self) -> &str {
        &self.public
    }

    /// Removes the private key and its directory now, reporting a failure (dropping does the
    /// same silently).
    pub fn remove(self) -> std::io::Result<()> {
        self.dir.close()
    }
}

fn other(err: ssh_key::Error) -> std::io::Error {
    std::io::Error::other(format!("could not make an ed25519 key: {err}"))
}

/// Prefix of the temporary directory's name.
pub const DIR_PREFIX: &str = "postern-key-";
/// The private key's file name.
const FILE_NAME: &str = "id_ed25519";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_private_key_only_its_owner_reads_and_removes_it() {
        let key = EphemeralKey::generate("postern@test").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(key.path()), 0o600);
        assert_eq!(mode(key.dir()), 0o700);
        let text = std::fs::read_to_string(key.path()).unwrap();
        assert!(text.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----\n"));
        let parsed = PrivateKey::from_openssh(&text).unwrap();
        assert_eq!(
            parsed.public_key().to_openssh().unwrap(),
            key.public_openssh()
        );
        assert!(key.public_openssh().starts_with("ssh-ed25519 "));
        assert!(key.public_openssh().ends_with(" postern@test"));
        let dir = key.dir().to_owned();
        key.remove().unwrap();
        assert!(!dir.exists());
    }

    #[test]
    fn each_key_is_new_and_dropping_removes_it() {
        let a = EphemeralKey::generate("a").unwrap();
        let b = EphemeralKey::generate("b").unwrap();
        assert_ne!(a.public_openssh(), b.public_openssh());
        assert_ne!(a.dir(), b.dir());
        let dir = a.dir().to_owned();
        drop(a);
        assert!(!dir.exists());
    }
}
