//! `postern history`: the last sessions of the audit trail, as a table or as the stored JSON
//! lines.

use std::io::Write as _;
use std::process::ExitCode;

use crate::audit_trail::{self, SessionRecord};
use crate::report::{self, ErrorKind, ExpectedError};

/// `postern history`.
#[derive(clap::Args, Debug, Clone)]
pub struct HistoryArgs {
    /// Print the records as JSON lines, as stored.
    #[arg(long)]
    pub json: bool,

    /// Show the last N sessions.
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub limit: usize,
}

/// Prints the history.
pub(crate) fn show(args: &HistoryArgs) -> anyhow::Result<ExitCode> {
    let path = audit_trail::default_path().ok_or_else(|| {
        ExpectedError::new(
            ErrorKind::Config,
            "no home directory to find the session history in",
        )
        .hint("set HOME, or POSTERN_HISTORY_FILE to the history file")
    })?;
    let (records, skipped) = audit_trail::read_last(&path, args.limit).map_err(|e| {
        ExpectedError::new(
            ErrorKind::Config,
            format!("could not read the session history {}", path.display()),
        )
        .hint("check the file's permissions, or point POSTERN_HISTORY_FILE elsewhere")
        .source(e)
    })?;
    if skipped > 0 {
        report::notice(&format!(
            "{skipped} line(s) of {} are not session records and were skipped",
            path.display()
        ));
    }
    let mut stdout = std::io::stdout().lock();
    if args.json {
        for record in &records {
            writeln!(stdout, "{}", serde_json::to_string(record)?)?;
        }
    } else if records.is_empty() {
        report::notice(&format!("no sessions recorded yet in {}", path.display()));
    } else {
        write!(stdout, "{}", table(&records))?;
    }
    stdout.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// The records as an aligned table, oldest first.
fn table(records: &[SessionRecord]) -> String {
    let header = [
        "TIME", "KIND", "TARGET", "ACCOUNT", "REGION", "DURATION", "EXIT", "SESSION", "REASON",
    ];
    let rows: Vec<[String; 9]> = records
        .iter()
        .map(|r| {
            [
                r.time.clone(),
                r.kind.clone(),
                r.target.clone(),
                r.account.clone().unwrap_or_else(|| "-".to_owned()),
                r.region.clone().unwrap_or_else(|| "-".to_owned()),
                duration(r.duration_ms),
                r.exit_status.to_string(),
                r.session_ids
                    .first()
                    .cloned()
                    .unwrap_or_else(|| "-".to_owned()),
                r.reason.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[&str]| {
        let mut text = String::new();
        for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<width$}  "));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&header);
    for row in &rows {
        let cells: Vec<&str> = row.iter().map(String::as_str).collect();
        line(&cells);
    }
    out
}

/// `1h02m`, `3m05s`, `12.3s`.
fn duration(ms: u64) -> String {
    let secs = ms / 1000;
    match secs {
        0..=59 => format!("{}.{}s", secs, (ms % 1000) / 100),
        60..=3599 => format!("{}m{:02}s", secs / 60, secs % 60),
        _ => format!("{}h{:02}m", secs / 3600, (secs % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(12_345), "12.3s");
        assert_eq!(duration(185_000), "3m05s");
        assert_eq!(duration(3_720_000), "1h02m");
    }

    #[test]
    fn table_aligns_columns_and_marks_unknowns() {
        let record = SessionRecord {
            time: "2026-12-01T21:30:00Z".to_owned(),
            kind: "exec".to_owned(),
            identity: None,
            account: None,
            region: Some("us-east-1".to_owned()),
            profile: None,
            target: "i-0123456789abcdef0".to_owned(),
            document: None,
            session_ids: vec!["dev-1".to_owned()],
            reason: None,
            duration_ms: 1_000,
            exit_status: 3,
        };
        let text = table(&[record]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(
            lines[0].starts_with("TIME                  KIND  TARGET"),
            "{text}"
        );
        assert!(
            lines[1].starts_with("2026-12-01T21:30:00Z  exec  i-0123456789abcdef0  -"),
            "{text}"
        );
        assert!(lines[1].contains(" 1.0s "), "{text}");
        assert!(lines[1].ends_with("dev-1"), "{text}");
    }
}
