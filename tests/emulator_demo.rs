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
