//! `postern exec` on many instances, through the real binary against the emulator: `--all`
//! over the sample fleet's dev and staging web servers in two accounts (each instance's own
//! output and status, a mix of exit codes, an offline instance reported as not started),
//! `--json` and `--group`, production refused without `--yes` and run with it, Ctrl-C in the
//! middle (every session terminated, the summary of what finished), and 100 generated
//! instances with `--parallel 8`, the emulator counting the sessions open at once.
//!
//! The emulator gives each session's processes their instance's id and Name tag in the
//! environment (`POSTERN_EMULATOR_INSTANCE_NAME`), so one command behaves per instance.

use std::collections::BTreeMap;
use std::process::{Output, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;
use postern_emulator::{EmulatorHandle, FleetShape, InstanceState, PingStatus, generate};

use crate::support::emulator::{emulator, fleet_emulator, id_of};
use crate::support::home::Home;
use crate::support::poll::poll;
use crate::support::process::{exit_within, lines, run, signal, text};

const LIMIT: Duration = Duration::from_secs(120);

/// The dev and staging accounts of the sample fleet, in both regions; production too with
/// [`WITH_PROD`].
const DEV_AND_STAGING: &str = r#"role = "PosternAccess"
regions = ["eu-west-1", "us-east-1"]

[[accounts]]
id = "318402957716"
alias = "acme-dev"
env = "dev"

[[accounts]]
id = "529173064828"
alias = "acme-staging"
env = "stg"
"#;

const WITH_PROD: &str = r#"
[[accounts]]
id = "736250419937"
alias = "acme-prod"
env = "prod"
"#;

/// Prints a line or two per instance and exits with a status of its own: dev-1 0, stg-1 3,
/// any other 0.
const PER_INSTANCE: &str = r#"n="$POSTERN_EMULATOR_INSTANCE_NAME"; case "$n" in
  *-dev-1) echo "hello from $n"; exit 0;;
  *-stg-1) echo "one from $n"; echo "two from $n"; exit 3;;
  *) echo "other $n"; exit 0;;
esac"#;

fn postern(home: &Home, emulator: &EmulatorHandle, args: &[&str]) -> Output {
    run(home.against(emulator, args), LIMIT)
}

/// stdout's lines grouped by the name in front of them (`NAME │ line`), in order.
fn by_instance(stdout: &str) -> BTreeMap<String, Vec<String>> {
    let mut lines: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in stdout.lines() {
        let (name, rest) = line
            .split_once(" │ ")
            .unwrap_or_else(|| panic!("no name in front of {line:?}"));
        lines
            .entry(name.trim_end().to_owned())
            .or_default()
            .push(rest.to_owned());
    }
    lines
}

/// The sample fleet with web-frontend-stg-2's agent offline (ConnectionLost).
async fn web_frontend_stg_2_offline() -> EmulatorHandle {
    fleet_emulator(|config| {
        for instance in &mut config.fleet.instances {
            if instance.name == "web-frontend-stg-2" {
                instance.ping_status = PingStatus::ConnectionLost;
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_all_streams_each_instances_lines_and_reports_failed_and_offline_ones() {
    let emulator = web_frontend_stg_2_offline().await;
    let home = Home::new(Some(DEV_AND_STAGING));
    let out = postern(
        &home,
        &emulator,
        &["exec", "--all", "web-frontend", "--", PER_INSTANCE],
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    // Some could not start: that code wins over a failed command.
    assert_eq!(
        out.status.code(),
        Some(239),
        "stdout {stdout}\nstderr {stderr}"
    );
    let lines = by_instance(&stdout);
    assert_eq!(
        lines,
        BTreeMap::from([
            (
                "web-frontend-dev-1".to_owned(),
                vec!["hello from web-frontend-dev-1".to_owned()]
            ),
            (
                "web-frontend-stg-1".to_owned(),
                vec![
                    "one from web-frontend-stg-1".to_owned(),
                    "two from web-frontend-stg-1".to_owned()
                ]
            ),
        ]),
        "{stdout}"
    );
    // Names are padded to the longest: both are 18 characters.
    assert!(
        stdout.lines().all(|l| l.starts_with("web-frontend-")),
        "{stdout}"
    );
    let stg1 = id_of(&emulator, "web-frontend-stg-1");
    let stg2 = id_of(&emulator, "web-frontend-stg-2");
    assert!(
        stderr.ends_with(&format!(
            "postern: exec on 3 instances: 1 succeeded, 1 failed, 1 could not start\n\
             failed:\n  web-frontend-stg-1 ({stg1}, acme-staging, eu-west-1): exit status 3\n\
             could not start:\n  web-frontend-stg-2 ({stg2}, acme-staging, eu-west-1): the \
             agent is not online (ConnectionLost)\n"
        )),
        "{stderr}"
    );
    assert_eq!(
        emulator.open_sessions().0,
        0,
        "every session was terminated"
    );

    // Only the dev and staging ones that work: one failed command gives 242.
    let out = postern(
        &home,
        &emulator,
        &[
            "exec",
            "--all",
            "web-frontend",
            "--tag",
            "team=storefront",
            "--env",
            "stg",
            "--",
            PER_INSTANCE,
        ],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(239), "{stderr}");
    assert!(
        stderr.contains("exec on 2 instances: 0 succeeded"),
        "{stderr}"
    );
    let out = postern(
        &home,
        &emulator,
        &[
            "exec",
            "--all",
            "orders-api",
            "--account",
            "acme-dev",
            "--",
            "exit 5",
        ],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(242), "{stderr}");
    // Only acme-dev's: nothing of the staging account.
    assert!(
        stderr.ends_with(&format!(
            "failed:\n  orders-api-dev-1 ({}, acme-dev, eu-west-1): exit status 5\n",
            id_of(&emulator, "orders-api-dev-1")
        )),
        "{stderr}"
    );
    let out = postern(
        &home,
        &emulator,
        &["exec", "--all", "web-frontend-dev", "--", "true"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr)
            .ends_with("postern: exec on 1 instance: 1 succeeded, 0 failed, 0 could not start\n"),
        "{}",
        text(&out.stderr)
    );
    // Nothing matches: the index's error, before any session.
    let out = postern(
        &home,
        &emulator,
        &["exec", "--all", "no-such-xyz", "--", "true"],
    );
    assert_eq!(out.status.code(), Some(244), "{}", text(&out.stderr));
    emulator.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_all_json_and_group_give_one_record_or_block_per_instance() {
    let emulator = web_frontend_stg_2_offline().await;
    let home = Home::new(Some(DEV_AND_STAGING));
    let out = postern(
        &home,
        &emulator,
        &[
            "exec",
            "--all",
            "web-frontend",
            "--json",
            "--",
            PER_INSTANCE,
        ],
    );
    assert_eq!(out.status.code(), Some(239), "{}", text(&out.stderr));
    let mut records: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    records.sort_by_key(|r| r["name"].as_str().unwrap_or_default().to_owned());
    assert_eq!(records.len(), 3, "{}", text(&out.stdout));
    let dev = &records[0];
    assert_eq!(dev["name"], "web-frontend-dev-1");
    assert_eq!(dev["instance"], id_of(&emulator, "web-frontend-dev-1"));
    assert_eq!(dev["account"], "318402957716");
    assert_eq!(dev["alias"], "acme-dev");
    assert_eq!(dev["region"], "eu-west-1");
    assert_eq!(dev["status"], "succeeded");
    assert_eq!(dev["exit_status"], 0);
    assert_eq!(dev["stdout"], "hello from web-frontend-dev-1\n");
    assert_eq!(dev["stderr"], "");
    assert!(dev["error"].is_null());
    assert!(dev["duration_ms"].as_u64().is_some());
    let stg1 = &records[1];
    assert_eq!(stg1["status"], "failed");
    assert_eq!(stg1["exit_status"], 3);
    assert_eq!(
        stg1["stdout"],
        "one from web-frontend-stg-1\ntwo from web-frontend-stg-1\n"
    );
    let stg2 = &records[2];
    assert_eq!(stg2["status"], "not_started");
    assert!(stg2["exit_status"].is_null());
    assert_eq!(stg2["error"], "the agent is not online (ConnectionLost)");

    let out = postern(
        &home,
        &emulator,
        &[
            "exec",
            "--all",
            "web-frontend",
            "--group",
            "--",
            PER_INSTANCE,
        ],
    );
    assert_eq!(out.status.code(), Some(239), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let mut blocks: Vec<&str> = stdout.split("── ").filter(|b| !b.is_empty()).collect();
    blocks.sort_unstable();
    assert_eq!(
        blocks,
        [
            "web-frontend-dev-1 (acme-dev, eu-west-1): exit status 0\n\
             hello from web-frontend-dev-1\n",
            "web-frontend-stg-1 (acme-staging, eu-west-1): exit status 3\n\
             one from web-frontend-stg-1\ntwo from web-frontend-stg-1\n",
        ],
        "{stdout}"
    );
    emulator.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_all_in_production_needs_yes_once_per_account() {
    let emulator = fleet_emulator(|_| {}).await;
    let home = Home::new(Some(&format!("{DEV_AND_STAGING}{WITH_PROD}")));
    let out = postern(
        &home,
        &emulator,
        &["exec", "--all", "web-frontend", "--", "echo reached"],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(241), "{stderr}");
    assert!(
        stderr.contains("could not run the command on 5 instances of account acme-prod"),
        "{stderr}"
    );
    assert!(
        !text(&out.stdout).contains("reached"),
        "nothing ran anywhere"
    );
    assert_eq!(emulator.open_sessions(), (0, 0), "no session started");

    let out = postern(
        &home,
        &emulator,
        &[
            "exec",
            "--all",
            "web-frontend",
            "--env",
            "prod",
            "--yes",
            "--",
            "echo reached",
        ],
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let lines = by_instance(&stdout);
    assert_eq!(lines.len(), 5, "{stdout}");
    assert!(lines.values().all(|l| l == &["reached"]), "{stdout}");
    assert!(lines.contains_key("web-frontend-prod-use1-2"), "{stdout}");
    // The history has one record per instance, each in its account.
    let history = std::fs::read_to_string(home.path().join(".local/state/postern/history.jsonl"))
        .expect("history written");
    let prod = history
        .lines()
        .filter(|l| l.contains("\"account\":\"736250419937\""))
        .count();
    assert_eq!(prod, 5, "{history}");
    emulator.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_all_interrupted_terminates_every_session_and_summarises() {
    let emulator = fleet_emulator(|_| {}).await;
    let home = Home::new(Some(DEV_AND_STAGING));
    let mut command = home.against(
        &emulator,
        &[
            "exec",
            "--all",
            "web-frontend",
            "--parallel",
            "2",
            "--",
            "echo started; sleep 60",
        ],
    );
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("spawn postern");
    let stdout = lines(child.stdout.take().expect("piped stdout"));
    let stderr = lines(child.stderr.take().expect("piped stderr"));
    // Two of the three run (--parallel 2); the third waits for a free slot.
    let mut started = Vec::new();
    while started.len() < 2 {
        let line = stdout
            .recv_timeout(LIMIT)
            .expect("both sessions print their first line in time");
        started.push(line);
    }
    assert!(
        started.iter().all(|l| l.ends_with("│ started")),
        "{started:?}"
    );
    assert_eq!(emulator.open_sessions().0, 2);
    signal(child.id(), Signal::SIGINT);
    let status = exit_within(&mut child, LIMIT).expect("postern ends after Ctrl-C");
    assert_eq!(status.code(), Some(130));
    let stderr: Vec<String> = stderr.iter().collect();
    assert_eq!(
        stderr.first().map(String::as_str),
        Some(
            "postern: exec on 3 instances: 0 succeeded, 0 failed, 0 could not start; \
             interrupted: 2 terminated, 1 not run"
        ),
        "{stderr:?}"
    );
    // TerminateSession for each: nothing stays open on the service.
    poll(LIMIT, || (emulator.open_sessions().0 == 0).then_some(()));
    emulator.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_all_on_100_instances_never_opens_more_than_parallel_sessions() {
    let mut fleet = generate(FleetShape {
        accounts: 1,
        regions: 1,
        instances: 100,
    });
    for instance in &mut fleet.instances {
        instance.state = InstanceState::Running;
        instance.ping_status = PingStatus::Online;
    }
    let region = fleet.regions[0].clone();
    let emulator = emulator(|config| {
        config.region = region.clone();
        config.fleet = fleet;
    })
    .await;
    // No configuration: the single profile (the base credentials' account) lists them all.
    let home = Home::new(None);
    let out = postern(
        &home,
        &emulator,
        &[
            "exec",
            "--all",
            "",
            "--region",
            &region,
            "--parallel",
            "8",
            "--",
            "sleep 0.5; echo \"done $POSTERN_EMULATOR_INSTANCE_ID\"",
        ],
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let mut done: Vec<&str> = stdout
        .lines()
        .map(|l| l.rsplit_once("done ").expect("a done line").1)
        .collect();
    done.sort_unstable();
    let mut ids = emulator.instances();
    ids.sort_unstable();
    assert_eq!(done, ids, "each instance once");
    assert!(
        stderr.ends_with("exec on 100 instances: 100 succeeded, 0 failed, 0 could not start\n"),
        "{stderr}"
    );
    let (open, peak) = emulator.open_sessions();
    assert_eq!(open, 0);
    assert_eq!(
        peak, 8,
        "at most --parallel sessions, and that many at once"
    );
    emulator.shutdown().await.unwrap();
}
