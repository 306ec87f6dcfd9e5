//! `postern setup`: creates or updates the session documents postern uses in every configured
//! account and region (or `--account`, `--region`), idempotently; reports each account's
//! Session Manager preferences that affect postern; `--print-policy` prints the least-privilege
//! IAM policy of postern's role (or of the role that runs setup) without any AWS call.
//!
//! It never touches a document it does not own, and `--dry-run` makes no write call.

use std::process::ExitCode;
use std::sync::Arc;

use serde_json::{Value, json};

use crate::aws::{self, AwsError, DocumentsClient};
use crate::cli::aws_context::load_aws;
use crate::cli::common::CommonArgs;
use crate::cli::errors::aws_failure;
use crate::cli::reach::{BrokerScopes, Reach};
use crate::discovery::{Scope, ScopeConfigs, SingleProfile};
use crate::report::{self, ErrorKind, ExpectedError};

/// `postern setup`.
#[derive(clap::Args, Debug, Clone)]
pub struct SetupArgs {
    /// Show what would be created or updated; change nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Print the least-privilege IAM policy and exit, without any AWS call: `session` (the
    /// role postern's sessions, listings and copies use; the default) or `setup` (the role
    /// that runs `postern setup`).
    #[arg(long, value_name = "FOR", num_args = 0..=1, default_missing_value = "session")]
    pub print_policy: Option<PolicyFor>,
}

/// Whose policy `--print-policy` prints.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyFor {
    /// Sessions, listings, copies.
    Session,
    /// `postern setup`.
    Setup,
}

/// A validated `postern setup`.
#[derive(Debug)]
pub struct SetupPlan {
    pub(crate) reach: Reach,
    /// `--account`.
    pub account: Option<String>,
    /// `--dry-run`.
    pub dry_run: bool,
    /// `--print-policy`.
    pub print_policy: Option<PolicyFor>,
}

impl SetupPlan {
    pub(crate) fn new(common: &CommonArgs, args: SetupArgs) -> Result<Self, ExpectedError> {
        crate::cli::common::aws_options(common)?;
        Ok(Self {
            reach: Reach::new(common)?,
            account: common.account.clone(),
            dry_run: args.dry_run,
            print_policy: args.print_policy,
        })
    }
}

/// Runs `postern setup`.
pub(crate) async fn run(plan: &SetupPlan) -> anyhow::Result<ExitCode> {
    if let Some(what) = plan.print_policy {
        let policy = match what {
            PolicyFor::Session => session_policy(),
            PolicyFor::Setup => setup_policy(),
        };
        // Serialising a `Value` cannot fail.
        println!(
            "{}",
            serde_json::to_string_pretty(&policy).unwrap_or_default()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let (context, described) = load_aws(&plan.reach.aws, "setup").await?;
    if plan.account.is_some() && plan.reach.broker.is_none() {
        return Err(ExpectedError::new(
            ErrorKind::Config,
            "--account: the configuration lists no accounts",
        )
        .hint("without accounts, setup runs in the profile's account: drop --account")
        .into());
    }
    let scopes = plan.reach.scopes(&context, &[], plan.account.as_deref());
    for (alias, why) in &scopes.skipped {
        report::notice(&format!("warning: account {alias} skipped: {why}"));
    }
    if scopes.scopes.is_empty() {
        return Err(
            ExpectedError::new(ErrorKind::Usage, "no account and region to set up")
                .target(described)
                .hint("check --account against `postern accounts`")
                .into(),
        );
    }
    let configs: Arc<dyn Configs> = match &plan.reach.broker {
        Some(broker) => Arc::new(BrokerScopes::new(Arc::clone(broker), context.sdk.clone())),
        None => Arc::new(SingleProfile::new(context.sdk.clone())),
    };
    let mut failed = 0usize;
    let mut last_error = None;
    let mut first_unreached: Option<String> = None;
    for scope in &scopes.scopes {
        let label = format!("{} {}", scope.alias, scope.region);
        let sdk = match configs.config_for(scope).await {
            Ok(sdk) => sdk,
            Err(message) => {
                failed += 1;
                report::notice(&format!("warning: {label}: {message}"));
                first_unreached.get_or_insert_with(|| label.clone());
                continue;
            }
        };
        let client = DocumentsClient::new(
            aws::ssm_client(&sdk, context.ssm_endpoint.as_deref()),
            &scope.region,
            context.profile.as_deref(),
        );
        match set_up_scope(&client, plan.dry_run).await {
            Ok(lines) => {
                for line in lines {
                    // The lines quote the account's preferences (key ids, bucket and log group
                    // names): escaped, as everything from AWS.
                    println!("{label}: {}", crate::term::escape(&line));
                }
            }
            Err(err) => {
                failed += 1;
                report::notice(&format!("warning: {label}: {}", one_line(&err)));
                last_error = Some((label, err));
            }
        }
    }
    if plan.dry_run {
        println!("dry run: nothing was changed");
    }
    match (failed, last_error) {
        (0, _) => Ok(ExitCode::SUCCESS),
        (n, Some((label, err))) => Err(aws_failure(
            err,
            &format!(
                "setup failed in {n} of {} account regions",
                scopes.scopes.len()
            ),
            &label,
        )),
        (n, None) => Err(ExpectedError::new(
            ErrorKind::AwsConfig,
            format!(
                "setup failed in {n} of {} account regions: no credentials",
                scopes.scopes.len()
            ),
        )
        .target(format!(
            "{} first",
            first_unreached.unwrap_or_else(|| "every account".to_owned())
        ))
        .hint(
            "refresh the source identity's credentials (`aws sso login`, or a fresh MFA code), \
             check each account's role with `postern accounts`, or pick another source with \
             --source",
        )
        .into()),
    }
}

/// What the policy of a session role allows, per statement: StartSession on instances and on
/// the documents postern starts, Resume/TerminateSession on the caller's own sessions only
/// (AWS Systems Manager user guide, "Sample IAM policies for Session Manager": the session id
/// begins with the caller's user id or name), the two listing calls, the preferences document
/// for `doctor` and `setup`'s report, and GenerateDataKey for sessions only where the account's
/// preferences name a KMS key (the encryption context carries `aws:ssm:SessionId`, SPEC.md §7.2).
pub(crate) fn session_policy() -> Value {
    let documents: Vec<String> = SESSION_DOCUMENTS
        .iter()
        .map(|(name, owned_by_aws)| {
            if *owned_by_aws {
                format!("arn:aws:ssm:*::document/{name}")
            } else {
                format!("arn:aws:ssm:*:*:document/{name}")
            }
        })
        .collect();
    let mut start = vec![
        json!("arn:aws:ec2:*:*:instance/*"),
        json!("arn:aws:ssm:*:*:managed-instance/*"),
    ];
    start.extend(documents.into_iter().map(Value::String));
    json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "PosternStartSessions",
                "Effect": "Allow",
                "Action": "ssm:StartSession",
                "Resource": start,
            },
            {
                "Sid": "PosternOwnSessions",
                "Effect": "Allow",
                "Action": ["ssm:ResumeSession", "ssm:TerminateSession"],
                "Resource": [
                    "arn:aws:ssm:*:*:session/${aws:userid}-*",
                    "arn:aws:ssm:*:*:session/${aws:username}-*",
                ],
            },
            {
                "Sid": "PosternDiscovery",
                "Effect": "Allow",
                "Action": ["ec2:DescribeInstances", "ssm:DescribeInstanceInformation"],
                "Resource": "*",
            },
            {
                "Sid": "PosternPreferences",
                "Effect": "Allow",
                "Action": "ssm:GetDocument",
                "Resource": format!("arn:aws:ssm:*:*:document/{PREFERENCES_DOCUMENT}"),
            },
            {
                "Sid": "PosternSessionEncryptionWhereKmsIsOn",
                "Effect": "Allow",
                "Action": "kms:GenerateDataKey",
                "Resource": "arn:aws:kms:*:*:key/*",
                "Condition": {
                    "StringLike": { "kms:EncryptionContext:aws:ssm:SessionId": "*" }
                },
            },
            {
                // `postern ssh --push-key`: one key, one OS user, 60 seconds. An `ec2:osuser`
                // condition can narrow the users.
                "Sid": "PosternPushSshKeys",
                "Effect": "Allow",
                "Action": "ec2-instance-connect:SendSSHPublicKey",
                "Resource": "arn:aws:ec2:*:*:instance/*",
            },
        ],
    })
}

/// The policy of the role that runs `postern setup`: the document calls on postern's own
/// documents, and reading the preferences.
pub(crate) fn setup_policy() -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "PosternSetupDocuments",
                "Effect": "Allow",
                "Action": [
                    "ssm:DescribeDocument",
                    "ssm:GetDocument",
                    "ssm:CreateDocument",
                    "ssm:UpdateDocument",
                    "ssm:UpdateDocumentDefaultVersion",
                ],
                "Resource": "arn:aws:ssm:*:*:document/Postern-*",
            },
            {
                "Sid": "PosternSetupPreferences",
                "Effect": "Allow",
                "Action": "ssm:GetDocument",
                "Resource": format!("arn:aws:ssm:*:*:document/{PREFERENCES_DOCUMENT}"),
            },
        ],
    })
}

/// The `Postern-Command` document: one command without a PTY, stdout and stderr apart, then
/// the exit code. Schema: AWS Systems Manager user guide, "Session document schema"
/// (`schemaVersion` 1.0, `sessionType`, `parameters`, `properties`); the `properties.linux`
/// keys are those the agent reads (agent `agent/session/contracts/model.go` `ShellConfig`:
/// `commands`, `runAsElevated`, `separateOutputStream`, `stdOutSeparatorPrefix`,
/// `stdErrSeparatorPrefix`). The agent runs `commands` with `sh -c` and, with
/// `separateOutputStream`, reads both pipes without pacing and sends `EXIT_CODE: n` after both
/// close (agent `agent/session/shell/shell.go` `processCommandsWithOutputStreamSeparate`). No
/// prefixes: they would be inserted into the data. No Windows section: postern's commands are
/// POSIX sh.
pub(crate) fn postern_command_content() -> String {
    let document = json!({
        "schemaVersion": "1.0",
        "description": "postern: run one command without a terminal; stdout, stderr and the \
                        exit status apart (created by `postern setup`)",
        "sessionType": "NonInteractiveCommands",
        "parameters": {
            "command": {
                "type": "String",
                "description": "The command line, run by sh -c",
            },
        },
        "properties": {
            "linux": {
                "commands": "{{ command }}",
                "runAsElevated": false,
                "separateOutputStream": true,
            },
            "macos": {
                "commands": "{{ command }}",
                "runAsElevated": false,
                "separateOutputStream": true,
            },
        },
    });
    serde_json::to_string_pretty(&document).unwrap_or_default()
}

/// The session document `postern exec` and `postern cp` use where `postern setup` created it.
pub(crate) const POSTERN_COMMAND_DOCUMENT: &str = "Postern-Command";

/// Where an account keeps its Session Manager preferences.
const PREFERENCES_DOCUMENT: &str = "SSM-SessionManagerRunShell";

/// The session documents postern starts, and whether AWS owns them (ARNs without account).
const SESSION_DOCUMENTS: &[(&str, bool)] = &[
    (PREFERENCES_DOCUMENT, false),
    (POSTERN_COMMAND_DOCUMENT, false),
    ("AWS-StartInteractiveCommand", true),
    ("AWS-StartPortForwardingSession", true),
    ("AWS-StartPortForwardingSessionToRemoteHost", true),
    ("AWS-StartSSHSession", true),
];

/// The documents of one account and region, then its preferences; the report lines.
async fn set_up_scope(client: &DocumentsClient, dry_run: bool) -> Result<Vec<String>, AwsError> {
    let mut lines = Vec::new();
    let content = postern_command_content();
    lines.push(ensure_document(client, POSTERN_COMMAND_DOCUMENT, &content, dry_run).await?);
    lines.push(preferences(client).await?);
    Ok(lines)
}

/// Creates `name` or brings its default version to `content`, in as few calls as the state
/// needs: DescribeDocument; GetDocument of the default version (equal JSON: nothing to do);
/// of the latest version when it differs (equal: only UpdateDocumentDefaultVersion); else
/// UpdateDocument and UpdateDocumentDefaultVersion.
async fn ensure_document(
    client: &DocumentsClient,
    name: &str,
    content: &str,
    dry_run: bool,
) -> Result<String, AwsError> {
    let Some(versions) = client.describe(name).await? else {
        if dry_run {
            return Ok(format!("{name}: would create"));
        }
        client.create(name, content).await?;
        return Ok(format!("{name}: created (version 1)"));
    };
    if versions.document_type != "Session" {
        return Ok(format!(
            "{name}: left alone: it exists as a {} document, not a Session document",
            versions.document_type
        ));
    }
    let wanted: Value = serde_json::from_str(content).unwrap_or(Value::Null);
    let same = |text: Option<String>| {
        text.and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .is_some_and(|v| v == wanted)
    };
    if same(client.content(name, None).await?) {
        return Ok(format!(
            "{name}: up to date (version {})",
            versions.default_version
        ));
    }
    if versions.latest_version != versions.default_version
        && same(client.content(name, Some(&versions.latest_version)).await?)
    {
        if dry_run {
            return Ok(format!(
                "{name}: would make version {} the default (was {})",
                versions.latest_version, versions.default_version
            ));
        }
        client.set_default(name, &versions.latest_version).await?;
        return Ok(format!(
            "{name}: version {} made the default (was {})",
            versions.latest_version, versions.default_version
        ));
    }
    if dry_run {
        return Ok(format!(
            "{name}: would update (default version {}, latest {})",
            versions.default_version, versions.latest_version
        ));
    }
    let version = client.update(name, content).await?;
    client.set_default(name, &version).await?;
    Ok(format!(
        "{name}: updated to version {version} (was {}), now the default",
        versions.default_version
    ))
}

/// One line on the Session Manager preferences that change what postern does: a KMS key
/// (sessions are encrypted; the role needs kms:GenerateDataKey), the idle timeout and maximum
/// duration, Run As, session logging (S3 or CloudWatch: the agent writes session data to a
/// file first), the shell profile (AWS Systems Manager user guide, "Session document schema",
/// `inputs`).
async fn preferences(client: &DocumentsClient) -> Result<String, AwsError> {
    let Some(content) = client.content(PREFERENCES_DOCUMENT, None).await? else {
        return Ok(format!(
            "preferences: none saved ({PREFERENCES_DOCUMENT} absent): no KMS, idle timeout 20 \
             min, sessions run as ssm-user, no session logging"
        ));
    };
    let parsed: Value = serde_json::from_str(&content).unwrap_or(Value::Null);
    Ok(format!("preferences: {}", describe_preferences(&parsed)))
}

/// The preferences' `inputs` in words.
fn describe_preferences(document: &Value) -> String {
    let inputs = document.get("inputs").cloned().unwrap_or(Value::Null);
    let text = |key: &str| -> Option<String> {
        match inputs.get(key) {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(Value::Bool(b)) => Some(b.to_string()),
            _ => None,
        }
    };
    let mut parts = Vec::new();
    parts.push(match text("kmsKeyId") {
        Some(key) => {
            format!("KMS key {key} (sessions encrypted: the role needs kms:GenerateDataKey on it)")
        }
        None => "no KMS".to_owned(),
    });
    parts.push(format!(
        "idle timeout {} min",
        text("idleSessionTimeout").unwrap_or_else(|| "20".to_owned())
    ));
    if let Some(max) = text("maxSessionDuration") {
        parts.push(format!("maximum duration {max} min"));
    }
    let run_as = text("runAsEnabled").is_some_and(|v| v == "true");
    parts.push(if run_as {
        format!(
            "run as {}",
            text("runAsDefaultUser")
                .unwrap_or_else(|| "(the IAM principal's SSMSessionRunAs tag)".to_owned())
        )
    } else {
        "sessions run as ssm-user".to_owned()
    });
    let mut logging = Vec::new();
    if let Some(bucket) = text("s3BucketName") {
        logging.push(format!("S3 bucket {bucket}"));
    }
    if let Some(group) = text("cloudWatchLogGroupName") {
        logging.push(format!("CloudWatch log group {group}"));
    }
    parts.push(if logging.is_empty() {
        "no session logging".to_owned()
    } else {
        format!("session logging to {}", logging.join(" and "))
    });
    if document
        .pointer("/inputs/shellProfile/linux")
        .and_then(Value::as_str)
        .is_some_and(|s| !s.trim().is_empty())
    {
        parts.push("a Linux shell profile runs in shells".to_owned());
    }
    parts.join(", ")
}

/// An error in one line for a warning: operation, code, message.
fn one_line(err: &AwsError) -> String {
    match err.code() {
        Some(code) => format!("{} failed: {code}: {err}", err.operation),
        None => format!("{} failed: {err}", err.operation),
    }
}

/// An SDK configuration per scope, through the broker or the single profile.
trait Configs: Send + Sync {
    fn config_for<'a>(
        &'a self,
        scope: &'a Scope,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<aws_types::SdkConfig, String>> + Send + 'a>>;
}

impl<T: ScopeConfigs> Configs for T {
    fn config_for<'a>(
        &'a self,
        scope: &'a Scope,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<aws_types::SdkConfig, String>> + Send + 'a>>
    {
        Box::pin(async move { self.config(scope).await.map_err(|e| e.to_string()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_a_separate_stream_non_interactive_session() {
        let doc: Value = serde_json::from_str(&postern_command_content()).unwrap();
        assert_eq!(doc["schemaVersion"], "1.0");
        assert_eq!(doc["sessionType"], "NonInteractiveCommands");
        assert_eq!(doc["properties"]["linux"]["separateOutputStream"], true);
        assert_eq!(doc["properties"]["linux"]["commands"], "{{ command }}");
        assert!(doc["parameters"]["command"].is_object());
    }

    #[test]
    fn preferences_name_what_matters() {
        let doc = json!({"inputs": {"kmsKeyId": "alias/ssm", "idleSessionTimeout": "60",
            "runAsEnabled": true, "runAsDefaultUser": "ops", "s3BucketName": "logs"}});
        let text = describe_preferences(&doc);
        assert!(text.contains("KMS key alias/ssm"), "{text}");
        assert!(text.contains("idle timeout 60 min"), "{text}");
        assert!(text.contains("run as ops"), "{text}");
        assert!(text.contains("S3 bucket logs"), "{text}");
        let text = describe_preferences(&json!({}));
        assert!(text.starts_with("no KMS, idle timeout 20 min"), "{text}");
    }

    #[test]
    fn the_session_policy_scopes_session_control_to_the_caller() {
        let policy = session_policy();
        let text = policy.to_string();
        assert!(text.contains("session/${aws:userid}-*"));
        assert!(text.contains("document/Postern-Command"));
        assert!(
            !text.contains("CreateDocument"),
            "setup actions only in the setup policy"
        );
        assert!(setup_policy().to_string().contains("ssm:CreateDocument"));
    }
}
