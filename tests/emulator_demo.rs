//! `postern demo`'s steps against the sample fleet: discovery through the control plane (as
//! postern's flow does it), the temporary AWS environment, and a real `postern shell` child on
//! a picked instance of a member account, reached through the demo's role profile.

use std::process::Stdio;
use std::time::Duration;

use postern::emulator::{Demo, Fleet, discover, render_list, select};
use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn discovery_lists_the_online_instances_of_every_account() {
    let demo = Demo::start(Fleet::sample()).await.unwrap();
    let instances = discover(demo.emulator()).await.unwrap();
    let fleet = demo.emulator().fleet().clone();
    let mut listed: Vec<&str> = instances.iter().map(|i| i.id.as_str()).collect();
    let mut expected: Vec<&str> = fleet
        .instances
        .iter()
        .filter(|i| i.is_connected())
        .map(|i| i.id.as_str())
        .collect();
    listed.sort_unstable();
    expected.sort_unstable();
    assert_eq!(listed, expected);
    for instance in &instances {
        let spec = fleet
            .instances
            .iter()
            .find(|i| i.id == instance.id)
            .unwrap();
        assert_eq!(instance.name, spec.name);
        assert_eq!(instance.account, spec.account);
        assert_eq!(instance.region, spec.region);
        assert_eq!(fleet.account(&spec.account).unwrap().alias, instance.alias);
    }
    // dev first, prod last; every account appears.
    assert_eq!(instances.first().unwrap().env.as_str(), "dev");
    assert_eq!(instances.last().unwrap().env.as_str(), "prod");
    for account in &fleet.accounts {
        assert!(instances.iter().any(|i| i.alias == account.alias));
    }
    let text = render_list(&instances);
    assert_eq!(text.lines().count(), instances.len());
    assert!(text.contains("acme-prod"));
    assert!(text.lines().next().unwrap().trim_start().starts_with("1  "));
    demo.stop().await;
}

#[tokio::test]
async fn demo_shell_runs_a_command_on_a_member_account_instance() {
    let demo = Demo::start(Fleet::sample()).await.unwrap();
    let instances = discover(demo.emulator()).await.unwrap();
    let chosen = select(&instances, "orders-api-prod-1").unwrap().clone();
    assert_eq!(chosen.alias, "acme-prod");
    let mut child = demo
        .shell_command(env!("CARGO_BIN_EXE_postern").as_ref(), &chosen)
        .env("HOME", "/nonexistent")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"echo demo-$((6*7))\nexit\n")
        .await
        .unwrap();
    drop(stdin);
    let output = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("postern shell ends within 30 s")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // The command ran on this machine, through a session that only the prod role's
    // credentials could start (base credentials act in the management account).
    assert!(
        stdout.contains("demo-42"),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert!(output.status.success(), "stderr: {stderr}");
    assert_eq!(demo.emulator().violations().total(), 0);
    demo.stop().await;
}

#[test]
fn postern_demo_opens_a_shell_on_the_selected_instance() {
    use std::io::Write;
    // A hostile environment: the user's AWS settings must not leak into the demo, and its
    // temporary files must go away.
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir(home.path().join(".aws")).unwrap();
    std::fs::write(
        home.path().join(".aws/config"),
        "[default]\nregion = nowhere-1\ncredential_process = false\n",
    )
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_postern"))
        .args(["demo", "--select", "orders-api-prod-1"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .env("TMPDIR", tmp.path())
        .env("AWS_PROFILE", "does-not-exist")
        .env("AWS_ACCESS_KEY_ID", "AKIDUSERSREALKEY")
        .env("AWS_SECRET_ACCESS_KEY", "users-real-secret")
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"echo demo-$((6*7))\nexit\n")
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let output = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("postern demo ends within 60 s")
        .unwrap();
    waiter.join().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "stderr: {stderr}");
    assert!(
        stdout.contains("demo-42"),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    let banner: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("a local demo"))
        .collect();
    assert_eq!(banner.len(), 1, "stderr: {stderr}");
    assert!(banner[0].contains("every session runs on this machine"));
    assert!(stderr.contains("orders-api-prod-1"), "stderr: {stderr}");
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        0,
        "temporary files left behind"
    );
}
