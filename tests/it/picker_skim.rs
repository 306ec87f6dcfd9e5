//! The skim picker in a real terminal: tmux runs the real binary against an emulator serving
//! the multi-account sample fleet (plus, where a test needs it, an instance named with escape
//! sequences), with a configuration listing its accounts. Every test also checks that the
//! terminal is restored: `stty -a` after postern is what it was before.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::support::emulator::EmulatorProcess;
use crate::support::fixtures::{SAMPLE_ACCOUNTS, sample_fleet};
use crate::support::poll::{poll, try_poll};
use crate::support::process::postern;
use crate::support::tmux::Tmux;

const LIMIT: Duration = Duration::from_secs(30);

/// The configuration's head; the sample fleet's accounts follow.
const HEAD: &str = "role = \"PosternAccess\"\nregions = [\"eu-west-1\", \"us-east-1\"]\n";

/// The picker's header line (its keys), shown while the picker is open.
const PICKER_OPEN: &str = "esc cancel";

/// A managed node of acme-dev whose name carries a terminal title change, a BEL and a colour.
/// (A managed node: its name comes from SSM's JSON; EC2's XML cannot carry an ESC, the SDK
/// refuses such a listing.)
const EVIL_INSTANCE: &str = r#"
[[instances]]
id = "mi-0e0e0e0e0e0e0e0e0"
name = "evil\u001b]0;pwned\u0007\u001b[31m-1"
account = "318402957716"
region = "eu-west-1"
private_ip = "10.10.9.9"
platform = "Linux"
tags = { team = "red", env = "dev" }
"#;
/// How the evil name must look on screen and in files.
const EVIL_SHOWN: &str = r"evil\x1b]0;pwned\x07\x1b[31m-1";

/// `postern ARGS` in a fresh tmux pane (160x40) against the emulator; the script records
/// `stty -a` before and after postern, and postern's exit status.
struct Pane {
    tmux: Tmux,
    dir: tempfile::TempDir,
    env: String,
    _emulator: Option<EmulatorProcess>,
}

impl Pane {
    /// Against the sample fleet.
    fn start(args: &str) -> Self {
        Self::with_fleet(args, None)
    }

    /// Against the sample fleet, plus `extra` instances (TOML) when given.
    fn with_fleet(args: &str, extra: Option<&str>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let fleet = match extra {
            Some(extra) => {
                let path = dir.path().join("fleet.toml");
                let sample = std::fs::read_to_string(sample_fleet()).unwrap();
                std::fs::write(&path, format!("{sample}\n{extra}")).unwrap();
                path.display().to_string()
            }
            None => sample_fleet(),
        };
        let emulator = EmulatorProcess::start(&["--fleet", &fleet]);
        Self::run(dir, args, Some(emulator))
    }

    /// `postern demo` (its own emulator).
    fn demo() -> Self {
        Self::run(tempfile::tempdir().unwrap(), "demo", None)
    }

    fn run(dir: tempfile::TempDir, args: &str, emulator: Option<EmulatorProcess>) -> Self {
        let home = dir.path().display().to_string();
        std::fs::write(
            dir.path().join("config.toml"),
            format!("{HEAD}{SAMPLE_ACCOUNTS}"),
        )
        .unwrap();
        // The demo runs its own emulator with its own keys; these are the shared one's.
        let keys = emulator.as_ref().map_or_else(String::new, |emulator| {
            format!(
                "{} AWS_ENDPOINT_URL={}",
                emulator.credentials_exports(),
                emulator.endpoint
            )
        });
        let env = format!(
            "export {keys} \
             AWS_REGION=eu-west-1 AWS_EC2_METADATA_DISABLED=true HOME={home} \
             POSTERN_CONFIG={home}/config.toml POSTERN_CACHE_DIR={home}/cache \
             POSTERN_STATE_DIR={home}/state POSTERN_HISTORY_FILE={home}/history.jsonl \
             AWS_CONFIG_FILE={home}/none AWS_SHARED_CREDENTIALS_FILE={home}/none PS1='$ '\n"
        );
        let script = dir.path().join("run.sh");
        std::fs::write(
            &script,
            format!(
                "{env}stty -a > {home}/stty-before\n\
                 {postern} {args}\n\
                 echo \"postern-exit=$?\" > {home}/status.tmp\n\
                 stty -a > {home}/stty-after\n\
                 mv {home}/status.tmp {home}/status\n\
                 echo postern-done\n\
                 exec sleep 60\n",
                postern = postern(),
            ),
        )
        .unwrap();
        let tmux = Tmux::new(dir.path());
        tmux.start(160, 40, &format!("sh {}", script.display()));
        Self {
            tmux,
            dir,
            env,
            _emulator: emulator,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Waits for postern's exit status; asserts the terminal settings are what they were.
    fn exit_status(&self) -> String {
        let status = try_poll(LIMIT, || std::fs::read_to_string(self.path("status")).ok())
            .unwrap_or_else(|| panic!("postern never ended:\n{}", self.tmux.pane()));
        let before = std::fs::read_to_string(self.path("stty-before")).unwrap();
        let after = std::fs::read_to_string(self.path("stty-after")).unwrap();
        assert_eq!(before, after, "the terminal was not restored");
        status.trim().to_owned()
    }

    /// Waits for the picker, with `rows` rows matching the query (its `N/M` count).
    fn picker_with(&self, rows: usize) -> String {
        let count = format!(" {rows}/");
        try_poll(LIMIT, || {
            let pane = self.tmux.pane();
            let settled = pane.contains(PICKER_OPEN)
                && pane.lines().nth(1).is_some_and(|l| l.contains(&count));
            settled.then_some(pane)
        })
        .unwrap_or_else(|| panic!("the picker never showed {rows} rows:\n{}", self.tmux.pane()))
    }

    /// Waits for the picker to close and the shell's prompt (`$` or `#`) to appear.
    fn shell(&self) {
        poll(LIMIT, || {
            let pane = self.tmux.pane();
            let prompt = pane.lines().any(|l| matches!(l.trim_end(), "$" | "#"));
            (!pane.contains(PICKER_OPEN) && prompt).then_some(())
        });
    }

    /// The session history's targets, in order.
    fn history_targets(&self) -> Vec<String> {
        std::fs::read_to_string(self.path("history.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|line| {
                let record: serde_json::Value = serde_json::from_str(line).unwrap();
                record["target"].as_str().unwrap().to_owned()
            })
            .collect()
    }
}

/// The instance ids of the picker's rows, top to bottom (the list only: left of the preview,
/// above a preview below it).
fn listed_ids(pane: &str) -> Vec<String> {
    pane.lines()
        .skip_while(|l| !l.contains(PICKER_OPEN))
        .skip(1)
        .take_while(|l| !l.starts_with('─'))
        .filter_map(|l| {
            let list = l.split('│').next().unwrap_or(l);
            list.split_whitespace()
                .find(|w| w.starts_with("i-") || w.starts_with("mi-"))
                .map(str::to_owned)
        })
        .collect()
}

#[test]
fn a_query_then_down_twice_opens_the_third_row() {
    let pane = Pane::start("exec -- echo picked-$((6*7))");
    pane.picker_with(37);
    // The dev account's names, the offline Windows builder left out: seven rows.
    pane.tmux.keys(&["-l", "'-dev- !windows"]);
    // The count line can change before the list is redrawn: wait for both.
    let screen = try_poll(LIMIT, || {
        let screen = pane.picker_with(7);
        (listed_ids(&screen).len() == 7).then_some(screen)
    })
    .unwrap_or_else(|| panic!("the list never showed 7 rows:\n{}", pane.tmux.pane()));
    let rows = listed_ids(&screen);
    assert_eq!(rows.len(), 7, "{screen}");
    pane.tmux.keys(&["Down"]);
    pane.tmux.keys(&["Down"]);
    pane.tmux.keys(&["Enter"]);
    pane.tmux.wait_for("picked-42", 1);
    assert_eq!(pane.exit_status(), "postern-exit=0");
    assert_eq!(pane.history_targets(), [rows[2].clone()]);
}

#[test]
fn esc_and_ctrl_c_cancel_with_the_usage_exit_code() {
    for key in ["Escape", "C-c"] {
        let pane = Pane::start("");
        pane.picker_with(37);
        pane.tmux.keys(&[key]);
        assert_eq!(pane.exit_status(), "postern-exit=2", "{key}");
        let screen = pane.tmux.wait_for("postern-done", 1);
        assert!(screen.contains("no instance chosen"), "{key}:\n{screen}");
        assert!(pane.history_targets().is_empty());
    }
}

#[test]
fn an_offline_row_is_refused_and_the_picker_stays_open() {
    let pane = Pane::start("");
    pane.picker_with(37);
    pane.tmux.keys(&["-l", "build-windows"]);
    pane.picker_with(1);
    pane.tmux.keys(&["Enter"]);
    let screen = pane.tmux.wait_for("it cannot be opened", 1);
    assert!(
        screen.contains("build-windows-dev-1 is ConnectionLost: it cannot be opened"),
        "{screen}"
    );
    // Still the picker (the refusal takes its header line): the query, the count, the row.
    let mut lines = screen.lines();
    assert!(
        lines
            .next()
            .is_some_and(|l| l.starts_with("> build-windows"))
            && lines.next().is_some_and(|l| l.contains(" 1/37"))
            && screen.contains("> acme-dev  dev   eu-west-1  build-windows-dev-1"),
        "the picker stays open:\n{screen}"
    );
    pane.tmux.keys(&["Escape"]);
    assert_eq!(pane.exit_status(), "postern-exit=2");
    assert!(pane.history_targets().is_empty());
}

#[test]
fn sigterm_closes_the_picker_and_postern_dies_of_it() {
    let pane = Pane::start("");
    pane.picker_with(37);
    // The pane runs `sh run.sh`; postern is its child.
    let shell = pane
        .tmux
        .run(&["display-message", "-p", "-t", "t", "#{pane_pid}"]);
    let children = Command::new("pgrep")
        .args(["-P", shell.trim()])
        .output()
        .unwrap();
    let pid = String::from_utf8(children.stdout).unwrap();
    let pid = pid
        .split_whitespace()
        .next()
        .expect("postern's pid")
        .to_owned();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    assert_eq!(pane.exit_status(), "postern-exit=143");
    let screen = pane.tmux.wait_for("postern-done", 1);
    assert!(!screen.contains(PICKER_OPEN), "{screen}");
}

#[test]
fn the_preview_shows_the_highlighted_rows_tags() {
    let pane = Pane::start("");
    pane.picker_with(37);
    pane.tmux.keys(&["-l", "kafka-stg"]);
    pane.picker_with(1);
    // The preview follows the highlighted row (its title: Name and id).
    let screen = pane.tmux.wait_for("│kafka-stg-1  i-", 1);
    assert!(screen.contains("service = kafka"), "{screen}");
    for line in [
        "team = data",
        "env = stg",
        "role       PosternAccess",
        "agent      ",
    ] {
        assert!(screen.contains(line), "{line:?} missing:\n{screen}");
    }
    // Ctrl-O hides the preview, and shows it again.
    pane.tmux.keys(&["C-o"]);
    poll(LIMIT, || {
        (!pane.tmux.pane().contains("service = kafka")).then_some(())
    });
    pane.tmux.keys(&["C-o"]);
    pane.tmux.wait_for("│kafka-stg-1  i-", 1);
    pane.tmux.keys(&["Escape"]);
    assert_eq!(pane.exit_status(), "postern-exit=2");
}

#[test]
fn ctrl_r_refreshes_the_index_and_keeps_the_picker_open() {
    let pane = Pane::start("");
    pane.picker_with(37);
    // The first listing's index, written once (an atomic rename) when it was complete.
    let listed = try_poll(LIMIT, || index_written(&pane.path("cache")))
        .expect("the first listing wrote the index cache");
    pane.tmux.keys(&["C-r"]);
    // The header says so while listing (or the listing was quicker than a capture), then the
    // rows are all back, from a new listing: the index is written again.
    try_poll(Duration::from_secs(5), || {
        pane.tmux.pane().contains("refreshing").then_some(())
    });
    try_poll(LIMIT, || {
        index_written(&pane.path("cache")).filter(|written| *written > listed)
    })
    .expect("Ctrl-R listed again and rewrote the index cache");
    pane.picker_with(37);
    pane.tmux.keys(&["-l", "orders-api-dev"]);
    pane.picker_with(1);
    pane.tmux.keys(&["Escape"]);
    assert_eq!(pane.exit_status(), "postern-exit=2");
}

#[test]
fn a_name_with_escape_sequences_is_shown_escaped() {
    let pane = Pane::with_fleet("", Some(EVIL_INSTANCE));
    pane.picker_with(38);
    pane.tmux.keys(&["-l", "evil"]);
    pane.picker_with(1);
    // The row (its Name cell may be cut to fit) and the preview's title (whole) show it escaped.
    let screen = pane.tmux.wait_for(EVIL_SHOWN, 1);
    assert!(
        screen
            .lines()
            .any(|l| l.starts_with("> acme-dev") && l.contains(r"evil\x1b]0;pwned\x07")),
        "{screen}"
    );
    // Nothing reached the terminal: tmux would have taken the title, and the BEL.
    let title = pane
        .tmux
        .run(&["display-message", "-p", "-t", "t", "#{pane_title}"]);
    assert!(!title.contains("pwned"), "pane title {title:?}");
    pane.tmux.keys(&["Escape"]);
    assert_eq!(pane.exit_status(), "postern-exit=2");

    // `postern list` piped to a file: the name escaped, no ESC or BEL byte at all.
    let listing = pane.path("listing.txt");
    let endpoint = pane._emulator.as_ref().unwrap().endpoint.clone();
    list_to(&pane, &endpoint, &listing);
    let bytes = std::fs::read(&listing).unwrap();
    assert!(!bytes.contains(&0x1b) && !bytes.contains(&0x07));
    let text = String::from_utf8(bytes).unwrap();
    assert!(text.contains(EVIL_SHOWN), "{text}");
    assert_eq!(text.lines().count(), 39, "{text}");
}

/// Runs `postern list` with the pane's environment, stdout to `path`.
fn list_to(pane: &Pane, endpoint: &str, path: &Path) {
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{}AWS_ENDPOINT_URL={endpoint} {} list > {}",
            pane.env,
            postern(),
            path.display()
        ))
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn the_demo_reaches_a_shell_through_the_picker() {
    let pane = Pane::demo();
    pane.picker_with(37);
    pane.tmux.keys(&["-l", "orders-api-dev-1"]);
    pane.picker_with(1);
    pane.tmux.keys(&["Enter"]);
    pane.shell();
    pane.tmux.keys(&["-l", "echo in-$((40+2))-demo"]);
    pane.tmux.keys(&["Enter"]);
    pane.tmux.wait_for("in-42-demo", 1);
    pane.tmux.keys(&["-l", "exit"]);
    pane.tmux.keys(&["Enter"]);
    assert_eq!(pane.exit_status(), "postern-exit=0");
}

/// When the index snapshot (`index.snapshot`, wherever under `dir` it is) was last written;
/// `None` before there is one.
fn index_written(dir: &Path) -> Option<std::time::SystemTime> {
    let mut newest = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        let written = if meta.is_dir() {
            index_written(&entry.path())
        } else if entry.file_name() == "index.snapshot" {
            meta.modified().ok()
        } else {
            None
        };
        newest = newest.max(written);
    }
    newest
}
