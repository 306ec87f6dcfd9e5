//! The flags that keep sessions alive (`--keepalive`, `--reconnect-attempts`) and how
//! reconnection notices reach the user: one line on stderr per step, written so that a
//! raw-mode terminal stays readable ("\r\n[postern: …]\r\n"), never on stdout.

use std::time::Duration;

use postern_protocol::reconnect::BackoffConfig;

use crate::report;
use crate::transport::{DEFAULT_KEEPALIVE, Notifier, Reconnection, Resilience};

/// Options of every command that holds a session open.
#[derive(clap::Args, Clone, Debug, PartialEq, Eq)]
pub struct ResilienceArgs {
    /// Send a websocket ping this often, and reconnect when a whole interval after a ping
    /// brings nothing back (a dead connection is noticed within two intervals); `0s` turns
    /// pings off.
    #[arg(long, value_name = "DURATION", default_value = "20s", value_parser = crate::cli::common::parse_flag_duration)]
    pub keepalive: Duration,

    /// When the connection drops, reconnect (ResumeSession) up to N times, backing off from
    /// 0.1 s to 10 s between attempts, before giving up with exit code 254; 0 never
    /// reconnects.
    #[arg(long, value_name = "N", default_value_t = BackoffConfig::default().max_attempts)]
    pub reconnect_attempts: u32,
}

impl Default for ResilienceArgs {
    fn default() -> Self {
        Self {
            keepalive: DEFAULT_KEEPALIVE,
            reconnect_attempts: BackoffConfig::default().max_attempts,
        }
    }
}

/// Where a command's reconnection notices go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoticeStyle {
    /// A terminal in raw mode: the line starts and ends with CR LF, in brackets.
    Raw,
    /// A plain line.
    Line,
    /// A plain line naming the session (forwards run several).
    WithSession,
}

impl ResilienceArgs {
    /// The pump settings these flags describe, notices written in `style`.
    pub fn resilience(&self, style: NoticeStyle) -> Resilience {
        Resilience {
            keepalive: Some(self.keepalive).filter(|k| !k.is_zero()),
            backoff: BackoffConfig {
                max_attempts: self.reconnect_attempts,
                ..BackoffConfig::default()
            },
            notifier: Notifier::new(move |step: &Reconnection<'_>| match style {
                NoticeStyle::Raw => report::raw_notice(&step.to_string()),
                NoticeStyle::Line => report::notice(&step.to_string()),
                NoticeStyle::WithSession => {
                    report::notice(&format!("session {}: {step}", step.session_id()));
                }
            }),
        }
    }
}
