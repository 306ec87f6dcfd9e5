//! Entry points for the fuzz targets in `fuzz/` (`socks`, `config`, `snapshot`,
//! `credentials`) and for the corpus replay test (`tests/fuzz_corpus.rs`), so both run exactly
//! the same code (STYLE.md §6 item 4).
//!
//! Each entry point takes arbitrary bytes: rejecting them is fine, a panic is a bug. Each also
//! checks a property of what it accepts with `assert!` (decode ∘ encode is the identity, a
//! parsed configuration satisfies every rule the validation states): a failed assertion is a
//! finding the fuzzer reports. Nothing here does IO.

use std::collections::HashSet;
use std::fmt::Debug;
use std::path::Path;
use std::time::Duration;

use crate::config::{
    self, Account, Config, ConfigError, SYNC_HEADER, Tunnel, accounts_trailer, parse,
    parse_accounts,
};
use crate::credentials::{CredentialEntry, LastSuccess};
use crate::index::{Instance, Snapshot};
use crate::socks::{
    self, CodecError, Host, encode_greeting, encode_request, encode_user_pass, parse_greeting,
    parse_request, parse_user_pass,
};

/// Runs `data` through the three SOCKS5 parsers (greeting, RFC 1929 sub-negotiation,
/// request). For each: a message it accepts encodes back to exactly the bytes it used, every
/// shorter prefix of those needs more, and more bytes after a decisive answer never change it
/// (the server parses as bytes arrive). A domain name accepted is printable ASCII.
///
/// # Panics
///
/// Only when the codec breaks one of these properties.
pub fn socks_input(data: &[u8]) {
    check_socks_parser(data, parse_greeting, encode_greeting);
    check_socks_parser(data, parse_user_pass, encode_user_pass);
    check_socks_parser(data, parse_request, |request: &socks::Request| {
        if let Host::Domain(name) = &request.destination.host {
            assert!(
                name.bytes().all(|b| b.is_ascii_graphic()),
                "domain {name:?} reaches messages unescaped"
            );
        }
        encode_request(request)
    });
}

/// Parses `data` (when UTF-8, as the files are read) as a configuration file, an accounts file
/// and a tunnels file. What parses satisfies every rule the parser states (twelve-digit,
/// unique account ids; unique aliases that are not ids; known sources; AssumeRole's duration
/// limits; tunnel names fit for file names, each tunnel with a target and something to
/// forward), and does so whatever the file's path; an accounts file without named sources
/// parses to the same accounts as a configuration; an error names a line of the file.
///
/// # Panics
///
/// Only when the parser accepts what its rules refuse, or disagrees with itself.
pub fn config_text(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (here, there) = (
        Path::new("/fuzz/config.toml"),
        Path::new("/elsewhere/c.toml"),
    );
    let parsed = parse(here, text);
    match &parsed {
        Ok(config) => {
            check_config(config);
            let moved = parse(there, text).expect("the same text parses from another path");
            assert_eq!(
                moved,
                at_path(config.clone(), there),
                "parse depends on the path"
            );
        }
        Err(err) => check_config_error(err, here, text),
    }
    match parse_accounts(here, text) {
        Ok(accounts) => {
            check_accounts(&accounts, |_| true);
            if text.starts_with(SYNC_HEADER) {
                assert!(text.ends_with(&accounts_trailer(accounts.len())));
            }
            if accounts.iter().all(|a| a.source.is_none()) {
                let config = parsed
                    .as_ref()
                    .expect("an accounts file is a configuration");
                assert_eq!(config.accounts, accounts, "the two parsers disagree");
            }
        }
        Err(err) => check_config_error(&err, here, text),
    }
    let mut with_tunnels = Config::default();
    match with_tunnels.add_tunnels(here, text) {
        Ok(()) => with_tunnels.tunnels.values().for_each(check_tunnel),
        Err(err) => check_config_error(&err, here, text),
    }
}

/// Parses `data` as an index snapshot and reads every block it holds as a picker and `postern
/// list` do: records, summaries, instances. A record's summary is its instance's; the
/// instances of a block encode into a new file that decodes to the same scope and instances;
/// a rewrite replacing nothing copies every block with the same content.
///
/// # Panics
///
/// Only when the decoder breaks one of these properties.
pub fn snapshot_bytes(data: &[u8]) {
    let Ok(snapshot) = Snapshot::parse(data.to_vec()) else {
        return;
    };
    let scopes: Vec<_> = snapshot.scopes().map(|(s, at)| (s.clone(), at)).collect();
    let copy = Snapshot::parse(snapshot.with(&[], 0)).expect("a copied file parses");
    let copied: Vec<_> = copy.scopes().map(|(s, at)| (s.clone(), at)).collect();
    assert_eq!(
        copied, scopes,
        "a rewrite replacing nothing changed the scopes"
    );
    for (position, (scope, fetched_at)) in scopes.iter().enumerate() {
        if let Ok(records) = snapshot.records(position) {
            for &record in &records {
                let instance = snapshot.instance(record);
                assert_eq!(snapshot.summary(record), instance.summary());
            }
        }
        let instances = snapshot.instances(position);
        assert_eq!(
            copy.instances(position),
            instances,
            "a copied block reads differently"
        );
        let Ok(instances) = instances else {
            continue;
        };
        let encoded = Snapshot::default().with(&[(scope, instances.as_slice())], *fetched_at);
        let decoded = Snapshot::parse(encoded).expect("an encoded snapshot parses");
        let decoded_scopes: Vec<_> = decoded.scopes().collect();
        assert_eq!(decoded_scopes, [(scope, *fetched_at)]);
        assert_eq!(
            decoded.instances(0).as_deref(),
            Ok(&instances[..]),
            "instances do not survive encode and decode"
        );
        round_trip_rows(&decoded, &instances);
    }
}

/// Parses `data` as a credentials cache entry and as the last-success file. What parses
/// encodes and parses back to itself, and an entry's `Debug` does not depend on its secrets.
///
/// # Panics
///
/// Only when the format breaks one of these properties.
pub fn credentials_bytes(data: &[u8]) {
    if let Ok(entry) = CredentialEntry::decode(data) {
        let encoded = entry.encode().expect("an entry encodes");
        assert_eq!(
            CredentialEntry::decode(&encoded).ok().as_ref(),
            Some(&entry)
        );
        let blank = CredentialEntry {
            secret_access_key: String::new(),
            session_token: String::new(),
            ..entry.clone()
        };
        assert_eq!(
            format!("{entry:?}"),
            format!("{blank:?}"),
            "Debug shows the secrets"
        );
    }
    if let Ok(last) = LastSuccess::decode(data) {
        let encoded = last.encode().expect("last-success encodes");
        assert_eq!(LastSuccess::decode(&encoded).ok().as_ref(), Some(&last));
    }
}

/// Checks one SOCKS parser on `data` (see [`socks_input`]).
fn check_socks_parser<T: Debug + PartialEq>(
    data: &[u8],
    parse: impl Fn(&[u8]) -> Result<Option<(T, usize)>, CodecError>,
    encode: impl Fn(&T) -> Option<Vec<u8>>,
) {
    let whole = parse(data);
    if let Ok(Some((message, used))) = &whole {
        assert!(*used <= data.len() && *used > 0, "used {used} bytes");
        let encoded = encode(message).expect("an accepted message encodes");
        assert_eq!(encoded, data[..*used], "{message:?} re-encodes differently");
        for cut in 0..*used {
            assert!(
                matches!(parse(&data[..cut]), Ok(None)),
                "a {cut}-byte prefix of {message:?} is decisive"
            );
        }
    }
    // Each shorter buffer that got a decisive answer (a message or an error) got this one.
    for cut in 0..data.len().min(MAX_SOCKS_MESSAGE) {
        match parse(&data[..cut]) {
            Ok(None) => {}
            decisive => assert_eq!(decisive, whole, "more bytes changed a decisive answer"),
        }
    }
}

/// Checks the rules [`config::parse`] states on a configuration it accepted.
fn check_config(config: &Config) {
    let limits = Duration::from_secs(15 * 60)..=Duration::from_secs(12 * 3600);
    assert!(limits.contains(&config.duration), "{:?}", config.duration);
    let known = |name: &str| config.sources.contains_key(name);
    check_accounts(&config.accounts, known);
    for (name, env) in &config.environments {
        if let Some(source) = &env.source {
            assert!(
                known(source),
                "environment {name} has unknown source {source}"
            );
        }
    }
    for (name, tunnel) in &config.tunnels {
        assert!(
            !name.is_empty()
                && name.len() <= 64
                && !name.starts_with('.')
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')),
            "tunnel name {name:?}"
        );
        check_tunnel(tunnel);
    }
}

fn check_accounts(accounts: &[Account], known_source: impl Fn(&str) -> bool) {
    let (mut ids, mut aliases) = (HashSet::new(), HashSet::new());
    for account in accounts {
        let id = account.id.as_str();
        assert!(config::AccountId::parse(id).is_some(), "account id {id:?}");
        assert!(ids.insert(id), "account {id} twice");
        let alias = &account.alias;
        assert!(
            !alias.is_empty() && !alias.bytes().all(|b| b.is_ascii_digit()),
            "alias {alias:?}"
        );
        assert!(aliases.insert(alias), "alias {alias:?} twice");
        if let Some(source) = &account.source {
            assert!(known_source(source), "account {id} has unknown source");
        }
    }
}

fn check_tunnel(tunnel: &Tunnel) {
    assert!(!tunnel.target.trim().is_empty(), "tunnel without a target");
    assert!(
        !(tunnel.forward.is_empty() && tunnel.socks.is_empty()),
        "tunnel forwarding nothing"
    );
}

/// An error names the file and a line in it (or just past its end).
fn check_config_error(err: &ConfigError, path: &Path, text: &str) {
    let ConfigError::Invalid { path: at, line, .. } = err else {
        panic!("parsing text gave a read error: {err}");
    };
    assert_eq!(at, path);
    let lines = text.lines().count().max(1);
    assert!((1..=lines + 1).contains(line), "line {line} of {lines}");
    assert!(err.to_string().starts_with(&path.display().to_string()));
}

/// `config` as parsed from `path`.
fn at_path(mut config: Config, path: &Path) -> Config {
    config.path = Some(path.to_owned());
    for tunnel in config.tunnels.values_mut() {
        tunnel.file = path.to_owned();
    }
    config
}

/// The rows of a file just encoded from `instances` read back as theirs.
fn round_trip_rows(decoded: &Snapshot, instances: &[Instance]) {
    let records = decoded
        .records(0)
        .expect("an encoded block's table is consistent");
    assert_eq!(records.len(), instances.len());
    for (&record, instance) in records.iter().zip(instances) {
        assert_eq!(decoded.summary(record), instance.summary());
    }
}

/// The longest SOCKS message: an RFC 1929 request with a 255-byte user name and password.
const MAX_SOCKS_MESSAGE: usize = 3 + 2 * 255;
