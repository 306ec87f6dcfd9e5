//! The session registry: ids, one-use tokens, and the command channel of each running session.
//!
//! StartSession creates an entry and a token; the first OpenDataChannelInput presenting that
//! token redeems it (a second use is refused and reported). ResumeSession issues a fresh token
//! for the same entry, so the new websocket continues the same `Session` state. Tokens are
//! secrets: they are never logged and redact in `Debug`.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;

use axum::extract::ws::WebSocket;
use postern_protocol::OpenDataChannelInput;
use rand::RngCore;
use thiserror::Error;
use tokio::sync::mpsc;

/// A data-channel token. Secret.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct Token(String);

impl Token {
    fn random() -> Self {
        let mut bytes = [0u8; TOKEN_BYTES];
        rand::rng().fill_bytes(&mut bytes);
        Self(hex::encode(bytes))
    }

    /// Wraps a token received from a client.
    pub(crate) fn from_client(value: String) -> Self {
        Self(value)
    }

    /// The token text, for the StartSession/ResumeSession response only.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// What the websocket side tells a session's task.
#[derive(Debug)]
pub(crate) enum SessionCommand {
    /// A client opened the data channel with a valid token.
    Attach(Box<Attachment>),
    /// TerminateSession was called.
    Terminate,
}

/// A websocket whose open frame carried a valid token.
pub(crate) struct Attachment {
    /// The websocket, past its open frame.
    pub(crate) socket: WebSocket,
    /// The open frame (its token already checked).
    pub(crate) open: OpenDataChannelInput,
}

impl fmt::Debug for Attachment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Attachment")
            .field("open", &self.open)
            .finish_non_exhaustive()
    }
}

/// Why a token was not accepted on a websocket.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub(crate) enum RedeemError {
    /// Never issued, or issued for another session than the URL names.
    #[error("token was not issued for session {0}")]
    Unknown(String),
    /// Already presented once.
    #[error("token of session {0} was already used")]
    Reused(String),
    /// The session has ended.
    #[error("session {0} has ended")]
    Ended(String),
}

/// Why ResumeSession/TerminateSession could not find a session.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("session {0} does not exist")]
pub(crate) struct NoSuchSession(pub(crate) String);

/// A newly created session.
#[derive(Debug)]
pub(crate) struct Created {
    pub(crate) session_id: String,
    pub(crate) token: Token,
    pub(crate) commands: mpsc::Receiver<SessionCommand>,
}

/// A redeemed token: where to hand the websocket.
#[derive(Debug)]
pub(crate) struct Redeemed {
    pub(crate) commands: mpsc::Sender<SessionCommand>,
}

/// All sessions of one emulator.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    sessions: HashMap<String, Entry>,
    tokens: HashMap<Token, TokenEntry>,
    /// Sessions open now: started, neither terminated nor ended.
    open: usize,
    /// The most sessions ever open at once.
    peak: usize,
}

#[derive(Debug)]
struct Entry {
    target: String,
    commands: Option<mpsc::Sender<SessionCommand>>,
    /// Counted in [`State::open`]: until TerminateSession or the session's end, whichever
    /// comes first (AWS counts a session terminated once TerminateSession returns).
    open: bool,
}

#[derive(Debug)]
struct TokenEntry {
    session_id: String,
    used: bool,
}

impl Registry {
    /// Creates a session on `target` and its first token.
    pub(crate) fn create(&self, target: &str) -> Created {
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
        let mut state = self.lock();
        let session_id = loop {
            let id = new_session_id();
            if !state.sessions.contains_key(&id) {
                break id;
            }
        };
        state.sessions.insert(
            session_id.clone(),
            Entry {
                target: target.to_owned(),
                commands: Some(tx),
                open: true,
            },
        );
        state.open += 1;
        state.peak = state.peak.max(state.open);
        let token = state.issue(&session_id);
        Created {
            session_id,
            token,
            commands: rx,
        }
    }

    /// ResumeSession: a fresh token, or `None` when the session can no longer be resumed.
    pub(crate) fn resume(&self, session_id: &str) -> Result<Option<Token>, NoSuchSession> {
        let mut state = self.lock();
        let entry = state
            .sessions
            .get(session_id)
            .ok_or_else(|| NoSuchSession(session_id.to_owned()))?;
        if entry.commands.is_none() {
            return Ok(None);
        }
        Ok(Some(state.issue(session_id)))
    }

    /// TerminateSession: tells the session's task to end. Ending an ended session is a no-op.
    pub(crate) fn terminate(&self, session_id: &str) -> Result<(), NoSuchSession> {
        let mut state = self.lock();
        let entry = state
            .sessions
            .get_mut(session_id)
            .ok_or_else(|| NoSuchSession(session_id.to_owned()))?;
        if let Some(commands) = &entry.commands {
            // A full queue or a finished task both mean the session is on its way out.
            let _ = commands.try_send(SessionCommand::Terminate);
        }
        state.close(session_id);
        Ok(())
    }

    /// Sessions open now (started, neither terminated nor ended) and the most ever open at
    /// once.
    pub(crate) fn open_sessions(&self) -> (usize, usize) {
        let state = self.lock();
        (state.open, state.peak)
    }

    /// Checks `token` for the session named in the websocket URL and marks it used.
    pub(crate) fn redeem(&self, session_id: &str, token: &Token) -> Result<Redeemed, RedeemError> {
        let mut state = self.lock();
        let Some(token_entry) = state.tokens.get_mut(token) else {
            return Err(RedeemError::Unknown(session_id.to_owned()));
        };
        if token_entry.session_id != session_id {
            return Err(RedeemError::Unknown(session_id.to_owned()));
        }
        if token_entry.used {
            return Err(RedeemError::Reused(session_id.to_owned()));
        }
        token_entry.used = true;
        let entry = state
            .sessions
            .get(session_id)
            .ok_or_else(|| RedeemError::Unknown(session_id.to_owned()))?;
        let commands = entry
            .commands
            .clone()
            .ok_or_else(|| RedeemError::Ended(session_id.to_owned()))?;
        Ok(Redeemed { commands })
    }

    /// The session's task has finished: no more resumes or attachments.
    pub(crate) fn mark_ended(&self, session_id: &str) {
        let mut state = self.lock();
        if let Some(entry) = state.sessions.get_mut(session_id) {
            entry.commands = None;
        }
        state.close(session_id);
    }

    /// Target of a session, if it exists.
    pub(crate) fn target(&self, session_id: &str) -> Option<String> {
        self.lock()
            .sessions
            .get(session_id)
            .map(|entry| entry.target.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every update is a single insert or field write: a poisoned state is still consistent.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl State {
    /// No longer counts `session_id` as open.
    fn close(&mut self, session_id: &str) {
        if let Some(entry) = self.sessions.get_mut(session_id)
            && entry.open
        {
            entry.open = false;
            self.open -= 1;
        }
    }

    fn issue(&mut self, session_id: &str) -> Token {
        loop {
            let token = Token::random();
            if !self.tokens.contains_key(&token) {
                self.tokens.insert(
                    token.clone(),
                    TokenEntry {
                        session_id: session_id.to_owned(),
                        used: false,
                    },
                );
                return token;
            }
        }
    }
}

/// `<caller>-<17 hex digits>`, the shape AWS session ids have.
fn new_session_id() -> String {
    let value = rand::rng().next_u64() as u128 | (u128::from(rand::rng().next_u32() & 0xf) << 64);
    format!("{SESSION_ID_PREFIX}-{value:017x}")
}

const SESSION_ID_PREFIX: &str = "postern-emulator";
const TOKEN_BYTES: usize = 48;
const COMMAND_QUEUE: usize = 8;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_one_use() {
        let registry = Registry::default();
        let created = registry.create("i-1");
        registry
            .redeem(&created.session_id, &created.token)
            .unwrap();
        assert_eq!(
            registry
                .redeem(&created.session_id, &created.token)
                .unwrap_err(),
            RedeemError::Reused(created.session_id.clone())
        );
    }

    #[test]
    fn resume_issues_a_fresh_token_for_the_same_session() {
        let registry = Registry::default();
        let created = registry.create("i-1");
        let resumed = registry.resume(&created.session_id).unwrap().unwrap();
        assert_ne!(resumed, created.token);
        registry.redeem(&created.session_id, &resumed).unwrap();
    }

    #[test]
    fn token_of_another_session_is_unknown() {
        let registry = Registry::default();
        let first = registry.create("i-1");
        let second = registry.create("i-1");
        assert!(matches!(
            registry.redeem(&second.session_id, &first.token),
            Err(RedeemError::Unknown(_))
        ));
        assert!(matches!(
            registry.redeem(&first.session_id, &Token::from_client("nope".to_owned())),
            Err(RedeemError::Unknown(_))
        ));
    }

    #[test]
    fn ended_sessions_resume_with_no_token() {
        let registry = Registry::default();
        let created = registry.create("i-1");
        registry.mark_ended(&created.session_id);
        assert_eq!(registry.resume(&created.session_id).unwrap(), None);
        assert!(registry.resume("postern-emulator-0").is_err());
    }

    #[test]
    fn counts_open_sessions_and_their_peak() {
        let registry = Registry::default();
        let a = registry.create("i-1");
        let b = registry.create("i-2");
        assert_eq!(registry.open_sessions(), (2, 2));
        registry.terminate(&a.session_id).unwrap();
        registry.mark_ended(&a.session_id);
        assert_eq!(registry.open_sessions(), (1, 2));
        registry.mark_ended(&b.session_id);
        registry.terminate(&b.session_id).unwrap();
        let _c = registry.create("i-3");
        assert_eq!(registry.open_sessions(), (1, 2));
    }

    #[test]
    fn session_ids_have_the_aws_shape() {
        let id = new_session_id();
        let (prefix, hex) = id.rsplit_once('-').unwrap();
        assert_eq!(prefix, SESSION_ID_PREFIX);
        assert_eq!(hex.len(), 17);
    }

    #[test]
    fn token_debug_is_redacted() {
        let token = Token::random();
        assert!(!format!("{token:?}").contains(token.expose()));
    }
}
