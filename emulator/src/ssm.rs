//! SSM operations of the control plane (JSON 1.1): `StartSession`, `ResumeSession` and
//! `TerminateSession` (SPEC.md §1), `DescribeInstanceInformation`, and the document operations
//! ([`crate::document_store`]: an account's own session documents, its Session Manager
//! preferences among them).
//!
//! StartSession validates the target (an online instance of the caller's account and region)
//! and document, creates the registry entry and spawns the session's task; the task itself
//! waits for the websocket. Every session, whatever the instance, runs on this machine.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use serde_json::{Value, json};

use crate::awserror::AwsError;
use crate::control::Caller;
use crate::documents;
use crate::driver;
use crate::instances::{CURRENT_AGENT_VERSION, InstanceSpec, PingStatus};
use crate::query::{page, wildcard_match};
use crate::server::Shared;

/// Runs one SSM operation.
pub(crate) fn handle(
    shared: &Arc<Shared>,
    caller: &Caller,
    operation: &str,
    body: &[u8],
) -> Result<Value, AwsError> {
    match operation {
        "StartSession" => start_session(shared, caller, parse(body)?),
        "DescribeInstanceInformation" => {
            describe_instance_information(shared, caller, parse(body)?)
        }
        "ResumeSession" => resume_session(shared, parse(body)?),
        "TerminateSession" => terminate_session(shared, parse(body)?),
        other => shared
            .documents
            .handle(caller, other, body)
            .unwrap_or_else(|| Err(AwsError::unknown_operation(&format!("AmazonSSM.{other}")))),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StartSessionRequest {
    target: Option<String>,
    document_name: Option<String>,
    #[serde(default)]
    parameters: BTreeMap<String, Vec<String>>,
    /// Only logged, so that tests can see the reason a client gave.
    reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SessionIdRequest {
    session_id: Option<String>,
}

fn start_session(
    shared: &Arc<Shared>,
    caller: &Caller,
    request: StartSessionRequest,
) -> Result<Value, AwsError> {
    if let Some(code) = &shared.config.faults.fail_start_session {
        return Err(AwsError::new(code, injected_message(code)));
    }
    let target = request.target.ok_or_else(|| {
        validation("Value null at 'target' failed to satisfy constraint: Member must not be null")
    })?;
    // Instances of other accounts or regions, stopped or offline ones: all "not connected".
    let reachable = shared
        .instances
        .get(&target)
        .filter(|i| caller.sees(i) && i.is_connected());
    let Some(instance) = reachable else {
        return Err(AwsError::new(
            "TargetNotConnected",
            format!("{target} is not connected."),
        ));
    };
    let plan = documents::resolve(
        request.document_name.as_deref(),
        &request.parameters,
        shared.config.ssh_port,
    )
    .or_else(|err| match (&err, request.document_name.as_deref()) {
        // Not an AWS-owned document: the account's own, if it created one by that name.
        (documents::DocumentError::Unknown(_), Some(name)) => {
            match shared.documents.default_content(caller, name) {
                Some(content) => documents::resolve_custom(name, &content, &request.parameters),
                None => Err(err),
            }
        }
        _ => Err(err),
    })
    .map_err(|err| AwsError::new(err.aws_code(), err.to_string()))?;
    let created = shared.registry.create(&target);
    tracing::info!(
        session_id = %created.session_id,
        target = %target,
        document = %plan.document,
        reason = request.reason.as_deref(),
        "session started"
    );
    let response = json!({
        "SessionId": created.session_id,
        "TokenValue": created.token.expose(),
        "StreamUrl": shared.stream_url(&created.session_id),
    });
    let task = driver::run(
        Arc::clone(shared),
        driver::SessionSpec {
            session_id: created.session_id,
            instance: instance.clone(),
            plan,
        },
        created.commands,
    );
    shared.spawn_session(task);
    Ok(response)
}

fn resume_session(shared: &Shared, request: SessionIdRequest) -> Result<Value, AwsError> {
    let session_id = required_session_id(request)?;
    let token = shared
        .registry
        .resume(&session_id)
        .map_err(|err| AwsError::new("DoesNotExistException", err.to_string()))?;
    tracing::info!(%session_id, resumable = token.is_some(), "session resume requested");
    Ok(match token {
        Some(token) => json!({
            "SessionId": session_id,
            "TokenValue": token.expose(),
            "StreamUrl": shared.stream_url(&session_id),
        }),
        None => json!({ "SessionId": session_id }),
    })
}

fn terminate_session(shared: &Shared, request: SessionIdRequest) -> Result<Value, AwsError> {
    let session_id = required_session_id(request)?;
    // Terminating an unknown or ended session succeeds, as in SSM.
    if shared.registry.terminate(&session_id).is_ok() {
        tracing::info!(%session_id, "session termination requested");
    }
    Ok(json!({ "SessionId": session_id }))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct DescribeInstanceInformationRequest {
    #[serde(default)]
    instance_information_filter_list: Vec<LegacyFilter>,
    #[serde(default)]
    filters: Vec<Filter>,
    max_results: Option<usize>,
    next_token: Option<String>,
}

/// `InstanceInformationFilterList` items (lowercase keys, as the API defines them).
#[derive(Deserialize)]
struct LegacyFilter {
    key: String,
    #[serde(rename = "valueSet", default)]
    value_set: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Filter {
    key: String,
    #[serde(default)]
    values: Vec<String>,
}

fn describe_instance_information(
    shared: &Shared,
    caller: &Caller,
    request: DescribeInstanceInformationRequest,
) -> Result<Value, AwsError> {
    let max = request.max_results.unwrap_or(MAX_INFORMATION_RESULTS);
    if !(MIN_INFORMATION_RESULTS..=MAX_INFORMATION_RESULTS).contains(&max) {
        return Err(validation(&format!(
            "Value '{max}' at 'maxResults' failed to satisfy constraint: Member must have value \
             {} {}",
            if max < MIN_INFORMATION_RESULTS {
                "greater than or equal to"
            } else {
                "less than or equal to"
            },
            if max < MIN_INFORMATION_RESULTS {
                MIN_INFORMATION_RESULTS
            } else {
                MAX_INFORMATION_RESULTS
            }
        )));
    }
    if !request.instance_information_filter_list.is_empty() && !request.filters.is_empty() {
        return Err(AwsError::new(
            "InvalidFilter",
            "InstanceInformationFilterList and Filters cannot be used together",
        ));
    }
    let filters: Vec<(String, Vec<String>)> = request
        .instance_information_filter_list
        .into_iter()
        .map(|f| (f.key, f.value_set))
        .chain(request.filters.into_iter().map(|f| (f.key, f.values)))
        .collect();
    for (key, values) in &filters {
        if !is_known_information_filter(key) {
            return Err(AwsError::new(
                "InvalidFilterKey",
                format!("The specified key {key} is not valid."),
            ));
        }
        if values.is_empty() {
            return Err(AwsError::new(
                "InvalidInstanceInformationFilterValue",
                format!("The filter {key} has no values."),
            ));
        }
    }
    let selected: Vec<&InstanceSpec> = shared
        .config
        .fleet
        .instances
        .iter()
        .filter(|i| i.ping_status != PingStatus::Unmanaged && caller.sees(i))
        .filter(|i| {
            filters
                .iter()
                .all(|(key, values)| information_matches(i, key, values))
        })
        .collect();
    let scope = format!(
        "ssm:{}:{}:{filters:?}",
        caller.principal.account, caller.region
    );
    let (items, next) = page(&selected, max, request.next_token.as_deref(), &scope)
        .map_err(|()| AwsError::new("InvalidNextToken", "The specified token is not valid."))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64().floor());
    let list: Vec<Value> = items.iter().map(|i| information(i, now)).collect();
    let mut response = json!({ "InstanceInformationList": list });
    if let Some(next) = next {
        response["NextToken"] = Value::String(next);
    }
    Ok(response)
}

/// One `InstanceInformation`, as SSM reports it.
fn information(instance: &InstanceSpec, now: f64) -> Value {
    let managed = instance.is_managed_instance();
    // Online agents pinged within the last few minutes; lost ones a day ago.
    let last_ping = match instance.ping_status {
        PingStatus::Online => now - 60.0,
        _ => now - 86_400.0,
    };
    let mut value = json!({
        "InstanceId": instance.id,
        "PingStatus": instance.ping_status.as_str(),
        "LastPingDateTime": last_ping,
        "AgentVersion": instance.agent_version,
        "IsLatestVersion": instance.agent_version == CURRENT_AGENT_VERSION,
        "PlatformType": instance.platform.as_str(),
        "PlatformName": instance.platform_name,
        "PlatformVersion": instance.platform_version,
        "ResourceType": if managed { "ManagedInstance" } else { "EC2Instance" },
        "IPAddress": instance.private_ip,
        "ComputerName": instance.private_dns,
        "AssociationStatus": "Success",
        "LastAssociationExecutionDate": last_ping,
        "LastSuccessfulAssociationExecutionDate": last_ping,
        "SourceId": instance.id,
        "SourceType": if managed { "AWS::SSM::ManagedInstance" } else { "AWS::EC2::Instance" },
    });
    if managed {
        value["Name"] = Value::String(instance.name.clone());
        value["IamRole"] = Value::String("SSMServiceRole".to_owned());
        value["RegistrationDate"] = json!(REGISTRATION_DATE);
        value["ActivationId"] = Value::String(format!(
            "{:0>8}-0000-4000-8000-000000000000",
            &instance.account[..8]
        ));
    }
    value
}

fn is_known_information_filter(key: &str) -> bool {
    key.starts_with("tag:")
        || matches!(
            key,
            "InstanceIds"
                | "AgentVersion"
                | "PingStatus"
                | "PlatformTypes"
                | "ResourceType"
                | "AssociationStatus"
                | "tag-key"
        )
}

fn information_matches(instance: &InstanceSpec, key: &str, values: &[String]) -> bool {
    let any = |text: &str| values.iter().any(|v| v == text);
    if let Some(tag) = key.strip_prefix("tag:") {
        let value = match tag {
            "Name" => Some(&instance.name),
            _ => instance.tags.get(tag),
        };
        return value.is_some_and(|v| values.iter().any(|p| wildcard_match(p, v)));
    }
    match key {
        "InstanceIds" => any(&instance.id),
        "AgentVersion" => any(&instance.agent_version),
        "PingStatus" => any(instance.ping_status.as_str()),
        "PlatformTypes" => any(instance.platform.as_str()),
        "ResourceType" => any(if instance.is_managed_instance() {
            "ManagedInstance"
        } else {
            "EC2Instance"
        }),
        "AssociationStatus" => any("Success"),
        "tag-key" => any("Name") || instance.tags.keys().any(|k| any(k)),
        _ => false,
    }
}

fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, AwsError> {
    serde_json::from_slice(body).map_err(|err| AwsError::serialization(err.to_string()))
}

fn required_session_id(request: SessionIdRequest) -> Result<String, AwsError> {
    request
        .session_id
        .filter(|id| !id.is_empty())
        .ok_or_else(|| {
            validation(
                "Value null at 'sessionId' failed to satisfy constraint: Member must not be null",
            )
        })
}

fn validation(detail: &str) -> AwsError {
    AwsError::new(
        "ValidationException",
        format!("1 validation error detected: {detail}"),
    )
}

/// The message AWS gives for the common codes, so injected failures read like real ones.
fn injected_message(code: &str) -> String {
    match code {
        "TargetNotConnected" => "the target is not connected.".to_owned(),
        "AccessDeniedException" => "User is not authorized to perform: ssm:StartSession on resource because no identity-based policy allows the ssm:StartSession action".to_owned(),
        "InvalidDocument" => "Document does not exist.".to_owned(),
        "ThrottlingException" => "Rate exceeded".to_owned(),
        other => format!("{other} (injected by the emulator)"),
    }
}

/// DescribeInstanceInformation pages hold 5 to 50 items (50 by default).
const MIN_INFORMATION_RESULTS: usize = 5;
const MAX_INFORMATION_RESULTS: usize = 50;
/// 2024-05-01T08:00:00Z, when the fleet's managed instances registered.
const REGISTRATION_DATE: f64 = 1_714_550_400.0;
