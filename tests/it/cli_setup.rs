//! `postern setup` and `postern exec` through `Postern-Command`, with the real binary against
//! the emulator: the document created once per account and region of the sample fleet and left
//! alone after, `--dry-run` changing nothing, updates when someone changed it, the preferences
//! report, `--print-policy`; exec with stdout and stderr apart and the ExitCode's status, the
//! agent's UTF-8 pass as documented, and the fallback without the document.

use std::process::Output;
use std::time::Duration;

use aws_sdk_ssm::types::{DocumentFormat, DocumentType};
use postern_emulator::EmulatorHandle;
use serde_json::Value;

use crate::support::emulator::{EmulatorProcess, base, fleet_emulator};
use crate::support::fixtures::SAMPLE_ACCOUNTS;
use crate::support::home::Home;
use crate::support::process::{run, run_with_input, text};

const LIMIT: Duration = Duration::from_secs(120);

const HEAD: &str = "role = \"PosternAccess\"\nregions = [\"eu-west-1\", \"us-east-1\"]\n";

fn setup(home: &Home, emulator: &EmulatorHandle, extra: &[&str]) -> Output {
    let mut args = vec!["setup"];
    args.extend_from_slice(extra);
    run(home.against(emulator, &args), LIMIT)
}

fn succeeded(output: &Output) -> String {
    assert!(
        output.status.success(),
        "postern failed ({:?}): {}",
        output.status.code(),
        text(&output.stderr)
    );
    text(&output.stdout)
}

/// The lines of `out` about Postern-Command, one per account and region.
fn document_lines(out: &str) -> Vec<&str> {
    out.lines()
        .filter(|l| l.contains(": Postern-Command: "))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_creates_once_per_account_and_region_and_is_idempotent() {
    let emulator = fleet_emulator(|_| {}).await;
    let home = Home::new(Some(&format!("{HEAD}{SAMPLE_ACCOUNTS}")));

    let dry = succeeded(&setup(&home, &emulator, &["--dry-run"]));
    let lines = document_lines(&dry);
    assert_eq!(lines.len(), 8, "4 accounts x 2 regions: {dry}");
    assert!(lines.iter().all(|l| l.ends_with("would create")), "{dry}");
    assert!(dry.contains("dry run: nothing was changed"), "{dry}");

    // The dry run wrote nothing: a second dry run says the same.
    let again = succeeded(&setup(&home, &emulator, &["--dry-run"]));
    assert_eq!(document_lines(&again), lines);

    let created = succeeded(&setup(&home, &emulator, &[]));
    let lines = document_lines(&created);
    assert_eq!(lines.len(), 8, "{created}");
    assert!(
        lines.iter().all(|l| l.ends_with("created (version 1)")),
        "{created}"
    );
    for alias in [
        "acme-dev",
        "acme-prod",
        "acme-staging",
        "acme-shared-services",
    ] {
        for region in ["eu-west-1", "us-east-1"] {
            assert!(
                created.contains(&format!("{alias} {region}: Postern-Command: created")),
                "{created}"
            );
        }
    }
    // No preferences saved anywhere yet: the defaults are reported.
    assert!(
        created.contains("preferences: none saved (SSM-SessionManagerRunShell absent)"),
        "{created}"
    );

    let second = succeeded(&setup(&home, &emulator, &[]));
    assert!(
        document_lines(&second)
            .iter()
            .all(|l| l.ends_with("up to date (version 1)")),
        "{second}"
    );

    // The document as stored is the agent's schema: NonInteractiveCommands, separate streams.
    // The base credentials act in the management account (acme-shared-services).
    let ssm = aws_sdk_ssm::Client::new(&base(&emulator, "eu-west-1"));
    let doc = ssm
        .get_document()
        .name("Postern-Command")
        .send()
        .await
        .unwrap();
    let content: Value = serde_json::from_str(doc.content().unwrap()).unwrap();
    assert_eq!(content["sessionType"], "NonInteractiveCommands");
    assert_eq!(content["properties"]["linux"]["separateOutputStream"], true);
    assert_eq!(content["properties"]["linux"]["commands"], "{{ command }}");

    // Someone changed it there: setup puts postern's content back as a new default version.
    ssm.update_document()
        .name("Postern-Command")
        .document_version("$LATEST")
        .content(r#"{"schemaVersion":"1.0","sessionType":"NonInteractiveCommands","parameters":{"command":{"type":"String"}},"properties":{"linux":{"commands":"{{ command }}"}}}"#)
        .send()
        .await
        .unwrap();
    ssm.update_document_default_version()
        .name("Postern-Command")
        .document_version("2")
        .send()
        .await
        .unwrap();
    // And saved Session Manager preferences with a KMS key and a longer idle timeout.
    ssm.create_document()
        .name("SSM-SessionManagerRunShell")
        .document_type(DocumentType::Session)
        .document_format(DocumentFormat::Json)
        .content(r#"{"schemaVersion":"1.0","sessionType":"Standard_Stream","inputs":{"kmsKeyId":"alias/sessions","idleSessionTimeout":"60","cloudWatchLogGroupName":"ssm-sessions"}}"#)
        .send()
        .await
        .unwrap();
    let dry = succeeded(&setup(
        &home,
        &emulator,
        &[
            "--dry-run",
            "--account",
            "acme-shared-services",
            "--region",
            "eu-west-1",
        ],
    ));
    assert_eq!(
        document_lines(&dry),
        vec![
            "acme-shared-services eu-west-1: Postern-Command: would update (default version 2, latest 2)"
        ],
        "{dry}"
    );
    let fixed = succeeded(&setup(&home, &emulator, &[]));
    assert!(
        fixed.contains(
            "acme-shared-services eu-west-1: Postern-Command: updated to version 3 (was 2), now \
             the default"
        ),
        "{fixed}"
    );
    assert_eq!(
        document_lines(&fixed)
            .iter()
            .filter(|l| l.ends_with("up to date (version 1)"))
            .count(),
        7,
        "{fixed}"
    );
    assert!(
        fixed.contains(
            "acme-shared-services eu-west-1: preferences: KMS key alias/sessions (sessions \
             encrypted: the role needs kms:GenerateDataKey on it), idle timeout 60 min"
        ),
        "{fixed}"
    );
    assert!(
        fixed.contains("session logging to CloudWatch log group ssm-sessions"),
        "{fixed}"
    );
    let described = ssm
        .describe_document()
        .name("Postern-Command")
        .send()
        .await
        .unwrap();
    let described = described.document().unwrap();
    assert_eq!(described.default_version(), Some("3"));
    assert_eq!(described.latest_version(), Some("3"));
    assert_eq!(
        emulator.violations().total(),
        0,
        "{}",
        emulator.violations()
    );
}

#[test]
fn print_policy_needs_no_aws_and_keeps_setup_apart() {
    let home = Home::new(None);
    let mut command = home.command();
    command.args(["setup", "--print-policy"]);
    let policy: Value = serde_json::from_str(&succeeded(&run(command, LIMIT))).unwrap();
    assert_eq!(policy["Version"], "2012-10-17");
    let statements = policy["Statement"].as_array().unwrap();
    let sids: Vec<&str> = statements
        .iter()
        .map(|s| s["Sid"].as_str().unwrap())
        .collect();
    assert_eq!(
        sids,
        [
            "PosternStartSessions",
            "PosternOwnSessions",
            "PosternDiscovery",
            "PosternPreferences",
            "PosternSessionEncryptionWhereKmsIsOn",
            "PosternPushSshKeys"
        ]
    );
    assert_eq!(
        statements[5]["Action"],
        "ec2-instance-connect:SendSSHPublicKey"
    );
    assert_eq!(statements[5]["Resource"], "arn:aws:ec2:*:*:instance/*");
    assert!(statements.iter().all(|s| s["Effect"] == "Allow"));
    let start = &statements[0];
    assert_eq!(start["Action"], "ssm:StartSession");
    let resources = start["Resource"].to_string();
    assert!(
        resources.contains("document/Postern-Command"),
        "{resources}"
    );
    assert!(
        resources.contains("arn:aws:ssm:*::document/AWS-StartInteractiveCommand"),
        "{resources}"
    );
    assert_eq!(
        statements[1]["Resource"][0],
        "arn:aws:ssm:*:*:session/${aws:userid}-*"
    );
    assert!(!policy.to_string().contains("CreateDocument"));

    let mut command = home.command();
    command.args(["setup", "--print-policy", "setup"]);
    let policy: Value = serde_json::from_str(&succeeded(&run(command, LIMIT))).unwrap();
    let actions = policy["Statement"][0]["Action"].to_string();
    for action in [
        "ssm:DescribeDocument",
        "ssm:CreateDocument",
        "ssm:UpdateDocument",
        "ssm:UpdateDocumentDefaultVersion",
    ] {
        assert!(actions.contains(action), "{actions}");
    }
    assert_eq!(
        policy["Statement"][0]["Resource"],
        "arn:aws:ssm:*:*:document/Postern-*"
    );
}

#[test]
fn exec_uses_postern_command_once_set_up_and_falls_back_without_it() {
    let emu = EmulatorProcess::start(&[]);
    let both = "echo out; echo err >&2; exit 7";

    // Without the document: AWS-StartInteractiveCommand, one PTY, stderr merged.
    let before = run(emu.command(&["exec", &emu.instance, "--", both]), LIMIT);
    assert_eq!(before.status.code(), Some(7), "{}", text(&before.stderr));
    assert_eq!(text(&before.stdout).replace('\r', ""), "out\nerr\n");

    let out = run(emu.command(&["setup"]), LIMIT);
    assert!(
        text(&out.stdout).contains("Postern-Command: created (version 1)"),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );

    // With it: stdout and stderr apart, the status from the ExitCode message.
    let after = run(emu.command(&["exec", &emu.instance, "--", both]), LIMIT);
    assert_eq!(after.status.code(), Some(7), "{}", text(&after.stderr));
    assert_eq!(text(&after.stdout), "out\n");
    assert_eq!(text(&after.stderr), "err\n");
    // A command killed by a signal: the agent reports -1 (Go's `ExitCode()` of a signalled
    // process, agent `shell.go` `processCommandsWithOutputStreamSeparate`), postern exits 255.
    for (command, status) in [("true", 0), ("exit 3", 3), ("kill -9 $$", 255)] {
        let out = run(emu.command(&["exec", &emu.instance, "--", command]), LIMIT);
        assert_eq!(
            out.status.code(),
            Some(status),
            "{command}: {}",
            text(&out.stderr)
        );
    }

    // The agent's UTF-8 pass (README "postern exec and binary output"): invalid bytes in the
    // middle pass, a real U+FFFD (EF BF BD) arrives as EF alone, and an invalid byte within
    // the last 3 bytes is lost with what follows it.
    let out = run(
        emu.command(&[
            "exec",
            &emu.instance,
            "--",
            r"printf 'x\357\277\275yyyy\377\376zzzz\377ok'",
        ]),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(out.stdout, b"x\xefyyyy\xff\xfezzzz");
    // Text output (here 200 KB, above the pacing's reach) is exact.
    let out = run(
        emu.command(&[
            "exec",
            &emu.instance,
            "--",
            "i=0; while [ $i -lt 4000 ]; do echo \"line $i ü€ 0123456789012345678901\"; i=$((i+1)); done",
        ]),
        LIMIT,
    );
    let expected: String = (0..4000)
        .map(|i| format!("line {i} ü€ 0123456789012345678901\n"))
        .collect();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(out.stdout == expected.as_bytes(), "text output differs");

    // Input to deliver: the PTY path still (NonInteractiveCommands has no input).
    let piped = run_with_input(
        emu.command(&["exec", &emu.instance, "--", "cat"]),
        b"piped\n",
        LIMIT,
    );
    assert_eq!(piped.status.code(), Some(0), "{}", text(&piped.stderr));
    assert_eq!(text(&piped.stdout), "piped\n");
    assert_eq!(emu.stop(), Vec::<String>::new(), "violations");
}

#[test]
fn exec_on_many_instances_uses_postern_command_too_and_the_history_names_it() {
    let emu = EmulatorProcess::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let history = dir.path().join("history.jsonl");
    let postern = |args: &[&str]| {
        let mut command = emu.command(args);
        command
            .env("POSTERN_HISTORY_FILE", &history)
            .env("POSTERN_CACHE_DIR", dir.path().join("cache"));
        run(command, LIMIT)
    };
    let out = postern(&["setup"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let both = "echo out; echo err >&2; exit 4";
    let out = postern(&["exec", "--all", &emu.instance, "--json", "--", both]);
    // One instance, its command failed: 242.
    assert_eq!(out.status.code(), Some(242), "{}", text(&out.stderr));
    let record: Value = serde_json::from_str(text(&out.stdout).trim()).unwrap();
    assert_eq!(record["stdout"], "out\n", "{record}");
    assert_eq!(record["stderr"], "err\n", "{record}");
    assert_eq!(record["exit_status"], 4, "{record}");
    let out = postern(&["exec", &emu.instance, "--", "true"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // Both sessions ran through the document, and the history says so.
    let records = crate::support::process::history_records(&history, &[], LIMIT);
    assert_eq!(records.len(), 2, "{records:?}");
    for record in &records {
        assert_eq!(record["document"], "Postern-Command", "{record}");
    }
}
