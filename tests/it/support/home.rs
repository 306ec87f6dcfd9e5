//! A scratch home for the `postern` binary: HOME, the XDG directories, postern's configuration
//! and cache, and absent AWS config files, all in a temporary directory, so that a test never
//! reads or writes the real `~/.aws`, `~/.config` or `~/.cache`.

use std::path::{Path, PathBuf};
use std::process::Command;

use postern_emulator::EmulatorHandle;

use super::aws::credentials_env;
use super::emulator::base_credentials;
use super::process::postern;

/// A temporary home, removed on drop.
pub(crate) struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    /// A home with `config` as its postern configuration, if any.
    pub(crate) fn new(config: Option<&str>) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        if let Some(config) = config {
            std::fs::write(dir.path().join("config.toml"), config).expect("write config");
        }
        Self { dir }
    }

    /// The directory.
    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The postern cache directory (`POSTERN_CACHE_DIR`).
    pub(crate) fn cache(&self) -> PathBuf {
        self.path().join("cache")
    }

    /// `postern` living in this home, with nothing of the caller's environment but PATH and no
    /// AWS credentials: the caller adds those, and the endpoint.
    pub(crate) fn command(&self) -> Command {
        let mut command = Command::new(postern());
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.path())
            .env("XDG_CONFIG_HOME", self.path().join("xdg-config"))
            .env("XDG_CACHE_HOME", self.path().join("xdg-cache"))
            .env("POSTERN_CACHE_DIR", self.cache())
            .env("AWS_CONFIG_FILE", self.path().join("no-aws-config"))
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                self.path().join("no-aws-credentials"),
            )
            .env("AWS_EC2_METADATA_DISABLED", "true");
        // Without a configuration the default path (under XDG_CONFIG_HOME) is simply absent; a
        // POSTERN_CONFIG naming a missing file would be an error.
        let config = self.path().join("config.toml");
        if config.exists() {
            command.env("POSTERN_CONFIG", config);
        }
        command
    }

    /// `postern ARGS` against the emulator (`AWS_ENDPOINT_URL`: every service) living in this
    /// home, signing with the emulator's
    /// base (management account) credentials, region eu-west-1 from the environment (not
    /// `--region`, which would also narrow a listing).
    pub(crate) fn against(&self, emulator: &EmulatorHandle, args: &[&str]) -> Command {
        let mut command = self.command();
        command
            .env("AWS_ENDPOINT_URL", emulator.endpoint())
            .args(args)
            .env("AWS_REGION", "eu-west-1");
        credentials_env(&mut command, &base_credentials(emulator));
        command
    }
}
