//! Replays the committed seed corpus of the fuzz targets over `postern-formats`
//! (`fuzz/corpus/{socks,config,snapshot,credentials}/`) through `postern_formats::fuzzing` on
//! stable, so the targets' properties are checked in every test run (STYLE.md §6 item 4), and
//! every crash a fuzzer found and was kept as a seed stays fixed.
//!
//! The generated seeds (`valid-*`, `malformed-*`) come from [`seeds`]; a test checks the files
//! still match it, and rewrites them first after a format change when asked:
//! `POSTERN_UPDATE_SEEDS=1 cargo test -p postern-formats --test fuzz_corpus`.

use std::collections::BTreeMap;
use std::net::Ipv6Addr;
use std::path::PathBuf;

use postern_formats::config;
use postern_formats::credentials::{CredentialEntry, LastSuccess};
use postern_formats::fuzzing;
use postern_formats::index::{Instance, Scope, Snapshot};
use postern_formats::socks;

/// A fuzz target over this crate: its corpus directory, its entry point, and whether an input
/// is accepted (a corpus must reach both the accepting and the rejecting paths).
struct Target {
    name: &'static str,
    run: fn(&[u8]),
    accepts: fn(&[u8]) -> bool,
}

const TARGETS: &[Target] = &[
    Target {
        name: "socks",
        run: fuzzing::socks_input,
        accepts: |data| {
            matches!(socks::parse_greeting(data), Ok(Some(_)))
                || matches!(socks::parse_user_pass(data), Ok(Some(_)))
                || matches!(socks::parse_request(data), Ok(Some(_)))
        },
    },
    Target {
        name: "config",
        run: fuzzing::config_text,
        accepts: |data| {
            std::str::from_utf8(data).is_ok_and(|text| {
                config::parse("c.toml".as_ref(), text).is_ok()
                    || config::parse_accounts("c.toml".as_ref(), text).is_ok()
            })
        },
    },
    Target {
        name: "snapshot",
        run: fuzzing::snapshot_bytes,
        accepts: |data| {
            Snapshot::parse(data.to_vec()).is_ok_and(|s| {
                (0..s.scopes().count()).all(|position| s.instances(position).is_ok())
            })
        },
    },
    Target {
        name: "credentials",
        run: fuzzing::credentials_bytes,
        accepts: |data| CredentialEntry::decode(data).is_ok() || LastSuccess::decode(data).is_ok(),
    },
];

#[test]
fn every_seed_of_each_target_keeps_its_properties() {
    for target in TARGETS {
        let seeds = corpus_files(target.name);
        assert!(
            seeds.len() >= 4,
            "{}: too few seeds under {} (regenerate them: see this file's header)",
            target.name,
            corpus_root().join(target.name).display()
        );
        let mut accepted = 0;
        for seed in &seeds {
            let data = read(seed);
            let outcome = std::panic::catch_unwind(|| (target.run)(&data));
            assert!(
                outcome.is_ok(),
                "{}: the fuzz entry point panicked",
                seed.display()
            );
            accepted += usize::from((target.accepts)(&data));
        }
        assert!(accepted > 0, "{}: no seed is accepted", target.name);
        assert!(
            accepted < seeds.len(),
            "{}: every seed is accepted: the corpus never reaches rejection",
            target.name
        );
    }
}

#[test]
fn every_entry_point_survives_every_other_targets_seeds() {
    for target in TARGETS {
        for other in TARGETS {
            for seed in corpus_files(other.name) {
                let data = read(&seed);
                let outcome = std::panic::catch_unwind(|| (target.run)(&data));
                assert!(outcome.is_ok(), "{} on {}", target.name, seed.display());
            }
        }
    }
}

#[test]
fn seeds_on_disk_match_their_generator() {
    for (target, name, bytes) in seeds() {
        let path = corpus_root().join(target).join(&name);
        if updating_seeds() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &bytes).unwrap();
        }
        let on_disk = std::fs::read(&path)
            .unwrap_or_else(|err| panic!("{}: {err} (regenerate the seed corpus)", path.display()));
        assert_eq!(
            on_disk,
            bytes,
            "{}: stale seed, regenerate the corpus",
            path.display()
        );
    }
}

/// Whether `POSTERN_UPDATE_SEEDS=1` asks the seed check to rewrite the generated seeds first
/// (after a format change), rather than only compare them.
fn updating_seeds() -> bool {
    std::env::var_os("POSTERN_UPDATE_SEEDS").is_some_and(|v| v == "1")
}

/// The generated seeds: a few valid inputs of each format and a few truncated or corrupt ones.
fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut add = |target, name: &str, bytes: Vec<u8>| out.push((target, name.to_owned(), bytes));

    add("socks", "valid-greeting-no-auth", vec![5, 1, 0]);
    add("socks", "valid-greeting-two-methods", vec![5, 2, 0, 2]);
    add(
        "socks",
        "valid-user-pass",
        [&[1, 5][..], b"alice", &[6], b"s3cret"].concat(),
    );
    add(
        "socks",
        "valid-connect-ipv4",
        vec![5, 1, 0, 1, 10, 0, 0, 5, 0x15, 0x38],
    );
    let ipv6 = [
        &[5, 1, 0, 4][..],
        &Ipv6Addr::LOCALHOST.octets(),
        &443u16.to_be_bytes(),
    ];
    add("socks", "valid-connect-ipv6", ipv6.concat());
    let domain = [
        &[5, 1, 0, 3, 11][..],
        b"db.internal",
        &5432u16.to_be_bytes(),
    ]
    .concat();
    add("socks", "valid-connect-domain", domain.clone());
    add("socks", "valid-bind", vec![5, 2, 0, 1, 0, 0, 0, 0, 0, 0]);
    add(
        "socks",
        "malformed-socks4",
        vec![4, 1, 0, 80, 10, 0, 0, 5, 0],
    );
    add(
        "socks",
        "malformed-http",
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
    );
    add("socks", "malformed-truncated-domain", domain[..9].to_vec());
    let escape = [&[5, 1, 0, 3, 5][..], b"a\x1b[2J", &[0, 80]].concat();
    add("socks", "malformed-escape-in-domain", escape);
    // ESC c (a terminal reset) has no bracket: only the printable-ASCII rule refuses it.
    let reset = [&[5, 1, 0, 3, 3][..], b"a\x1bc", &[0, 80]].concat();
    add("socks", "malformed-reset-in-domain", reset);
    add(
        "socks",
        "malformed-port-zero",
        vec![5, 1, 0, 1, 1, 2, 3, 4, 0, 0],
    );
    add(
        "socks",
        "malformed-reserved",
        vec![5, 1, 1, 1, 1, 2, 3, 4, 0, 80],
    );
    add(
        "socks",
        "malformed-address-type",
        vec![5, 1, 0, 7, 1, 2, 3, 4, 0, 80],
    );

    add("config", "valid-full", CONFIG.as_bytes().to_vec());
    add(
        "config",
        "valid-accounts-file",
        synced_accounts(2).into_bytes(),
    );
    add("config", "valid-tunnels-file", TUNNELS.as_bytes().to_vec());
    add("config", "valid-empty", Vec::new());
    let unknown = CONFIG.replace("alias = \"acme-dev\"", "alais = \"acme-dev\"");
    add("config", "malformed-unknown-key", unknown.into_bytes());
    let short_id = CONFIG.replace("318402957716", "31840295771");
    add("config", "malformed-account-id", short_id.into_bytes());
    let twice = CONFIG.replace("alias = \"acme-prod\"", "alias = \"acme-dev\"");
    add("config", "malformed-alias-twice", twice.into_bytes());
    let unknown_source = CONFIG.replace("source = \"prod-admin\"", "source = \"nope\"");
    add(
        "config",
        "malformed-unknown-source",
        unknown_source.into_bytes(),
    );
    add(
        "config",
        "malformed-duration",
        b"duration = \"13h\"\n".to_vec(),
    );
    add(
        "config",
        "malformed-syntax",
        CONFIG.as_bytes()[..CONFIG.len() / 2].to_vec(),
    );
    let truncated = synced_accounts(2).replace(&config::accounts_trailer(2), "");
    add(
        "config",
        "malformed-truncated-accounts-file",
        truncated.into_bytes(),
    );
    let tunnel_name = TUNNELS.replace("[tunnels.db]", "[tunnels.\"../db\"]");
    add("config", "malformed-tunnel-name", tunnel_name.into_bytes());

    let (dev, prod) = (
        scope("318402957716", None),
        scope("736250419937", Some("prod")),
    );
    let rows = [full(), Instance::default()];
    let two = Snapshot::default().with(&[(&dev, &rows[..]), (&prod, &rows[..1])], 1_800_000_000);
    add("snapshot", "valid-two-scopes", two.clone());
    add(
        "snapshot",
        "valid-empty-scope",
        Snapshot::default().with(&[(&dev, &[])], 7),
    );
    add(
        "snapshot",
        "valid-no-scope",
        Snapshot::default().with(&[], 0),
    );
    add(
        "snapshot",
        "malformed-truncated",
        two[..two.len() / 2].to_vec(),
    );
    add(
        "snapshot",
        "malformed-magic",
        two.iter().map(|b| b ^ 1).take(64).collect(),
    );
    let mut version = two.clone();
    version[MAGIC_LENGTH] = 3;
    add("snapshot", "malformed-version", version);
    add(
        "snapshot",
        "malformed-details-utf8",
        replace_first(&two, b"t3.micro", b"\xff3.micro"),
    );
    add(
        "snapshot",
        "malformed-name-utf8",
        replace_first(&two, b"web-1", b"\xffeb-1"),
    );
    // Scope "318402957716"'s instance count, 2, said to be 3: the table runs into the details.
    let count_at = MAGIC_LENGTH + 4 + 4 + 4 + 8 + (4 + 12) + (4 + 8) + 4 + (4 + 9);
    assert_eq!(
        two[count_at..count_at + 4],
        2u32.to_le_bytes(),
        "count offset"
    );
    let mut count = two;
    count[count_at] = 3;
    add("snapshot", "malformed-count", count);

    let entry = CredentialEntry {
        source: "arn:aws:iam::402918375561:user/alice".to_owned(),
        key: "arn:aws:iam::318402957716:role/PosternAccess".to_owned(),
        access_key_id: "ASIAEXAMPLE".to_owned(),
        secret_access_key: "EXAMPLE-SECRET".to_owned(),
        session_token: "EXAMPLE-TOKEN".to_owned(),
        expiration: 1_800_003_600,
    };
    let entry = entry.encode().unwrap();
    add("credentials", "valid-entry", entry.clone());
    let mut last = LastSuccess::default();
    last.record("318402957716", std::time::UNIX_EPOCH);
    add("credentials", "valid-last-success", last.encode().unwrap());
    add(
        "credentials",
        "malformed-truncated",
        entry[..entry.len() - 10].to_vec(),
    );
    let negative = String::from_utf8(entry)
        .unwrap()
        .replace("1800003600", "-1");
    add(
        "credentials",
        "malformed-negative-expiration",
        negative.into_bytes(),
    );
    add(
        "credentials",
        "malformed-missing-fields",
        b"{\"source\":\"s\",\"key\":\"k\"}".to_vec(),
    );
    add(
        "credentials",
        "malformed-not-json",
        b"\x00\xffpostern".to_vec(),
    );
    out
}

fn scope(account: &str, env: Option<&str>) -> Scope {
    Scope {
        account: account.to_owned(),
        alias: format!("acme-{}", env.unwrap_or("dev")),
        env: env.map(str::to_owned),
        region: "eu-west-1".to_owned(),
    }
}

fn full() -> Instance {
    Instance {
        id: "i-0123456789abcdef0".into(),
        name: "web-1 \u{1b}[2J é".into(),
        account: "318402957716".into(),
        alias: "acme-dev".into(),
        env: Some("dev".into()),
        region: "eu-west-1".into(),
        state: "running".into(),
        private_ip: Some("10.0.0.1".into()),
        public_ip: None,
        private_dns: Some(String::new()),
        vpc_id: Some("vpc-1".into()),
        subnet_id: Some("subnet-1".into()),
        instance_type: Some("t3.micro".into()),
        launch_time: Some("2025-01-06T09:30:00Z".into()),
        tags: BTreeMap::from([
            ("Name".into(), "web-1".into()),
            ("team".into(), String::new()),
        ]),
        ping_status: Some("Online".into()),
        agent_version: None,
        platform: "Amazon Linux 2023".into(),
    }
}

fn synced_accounts(count: usize) -> String {
    let mut text = format!("{}\n", config::SYNC_HEADER);
    for n in 0..count {
        text.push_str(&format!(
            "\n[[accounts]]\nid = \"31840295771{n}\"\nalias = \"team-{n}\"\nenv = \"dev\"\n"
        ));
    }
    text + &config::accounts_trailer(count)
}

fn replace_first(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let at = bytes
        .windows(from.len())
        .position(|w| w == from)
        .unwrap_or_else(|| panic!("{} is not in the seed", String::from_utf8_lossy(from)));
    [&bytes[..at], to, &bytes[at + from.len()..]].concat()
}

fn read(path: &PathBuf) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

fn corpus_root() -> PathBuf {
    // The running test's package (cargo sets it at run time; the compiled-in path may name
    // another checkout that shared this target directory).
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .join("../fuzz/corpus")
}

fn corpus_files(target: &str) -> Vec<PathBuf> {
    let dir = corpus_root().join(target);
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|err| panic!("fuzz corpus {}: {err}", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

/// `b"postern index\n"`, the snapshot's magic.
const MAGIC_LENGTH: usize = 14;

const CONFIG: &str = r#"role = "PosternAccess"
regions = ["eu-west-1", "us-east-1"]
duration = "2h"

[source]
profile = "acme"
mfa_serial = "arn:aws:iam::402918375561:mfa/alice"

[sources.prod-admin]
profile = "acme-prod"

[environments.prod]
require_reason = true
source = "prod-admin"

[[accounts]]
id = "318402957716"
alias = "acme-dev"
env = "dev"

[[accounts]]
id = "736250419937"
alias = "acme-prod"
env = "prod"
role = "PosternReadOnly"

[tunnels.db]
target = "db-1@acme-prod"
forward = ["5432:db.internal:5432"]
"#;

const TUNNELS: &str = r#"[tunnels.db]
target = "db-1@acme-dev"
forward = ["5432:db.internal:5432", "6379:cache.internal:6379"]
reason = "on call"

[tunnels.proxy]
target = "i-0123456789abcdef0"
socks = ["1080"]
sessions = "2"
"#;
