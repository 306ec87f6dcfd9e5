//! The official `session-manager-plugin` command line (SPEC.md §9), parsed into an
//! [`Invocation`]: argument counts, `--version`, the StartSession response inline or through
//! the `AWS_SSM_START_SESSION_RESPONSE` environment variable, region, operation, profile, the
//! StartSession request JSON and the endpoint.
//!
//! Pure: the caller passes the arguments and a lookup for the environment, and removes the
//! variable afterwards. Nothing here prints, and the token never reaches an error message.

use std::collections::HashMap;
use std::fmt;

use serde::Deserialize;

use crate::aws::{SessionCredentials, StartSessionRequest};

/// What the AWS CLI (or a user) asked the plugin to do.
#[derive(Debug)]
pub enum Invocation {
    /// No arguments: the official plugin's "installed successfully" greeting.
    Installed,
    /// `--version`.
    Version,
    /// One or two arguments other than `--version`: the official "Unknown operation".
    UnknownOperation(String),
    /// Start the session the CLI already created.
    Start(Box<PluginStart>),
}

/// A session the AWS CLI started (StartSession done) and hands to the plugin.
#[derive(Debug)]
pub struct PluginStart {
    /// The StartSession response: session id, token and stream URL.
    pub credentials: SessionCredentials,
    /// Where the response came from (for logs): argv or the named environment variable.
    pub response_source: ResponseSource,
    /// argv\[2\]: the region the session lives in.
    pub region: String,
    /// argv\[4\]: the `--profile` the CLI was given; `None` when empty or absent (legacy CLI).
    pub profile: Option<String>,
    /// argv\[5\]: the StartSession request (target, document, parameters, reason).
    pub request: StartSessionRequest,
    /// argv\[6\]: the SSM endpoint the CLI used, for TerminateSession.
    pub endpoint: Option<String>,
}

/// Where the StartSession response JSON was read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResponseSource {
    /// argv\[1\] itself (the token is visible in `ps`).
    Argument,
    /// The environment variable of this name, removed after reading.
    Environment(String),
}

/// Why the arguments are not a session to start. The text never includes the token.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ContractError {
    /// argv\[3\] is not `StartSession`.
    #[error("invalid operation `{0}`: the only operation is StartSession")]
    InvalidOperation(String),
    /// argv\[1\] names an environment variable that is not set.
    #[error("the environment variable {0} holding the StartSession response is not set")]
    MissingEnvironment(String),
    /// The StartSession response is not JSON with a session id, token and stream URL.
    #[error("the StartSession response is not valid: {0}")]
    BadResponse(String),
    /// The request parameters (argv\[5\]) are not the StartSession request JSON.
    #[error("the StartSession parameters are not valid: {0}")]
    BadParameters(String),
}

/// The prefix of argv\[1\] that names an environment variable instead of holding the JSON
/// (plugin `src/sessionmanagerplugin/session/session.go` `ValidateInputAndStartSession`; the
/// AWS CLI's `DEFAULT_SSM_ENV_NAME`).
pub const RESPONSE_ENV_PREFIX: &str = "AWS_SSM_START_SESSION_RESPONSE";

/// The version `--version` prints. The AWS CLI passes the StartSession response through the
/// environment only to plugins newer than `1.2.497.0` (`LAST_PLUGIN_VERSION_WITHOUT_ENV_VAR`)
/// and warns below `1.2.764.0` (`RECOMMENDED_MINIMUM_PLUGIN_VERSION`, aws-cli
/// `awscli/customizations/sessionmanager.py`): a bare dotted version at that level.
pub const PLUGIN_VERSION: &str = "1.2.764.0";

/// Parses `args` (argv without argv\[0\]). `env` looks environment variables up.
pub fn parse(
    args: &[String],
    env: impl Fn(&str) -> Option<String>,
) -> Result<Invocation, ContractError> {
    match args {
        [] => return Ok(Invocation::Installed),
        [flag] if flag == "--version" => return Ok(Invocation::Version),
        [first] | [first, _] => return Ok(Invocation::UnknownOperation(first.clone())),
        _ => {}
    }
    let response_arg = &args[0];
    let region = args[1].clone();
    let operation = &args[2];
    if operation != "StartSession" {
        return Err(ContractError::InvalidOperation(operation.clone()));
    }
    let profile = args.get(3).filter(|p| !p.is_empty()).cloned();
    let request = match args.get(4) {
        Some(json) => parse_request(json)?,
        // The official plugin accepts a legacy CLI's three arguments but then crashes on the
        // missing Target (SPEC.md §9.2); a session needs its target and parameters.
        None => {
            return Err(ContractError::BadParameters(
                "the AWS CLI passed no request parameters; upgrade the AWS CLI".to_owned(),
            ));
        }
    };
    let endpoint = args.get(5).filter(|e| !e.is_empty()).cloned();
    let (json, response_source) = if response_arg.starts_with(RESPONSE_ENV_PREFIX) {
        let value = env(response_arg)
            .ok_or_else(|| ContractError::MissingEnvironment(response_arg.clone()))?;
        (value, ResponseSource::Environment(response_arg.clone()))
    } else {
        (response_arg.clone(), ResponseSource::Argument)
    };
    let credentials = parse_response(&json)?;
    Ok(Invocation::Start(Box::new(PluginStart {
        credentials,
        response_source,
        region,
        profile,
        request,
        endpoint,
    })))
}

/// The kind of session a document starts, from its name (SPEC.md §1.2). Custom documents are
/// taken for shells: their session type is only known from the handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DocumentKind {
    /// The default shell, interactive commands, custom shell documents.
    Shell,
    /// AWS-StartPortForwardingSession or AWS-StartPortForwardingSessionToRemoteHost.
    PortForward,
    /// AWS-StartSSHSession: the stream on stdin/stdout.
    Ssh,
}

impl DocumentKind {
    /// The kind for `document` (`None`: the default shell).
    pub fn of(document: Option<&str>) -> Self {
        match document {
            Some(
                "AWS-StartPortForwardingSession" | "AWS-StartPortForwardingSessionToRemoteHost",
            ) => Self::PortForward,
            Some("AWS-StartSSHSession") => Self::Ssh,
            _ => Self::Shell,
        }
    }
}

impl fmt::Display for DocumentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Shell => "shell",
            Self::PortForward => "port forwarding",
            Self::Ssh => "ssh",
        })
    }
}

/// The StartSession response fields the plugin needs.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Response {
    session_id: Option<String>,
    token_value: Option<String>,
    stream_url: Option<String>,
}

/// The StartSession request as the CLI serialises it (`json.dumps(parameters)`).
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Request {
    target: Option<String>,
    document_name: Option<String>,
    #[serde(default)]
    parameters: HashMap<String, Vec<String>>,
    reason: Option<String>,
}

/// What is wrong with JSON that did not parse, and where, without serde_json's message: that
/// quotes the value it met (`invalid type: string "…"`), which in a StartSession response
/// carries the session token and the stream URL.
fn json_problem(e: &serde_json::Error) -> String {
    let what = match e.classify() {
        serde_json::error::Category::Io => "unreadable",
        serde_json::error::Category::Syntax => "not JSON",
        serde_json::error::Category::Data => "JSON of the wrong shape (not the expected object)",
        serde_json::error::Category::Eof => "JSON cut short",
    };
    format!("{what} at line {}, column {}", e.line(), e.column())
}

fn parse_response(json: &str) -> Result<SessionCredentials, ContractError> {
    let response: Response =
        serde_json::from_str(json).map_err(|e| ContractError::BadResponse(json_problem(&e)))?;
    let field = |value: Option<String>, name: &str| {
        value
            .filter(|v| !v.is_empty())
            .ok_or_else(|| ContractError::BadResponse(format!("{name} is missing")))
    };
    let session_id = field(response.session_id, "SessionId")?;
    let token = field(response.token_value, "TokenValue")?;
    let stream_url = field(response.stream_url, "StreamUrl")?;
    Ok(SessionCredentials::from_parts(
        session_id, token, stream_url,
    ))
}

fn parse_request(json: &str) -> Result<StartSessionRequest, ContractError> {
    let request: Request =
        serde_json::from_str(json).map_err(|e| ContractError::BadParameters(json_problem(&e)))?;
    let target = request
        .target
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ContractError::BadParameters("Target is missing".to_owned()))?;
    Ok(StartSessionRequest {
        target,
        document_name: request.document_name,
        parameters: request.parameters,
        reason: request.reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    const RESPONSE: &str = r#"{"SessionId":"me-0abc","TokenValue":"tok-secret","StreamUrl":"wss://h/v1/data-channel/me-0abc?role=publish_subscribe"}"#;
    const REQUEST: &str = r#"{"Target":"i-0123456789abcdef0","DocumentName":"AWS-StartPortForwardingSession","Parameters":{"portNumber":["80"],"localPortNumber":["0"]},"Reason":"debug"}"#;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn short_argument_lists_follow_the_official_plugin() {
        assert!(matches!(parse(&[], no_env), Ok(Invocation::Installed)));
        assert!(matches!(
            parse(&args(&["--version"]), no_env),
            Ok(Invocation::Version)
        ));
        assert!(matches!(
            parse(&args(&["hello"]), no_env),
            Ok(Invocation::UnknownOperation(op)) if op == "hello"
        ));
        assert!(matches!(
            parse(&args(&["--version", "x"]), no_env),
            Ok(Invocation::UnknownOperation(op)) if op == "--version"
        ));
    }

    #[test]
    fn a_response_that_does_not_parse_is_described_without_its_contents() {
        // A double-encoded response: a JSON string where the object belongs. serde_json's own
        // message would quote the whole string, token and stream URL included.
        let encoded = serde_json::to_string(RESPONSE).unwrap();
        for response in [
            encoded.as_str(),
            "{\"TokenValue\": \"secret-token",
            "[1, 2]",
        ] {
            let argv = args(&[response, "eu-west-1", "StartSession", "", REQUEST]);
            let err = parse(&argv, no_env).expect_err("not a response object");
            let shown = format!("{err} {err:?}");
            assert!(!shown.contains("secret"), "{shown}");
            assert!(!shown.contains("data-channel"), "{shown}");
            assert!(shown.contains("line 1, column"), "{shown}");
        }
    }

    #[test]
    fn inline_response_with_all_six_arguments() {
        let argv = args(&[
            RESPONSE,
            "eu-west-1",
            "StartSession",
            "dev",
            REQUEST,
            "https://ssm.eu-west-1.amazonaws.com",
        ]);
        let Ok(Invocation::Start(start)) = parse(&argv, no_env) else {
            panic!("expected a start");
        };
        assert_eq!(start.credentials.session_id, "me-0abc");
        assert_eq!(start.credentials.token.expose(), "tok-secret");
        assert_eq!(start.response_source, ResponseSource::Argument);
        assert_eq!(start.region, "eu-west-1");
        assert_eq!(start.profile.as_deref(), Some("dev"));
        assert_eq!(start.request.target, "i-0123456789abcdef0");
        assert_eq!(
            DocumentKind::of(start.request.document_name.as_deref()),
            DocumentKind::PortForward
        );
        assert_eq!(start.request.parameters["portNumber"], vec!["80"]);
        assert_eq!(start.request.reason.as_deref(), Some("debug"));
        assert_eq!(
            start.endpoint.as_deref(),
            Some("https://ssm.eu-west-1.amazonaws.com")
        );
    }

    #[test]
    fn response_from_any_variable_with_the_prefix_and_an_empty_profile() {
        let argv = args(&[
            "AWS_SSM_START_SESSION_RESPONSE_2",
            "us-east-1",
            "StartSession",
            "",
            r#"{"Target":"i-0123456789abcdef0"}"#,
            "http://127.0.0.1:4566",
        ]);
        let env =
            |name: &str| (name == "AWS_SSM_START_SESSION_RESPONSE_2").then(|| RESPONSE.to_owned());
        let Ok(Invocation::Start(start)) = parse(&argv, env) else {
            panic!("expected a start");
        };
        assert_eq!(
            start.response_source,
            ResponseSource::Environment("AWS_SSM_START_SESSION_RESPONSE_2".to_owned())
        );
        assert_eq!(start.profile, None);
        assert_eq!(
            DocumentKind::of(start.request.document_name.as_deref()),
            DocumentKind::Shell
        );
        let missing = parse(&argv, no_env).unwrap_err();
        assert_eq!(
            missing,
            ContractError::MissingEnvironment("AWS_SSM_START_SESSION_RESPONSE_2".to_owned())
        );
    }

    #[test]
    fn a_legacy_cli_without_the_request_is_refused() {
        let argv = args(&[RESPONSE, "us-east-1", "StartSession"]);
        assert!(matches!(
            parse(&argv, no_env),
            Err(ContractError::BadParameters(_))
        ));
    }

    #[test]
    fn wrong_operation_and_bad_json_are_errors_without_the_token() {
        let argv = args(&[RESPONSE, "us-east-1", "ResumeSession", "", REQUEST, ""]);
        assert_eq!(
            parse(&argv, no_env).unwrap_err(),
            ContractError::InvalidOperation("ResumeSession".to_owned())
        );
        let broken = r#"{"SessionId":"s","TokenValue":"tok-secret""#;
        let argv = args(&[broken, "us-east-1", "StartSession", "", REQUEST, ""]);
        let err = parse(&argv, no_env).unwrap_err();
        assert!(matches!(err, ContractError::BadResponse(_)));
        assert!(!err.to_string().contains("tok-secret"), "{err}");
        let argv = args(&[RESPONSE, "us-east-1", "StartSession", "", "{}", ""]);
        assert_eq!(
            parse(&argv, no_env).unwrap_err(),
            ContractError::BadParameters("Target is missing".to_owned())
        );
    }

    #[test]
    fn document_kinds() {
        assert_eq!(DocumentKind::of(None), DocumentKind::Shell);
        assert_eq!(
            DocumentKind::of(Some("AWS-StartPortForwardingSessionToRemoteHost")),
            DocumentKind::PortForward
        );
        assert_eq!(
            DocumentKind::of(Some("AWS-StartSSHSession")),
            DocumentKind::Ssh
        );
        assert_eq!(
            DocumentKind::of(Some("AWS-StartInteractiveCommand")),
            DocumentKind::Shell
        );
    }

    #[test]
    fn version_is_bare_and_above_the_env_threshold() {
        let parts: Vec<u64> = PLUGIN_VERSION
            .split('.')
            .map(|p| p.parse().unwrap())
            .collect();
        assert_eq!(parts.len(), 4);
        assert!(parts > vec![1, 2, 497, 0]);
        assert!(parts >= vec![1, 2, 764, 0]);
    }
}
