//! `postern status`: every background tunnel as its supervisor last recorded it (state file),
//! checked against its lock: a tunnel whose supervisor is gone (killed, crashed, the machine
//! rebooted) is shown once as gone and its state removed. A failed tunnel stays listed, with
//! its reason, until `postern down`.
//!
//! State files rather than asking each supervisor on a socket: `status` never waits on a
//! supervisor (a stuck one cannot hang it), works the same for a dead one, and scripts can read
//! the same JSON.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::cli::commands::tunnel::up::registry;
use crate::term::escape;
use crate::tunnel::{Registry, TunnelRecord, TunnelState};

/// `postern status`.
#[derive(clap::Args, Debug, Clone)]
pub struct StatusArgs {
    /// One JSON object per tunnel (its state file, plus `running`), instead of text.
    #[arg(long)]
    pub json: bool,
}

/// A tunnel as `status` found it.
#[derive(Debug)]
pub(crate) enum Found {
    /// Its supervisor holds it.
    Running(TunnelRecord),
    /// It failed for good; its supervisor let it go.
    Failed(TunnelRecord),
    /// Its supervisor died; the state was removed.
    Gone(TunnelRecord),
}

/// Shows every tunnel; cleans up after dead supervisors.
pub(crate) fn status(args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let registry = registry()?;
    let found = survey(&registry);
    let mut stdout = std::io::stdout().lock();
    if found.is_empty() && !args.json {
        writeln!(stdout, "no tunnels are up")?;
    }
    let now = unix_now();
    for tunnel in &found {
        if args.json {
            let (record, running) = match tunnel {
                Found::Running(r) => (r, "running"),
                Found::Failed(r) => (r, "failed"),
                Found::Gone(r) => (r, "gone"),
            };
            let mut value = serde_json::to_value(record)?;
            value["running"] = serde_json::Value::from(running == "running");
            if running == "gone" {
                value["state"] = serde_json::Value::from("gone");
            }
            writeln!(stdout, "{value}")?;
        } else {
            write!(stdout, "{}", render(tunnel, now))?;
        }
    }
    stdout.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// Every tunnel with a state file; those of dead supervisors are removed (and reported gone).
pub(crate) fn survey(registry: &Registry) -> Vec<Found> {
    let mut found = Vec::new();
    for name in registry.names() {
        let held = registry.is_held(&name);
        let Some(record) = registry.read(&name) else {
            if !held {
                registry.remove_stale(&name);
            }
            continue;
        };
        if held {
            found.push(Found::Running(record));
        } else if record.state == TunnelState::Failed {
            found.push(Found::Failed(record));
        } else if registry.remove_stale(&name) {
            found.push(Found::Gone(record));
        } else {
            // Its supervisor took the lock a moment ago.
            found.push(Found::Running(record));
        }
    }
    found
}

/// "i-0123… (acme-prod, eu-west-1)".
pub(crate) fn place(record: &TunnelRecord) -> String {
    let mut parts = Vec::new();
    if let Some(account) = &record.account {
        parts.push(account.clone());
    }
    if let Some(region) = &record.region {
        parts.push(region.clone());
    }
    if parts.is_empty() {
        record.target.clone()
    } else {
        format!("{} ({})", record.target, parts.join(", "))
    }
}

/// The text of one tunnel: a heading line, then its listeners and any error, indented.
fn render(found: &Found, now: u64) -> String {
    let mut text = String::new();
    match found {
        Found::Gone(r) => {
            text.push_str(&format!(
                "{}  gone  {}: its supervisor (pid {}) is no longer running; its state was \
                 removed\n",
                r.name,
                place(r),
                r.pid
            ));
            return text;
        }
        Found::Running(r) | Found::Failed(r) => {
            let since = Duration::from_secs(now.saturating_sub(r.since));
            text.push_str(&format!(
                "{}  {}  {}  up {}  pid {}\n",
                r.name,
                r.state.as_str(),
                place(r),
                humantime::format_duration(since),
                r.pid
            ));
            text.push_str(&format!(
                "  {} · {} · ↓ {} ↑ {} · {}\n",
                plural(r.sessions as u64, "session"),
                plural(r.connections as u64, "connection"),
                bytes(r.bytes_down),
                bytes(r.bytes_up),
                plural(r.reconnects, "reconnect"),
            ));
            for listener in &r.listeners {
                match &listener.remote {
                    Some(remote) => {
                        text.push_str(&format!("  {} -> {}\n", listener.local, escape(remote)))
                    }
                    None => text.push_str(&format!("  SOCKS5 proxy on {}\n", listener.local)),
                }
            }
            if let Some(error) = &r.last_error {
                let label = if r.state == TunnelState::Failed {
                    "failed"
                } else {
                    "last error"
                };
                text.push_str(&format!("  {label}: {}\n", escape(error)));
            }
            if r.state == TunnelState::Failed {
                text.push_str(&format!(
                    "  hint: fix the cause, then `postern down {0}` and `postern up {0}`\n",
                    r.name
                ));
            }
        }
    }
    text
}

fn plural(n: u64, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// Bytes in decimal units.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tunnel::ListenerRecord;

    #[test]
    fn a_running_tunnel_shows_its_counters_listeners_and_escaped_error() {
        let record = TunnelRecord {
            name: "orders-db".to_owned(),
            pid: 4242,
            siblings: vec!["orders-db".to_owned()],
            target: "i-0123456789abcdef0".to_owned(),
            target_given: "orders-api-prod-1@acme-prod".to_owned(),
            account: Some("acme-prod".to_owned()),
            region: Some("eu-west-1".to_owned()),
            listeners: vec![
                ListenerRecord {
                    local: "127.0.0.1:15432".to_owned(),
                    remote: Some("orders-db.internal:5432".to_owned()),
                },
                ListenerRecord {
                    local: "127.0.0.1:1080".to_owned(),
                    remote: None,
                },
            ],
            state: TunnelState::Reconnecting,
            sessions: 2,
            connections: 1,
            bytes_up: 1234,
            bytes_down: 54_321_000,
            since: 1000,
            reconnects: 1,
            last_error: Some("session s-1 ended: \x1b[31mbye".to_owned()),
            updated: 1100,
            log: None,
        };
        assert_eq!(
            render(&Found::Running(record), 1125),
            "orders-db  reconnecting  i-0123456789abcdef0 (acme-prod, eu-west-1)  up 2m 5s  pid \
             4242\n  2 sessions · 1 connection · ↓ 54.3 MB ↑ 1.2 kB · 1 reconnect\n  \
             127.0.0.1:15432 -> orders-db.internal:5432\n  SOCKS5 proxy on 127.0.0.1:1080\n  \
             last error: session s-1 ended: \\x1b[31mbye\n"
        );
    }
}
