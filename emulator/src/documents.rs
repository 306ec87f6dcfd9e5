//! Session documents: what StartSession's `DocumentName` and `Parameters` mean to the agent
//! (SPEC.md §1.2). Turns them into a [`SessionPlan`]: the agent session type, the properties
//! echoed in the handshake, and which plugin runs. It starts nothing.

use std::collections::BTreeMap;

use postern_protocol::SessionType;
use serde_json::{Map, Value};
use thiserror::Error;

/// What one session runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SessionPlan {
    /// The document's name, for logs.
    pub(crate) document: String,
    /// The agent-side session type.
    pub(crate) session_type: SessionType,
    /// The document properties sent in the handshake (`Port` only, else null).
    pub(crate) properties: Value,
    /// The plugin to run.
    pub(crate) plugin: PluginSpec,
}

/// Which agent plugin a session runs, with its inputs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PluginSpec {
    /// A PTY running the shell (`command` `None`) or a command (`InteractiveCommands`).
    Pty {
        /// The command line given to `sh -c`, for interactive commands.
        command: Option<String>,
    },
    /// A command without a PTY (`NonInteractiveCommands`).
    NonInteractive {
        /// The command line given to `sh -c`.
        command: String,
        /// stdout as Output, stderr as StdErr, then ExitCode; else combined output at the end.
        separate_streams: bool,
    },
    /// A TCP connection made from this machine.
    Port {
        /// The `host` parameter: `None` dials `localhost` (the node itself), a host is
        /// resolved once when the plugin starts (agent `agent/session/plugins/port/port.go`).
        host: Option<String>,
        /// Port to dial.
        port: u16,
        /// `LocalPortForwarding` (basic or mux) or an SSH-style session (no `type`).
        kind: PortKind,
    },
}

/// The `type` property of a port session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PortKind {
    /// `type` = `LocalPortForwarding`: basic or muxed by the version rules.
    LocalPortForwarding,
    /// No `type` (AWS-StartSSHSession): one connection; the session ends when it closes.
    Ssh,
}

/// Why a document cannot start; answered as an AWS error.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub(crate) enum DocumentError {
    /// No such document.
    #[error("document {0} does not exist")]
    Unknown(String),
    /// A required parameter is missing.
    #[error("document {document} requires parameter {parameter}")]
    MissingParameter {
        /// The document.
        document: String,
        /// The parameter.
        parameter: &'static str,
    },
    /// A parameter value is not valid.
    #[error("parameter {parameter} of document {document} has invalid value {value:?}")]
    InvalidParameter {
        /// The document.
        document: String,
        /// The parameter.
        parameter: &'static str,
        /// The value given.
        value: String,
    },
    /// A required parameter of a stored document is missing.
    #[error("document {document} requires parameter {parameter}")]
    MissingNamedParameter {
        /// The document.
        document: String,
        /// The parameter.
        parameter: String,
    },
    /// A parameter the stored document does not declare.
    #[error("document {document} does not declare parameter {parameter}")]
    UndeclaredParameter {
        /// The document.
        document: String,
        /// The parameter.
        parameter: String,
    },
}

impl DocumentError {
    /// The AWS error code StartSession answers with.
    pub(crate) fn aws_code(&self) -> &'static str {
        match self {
            Self::Unknown(_) => "InvalidDocument",
            Self::MissingParameter { .. }
            | Self::InvalidParameter { .. }
            | Self::MissingNamedParameter { .. } => "ValidationException",
            Self::UndeclaredParameter { .. } => "InvalidParameters",
        }
    }
}

/// Resolves a StartSession request's document and parameters (each value a list of strings,
/// as StartSession carries them). `ssh_port` replaces port 22 in SSH sessions.
pub(crate) fn resolve(
    document: Option<&str>,
    parameters: &BTreeMap<String, Vec<String>>,
    ssh_port: Option<u16>,
) -> Result<SessionPlan, DocumentError> {
    let name = document.unwrap_or(SHELL_DOCUMENT);
    let lookup = Lookup { name, parameters };
    let (session_type, properties, plugin) = match name {
        SHELL_DOCUMENT => (
            SessionType::StandardStream,
            Value::Null,
            PluginSpec::Pty { command: None },
        ),
        INTERACTIVE_COMMAND => (
            SessionType::InteractiveCommands,
            Value::Null,
            PluginSpec::Pty {
                command: Some(lookup.required("command")?),
            },
        ),
        NON_INTERACTIVE_COMMAND | NON_INTERACTIVE_SEPARATE_STREAMS => (
            SessionType::NonInteractiveCommands,
            Value::Null,
            PluginSpec::NonInteractive {
                command: lookup.required("command")?,
                separate_streams: name == NON_INTERACTIVE_SEPARATE_STREAMS,
            },
        ),
        PORT_FORWARDING | PORT_FORWARDING_REMOTE_HOST => {
            let host = if name == PORT_FORWARDING_REMOTE_HOST {
                Some(lookup.required("host")?)
            } else {
                None
            };
            let port = lookup.port("portNumber", "80")?;
            let local_port = lookup.optional("localPortNumber").unwrap_or_default();
            let mut properties = Map::new();
            if let Some(host) = &host {
                properties.insert("host".to_owned(), Value::String(host.clone()));
            }
            properties.insert("localPortNumber".to_owned(), Value::String(local_port));
            properties.insert("portNumber".to_owned(), Value::String(port.to_string()));
            properties.insert(
                "type".to_owned(),
                Value::String("LocalPortForwarding".to_owned()),
            );
            (
                SessionType::Port,
                Value::Object(properties),
                PluginSpec::Port {
                    host,
                    port,
                    kind: PortKind::LocalPortForwarding,
                },
            )
        }
        SSH_SESSION => {
            let port = lookup.port("portNumber", "22")?;
            let mut properties = Map::new();
            properties.insert("portNumber".to_owned(), Value::String(port.to_string()));
            let dial_port = match ssh_port {
                Some(configured) if port == 22 => configured,
                _ => port,
            };
            (
                SessionType::Port,
                Value::Object(properties),
                PluginSpec::Port {
                    host: None,
                    port: dial_port,
                    kind: PortKind::Ssh,
                },
            )
        }
        other => return Err(DocumentError::Unknown(other.to_owned())),
    };
    Ok(SessionPlan {
        document: name.to_owned(),
        session_type,
        properties,
        plugin,
    })
}

/// Resolves a document an account created (`content`: its default version's JSON) with a
/// StartSession request's parameters. The schema is AWS's "Session document schema" (Systems
/// Manager user guide): `sessionType`, `parameters` (each with an optional `default`) and
/// `properties.linux` with `commands`, `runAsElevated`, `separateOutputStream` (a boolean, or
/// the text `true`/`false` after parameter substitution: agent
/// `agent/session/shell/constants/constants_unix.go` `GetSeparateOutputStream`) and the
/// separator prefixes (agent `agent/session/contracts/model.go` `ShellConfig`). `{{ name }}`
/// in those values is replaced by the parameter's value, as the service does before the agent
/// sees the document. Custom Port documents are not emulated.
pub(crate) fn resolve_custom(
    name: &str,
    content: &str,
    parameters: &BTreeMap<String, Vec<String>>,
) -> Result<SessionPlan, DocumentError> {
    let invalid = |parameter: &'static str, value: String| DocumentError::InvalidParameter {
        document: name.to_owned(),
        parameter,
        value,
    };
    let document: Value =
        serde_json::from_str(content).map_err(|_| DocumentError::Unknown(name.to_owned()))?;
    let declared = document
        .get("parameters")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    if let Some(unknown) = parameters.keys().find(|k| !declared.contains_key(*k)) {
        return Err(DocumentError::UndeclaredParameter {
            document: name.to_owned(),
            parameter: unknown.clone(),
        });
    }
    let mut values = BTreeMap::new();
    for (key, spec) in &declared {
        let given = parameters.get(key).and_then(|v| v.first()).cloned();
        let default = spec
            .get("default")
            .and_then(Value::as_str)
            .map(str::to_owned);
        match given.or(default) {
            Some(value) => {
                values.insert(key.clone(), value);
            }
            None => {
                return Err(DocumentError::MissingNamedParameter {
                    document: name.to_owned(),
                    parameter: key.clone(),
                });
            }
        }
    }
    let linux = document
        .pointer("/properties/linux")
        .cloned()
        .unwrap_or(Value::Null);
    let text = |field: &str| {
        linux
            .get(field)
            .and_then(Value::as_str)
            .map(|raw| substitute(raw, &values))
    };
    let commands = text("commands").unwrap_or_default();
    let separate_streams = match linux.get("separateOutputStream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::String(raw)) => match substitute(raw, &values).as_str() {
            "true" => true,
            "false" | "" => false,
            other => return Err(invalid("separateOutputStream", other.to_owned())),
        },
        Some(other) => return Err(invalid("separateOutputStream", other.to_string())),
    };
    let session_type = document
        .get("sessionType")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let (session_type, plugin) = match session_type {
        "NonInteractiveCommands" => (
            SessionType::NonInteractiveCommands,
            PluginSpec::NonInteractive {
                command: commands,
                separate_streams,
            },
        ),
        "InteractiveCommands" => (
            SessionType::InteractiveCommands,
            PluginSpec::Pty {
                command: Some(commands),
            },
        ),
        "Standard_Stream" => (
            SessionType::StandardStream,
            PluginSpec::Pty { command: None },
        ),
        _ => return Err(DocumentError::Unknown(name.to_owned())),
    };
    Ok(SessionPlan {
        document: name.to_owned(),
        session_type,
        properties: Value::Null,
        plugin,
    })
}

/// Replaces each `{{ name }}` (spaces optional) by the parameter's value.
fn substitute(raw: &str, values: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(start) = rest.find("{{") {
        let Some(len) = rest[start..].find("}}") else {
            break;
        };
        let key = rest[start + 2..start + len].trim();
        out.push_str(&rest[..start]);
        match values.get(key) {
            Some(value) => out.push_str(value),
            None => out.push_str(&rest[start..start + len + 2]),
        }
        rest = &rest[start + len + 2..];
    }
    out.push_str(rest);
    out
}

struct Lookup<'a> {
    name: &'a str,
    parameters: &'a BTreeMap<String, Vec<String>>,
}

impl Lookup<'_> {
    fn optional(&self, key: &str) -> Option<String> {
        self.parameters
            .get(key)
            .and_then(|values| values.first())
            .filter(|value| !value.is_empty())
            .cloned()
    }

    fn required(&self, key: &'static str) -> Result<String, DocumentError> {
        self.optional(key)
            .ok_or_else(|| DocumentError::MissingParameter {
                document: self.name.to_owned(),
                parameter: key,
            })
    }

    fn port(&self, key: &'static str, default: &str) -> Result<u16, DocumentError> {
        let value = self.optional(key).unwrap_or_else(|| default.to_owned());
        value
            .parse::<u16>()
            .ok()
            .filter(|port| *port != 0)
            .ok_or_else(|| DocumentError::InvalidParameter {
                document: self.name.to_owned(),
                parameter: key,
                value,
            })
    }
}

/// The default shell document (preferences document).
pub(crate) const SHELL_DOCUMENT: &str = "SSM-SessionManagerRunShell";
/// Runs `command` in a PTY.
pub(crate) const INTERACTIVE_COMMAND: &str = "AWS-StartInteractiveCommand";
/// Runs `command` without a PTY; combined output at the end, no exit code.
pub(crate) const NON_INTERACTIVE_COMMAND: &str = "AWS-StartNonInteractiveCommand";
/// A custom `NonInteractiveCommands` document with `separateOutputStream: true`, as the real
/// service allows: stdout as Output, stderr as StdErr, then ExitCode (SPEC.md §6.4).
pub(crate) const NON_INTERACTIVE_SEPARATE_STREAMS: &str =
    "Postern-StartNonInteractiveCommandSeparateStreams";
/// Port forwarding to the node.
pub(crate) const PORT_FORWARDING: &str = "AWS-StartPortForwardingSession";
/// Port forwarding to a host reachable from the node.
pub(crate) const PORT_FORWARDING_REMOTE_HOST: &str = "AWS-StartPortForwardingSessionToRemoteHost";
/// SSH as ProxyCommand: a port session without `type`.
pub(crate) const SSH_SESSION: &str = "AWS-StartSSHSession";

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<String>> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), vec![(*v).to_owned()]))
            .collect()
    }

    #[test]
    fn no_document_is_the_shell() {
        let plan = resolve(None, &BTreeMap::new(), None).unwrap();
        assert_eq!(plan.session_type, SessionType::StandardStream);
        assert_eq!(plan.plugin, PluginSpec::Pty { command: None });
        assert_eq!(plan.properties, Value::Null);
    }

    #[test]
    fn remote_host_properties_are_alphabetical_with_type() {
        let p = params(&[
            ("host", "db.internal"),
            ("portNumber", "5432"),
            ("localPortNumber", "15432"),
        ]);
        let plan = resolve(Some(PORT_FORWARDING_REMOTE_HOST), &p, None).unwrap();
        assert_eq!(
            plan.properties.to_string(),
            r#"{"host":"db.internal","localPortNumber":"15432","portNumber":"5432","type":"LocalPortForwarding"}"#
        );
        assert_eq!(
            plan.plugin,
            PluginSpec::Port {
                host: Some("db.internal".to_owned()),
                port: 5432,
                kind: PortKind::LocalPortForwarding
            }
        );
    }

    #[test]
    fn ssh_has_no_type_and_honours_the_configured_port() {
        let plan = resolve(Some(SSH_SESSION), &BTreeMap::new(), Some(2222)).unwrap();
        assert_eq!(plan.properties.to_string(), r#"{"portNumber":"22"}"#);
        assert_eq!(
            plan.plugin,
            PluginSpec::Port {
                host: None,
                port: 2222,
                kind: PortKind::Ssh
            }
        );
    }

    const POSTERN_COMMAND: &str = r#"{"schemaVersion":"1.0","sessionType":"NonInteractiveCommands",
        "parameters":{"command":{"type":"String"}},
        "properties":{"linux":{"commands":"{{ command }}","separateOutputStream":true}}}"#;

    #[test]
    fn custom_documents_substitute_parameters() {
        let plan =
            resolve_custom("P", POSTERN_COMMAND, &params(&[("command", "ls {{x}}")])).unwrap();
        assert_eq!(
            plan.plugin,
            PluginSpec::NonInteractive {
                command: "ls {{x}}".to_owned(),
                separate_streams: true
            }
        );
        let err = resolve_custom("P", POSTERN_COMMAND, &BTreeMap::new()).unwrap_err();
        assert_eq!(err.aws_code(), "ValidationException");
        let err = resolve_custom(
            "P",
            POSTERN_COMMAND,
            &params(&[("command", "a"), ("x", "b")]),
        )
        .unwrap_err();
        assert_eq!(err.aws_code(), "InvalidParameters");
        let text = POSTERN_COMMAND.replace("true", "\"{{ s }}\"").replace(
            r#""command":{"type":"String"}"#,
            r#""command":{"type":"String"},"s":{"type":"String","default":"false"}"#,
        );
        let plan = resolve_custom("P", &text, &params(&[("command", "a")])).unwrap();
        assert!(matches!(
            plan.plugin,
            PluginSpec::NonInteractive {
                separate_streams: false,
                ..
            }
        ));
    }

    #[test]
    fn rejects_unknown_documents_and_bad_ports() {
        let err = resolve(Some("AWS-Nope"), &BTreeMap::new(), None).unwrap_err();
        assert_eq!(err.aws_code(), "InvalidDocument");
        let err = resolve(
            Some(PORT_FORWARDING),
            &params(&[("portNumber", "http")]),
            None,
        )
        .unwrap_err();
        assert_eq!(err.aws_code(), "ValidationException");
        let err = resolve(Some(INTERACTIVE_COMMAND), &BTreeMap::new(), None).unwrap_err();
        assert!(matches!(
            err,
            DocumentError::MissingParameter {
                parameter: "command",
                ..
            }
        ));
    }
}
