//! The instance picker and the production confirmation in a real terminal: tmux runs the real
//! binary against an emulator serving the multi-account sample fleet, with a configuration
//! listing its accounts (every session runs with the account's role). Also several rows chosen
//! with Tab for one `postern exec`, the terminal's settings the same after as before.

use std::time::Duration;

use crate::support::emulator::EmulatorProcess;
use crate::support::fixtures::{SAMPLE_ACCOUNTS, sample_fleet};
use crate::support::poll::try_poll;
use crate::support::process::postern;
use crate::support::tmux::Tmux;

const LIMIT: Duration = Duration::from_secs(30);

/// The configuration's head; the sample fleet's accounts follow.
const HEAD: &str = "role = \"PosternAccess\"\nregions = [\"eu-west-1\", \"us-east-1\"]\n";

/// Runs `postern ARGS` in a fresh tmux pane; the script records postern's exit status.
struct Pane {
    tmux: Tmux,
    status: std::path::PathBuf,
    emulator: EmulatorProcess,
    dir: tempfile::TempDir,
}

impl Pane {
    fn start(args: &str) -> Self {
        let emulator = EmulatorProcess::start(&["--fleet", &sample_fleet()]);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.toml"),
            format!("{HEAD}{SAMPLE_ACCOUNTS}"),
        )
        .unwrap();
        let status = dir.path().join("status");
        let script = dir.path().join("run.sh");
        std::fs::write(
            &script,
            format!(
                "export {keys} \
                 AWS_REGION=eu-west-1 AWS_EC2_METADATA_DISABLED=true HOME={home} \
                 POSTERN_CONFIG={home}/config.toml POSTERN_CACHE_DIR={home}/cache \
                 AWS_CONFIG_FILE={home}/none AWS_SHARED_CREDENTIALS_FILE={home}/none PS1='$ '\n\
                 unset XDG_STATE_HOME XDG_CONFIG_HOME XDG_CACHE_HOME\n\
                 stty -a > {home}/stty-before\n\
                 AWS_ENDPOINT_URL={endpoint} {postern} {args}\n\
                 code=$?; stty -a > {home}/stty-after\n\
                 echo \"postern-exit=$code\" > {status}.tmp; mv {status}.tmp {status}\n\
                 echo postern-done\n\
                 exec sleep 60\n",
                home = dir.path().display(),
                status = status.display(),
                postern = postern(),
                endpoint = emulator.endpoint,
                keys = emulator.credentials_exports(),
            ),
        )
        .unwrap();
        let tmux = Tmux::new(dir.path());
        let command = format!("sh {}", script.display());
        tmux.start(160, 40, &command);
        Self {
            tmux,
            status,
            emulator,
            dir,
        }
    }

    /// `stty -a` in the pane before postern ran and after it ended.
    fn stty(&self) -> (String, String) {
        let read = |name: &str| {
            std::fs::read_to_string(self.dir.path().join(name))
                .unwrap_or_else(|e| panic!("{name}: {e}"))
        };
        (read("stty-before"), read("stty-after"))
    }

    /// The session history's records (one JSON object a line).
    fn history(&self) -> Vec<serde_json::Value> {
        let path = self.dir.path().join(".local/state/postern/history.jsonl");
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON record"))
            .collect()
    }

    fn exit_status(&self) -> String {
        try_poll(LIMIT, || std::fs::read_to_string(&self.status).ok())
            .unwrap_or_else(|| panic!("postern never ended:\n{}", self.tmux.pane()))
            .trim()
            .to_owned()
    }
}

#[test]
fn select_one_takes_the_only_match_without_a_picker() {
    let pane = Pane::start("--query kafka-dev --select-1 exec -- echo picked-$((6*7))");
    pane.tmux.wait_for("picked-42", 1);
    assert_eq!(pane.exit_status(), "postern-exit=0");
}

#[test]
fn bare_postern_picks_an_instance_and_opens_a_shell() {
    let pane = Pane::start("");
    // The picker lists every account's instances; typing narrows, Enter opens a shell.
    pane.tmux.wait_for("web-frontend-prod-1", 1);
    pane.tmux.wait_for("kafka-stg-1", 1);
    pane.tmux.keys(&["-l", "orders-api-stg"]);
    // Narrowed and redrawn: every instance row shown is the staging orders-api (a busy
    // machine may show the new count before the list is redrawn).
    try_poll(LIMIT, || {
        let screen = pane.tmux.pane();
        // The list is left of the preview (`│`).
        let rows: Vec<&str> = screen
            .lines()
            .map(|l| l.split('│').next().unwrap_or(l))
            .filter(|l| l.contains(" i-"))
            .collect();
        (!rows.is_empty() && rows.iter().all(|l| l.contains("orders-api-stg"))).then_some(())
    })
    .unwrap_or_else(|| panic!("the query never narrowed:\n{}", pane.tmux.pane()));
    pane.tmux.keys(&["Enter"]);
    // Keys typed while the picker closes are read by it (crossterm's reader): type once the
    // shell's prompt is there.
    try_poll(LIMIT, || {
        let screen = pane.tmux.pane();
        screen
            .lines()
            .any(|l| matches!(l.trim_end(), "$" | "#"))
            .then_some(())
    })
    .unwrap_or_else(|| panic!("no shell prompt:\n{}", pane.tmux.pane()));
    pane.tmux.keys(&["-l", "echo in-$((40+2))-shell"]);
    pane.tmux.keys(&["Enter"]);
    pane.tmux.wait_for("in-42-shell", 1);
    pane.tmux.keys(&["-l", "exit"]);
    pane.tmux.keys(&["Enter"]);
    assert_eq!(pane.exit_status(), "postern-exit=0");
}

#[test]
fn exec_runs_on_every_row_chosen_with_tab_and_restores_the_terminal() {
    let pane = Pane::start("exec -- echo multi-$((6*7))");
    pane.tmux.wait_for("web-frontend-stg-2", 1);
    pane.tmux.keys(&["-l", "web-frontend-stg"]);
    // Narrowed to exactly the two staging web servers.
    let rows = |screen: &str| -> Vec<String> {
        screen
            .lines()
            .map(|l| l.split('│').next().unwrap_or(l))
            .filter(|l| l.contains(" i-"))
            .map(str::to_owned)
            .collect()
    };
    try_poll(LIMIT, || {
        let shown = rows(&pane.tmux.pane());
        (shown.len() == 2 && shown.iter().all(|l| l.contains("web-frontend-stg-"))).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "the query never narrowed to two rows:\n{}",
            pane.tmux.pane()
        )
    });
    // Tab marks a row and moves to the next: both marked, then Enter.
    pane.tmux.keys(&["Tab"]);
    pane.tmux.keys(&["Tab"]);
    pane.tmux.keys(&["Enter"]);
    assert_eq!(pane.exit_status(), "postern-exit=0");
    let screen = pane.tmux.wait_for("postern-done", 1);
    for name in ["web-frontend-stg-1", "web-frontend-stg-2"] {
        // `NAME │ line`, the name padded to the longest.
        let prefixed = screen
            .lines()
            .any(|l| l.starts_with(name) && l.trim_end().ends_with("│ multi-42"));
        assert!(prefixed, "no output line of {name}:\n{screen}");
    }
    // One history record per instance, in its account.
    let records = pane.history();
    let mut targets: Vec<(String, String)> = records
        .iter()
        .map(|r| {
            (
                r["target"].as_str().unwrap_or_default().to_owned(),
                r["account"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    targets.sort();
    let staging = "529173064828".to_owned();
    let mut expected = vec![
        ("i-0763487c81d678f53".to_owned(), staging.clone()),
        ("i-0b6d6f3fccd03ee6a".to_owned(), staging),
    ];
    expected.sort();
    assert_eq!(targets, expected, "{records:?}");
    let (before, after) = pane.stty();
    assert_eq!(before, after, "the terminal's settings changed");
    assert_eq!(pane.emulator.violations(), Vec::<String>::new());
}

#[test]
fn production_asks_for_the_alias_on_the_terminal() {
    let pane = Pane::start("exec web-frontend-prod-1 -- echo confirmed-ok");
    pane.tmux
        .wait_for("is a prod account. Type its alias to continue:", 1);
    pane.tmux.keys(&["-l", "acme-prod"]);
    pane.tmux.keys(&["Enter"]);
    pane.tmux.wait_for("confirmed-ok", 1);
    assert_eq!(pane.exit_status(), "postern-exit=0");

    let declined = Pane::start("exec web-frontend-prod-1 -- echo never");
    declined
        .tmux
        .wait_for("is a prod account. Type its alias to continue:", 1);
    declined.tmux.keys(&["-l", "acme-dev"]);
    declined.tmux.keys(&["Enter"]);
    assert_eq!(declined.exit_status(), "postern-exit=241");
    let screen = declined.tmux.wait_for("postern-done", 1);
    assert!(
        screen.contains("not confirmed for prod account acme-prod"),
        "{screen}"
    );
    assert!(!screen.contains("\nnever"), "{screen}");
}
