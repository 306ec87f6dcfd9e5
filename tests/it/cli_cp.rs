//! `postern cp` with the real binary against the emulator (its "instance" is this machine, so
//! remote paths are local temporary paths): downloads through `Postern-Command` and uploads
//! through AWS-StartInteractiveCommand, striped over several sessions and SHA-256 checked;
//! contents the agent's UTF-8 pass would mangle, empty and 1-byte files, `-` both ways, `-p`,
//! and every refusal with its exit code; downloads without `Postern-Command` through the PTY;
//! a range altered on the way fetched again. Each test ends with zero emulator violations.

use std::io::Read as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, SystemTime};

use postern_emulator::{InstanceState, PingStatus};

use crate::support::data::{random_bytes, sha256};
use crate::support::emulator::{EmulatorProcess, fleet_emulator};
use crate::support::home::Home;
use crate::support::poll::poll;
use crate::support::process::{exit_within, run, run_with_input, signal, text};

const LIMIT: Duration = Duration::from_secs(120);

/// An emulator with `postern setup` done.
fn set_up() -> EmulatorProcess {
    let emu = EmulatorProcess::start(&[]);
    let out = run(emu.command(&["setup"]), LIMIT);
    assert!(out.status.success(), "setup: {}", text(&out.stderr));
    emu
}

fn cp(emu: &EmulatorProcess, args: &[&str]) -> Output {
    let mut all = vec!["cp"];
    all.extend_from_slice(args);
    run(emu.command(&all), LIMIT)
}

fn succeeded(out: &Output) {
    assert!(
        out.status.success(),
        "postern cp failed ({:?}): {}",
        out.status.code(),
        text(&out.stderr)
    );
    // Off a terminal, a successful copy prints nothing.
    assert_eq!(text(&out.stderr), "", "stderr");
}

/// `len` random bytes (from `seed`) written to `source.bin` in `dir`: the bytes and the path.
fn random_source(dir: &Path, len: usize, seed: u64) -> (Vec<u8>, PathBuf) {
    let data = random_bytes(len, seed);
    let source = dir.join("source.bin");
    std::fs::write(&source, &data).unwrap();
    (data, source)
}

fn remote(emu: &EmulatorProcess, path: &Path) -> String {
    format!("{}:{}", emu.instance, path.display())
}

/// The directory's entries but `keep`: no temporary file left behind.
fn leftovers(dir: &Path, keep: &[&str]) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !keep.contains(&n.as_str()))
        .collect()
}

#[test]
fn cp_round_trips_random_data_over_several_sessions() {
    let emu = set_up();
    let dir = tempfile::tempdir().unwrap();
    let (data, source) = random_source(dir.path(), 3 * 1024 * 1024 + 12_345, 20);
    std::fs::set_permissions(&source, std::fs::Permissions::from_mode(0o640)).unwrap();
    let mtime = SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000);
    std::fs::File::options()
        .write(true)
        .open(&source)
        .unwrap()
        .set_modified(mtime)
        .unwrap();

    // Upload: 4 sessions, 4 ranges.
    let uploaded = dir.path().join("uploaded.bin");
    let source_arg = source.display().to_string();
    succeeded(&cp(
        &emu,
        &[
            "--sessions",
            "4",
            "-p",
            &source_arg,
            &remote(&emu, &uploaded),
        ],
    ));
    assert_eq!(sha256(&std::fs::read(&uploaded).unwrap()), sha256(&data));
    let meta = std::fs::metadata(&uploaded).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o640);
    assert_eq!(meta.modified().unwrap(), mtime);

    // Download: 3 sessions, into a directory (the remote name is kept), -p.
    let into = dir.path().join("into");
    std::fs::create_dir(&into).unwrap();
    let into_arg = into.display().to_string();
    succeeded(&cp(
        &emu,
        &["--sessions", "3", "-p", &remote(&emu, &uploaded), &into_arg],
    ));
    let downloaded = into.join("uploaded.bin");
    assert_eq!(sha256(&std::fs::read(&downloaded).unwrap()), sha256(&data));
    let meta = std::fs::metadata(&downloaded).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o640);
    assert_eq!(meta.modified().unwrap(), mtime);
    assert_eq!(leftovers(&into, &["uploaded.bin"]), Vec::<String>::new());
    assert_eq!(
        leftovers(dir.path(), &["source.bin", "uploaded.bin", "into"]),
        Vec::<String>::new()
    );

    // Standard output closed early (`| head -c 1`): 141, quietly, as `exec` does.
    let mut command = emu.command(&["cp", &remote(&emu, &source), "-"]);
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 1];
    stdout.read_exact(&mut first).unwrap();
    assert_eq!(first[0], data[0]);
    drop(stdout);
    let status = exit_within(&mut child, LIMIT).expect("postern cp exits");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(141), "{stderr}");
    assert_eq!(stderr, "");

    // The default session count, and --force over the existing file.
    let downloaded_arg = downloaded.display().to_string();
    succeeded(&cp(
        &emu,
        &["--force", &remote(&emu, &source), &downloaded_arg],
    ));
    assert_eq!(sha256(&std::fs::read(&downloaded).unwrap()), sha256(&data));
    assert_eq!(emu.stop(), Vec::<String>::new(), "violations");
}

#[test]
fn cp_keeps_every_byte_of_small_and_awkward_files_both_ways() {
    let emu = set_up();
    let dir = tempfile::tempdir().unwrap();
    // Invalid UTF-8, a real U+FFFD (EF BF BD, which the agent's UTF-8 pass shortens), and
    // undecodable bytes at the very end (which it drops).
    let mut awkward = b"x\xef\xbf\xbdyyyy\xff\xfezzzz".to_vec();
    awkward.extend_from_slice(&random_bytes(100_000, 7));
    awkward.extend_from_slice(b"\xef\xbf\xbd\xff\xfe\xc3");
    for (name, content) in [
        ("empty", Vec::new()),
        ("one", b"\xff".to_vec()),
        ("awkward", awkward),
    ] {
        let local = dir.path().join(name);
        std::fs::write(&local, &content).unwrap();
        let up = dir.path().join(format!("{name}.up"));
        let down = dir.path().join(format!("{name}.down"));
        succeeded(&cp(
            &emu,
            &[&local.display().to_string(), &remote(&emu, &up)],
        ));
        assert_eq!(std::fs::read(&up).unwrap(), content, "{name} uploaded");
        succeeded(&cp(
            &emu,
            &[&remote(&emu, &up), &down.display().to_string()],
        ));
        assert_eq!(std::fs::read(&down).unwrap(), content, "{name} downloaded");
        // A download is never left world-readable beyond the source's mode and the umask.
        assert_eq!(
            std::fs::metadata(&down).unwrap().permissions().mode() & 0o077,
            std::fs::metadata(&up).unwrap().permissions().mode() & 0o077 & !0o022,
        );

        // `-` both ways: standard input up, standard output down.
        let piped = dir.path().join(format!("{name}.piped"));
        let out = run_with_input(
            emu.command(&["cp", "-", &remote(&emu, &piped)]),
            &content,
            LIMIT,
        );
        succeeded(&out);
        assert_eq!(std::fs::read(&piped).unwrap(), content, "{name} from stdin");
        let out = cp(&emu, &[&remote(&emu, &piped), "-"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(out.stdout == content, "{name} to stdout differs");
    }
    assert_eq!(emu.stop(), Vec::<String>::new(), "violations");
}

#[test]
fn cp_refuses_with_documented_exit_codes() {
    let emu = EmulatorProcess::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, b"content").unwrap();
    let file_arg = file.display().to_string();
    let fresh = dir.path().join("fresh").display().to_string();

    let out = run(emu.command(&["setup"]), LIMIT);
    assert!(out.status.success(), "setup: {}", text(&out.stderr));

    // A local file in the way: 237, before any session.
    let out = cp(&emu, &[&remote(&emu, &file), &file_arg]);
    assert_eq!(out.status.code(), Some(237), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("already exists"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        text(&out.stderr).contains("--force"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(std::fs::read(&file).unwrap(), b"content");

    // Remote refusals: 238.
    let missing = dir.path().join("missing");
    let out = cp(&emu, &[&remote(&emu, &missing), &fresh]);
    assert_eq!(out.status.code(), Some(238), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("does not exist"),
        "{}",
        text(&out.stderr)
    );
    let out = cp(&emu, &[&remote(&emu, dir.path()), &fresh]);
    assert_eq!(out.status.code(), Some(238), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("is a directory"),
        "{}",
        text(&out.stderr)
    );
    let out = cp(&emu, &[&remote(&emu, Path::new("/dev/null")), &fresh]);
    assert_eq!(out.status.code(), Some(238), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("not a regular file"),
        "{}",
        text(&out.stderr)
    );
    let out = cp(&emu, &[&file_arg, &remote(&emu, &file)]);
    assert_eq!(out.status.code(), Some(238), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("already exists"),
        "{}",
        text(&out.stderr)
    );
    let out = cp(&emu, &[&file_arg, &remote(&emu, &missing.join("below"))]);
    assert_eq!(out.status.code(), Some(238), "{}", text(&out.stderr));
    assert!(!Path::new(&fresh).exists());

    // A local directory to upload: 237. Usage: 2.
    let out = cp(
        &emu,
        &[&dir.path().display().to_string(), &remote(&emu, &missing)],
    );
    assert_eq!(out.status.code(), Some(237), "{}", text(&out.stderr));
    let out = cp(&emu, &[&file_arg, &fresh]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert_eq!(
        leftovers(dir.path(), &["file"]),
        Vec::<String>::new(),
        "nothing left behind"
    );
    assert_eq!(emu.stop(), Vec::<String>::new(), "violations");
}

#[test]
fn cp_carries_on_through_dropped_connections() {
    // Every session's websocket is closed once after 30 messages: the upload's PTY sessions
    // resume, the download's sessions resume or fetch their range again.
    let emu = EmulatorProcess::start(&["--close-after", "30"]);
    let out = run(emu.command(&["setup"]), LIMIT);
    assert!(out.status.success(), "setup: {}", text(&out.stderr));
    let dir = tempfile::tempdir().unwrap();
    let (data, source) = random_source(dir.path(), 2 * 1024 * 1024 + 3, 21);
    let uploaded = dir.path().join("uploaded.bin");
    let out = cp(
        &emu,
        &[
            "--sessions",
            "2",
            &source.display().to_string(),
            &remote(&emu, &uploaded),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("reconnected"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(sha256(&std::fs::read(&uploaded).unwrap()), sha256(&data));
    let downloaded = dir.path().join("downloaded.bin");
    let out = cp(
        &emu,
        &[
            "--sessions",
            "2",
            &remote(&emu, &uploaded),
            &downloaded.display().to_string(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(sha256(&std::fs::read(&downloaded).unwrap()), sha256(&data));
    assert_eq!(
        leftovers(
            dir.path(),
            &["source.bin", "uploaded.bin", "downloaded.bin"]
        ),
        Vec::<String>::new()
    );
    assert_eq!(emu.stop(), Vec::<String>::new(), "violations");
}

/// Every file below `root` with its bytes, by relative path, and every directory.
fn tree_of(root: &Path) -> Vec<(String, Option<Vec<u8>>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            if path.is_dir() {
                out.push((rel, None));
                stack.push(path);
            } else {
                out.push((rel, Some(std::fs::read(&path).unwrap())));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn cp_r_copies_directories_whole_both_ways() {
    let emu = set_up();
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(tree.join("sub/deeper")).unwrap();
    std::fs::create_dir(tree.join("empty")).unwrap();
    std::fs::write(tree.join("a.bin"), random_bytes(300_000, 3)).unwrap();
    std::fs::write(tree.join("sub/b.txt"), b"b\n").unwrap();
    std::fs::write(tree.join("sub/deeper/c"), b"\xef\xbf\xbd\xff").unwrap();
    let tree_arg = tree.display().to_string();

    // Up to a new name, then into an existing directory (under the source's name).
    let up = dir.path().join("up");
    succeeded(&cp(&emu, &["-r", &tree_arg, &remote(&emu, &up)]));
    assert_eq!(tree_of(&up), tree_of(&tree));
    succeeded(&cp(&emu, &["-r", &tree_arg, &remote(&emu, &up)]));
    assert_eq!(tree_of(&up.join("tree")), tree_of(&tree));

    // Down to a new name, then into an existing directory.
    let down = dir.path().join("down");
    let down_arg = down.display().to_string();
    succeeded(&cp(&emu, &["-r", &remote(&emu, &tree), &down_arg]));
    assert_eq!(tree_of(&down), tree_of(&tree));
    succeeded(&cp(&emu, &["-r", &remote(&emu, &tree), &down_arg]));
    assert_eq!(tree_of(&down.join("tree")), tree_of(&tree));

    // Never merged or replaced, either way: 237 locally, 238 remotely.
    let out = cp(&emu, &["-r", &remote(&emu, &tree), &down_arg]);
    assert_eq!(out.status.code(), Some(237), "{}", text(&out.stderr));
    let out = cp(&emu, &["-r", &tree_arg, &remote(&emu, &up)]);
    assert_eq!(out.status.code(), Some(238), "{}", text(&out.stderr));
    // Without -r a directory is refused with the hint.
    let out = cp(
        &emu,
        &[
            &remote(&emu, &tree),
            &dir.path().join("x").display().to_string(),
        ],
    );
    assert_eq!(out.status.code(), Some(238), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("add -r"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        leftovers(dir.path(), &["tree", "up", "down"]),
        Vec::<String>::new()
    );
    assert_eq!(
        leftovers(&down, &["tree", "a.bin", "sub", "empty"]),
        Vec::<String>::new()
    );
    assert_eq!(emu.stop(), Vec::<String>::new(), "violations");
}

#[test]
fn cp_resume_fetches_only_the_ranges_a_failed_download_lacked() {
    let dir = tempfile::tempdir().unwrap();
    // Two ranges: 1 MiB (far over 100 messages) and 5000 bytes (well under).
    let (data, source) = random_source(dir.path(), 1024 * 1024 + 5000, 22);
    let dest = dir.path().join("dest.bin");
    let dest_arg = dest.display().to_string();

    // Every websocket closes after 100 messages and postern may not reconnect: the large
    // range fails in each of its sessions, the small one arrives and is kept.
    let faulty = EmulatorProcess::start(&["--close-after", "100"]);
    let out = run(faulty.command(&["setup"]), LIMIT);
    assert!(out.status.success(), "setup: {}", text(&out.stderr));
    let out = cp(
        &faulty,
        &[
            "--sessions",
            "2",
            "--reconnect-attempts",
            "0",
            &remote(&faulty, &source),
            &dest_arg,
        ],
    );
    assert_eq!(out.status.code(), Some(254), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("--resume"),
        "{}",
        text(&out.stderr)
    );
    assert!(!dest.exists());
    let partial = dir.path().join(".dest.bin.postern-partial");
    assert_eq!(
        std::fs::metadata(&partial).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        &std::fs::read(&partial).unwrap()[1024 * 1024..],
        &data[1024 * 1024..]
    );
    assert_eq!(faulty.stop(), Vec::<String>::new(), "violations");

    // Resumed: the probe and the one missing range, two sessions in all.
    let emu = set_up();
    let out = cp(
        &emu,
        &[
            "-v",
            "--resume",
            "--sessions",
            "2",
            &remote(&emu, &source),
            &dest_arg,
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stderr)
            .lines()
            .filter(|l| l.contains("StartSession") && l.contains("Postern-Command"))
            .count(),
        2,
        "{}",
        text(&out.stderr)
    );
    assert_eq!(sha256(&std::fs::read(&dest).unwrap()), sha256(&data));
    assert_eq!(
        leftovers(dir.path(), &["source.bin", "dest.bin"]),
        Vec::<String>::new()
    );
    assert_eq!(emu.stop(), Vec::<String>::new(), "violations");
}

#[test]
fn cp_never_puts_a_tampered_download_in_place() {
    // The emulator flips a byte of each session's 5th Output message: either the base64 no
    // longer decodes (the range fails in every session: 254) or it decodes to other bytes
    // (the SHA-256 disagrees: 236). Either way nothing reaches the destination.
    let emu = EmulatorProcess::start(&["--tamper-output", "5"]);
    let out = run(emu.command(&["setup"]), LIMIT);
    assert!(out.status.success(), "setup: {}", text(&out.stderr));
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source.bin");
    std::fs::write(&source, random_bytes(200_000, 23)).unwrap();
    let dest = dir.path().join("dest.bin");
    let out = cp(&emu, &[&remote(&emu, &source), &dest.display().to_string()]);
    assert!(
        matches!(out.status.code(), Some(236 | 254)),
        "{:?}: {}",
        out.status.code(),
        text(&out.stderr)
    );
    assert!(!dest.exists());
    assert_eq!(leftovers(dir.path(), &["source.bin"]), Vec::<String>::new());
    assert_eq!(emu.stop(), Vec::<String>::new(), "violations");
}

/// The StartSession calls a `-v` run logged for `document`.
fn started(stderr: &str, document: &str) -> usize {
    stderr
        .lines()
        .filter(|l| l.contains("StartSession") && l.contains(document))
        .count()
}

#[test]
fn cp_downloads_through_the_pty_without_postern_command() {
    // No `postern setup`: Postern-Command is refused once, then the probe and every range run
    // in AWS-StartInteractiveCommand's PTY (paced like the agent's), framed and hashed.
    let emu = EmulatorProcess::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let (data, source) = random_source(dir.path(), 2 * 1024 * 1024 + 777, 24);
    let dest = dir.path().join("dest.bin");
    let out = cp(
        &emu,
        &[
            "-v",
            "--sessions",
            "3",
            &remote(&emu, &source),
            &dest.display().to_string(),
        ],
    );
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(sha256(&std::fs::read(&dest).unwrap()), sha256(&data));
    assert_eq!(started(&stderr, "Postern-Command"), 1, "{stderr}");
    // The probe and three ranges (1 MiB, 1 MiB, 777 bytes).
    assert_eq!(
        started(&stderr, "AWS-StartInteractiveCommand"),
        4,
        "{stderr}"
    );

    // Bytes a PTY or the agent's UTF-8 pass would mangle, an empty and a 1-byte file, to a
    // file and to standard output.
    let mut awkward = b"x\xef\xbf\xbd\r\n\x03\x04\x1b[0m\xff\xfe".to_vec();
    awkward.extend_from_slice(&random_bytes(50_000, 8));
    awkward.extend_from_slice(b"postern-cp-end \n\xef\xbf\xbd\xc3");
    for (name, content) in [
        ("empty", Vec::new()),
        ("one", b"\n".to_vec()),
        ("awkward", awkward),
    ] {
        let source = dir.path().join(name);
        std::fs::write(&source, &content).unwrap();
        let down = dir.path().join(format!("{name}.down"));
        succeeded(&cp(
            &emu,
            &[&remote(&emu, &source), &down.display().to_string()],
        ));
        assert_eq!(std::fs::read(&down).unwrap(), content, "{name} downloaded");
        let out = cp(&emu, &[&remote(&emu, &source), "-"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(out.stdout == content, "{name} to stdout differs");
    }

    // A directory too (-r packs it on the instance).
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(tree.join("sub")).unwrap();
    std::fs::write(tree.join("sub/f"), b"\xff\x00tree").unwrap();
    let tree_down = dir.path().join("tree.down");
    succeeded(&cp(
        &emu,
        &["-r", &remote(&emu, &tree), &tree_down.display().to_string()],
    ));
    assert_eq!(tree_of(&tree_down), tree_of(&tree));
    let mut kept: Vec<String> = ["source.bin", "dest.bin", "tree", "tree.down"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    for name in ["empty", "one", "awkward"] {
        kept.push(name.to_owned());
        kept.push(format!("{name}.down"));
    }
    let kept: Vec<&str> = kept.iter().map(String::as_str).collect();
    assert_eq!(leftovers(dir.path(), &kept), Vec::<String>::new());
    assert_eq!(emu.stop(), Vec::<String>::new(), "violations");
}

#[test]
fn cp_fetches_a_range_again_when_it_arrives_altered() {
    // The emulator flips a byte of the 5th Output message of the first session that sends
    // one (--tamper-sessions 1): that range's bytes no longer hash to what the instance
    // computed, so it is fetched again, intact, and the copy succeeds.
    let emu = EmulatorProcess::start(&["--tamper-output", "5", "--tamper-sessions", "1"]);
    let out = run(emu.command(&["setup"]), LIMIT);
    assert!(out.status.success(), "setup: {}", text(&out.stderr));
    let dir = tempfile::tempdir().unwrap();
    let (data, source) = random_source(dir.path(), 2 * 1024 * 1024 + 5, 25);
    let dest = dir.path().join("dest.bin");
    let out = cp(
        &emu,
        &[
            "-v",
            "--sessions",
            "2",
            &remote(&emu, &source),
            &dest.display().to_string(),
        ],
    );
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(sha256(&std::fs::read(&dest).unwrap()), sha256(&data));
    let again: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("fetching it again"))
        .collect();
    assert_eq!(again.len(), 1, "{stderr}");
    assert!(
        again[0].contains("the bytes that arrived hash to"),
        "{stderr}"
    );
    // The probe, two ranges and the one fetched again.
    assert_eq!(started(&stderr, "Postern-Command"), 4, "{stderr}");
    assert_eq!(
        leftovers(dir.path(), &["source.bin", "dest.bin"]),
        Vec::<String>::new()
    );
    assert_eq!(emu.stop(), Vec::<String>::new(), "violations");
}

#[test]
fn cp_names_a_full_disk_on_the_instance() {
    // The instance's `dd` fails to write as on a full file system (a `dd` earlier in the
    // emulator's PATH, so in every session's, prints GNU dd's ENOSPC message when given of=
    // and is the real dd otherwise): 238, naming the destination and the instance, and the
    // remote temporary file is removed.
    let bin = tempfile::tempdir().unwrap();
    let real_dd = std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("dd"))
                .find(|dd| dd.is_file())
        })
        .expect("dd on PATH");
    let fake = bin.path().join("dd");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\ncase \" $* \" in *\" of=\"*) \
             echo \"dd: error writing 'out': No space left on device\" >&2; exit 1;; esac\n\
             exec {} \"$@\"\n",
            real_dd.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let emu = EmulatorProcess::start_with_env(&[], &[("PATH", &path)]);
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source.bin");
    std::fs::write(&source, random_bytes(100_000, 26)).unwrap();
    let dest = dir.path().join("dest.bin");
    let out = cp(&emu, &[&source.display().to_string(), &remote(&emu, &dest)]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(238), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "no space left on the instance for {}",
            dest.display()
        )),
        "{stderr}"
    );
    assert!(stderr.contains(&emu.instance), "{stderr}");
    assert!(stderr.contains("df -h"), "{stderr}");
    assert_eq!(leftovers(dir.path(), &["source.bin"]), Vec::<String>::new());
    assert_eq!(emu.stop(), Vec::<String>::new(), "violations");
}

/// The one entry of `dir` whose name starts with `prefix`, once it exists.
fn temp_in(dir: &Path, prefix: &str) -> PathBuf {
    poll(LIMIT, || {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
            })
    })
}

#[test]
fn cp_interrupted_removes_its_temporary_files_on_both_sides() {
    let emu = set_up();
    let dir = tempfile::tempdir().unwrap();
    let (data, source) = random_source(dir.path(), 32 * 1024 * 1024, 27);

    // An upload, SIGTERM once bytes reach the remote temporary file: 143, and it is gone.
    let dest = dir.path().join("up.bin");
    let mut child = emu
        .command(&[
            "cp",
            "--sessions",
            "2",
            &source.display().to_string(),
            &remote(&emu, &dest),
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let temp = temp_in(dir.path(), ".up.bin.postern-");
    poll(LIMIT, || {
        std::fs::metadata(&temp)
            .map_or(true, |m| m.len() > 0)
            .then_some(())
    });
    signal(child.id(), nix::sys::signal::Signal::SIGTERM);
    let status = exit_within(&mut child, LIMIT).expect("postern cp exits");
    assert_eq!(status.code(), Some(143));
    assert_eq!(leftovers(dir.path(), &["source.bin"]), Vec::<String>::new());

    // A download, Ctrl-C once its first bytes are in the local temporary file: 130, and it
    // is gone (no partial file is kept either).
    let down = dir.path().join("down.bin");
    let mut child = emu
        .command(&[
            "cp",
            "--sessions",
            "1",
            &remote(&emu, &source),
            &down.display().to_string(),
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let temp = temp_in(dir.path(), ".down.bin.postern-");
    poll(LIMIT, || {
        let head = std::fs::read(&temp).ok()?;
        (head.len() >= 4096 && head[..4096] == data[..4096]).then_some(())
    });
    signal(child.id(), nix::sys::signal::Signal::SIGINT);
    let status = exit_within(&mut child, LIMIT).expect("postern cp exits");
    assert_eq!(status.code(), Some(130));
    assert_eq!(leftovers(dir.path(), &["source.bin"]), Vec::<String>::new());
    assert_eq!(emu.stop(), Vec::<String>::new(), "violations");
}

#[tokio::test(flavor = "multi_thread")]
async fn cp_refuses_windows_instances_before_any_session() {
    // The sample fleet's Windows build server, running and online for this test: the index
    // says Windows, so postern cp refuses it (245) without starting a session.
    let emulator = fleet_emulator(|config| {
        for instance in &mut config.fleet.instances {
            if instance.name == "build-windows-dev-1" {
                instance.state = InstanceState::Running;
                instance.ping_status = PingStatus::Online;
            }
        }
    })
    .await;
    let home = Home::new(Some(
        "role = \"PosternAccess\"\nregions = [\"eu-west-1\"]\n\n[[accounts]]\n\
         id = \"318402957716\"\nalias = \"acme-dev\"\nenv = \"dev\"\n",
    ));
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("got").display().to_string();
    for args in [
        vec!["cp", "build-windows-dev-1:C:/logs/build.txt", dest.as_str()],
        vec!["cp", "/etc/hostname", "build-windows-dev-1:C:/temp/"],
    ] {
        let out = run(home.against(&emulator, &args), LIMIT);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(245), "{stderr}");
        assert!(
            stderr.contains("does not copy to or from Windows instances"),
            "{stderr}"
        );
        assert!(stderr.contains("i-0a73eff20dd4368af"), "{stderr}");
    }
    assert_eq!(emulator.open_sessions(), (0, 0), "no session was started");
    assert!(!Path::new(&dest).exists());
}

#[test]
fn cp_resume_sends_only_the_ranges_an_interrupted_upload_lacked() {
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let state_dir = state.path().join("postern");
    // Two ranges: 1 MiB (far over 100 messages) and 5000 bytes (well under).
    let (data, source) = random_source(dir.path(), 1024 * 1024 + 5000, 28);
    let dest = dir.path().join("dest.bin");
    let upload = |emu: &EmulatorProcess, extra: &[&str]| {
        let mut args = vec!["cp", "--sessions", "2"];
        args.extend_from_slice(extra);
        let source = source.display().to_string();
        let dest = remote(emu, &dest);
        args.extend([source.as_str(), dest.as_str()]);
        let mut command = emu.command(&args);
        command.env("POSTERN_STATE_DIR", &state_dir);
        run(command, LIMIT)
    };

    // Every websocket closes after 100 messages and postern may not reconnect: the large
    // range fails in each of its sessions, the small one is written, read back and kept.
    let faulty = EmulatorProcess::start(&["--close-every", "100"]);
    let out = run(faulty.command(&["setup"]), LIMIT);
    assert!(out.status.success(), "setup: {}", text(&out.stderr));
    let out = upload(&faulty, &["--reconnect-attempts", "0"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(254), "{stderr}");
    assert!(stderr.contains("--resume"), "{stderr}");
    assert!(!dest.exists());
    let temp = temp_in(dir.path(), ".dest.bin.postern-");
    assert_eq!(
        &std::fs::read(&temp).unwrap()[1024 * 1024..],
        &data[1024 * 1024..]
    );
    let records: Vec<_> = std::fs::read_dir(state_dir.join("cp-uploads"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(records.len(), 1, "{records:?}");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&records[0]), 0o600);
    assert_eq!(mode(&state_dir.join("cp-uploads")), 0o700);
    assert_eq!(faulty.stop(), Vec::<String>::new(), "violations");

    // Resumed against a clean emulator: one PTY session, for the missing range only.
    let emu = set_up();
    let out = upload(&emu, &["-v", "--resume"]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        started(&stderr, "AWS-StartInteractiveCommand"),
        1,
        "{stderr}"
    );
    assert_eq!(sha256(&std::fs::read(&dest).unwrap()), sha256(&data));
    assert_eq!(
        leftovers(dir.path(), &["source.bin", "dest.bin"]),
        Vec::<String>::new()
    );
    assert_eq!(
        std::fs::read_dir(state_dir.join("cp-uploads"))
            .unwrap()
            .count(),
        0,
        "the record is gone"
    );

    // Failed again, then run without --resume: afresh, and the kept temporary file goes.
    std::fs::remove_file(&dest).unwrap();
    let faulty = EmulatorProcess::start(&["--close-every", "100"]);
    let out = run(faulty.command(&["setup"]), LIMIT);
    assert!(out.status.success(), "setup: {}", text(&out.stderr));
    let out = upload(&faulty, &["--reconnect-attempts", "0"]);
    assert_eq!(out.status.code(), Some(254), "{}", text(&out.stderr));
    assert_eq!(faulty.stop(), Vec::<String>::new(), "violations");
    let stale = temp_in(dir.path(), ".dest.bin.postern-");
    let out = upload(&emu, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        !stale.exists(),
        "the interrupted upload's temporary file is removed"
    );
    assert_eq!(sha256(&std::fs::read(&dest).unwrap()), sha256(&data));
    assert_eq!(
        leftovers(dir.path(), &["source.bin", "dest.bin"]),
        Vec::<String>::new()
    );

    // --resume of standard input is refused as usage.
    let out = run_with_input(
        emu.command(&["cp", "--resume", "-", &remote(&emu, &dest)]),
        b"x",
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert_eq!(emu.stop(), Vec::<String>::new(), "violations");
}
