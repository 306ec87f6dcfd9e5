//! `postern ssh --push-key` end to end: the role broker's credentials for the instance's
//! account, EC2 Instance Connect's SendSSHPublicKey at the emulator, then real OpenSSH through
//! `postern ssh-proxy` to a throwaway sshd that authorizes no key file, only the keys the
//! emulator holds for that instance and user (its AuthorizedKeysCommand, as on an instance).
//! The ephemeral key exists (0600 in a 0700 dir) while ssh runs and is gone afterwards, on
//! success and on failure; a key that was not pushed is refused; an unknown instance, a
//! denied role, a hybrid node and an invalid OS user fail with their documented exit codes, and
//! production's guardrail refuses before any key is pushed. SIGTERM reaches ssh, and postern
//! follows ssh's job control (stopped with it, continued with it).
//! Also the emulator's SendSSHPublicKey itself through the SDK: checks and errors as the
//! service's.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use aws_sdk_ec2instanceconnect::config::http::HttpResponse;
use aws_sdk_ec2instanceconnect::error::{ProvideErrorMetadata as _, SdkError};
use aws_sdk_ec2instanceconnect::operation::send_ssh_public_key::SendSSHPublicKeyError;
use nix::sys::signal::Signal;
use postern_emulator::EmulatorHandle;

use crate::support::emulator::{account, assume, base, fleet_emulator, id_of, sdk};
use crate::support::fixtures::SAMPLE_ACCOUNTS as ACCOUNTS;
use crate::support::home::Home;
use crate::support::poll::poll;
use crate::support::process::{exit_within, killpg, process_state, run, signal, text};
use crate::support::sshd::{SshAgent, Sshd, login_user};

const LIMIT: Duration = Duration::from_secs(90);
/// A running Linux EC2 instance of acme-dev (dev: no confirmation) in eu-west-1.
const DEV_WEB: &str = "web-frontend-dev-1";
/// A stopped Windows instance of acme-dev.
const DEV_WINDOWS: &str = "build-windows-dev-1";
/// A hybrid (mi-) node of the management account.
const LDAP: &str = "dc1-ldap-1";

/// The configuration: the session role in every account, then the sample fleet's accounts.
fn config() -> String {
    format!("role = \"PosternAccess\"\nregions = [\"eu-west-1\"]\n{ACCOUNTS}")
}

/// `postern ssh ARGS` in `home` against `emulator`, with `tmp` as TMPDIR (where the
/// ephemeral key goes).
fn ssh(home: &Home, emulator: &EmulatorHandle, tmp: &Path, args: &[&str]) -> Output {
    let mut command = home.against(emulator, &["ssh"]);
    command.args(args).env("TMPDIR", tmp);
    run(command, LIMIT)
}

/// ssh options for the sshd: its port, no config file, agent or known_hosts.
fn ssh_options(sshd: &Sshd) -> Vec<String> {
    [
        "-p",
        &sshd.port.to_string(),
        "-F",
        "/dev/null",
        "-o",
        "IdentityAgent=none",
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
    ]
    .map(str::to_owned)
    .to_vec()
}

fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("read the TMPDIR")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_push_key_logs_in_with_only_the_pushed_key_and_removes_it() {
    let emulator = fleet_emulator(|_| {}).await;
    let instance = id_of(&emulator, DEV_WEB);
    let sshd = Sshd::start_with_pushed_keys(&emulator.endpoint(), &instance);
    let home = Home::new(Some(&config()));
    let tmp = tempfile::tempdir().expect("TMPDIR");
    let user = login_user();
    assert_eq!(sshd.authorized_keys_for(&user), "", "nothing pushed yet");

    // The remote command runs on this machine (the sshd is local): it shows the key file as
    // ssh uses it, and the mode of its directory.
    let probe = format!(
        "stat -c %a {tmp}/postern-key-*/id_ed25519 {tmp}/postern-key-*",
        tmp = tmp.path().display()
    );
    let mut args = vec!["--push-key", "-l", &user, &instance, "--"];
    let options = ssh_options(&sshd);
    args.extend(options.iter().map(String::as_str));
    args.push(&probe);
    let out = ssh(&home, &emulator, tmp.path(), &args);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "600\n700\n",
        "key file 0600 in a 0700 dir"
    );
    assert_eq!(entries(tmp.path()), Vec::<String>::new(), "the key is gone");

    // The instance side holds exactly the one key pushed, for that user only.
    let keys = sshd.authorized_keys_for(&user);
    assert_eq!(keys.lines().count(), 1, "{keys}");
    assert!(keys.starts_with("ssh-ed25519 "), "{keys}");
    assert!(keys.trim_end().ends_with(" postern-ephemeral"), "{keys}");
    assert_eq!(sshd.authorized_keys_for("nobody"), "");

    // A key that was not pushed is refused, though the pushed one is still valid.
    let client_key = sshd.dir.join("client_key");
    let mut args = vec!["--no-push-key", "-l", &user, &instance, "--", "-i"];
    let client_key = client_key.display().to_string();
    args.push(&client_key);
    args.extend(["-o", "IdentitiesOnly=yes"]);
    args.extend(options.iter().map(String::as_str));
    args.extend(["echo", "in"]);
    let out = ssh(&home, &emulator, tmp.path(), &args);
    assert_eq!(out.status.code(), Some(255), "ssh's own failure");
    assert_eq!(text(&out.stdout), "");
    assert!(
        text(&out.stderr).contains("Permission denied (publickey)"),
        "{}",
        text(&out.stderr)
    );
    emulator.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_config_push_key_block_pushes_a_key_into_the_agent_for_plain_ssh() {
    let emulator = fleet_emulator(|_| {}).await;
    // The base credentials act in the management account: its eu-west-1 EC2 instance.
    let instance = id_of(&emulator, "artifact-cache-1");
    let sshd = Sshd::start_with_pushed_keys(&emulator.endpoint(), &instance);
    let agent = SshAgent::start();
    let home = Home::new(Some("push_key = true\n"));
    let tmp = tempfile::tempdir().expect("TMPDIR");

    // `push_key = true` in the configuration gives the --push-key block.
    let out = run(home.against(&emulator, &["ssh-config"]), LIMIT);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let block = text(&out.stdout);
    assert!(
        block.contains(" ssh-proxy --push-key -l %r %h %p\n"),
        "{block}"
    );
    let config = tmp.path().join("ssh_config");
    std::fs::write(&config, &block).expect("write the ssh_config");

    // Plain ssh with that block, the environment postern would have (endpoint, credentials).
    let template = home.against(&emulator, &[]);
    let mut ssh = Command::new("ssh");
    ssh.env_clear();
    for (key, value) in template.get_envs() {
        if let Some(value) = value {
            ssh.env(key, value);
        }
    }
    let user = login_user();
    ssh.env("SSH_AUTH_SOCK", &agent.socket)
        .env("TMPDIR", tmp.path())
        .args(["-F"])
        .arg(&config)
        .args(["-p", &sshd.port.to_string()])
        .args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no"])
        .args(["-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"])
        .arg(format!("{user}@{instance}.postern"))
        .args(["echo", "via-agent"]);
    let out = run(ssh, LIMIT);
    assert_eq!(out.status.code(), Some(0), "ssh: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "via-agent\n");

    // The agent holds the pushed key (for its 60 s); no key file is left.
    let held = agent.list();
    assert_eq!(held.lines().count(), 1, "{held}");
    assert!(held.contains("postern-ephemeral (ED25519)"), "{held}");
    let pushed = sshd.authorized_keys_for(&user);
    assert_eq!(pushed.lines().count(), 1, "{pushed}");
    let config_name = "ssh_config".to_owned();
    assert_eq!(
        entries(tmp.path()),
        vec![config_name],
        "only the test's own file"
    );
    emulator.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_reaches_ssh_and_the_key_is_removed_before_postern_exits() {
    let emulator = fleet_emulator(|_| {}).await;
    let home = Home::new(Some(&config()));
    let tmp = tempfile::tempdir().expect("TMPDIR");
    let seen = tempfile::tempdir().expect("a dir for the fake ssh");
    // The "ssh": notes that it runs, then waits until a signal ends it.
    let script = seen.path().join("fake-ssh");
    let started = seen.path().join("started");
    std::fs::write(
        &script,
        format!("#!/bin/sh\ntouch {}\nexec sleep 120\n", started.display()),
    )
    .expect("write the fake ssh");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let mut command = home.against(&emulator, &["ssh", "--push-key", "--ssh-program"]);
    command
        .arg(&script)
        .arg(DEV_WEB)
        .env("TMPDIR", tmp.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("start postern ssh");
    poll(LIMIT, || started.exists().then_some(()));
    assert_eq!(
        entries(tmp.path()).len(),
        1,
        "the key exists while ssh runs"
    );
    signal(child.id(), Signal::SIGTERM);
    let status = exit_within(&mut child, LIMIT).expect("postern exits after SIGTERM");
    // ssh (here `sleep`) got the SIGTERM and died of it: postern reports it as a shell would.
    assert_eq!(status.code(), Some(143));
    assert_eq!(entries(tmp.path()), Vec::<String>::new(), "the key is gone");
    emulator.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postern_stops_with_a_stopped_ssh_and_continues_with_it() {
    let emulator = fleet_emulator(|_| {}).await;
    let home = Home::new(Some(&config()));
    let tmp = tempfile::tempdir().expect("TMPDIR");
    let seen = tempfile::tempdir().expect("a dir for the fake ssh");
    // The "ssh": stops itself as ssh's `~^Z` does, then, continued, ends with status 3.
    let script = seen.path().join("fake-ssh");
    let resumed = seen.path().join("resumed");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nkill -TSTP $$\ntouch {}\nexit 3\n",
            resumed.display()
        ),
    )
    .expect("write the fake ssh");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let mut command = home.against(&emulator, &["ssh", "--push-key", "--ssh-program"]);
    command
        .arg(&script)
        .arg(DEV_WEB)
        .env("TMPDIR", tmp.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // A process group of its own, as a shell gives a job.
        .process_group(0);
    let mut child = command.spawn().expect("start postern ssh");
    let pid = child.id();
    let state = || process_state(pid);
    poll(LIMIT, || (state() == Some('T')).then_some(()));
    assert!(!resumed.exists(), "ssh is stopped too");
    assert_eq!(
        entries(tmp.path()).len(),
        1,
        "the key stays while ssh is stopped"
    );
    // `fg`: SIGCONT to the job's process group.
    killpg(pid, Signal::SIGCONT).expect("continue the job");
    let status = exit_within(&mut child, LIMIT).expect("postern ends with ssh");
    assert_eq!(status.code(), Some(3), "ssh's status");
    assert!(resumed.exists());
    assert_eq!(entries(tmp.path()), Vec::<String>::new(), "the key is gone");
    emulator.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_push_key_failures_name_the_instance_and_leave_no_key() {
    let emulator = fleet_emulator(|config| {
        config.push_key_denied_roles = vec!["Developer".to_owned()];
    })
    .await;
    let home = Home::new(Some(&config()));
    let tmp = tempfile::tempdir().expect("TMPDIR");

    // An id no account holds, placed by --account: EC2 does not know it.
    let unknown = "i-0000000000000dead";
    let out = ssh(
        &home,
        &emulator,
        tmp.path(),
        &["--push-key", unknown, "--account", "acme-dev"],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(250), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "could not find the availability zone of {unknown} to push an ssh key"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("InvalidInstanceID.NotFound"), "{stderr}");
    assert!(
        stderr.contains("hint: EC2 Instance Connect needs an EC2 instance"),
        "{stderr}"
    );

    // The role may not push keys.
    let developer = Home::new(Some(&format!(
        "role = \"Developer\"\nregions = [\"eu-west-1\"]\n{ACCOUNTS}"
    )));
    let web = id_of(&emulator, DEV_WEB);
    let out = ssh(&developer, &emulator, tmp.path(), &["--push-key", DEV_WEB]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(251), "{stderr}");
    assert!(
        stderr.contains(&format!("could not push an ssh key for ec2-user to {web}")),
        "{stderr}"
    );
    assert!(stderr.contains("AccessDeniedException"), "{stderr}");
    assert!(stderr.contains("assumed-role/Developer/"), "{stderr}");
    assert!(
        stderr.contains("hint: the role needs ec2-instance-connect:SendSSHPublicKey"),
        "{stderr}"
    );

    // Production: the guardrail refuses before any key is made or pushed.
    let prod = id_of(&emulator, "web-frontend-prod-1");
    let out = ssh(&home, &emulator, tmp.path(), &["--push-key", &prod]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(241), "{stderr}");
    assert!(
        stderr.contains("prod account acme-prod needs a confirmation"),
        "{stderr}"
    );
    assert_eq!(
        http_get(&emulator.active_keys_url(&prod, "ec2-user")).0,
        404
    );

    // A stopped Windows instance.
    let out = ssh(&home, &emulator, tmp.path(), &["--push-key", DEV_WINDOWS]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(245), "{stderr}");
    assert!(
        stderr.contains("EC2InstanceStateInvalidException"),
        "{stderr}"
    );

    // A hybrid node: no EC2 instance, no call made.
    let out = ssh(&home, &emulator, tmp.path(), &["--push-key", LDAP, "--yes"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(245), "{stderr}");
    assert!(
        stderr.contains("is not an EC2 instance: EC2 Instance Connect cannot push a key"),
        "{stderr}"
    );

    // An OS user the API refuses.
    let out = ssh(
        &home,
        &emulator,
        tmp.path(),
        &["--push-key", "-l", "9bad", DEV_WEB],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(246), "{stderr}");
    assert!(stderr.contains("InvalidArgsException"), "{stderr}");
    assert!(stderr.contains("hint: check the OS user name"), "{stderr}");

    assert_eq!(entries(tmp.path()), Vec::<String>::new(), "no key left");
    emulator.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emulator_send_ssh_public_key_checks_instance_zone_state_and_role() {
    let emulator = fleet_emulator(|config| {
        config.push_key_denied_roles = vec!["Developer".to_owned()];
    })
    .await;
    let dev = account(&emulator, "acme-dev").id.clone();
    let web = id_of(&emulator, DEV_WEB);
    let role = assume(&emulator, &dev, "PosternAccess").await;
    let client = aws_sdk_ec2instanceconnect::Client::new(&sdk(&emulator, "eu-west-1", role));
    let key = postern::ephemeral_key::EphemeralKey::generate("test")
        .expect("a key")
        .public_openssh()
        .to_owned();
    let push = |instance: &str, zone: &str| {
        client
            .send_ssh_public_key()
            .instance_id(instance)
            .instance_os_user("ec2-user")
            .ssh_public_key(&key)
            .availability_zone(zone)
            .send()
    };

    let ok = push(&web, "eu-west-1a").await.expect("SendSSHPublicKey");
    assert!(ok.success());
    assert!(ok.request_id().is_some_and(|id| !id.is_empty()));
    let url = emulator.active_keys_url(&web, "ec2-user");
    assert_eq!(http_get(&url), (200, format!("{}\n", key.trim())));
    assert_eq!(http_get(&emulator.active_keys_url(&web, "admin")).0, 404);

    let unknown = "i-0000000000000dead";
    assert_eq!(
        code(push(unknown, "eu-west-1a").await),
        "EC2InstanceNotFoundException"
    );
    // An instance of another account (the management account's) is not found either.
    let shared = id_of(&emulator, "artifact-cache-1");
    assert_eq!(
        code(push(&shared, "eu-west-1a").await),
        "EC2InstanceNotFoundException"
    );
    assert_eq!(
        code(push(&web, "eu-west-1b").await),
        "EC2InstanceNotFoundException"
    );
    let windows = id_of(&emulator, DEV_WINDOWS);
    assert_eq!(
        code(push(&windows, "eu-west-1a").await),
        "EC2InstanceStateInvalidException"
    );
    let bad_key = client
        .send_ssh_public_key()
        .instance_id(&web)
        .instance_os_user("ec2-user")
        .ssh_public_key("ssh-ed25519 not-a-key")
        .availability_zone("eu-west-1a")
        .send()
        .await;
    assert_eq!(code(bad_key), "InvalidArgsException");

    let developer = assume(&emulator, &dev, "Developer").await;
    let denied = aws_sdk_ec2instanceconnect::Client::new(&sdk(&emulator, "eu-west-1", developer))
        .send_ssh_public_key()
        .instance_id(&web)
        .instance_os_user("ec2-user")
        .ssh_public_key(&key)
        .availability_zone("eu-west-1a")
        .send()
        .await;
    assert_eq!(code(denied), "AccessDeniedException");

    // Base credentials act in the management account: its instances, not acme-dev's.
    let management = aws_sdk_ec2instanceconnect::Client::new(&base(&emulator, "eu-west-1"));
    let reply = management
        .send_ssh_public_key()
        .instance_id(&shared)
        .instance_os_user("ec2-user")
        .ssh_public_key(&key)
        .availability_zone("eu-west-1a")
        .send()
        .await
        .expect("the management account's own instance");
    assert!(reply.success());
    // Only one key for acme-dev's web server: the refused calls kept nothing.
    assert_eq!(http_get(&url).1.lines().count(), 1);
    emulator.shutdown().await.unwrap();
}

/// One HTTP/1.1 GET on loopback: status and body.
fn http_get(url: &str) -> (u16, String) {
    let url = url::Url::parse(url).expect("a URL");
    let host = url.host_str().expect("a host");
    let port = url.port().expect("a port");
    let mut conn = TcpStream::connect((host, port)).expect("connect to the emulator");
    conn.set_read_timeout(Some(LIMIT)).expect("read timeout");
    write!(
        conn,
        "GET {} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n",
        url.path()
    )
    .expect("send the request");
    let mut response = String::new();
    conn.read_to_string(&mut response).expect("read the answer");
    let (head, body) = response.split_once("\r\n\r\n").expect("headers end");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status");
    (status, body.to_owned())
}

/// The service's error code of a SendSSHPublicKey that must fail.
fn code<T: std::fmt::Debug>(
    result: Result<T, SdkError<SendSSHPublicKeyError, HttpResponse>>,
) -> String {
    let err = result.expect_err("SendSSHPublicKey must fail");
    err.into_service_error()
        .code()
        .unwrap_or_default()
        .to_owned()
}
