//! `postern demo`: postern's normal flow against an in-process emulator serving the sample
//! fleet, on a machine with no AWS account and no network. It is a command's edge, like
//! `emulator/cli.rs`: the only other emulator code that prints or uses `anyhow`.
//!
//! The flow: start the emulator; write a temporary AWS config (a base profile with dummy keys
//! and one role profile per account, all pointing at the emulator) in a private temp directory;
//! discover the fleet through the control plane as postern does (ListAccounts, AssumeRole per
//! account, DescribeInstanceInformation and DescribeInstances per region); let the user pick an
//! instance (a numbered prompt until the fuzzy picker exists); then run `postern shell` on it
//! as a child process of the current executable with only the temporary environment. It never
//! reads or writes `~/.aws` or the user's postern configuration, and removes its files on exit.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};

use anyhow::{Context, bail};
use aws_credential_types::Credentials;
use aws_types::region::Region;
use clap::Args;

use crate::emulator::config::EmulatorConfig;
use crate::emulator::fleet::{Env, Fleet};
use crate::emulator::server::{Emulator, EmulatorHandle};

/// Try postern on a local emulated fleet: no AWS account, no network. Every instance is
/// emulated and every session runs on this machine.
#[derive(Args, Clone, Debug, Default, PartialEq, Eq)]
pub struct DemoArgs {
    /// Pick the instance without asking: its number in the list, its id or its Name.
    #[arg(long, value_name = "N|ID|NAME", env = "POSTERN_DEMO_SELECT")]
    pub select: Option<String>,

    /// Pick the instance with this id without asking.
    #[arg(long, value_name = "ID", conflicts_with = "select")]
    pub target: Option<String>,

    /// Serve this fleet file instead of the built-in sample fleet.
    #[arg(long, value_name = "FILE")]
    pub fleet: Option<PathBuf>,

    /// List the instances and exit without opening a shell.
    #[arg(long)]
    pub list: bool,
}

/// Runs the demo; the exit code is the shell's.
pub async fn run_demo(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let fleet = match &args.fleet {
        Some(path) => Fleet::load(path).context("cannot read the demo fleet")?,
        None => Fleet::sample(),
    };
    let demo = Demo::start(fleet).await?;
    let result = demo.run(&args).await;
    demo.stop().await;
    result
}

/// One listed instance: where it is and what it is called.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DemoInstance {
    /// Instance id.
    pub id: String,
    /// Its Name tag (or managed-instance name).
    pub name: String,
    /// Account id.
    pub account: String,
    /// Account alias.
    pub alias: String,
    /// Account environment.
    pub env: Env,
    /// Region.
    pub region: String,
    /// Operating system as SSM reports it.
    pub platform: String,
}

/// The running demo: the emulator and the temporary AWS environment pointing at it. Tests use
/// it to run the demo's steps one by one.
#[derive(Debug)]
pub struct Demo {
    emulator: EmulatorHandle,
    files: TempFiles,
}

impl Demo {
    /// Starts the emulator serving `fleet` and writes the temporary AWS configuration.
    pub async fn start(fleet: Fleet) -> anyhow::Result<Self> {
        let region = fleet
            .regions
            .first()
            .cloned()
            .context("the demo fleet has no region")?;
        let config = EmulatorConfig {
            region,
            fleet,
            ..EmulatorConfig::default()
        };
        let emulator = Emulator::start(config)
            .await
            .context("cannot start the demo emulator")?;
        let files = TempFiles::create().context("cannot create the demo's temporary files")?;
        files
            .write_aws_config(&emulator)
            .context("cannot write the demo's temporary AWS configuration")?;
        Ok(Self { emulator, files })
    }

    async fn run(&self, args: &DemoArgs) -> anyhow::Result<ExitCode> {
        eprintln!("{BANNER}");
        let instances = discover(&self.emulator)
            .await
            .context("cannot list the demo fleet")?;
        if instances.is_empty() {
            bail!("the demo fleet has no online instance");
        }
        let preset = args.target.as_deref().or(args.select.as_deref());
        if args.list || preset.is_none() {
            eprint!("{}", render_list(&instances));
        }
        if args.list {
            return Ok(ExitCode::SUCCESS);
        }
        let chosen = match preset {
            Some(choice) => select(&instances, choice)
                .with_context(|| format!("no instance of the demo fleet matches {choice:?}"))?,
            None => prompt(&instances).await?,
        };
        eprintln!(
            "postern demo: opening a shell on {} ({}) in {} {} ({}); it runs on this machine. \
             Type `exit` to leave.",
            chosen.name, chosen.id, chosen.alias, chosen.region, chosen.env
        );
        self.shell(chosen).await
    }

    /// The emulator serving the demo.
    pub fn emulator(&self) -> &EmulatorHandle {
        &self.emulator
    }

    /// Runs `postern shell` on `instance` as a child of the current executable, with the
    /// terminal, and returns its exit code.
    async fn shell(&self, instance: &DemoInstance) -> anyhow::Result<ExitCode> {
        let exe = std::env::current_exe().context("cannot find the postern executable")?;
        let mut child = self
            .shell_command(&exe, instance)
            .stdin(Stdio::inherit())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .spawn()
            .context("cannot start `postern shell` for the demo")?;
        loop {
            tokio::select! {
                status = child.wait() => {
                    let status = status.context("cannot wait for `postern shell`")?;
                    return Ok(exit_code(status));
                }
                // Ctrl-C outside raw mode reaches the whole process group: the shell decides,
                // the demo keeps waiting for it.
                _ = tokio::signal::ctrl_c() => {}
            }
        }
    }

    /// `postern shell INSTANCE` run by `postern_exe` with the account's demo profile and the
    /// demo's temporary AWS environment only (every inherited `AWS_*` variable removed).
    pub fn shell_command(
        &self,
        postern_exe: &Path,
        instance: &DemoInstance,
    ) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(postern_exe);
        command
            .arg("shell")
            .arg(&instance.id)
            .arg("--profile")
            .arg(profile_name(&instance.alias))
            .arg("--region")
            .arg(&instance.region)
            .arg("--endpoint-url")
            .arg(self.emulator.endpoint());
        for (key, _) in std::env::vars_os() {
            if key.to_str().is_some_and(|k| k.starts_with("AWS_")) {
                command.env_remove(key);
            }
        }
        command
            .env("AWS_CONFIG_FILE", self.files.config())
            .env("AWS_SHARED_CREDENTIALS_FILE", self.files.credentials())
            .env("AWS_REGION", &instance.region)
            .env("AWS_ENDPOINT_URL", self.emulator.endpoint())
            .env("AWS_EC2_METADATA_DISABLED", "true")
            // The user's own postern configuration names real accounts: not the demo's.
            .env("POSTERN_CONFIG", self.files.postern_config());
        command
    }

    /// Stops the emulator and removes the temporary files.
    pub async fn stop(self) {
        if let Err(err) = self.emulator.shutdown().await {
            tracing::warn!(error = %err, "demo emulator did not stop cleanly");
        }
        drop(self.files);
    }
}

/// Lists the online instances of every account the base credentials' organization has, as
/// postern's discovery does: ListAccounts, AssumeRole into each, then per region
/// DescribeInstanceInformation (what SSM can reach) and DescribeInstances (Name tags).
pub async fn discover(emulator: &EmulatorHandle) -> anyhow::Result<Vec<DemoInstance>> {
    let fleet = emulator.fleet();
    let base = sdk_config(emulator, &fleet.regions[0], base_credentials());
    let organizations = aws_sdk_organizations::Client::new(&base);
    let sts = aws_sdk_sts::Client::new(&base);
    let mut accounts = Vec::new();
    let mut pages = organizations.list_accounts().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.context("ListAccounts failed")?;
        accounts.extend(page.accounts.unwrap_or_default());
    }
    let mut instances = Vec::new();
    for account in accounts {
        let id = account.id.unwrap_or_default();
        let Some(spec) = fleet.account(&id) else {
            continue;
        };
        let role = demo_role(&spec.roles);
        let assumed = sts
            .assume_role()
            .role_arn(format!("arn:aws:iam::{id}:role/{role}"))
            .role_session_name("postern-demo")
            .send()
            .await
            .with_context(|| format!("AssumeRole into {} ({id}) failed", spec.alias))?;
        let credentials = assumed
            .credentials
            .context("AssumeRole returned no credentials")?;
        let credentials = Credentials::new(
            credentials.access_key_id,
            credentials.secret_access_key,
            Some(credentials.session_token),
            None,
            "postern-demo",
        );
        for region in &fleet.regions {
            let config = sdk_config(emulator, region, credentials.clone());
            let names = instance_names(&aws_sdk_ec2::Client::new(&config)).await?;
            let ssm = aws_sdk_ssm::Client::new(&config);
            let mut pages = ssm
                .describe_instance_information()
                .into_paginator()
                .items()
                .send();
            while let Some(info) = pages.next().await {
                let info = info.context("DescribeInstanceInformation failed")?;
                let online = info.ping_status.as_ref().map(|p| p.as_str()) == Some("Online");
                let Some(instance_id) = info.instance_id.clone().filter(|_| online) else {
                    continue;
                };
                let name = names
                    .get(&instance_id)
                    .cloned()
                    .or(info.name.clone())
                    .unwrap_or_default();
                let platform = match (&info.platform_name, &info.platform_version) {
                    (Some(name), Some(version)) => format!("{name} {version}"),
                    (Some(name), None) => name.clone(),
                    _ => String::new(),
                };
                instances.push(DemoInstance {
                    id: instance_id,
                    name,
                    account: id.clone(),
                    alias: spec.alias.clone(),
                    env: spec.env,
                    region: region.clone(),
                    platform,
                });
            }
        }
    }
    instances.sort_by(|a, b| {
        (env_rank(a.env), &a.alias, &a.region, &a.name).cmp(&(
            env_rank(b.env),
            &b.alias,
            &b.region,
            &b.name,
        ))
    });
    Ok(instances)
}

/// The numbered table the prompt shows.
pub fn render_list(instances: &[DemoInstance]) -> String {
    let width = |f: fn(&DemoInstance) -> &str| {
        instances
            .iter()
            .map(|i| f(i).chars().count())
            .max()
            .unwrap_or(0)
    };
    let alias_w = width(|i| &i.alias);
    let region_w = width(|i| &i.region);
    let name_w = width(|i| &i.name);
    let mut out = String::new();
    for (index, i) in instances.iter().enumerate() {
        let _ = writeln!(
            out,
            "{:>3}  {:<alias_w$}  {:<4}  {:<region_w$}  {:<name_w$}  {}  {}",
            index + 1,
            i.alias,
            i.env.as_str(),
            i.region,
            i.name,
            i.id,
            i.platform,
        );
    }
    out
}

/// The instance `choice` names: a 1-based number, an id, or a Name.
pub fn select<'a>(instances: &'a [DemoInstance], choice: &str) -> Option<&'a DemoInstance> {
    let choice = choice.trim();
    if let Ok(number) = choice.parse::<usize>() {
        return number.checked_sub(1).and_then(|i| instances.get(i));
    }
    instances
        .iter()
        .find(|i| i.id == choice)
        .or_else(|| instances.iter().find(|i| i.name == choice))
}

/// Asks on the terminal until the answer names an instance. Reads stdin line by line, so a
/// terminal's input after the answer stays for the shell.
async fn prompt(instances: &[DemoInstance]) -> anyhow::Result<&DemoInstance> {
    loop {
        eprint!(
            "Pick an instance [1-{}] (number, id or Name): ",
            instances.len()
        );
        let _ = std::io::stderr().flush();
        let line = tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).map(|n| (n, line))
        })
        .await
        .context("cannot read the choice")?
        .context("cannot read the choice")?;
        match line {
            (0, _) => bail!("no instance chosen (end of input); pass --select N to choose one"),
            (_, text) if text.trim().is_empty() => {}
            (_, text) => match select(instances, &text) {
                Some(instance) => return Ok(instance),
                None => eprintln!("no instance matches {:?}", text.trim()),
            },
        }
    }
}

/// Name tags of the EC2 instances the credentials see in the client's region.
async fn instance_names(ec2: &aws_sdk_ec2::Client) -> anyhow::Result<HashMap<String, String>> {
    let mut names = HashMap::new();
    let mut pages = ec2
        .describe_instances()
        .max_results(DESCRIBE_PAGE)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.context("DescribeInstances failed")?;
        for instance in page
            .reservations
            .unwrap_or_default()
            .into_iter()
            .flat_map(|r| r.instances.unwrap_or_default())
        {
            let name = instance
                .tags
                .unwrap_or_default()
                .into_iter()
                .find(|t| t.key.as_deref() == Some("Name"))
                .and_then(|t| t.value);
            if let (Some(id), Some(name)) = (instance.instance_id, name) {
                names.insert(id, name);
            }
        }
    }
    Ok(names)
}

fn sdk_config(
    emulator: &EmulatorHandle,
    region: &str,
    credentials: Credentials,
) -> aws_types::SdkConfig {
    aws_types::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(Region::new(region.to_owned()))
        .endpoint_url(emulator.endpoint())
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(credentials),
        )
        .build()
}

fn base_credentials() -> Credentials {
    Credentials::new(
        DEMO_ACCESS_KEY_ID,
        DEMO_SECRET_ACCESS_KEY,
        None,
        None,
        "postern-demo",
    )
}

/// The role the demo assumes: PosternAccess when the account allows it, else its first role.
fn demo_role(roles: &[String]) -> &str {
    roles
        .iter()
        .find(|r| *r == DEMO_ROLE)
        .or(roles.first())
        .map_or(DEMO_ROLE, String::as_str)
}

fn profile_name(alias: &str) -> String {
    format!("postern-demo-{alias}")
}

fn env_rank(env: Env) -> u8 {
    match env {
        Env::Dev => 0,
        Env::Stg => 1,
        Env::Prod => 2,
    }
}

fn exit_code(status: std::process::ExitStatus) -> ExitCode {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => ExitCode::from(u8::try_from(code.rem_euclid(256)).unwrap_or(1)),
        (None, Some(signal)) => ExitCode::from(u8::try_from(128 + signal).unwrap_or(1)),
        (None, None) => ExitCode::FAILURE,
    }
}

/// A private (0700) temporary directory holding the demo's AWS config and credentials
/// (0600), removed on drop.
#[derive(Debug)]
struct TempFiles {
    dir: PathBuf,
}

impl TempFiles {
    fn create() -> std::io::Result<Self> {
        let base = std::env::temp_dir();
        for _ in 0..16 {
            let dir = base.join(format!(
                "postern-demo-{}-{:08x}",
                std::process::id(),
                rand::random::<u32>()
            ));
            match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => return Ok(Self { dir }),
                Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(err) => return Err(err),
            }
        }
        Err(std::io::Error::other("no free temporary directory name"))
    }

    fn config(&self) -> PathBuf {
        self.dir.join("config")
    }

    fn credentials(&self) -> PathBuf {
        self.dir.join("credentials")
    }

    /// An empty postern configuration: the demo's profiles do the account switching.
    fn postern_config(&self) -> PathBuf {
        self.dir.join("postern.toml")
    }

    /// A base profile with the demo's dummy keys, and one profile per account assuming the
    /// demo role from it; every profile points at the emulator.
    fn write_aws_config(&self, emulator: &EmulatorHandle) -> std::io::Result<()> {
        let fleet = emulator.fleet();
        let endpoint = emulator.endpoint();
        let mut config = format!(
            "# Written by `postern demo` for its emulator; removed when the demo ends.\n\
             [profile {BASE_PROFILE}]\nregion = {}\nendpoint_url = {endpoint}\n",
            fleet.regions[0]
        );
        for account in &fleet.accounts {
            let _ = write!(
                config,
                "\n[profile {}]\nrole_arn = arn:aws:iam::{}:role/{}\nsource_profile = \
                 {BASE_PROFILE}\nrole_session_name = postern-demo\nregion = {}\n\
                 endpoint_url = {endpoint}\n",
                profile_name(&account.alias),
                account.id,
                demo_role(&account.roles),
                fleet.regions[0],
            );
        }
        write_private(&self.config(), &config)?;
        write_private(
            &self.postern_config(),
            "# Written by `postern demo`: no accounts, the AWS profiles switch roles.\n",
        )?;
        write_private(
            &self.credentials(),
            &format!(
                "[{BASE_PROFILE}]\naws_access_key_id = {DEMO_ACCESS_KEY_ID}\n\
                 aws_secret_access_key = {DEMO_SECRET_ACCESS_KEY}\n"
            ),
        )
    }
}

impl Drop for TempFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Writes `text` to a new file readable by its owner only.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(text.as_bytes())
}

/// The one line saying what the demo is.
const BANNER: &str = "postern demo: a local demo with no AWS account and no network; the fleet \
                      below is emulated in this process and every session runs on this machine, \
                      as you.";
const BASE_PROFILE: &str = "postern-demo";
const DEMO_ROLE: &str = "PosternAccess";
/// Dummy keys of the demo's base profile: not credentials for anything but the emulator.
const DEMO_ACCESS_KEY_ID: &str = "AKIAPOSTERNDEMO00000";
const DEMO_SECRET_ACCESS_KEY: &str = "postern-demo-not-a-secret";
/// DescribeInstances page size during discovery.
const DESCRIBE_PAGE: i32 = 100;

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(id: &str, name: &str) -> DemoInstance {
        DemoInstance {
            id: id.to_owned(),
            name: name.to_owned(),
            account: "111111111111".to_owned(),
            alias: "acme-dev".to_owned(),
            env: Env::Dev,
            region: "eu-west-1".to_owned(),
            platform: "Amazon Linux 2023".to_owned(),
        }
    }

    #[test]
    fn selects_by_number_id_or_name() {
        let list = [instance("i-01", "web-1"), instance("i-02", "api-1")];
        assert_eq!(select(&list, "2").unwrap().id, "i-02");
        assert_eq!(select(&list, " i-01\n").unwrap().id, "i-01");
        assert_eq!(select(&list, "api-1").unwrap().id, "i-02");
        assert!(select(&list, "0").is_none());
        assert!(select(&list, "3").is_none());
        assert!(select(&list, "db-1").is_none());
    }

    #[test]
    fn list_is_numbered_and_aligned() {
        let list = [instance("i-01", "web-1"), instance("i-02", "api-gateway-1")];
        let text = render_list(&list);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("  1  acme-dev  dev   eu-west-1  web-1"));
        assert_eq!(lines[0].find("i-01"), lines[1].find("i-02"));
    }

    #[test]
    fn temp_files_are_private_and_removed() {
        use std::os::unix::fs::PermissionsExt;
        let files = TempFiles::create().unwrap();
        write_private(&files.credentials(), "x").unwrap();
        let mode = std::fs::metadata(files.credentials())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let dir_mode = std::fs::metadata(&files.dir).unwrap().permissions().mode();
        assert_eq!(dir_mode & 0o777, 0o700);
        let dir = files.dir.clone();
        drop(files);
        assert!(!dir.exists());
    }
}
