//! EC2 Instance Connect (JSON 1.1, `AWSEC2InstanceConnectService.*`): `SendSSHPublicKey` keeps
//! the public key for 60 seconds per (instance, OS user), as the service does; the instance's
//! side is [`active_keys`], a loopback GET shaped like the instance metadata path the agent-side
//! helper reads (`/latest/meta-data/managed-ssh-keys/active-keys/USER/`, in
//! aws/aws-ec2-instance-connect-config `src/bin/eic_curl_authorized_keys`), for a test sshd's
//! AuthorizedKeysCommand: it prints only the keys pushed in the last 60 seconds for that
//! instance and user, one per line.
//!
//! Requests are validated as the API reference states (`InvalidArgsException`); an instance
//! the caller's account and region do not hold is `EC2InstanceNotFoundException`; a stopped
//! one `EC2InstanceStateInvalidException`; a Windows or macOS one
//! `EC2InstanceTypeInvalidException`; a role named by `--deny-push-key` gets
//! `AccessDeniedException`. It never logs the keys.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::{PrincipalKind, is_loopback_host};
use crate::awserror::AwsError;
use crate::control::Caller;
use crate::instances::{InstanceState, Platform};
use crate::server::Shared;

/// The keys pushed, by instance and OS user, with when each was pushed.
#[derive(Debug, Default)]
pub(crate) struct PushedKeys {
    keys: Mutex<HashMap<KeyHolder, Vec<Pushed>>>,
}

/// Whom a key lets in: one OS user of one instance.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct KeyHolder {
    instance: String,
    user: String,
}

/// One pushed key.
#[derive(Debug)]
struct Pushed {
    key: String,
    at: Instant,
}

impl Pushed {
    fn active(&self, now: Instant) -> bool {
        now.duration_since(self.at) < KEY_LIFETIME
    }
}

impl PushedKeys {
    /// Records `key` for `user` on `instance` at `now`, forgetting that pair's expired keys.
    fn push(&self, instance: &str, user: &str, key: &str, now: Instant) {
        let mut keys = self.lock();
        let entry = keys.entry(holder(instance, user)).or_default();
        entry.retain(|pushed| pushed.active(now));
        entry.push(Pushed {
            key: key.to_owned(),
            at: now,
        });
    }

    /// The keys pushed for `user` on `instance` less than 60 seconds before `now`, oldest first.
    pub(crate) fn active(&self, instance: &str, user: &str, now: Instant) -> Vec<String> {
        self.lock()
            .get(&holder(instance, user))
            .map(|keys| {
                keys.iter()
                    .filter(|pushed| pushed.active(now))
                    .map(|pushed| pushed.key.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<KeyHolder, Vec<Pushed>>> {
        // Each update is one call on the map: a poisoned map is still consistent.
        self.keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn holder(instance: &str, user: &str) -> KeyHolder {
    KeyHolder {
        instance: instance.to_owned(),
        user: user.to_owned(),
    }
}

/// Runs one EC2 Instance Connect operation.
pub(crate) fn handle(
    shared: &Shared,
    caller: &Caller,
    operation: &str,
    body: &[u8],
) -> Result<Value, AwsError> {
    match operation {
        "SendSSHPublicKey" => {
            let request: SendRequest = serde_json::from_slice(body)
                .map_err(|err| AwsError::serialization(err.to_string()))?;
            send_ssh_public_key(shared, caller, &request, Instant::now())
        }
        other => Err(AwsError::unknown_operation(&format!(
            "{TARGET_PREFIX}.{other}"
        ))),
    }
}

/// `GET /ec2-instance-connect/{instance}/latest/meta-data/managed-ssh-keys/active-keys/{user}/`:
/// the instance's view of its active keys, `text/plain`, one per line (404 when none, as the
/// metadata service answers a user without keys).
pub(crate) async fn active_keys(
    State(shared): State<Arc<Shared>>,
    Path((instance, user)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    if !is_loopback_host(host) {
        return (StatusCode::MISDIRECTED_REQUEST, "loopback hosts only\n").into_response();
    }
    let keys = shared.pushed_keys.active(&instance, &user, Instant::now());
    if keys.is_empty() {
        return (StatusCode::NOT_FOUND, "").into_response();
    }
    let mut body = keys.join("\n");
    body.push('\n');
    ([(header::CONTENT_TYPE, "text/plain")], body).into_response()
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SendRequest {
    instance_id: Option<String>,
    #[serde(rename = "InstanceOSUser")]
    instance_os_user: Option<String>,
    #[serde(rename = "SSHPublicKey")]
    ssh_public_key: Option<String>,
    availability_zone: Option<String>,
}

fn send_ssh_public_key(
    shared: &Shared,
    caller: &Caller,
    request: &SendRequest,
    now: Instant,
) -> Result<Value, AwsError> {
    let instance_id = required(request.instance_id.as_deref(), "instanceId")?;
    let user = required(request.instance_os_user.as_deref(), "instanceOSUser")?;
    let key = required(request.ssh_public_key.as_deref(), "sSHPublicKey")?;
    if !is_valid_instance_id(instance_id) {
        return Err(invalid_args(&format!(
            "Value '{instance_id}' at 'instanceId' failed to satisfy constraint: Member must \
             satisfy regular expression pattern: ^i-[a-f0-9]+$"
        )));
    }
    if !is_valid_os_user(user) {
        return Err(invalid_args(&format!(
            "Value '{user}' at 'instanceOSUser' failed to satisfy constraint: Member must \
             satisfy regular expression pattern: {OS_USER_PATTERN}"
        )));
    }
    if !is_valid_public_key(key) {
        return Err(invalid_args(
            "Public key is not in a supported format (ssh-rsa, ssh-ed25519, ecdsa-sha2-nistp*)",
        ));
    }
    if let PrincipalKind::AssumedRole { role } = &caller.principal.kind
        && shared
            .config
            .push_key_denied_roles
            .iter()
            .any(|r| r == role)
    {
        return Err(AwsError::new(
            "AccessDeniedException",
            format!(
                "User: {} is not authorized to perform: ec2-instance-connect:SendSSHPublicKey \
                 on resource: arn:aws:ec2:{}:{}:instance/{instance_id}",
                caller.principal.arn, caller.region, caller.principal.account
            ),
        ));
    }
    let Some(instance) = shared
        .instances
        .get(instance_id)
        .filter(|instance| caller.sees(instance))
    else {
        return Err(AwsError::new(
            "EC2InstanceNotFoundException",
            format!("Instance {instance_id} not found"),
        ));
    };
    let zone = format!("{}a", instance.region);
    if let Some(asked) = request.availability_zone.as_deref()
        && asked != zone
    {
        // The emulator's wording: the service's for a zone that does not hold the instance.
        return Err(AwsError::new(
            "EC2InstanceNotFoundException",
            format!("Instance {instance_id} not found in availability zone {asked}"),
        ));
    }
    if instance.state != InstanceState::Running {
        return Err(AwsError::new(
            "EC2InstanceStateInvalidException",
            format!("Instance {instance_id} is not in a valid state (it must be running)"),
        ));
    }
    if instance.platform != Platform::Linux {
        return Err(AwsError::new(
            "EC2InstanceTypeInvalidException",
            format!(
                "EC2 Instance Connect does not support {} instances",
                instance.platform_name
            ),
        ));
    }
    shared.pushed_keys.push(instance_id, user, key.trim(), now);
    tracing::info!(%instance_id, %user, "SendSSHPublicKey: key kept for 60 s");
    Ok(json!({ "RequestId": uuid::Uuid::new_v4().to_string(), "Success": true }))
}

fn required<'a>(value: Option<&'a str>, member: &str) -> Result<&'a str, AwsError> {
    value.filter(|v| !v.is_empty()).ok_or_else(|| {
        invalid_args(&format!(
            "Value null at '{member}' failed to satisfy constraint: Member must not be null"
        ))
    })
}

fn invalid_args(detail: &str) -> AwsError {
    AwsError::new("InvalidArgsException", detail.to_owned())
}

/// `^i-[a-f0-9]+$`, 10 to 32 characters (API reference, SendSSHPublicKey).
fn is_valid_instance_id(id: &str) -> bool {
    (10..=32).contains(&id.len())
        && id.strip_prefix("i-").is_some_and(|hex| {
            hex.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
}

/// [`OS_USER_PATTERN`], 1 to 32 characters.
fn is_valid_os_user(user: &str) -> bool {
    let bytes = user.as_bytes();
    let Some((first, rest)) = bytes.split_first() else {
        return false;
    };
    let middle_ok = |b: &u8| b.is_ascii_alphanumeric() || b"@._-".contains(b);
    let last_ok = |b: &u8| b.is_ascii_alphanumeric() || b"$_-".contains(b);
    let rest_ok = match rest.split_last() {
        None => true,
        Some((last, middle)) => middle.iter().all(middle_ok) && (middle_ok(last) || last_ok(last)),
    };
    bytes.len() <= 32 && (first.is_ascii_alphabetic() || *first == b'_') && rest_ok
}

/// An OpenSSH public key line of a type EC2 Instance Connect takes, 80 to 4096 characters,
/// whose blob names the same type.
fn is_valid_public_key(key: &str) -> bool {
    let key = key.trim();
    if !(80..=4096).contains(&key.len()) {
        return false;
    }
    let mut words = key.split_whitespace();
    let (Some(kind), Some(blob)) = (words.next(), words.next()) else {
        return false;
    };
    let known = kind == "ssh-rsa" || kind == "ssh-ed25519" || kind.starts_with("ecdsa-sha2-nistp");
    let Ok(blob) = BASE64.decode(blob) else {
        return false;
    };
    // The blob starts with the type as an SSH string: a 4-byte length, then the name.
    let named = blob
        .get(4..4 + kind.len())
        .is_some_and(|name| name == kind.as_bytes());
    known && named
}

/// `X-Amz-Target` prefix of EC2 Instance Connect operations.
pub(crate) const TARGET_PREFIX: &str = "AWSEC2InstanceConnectService";
/// The instance-side path of the keys (an IMDS path under the instance's id).
pub(crate) const KEYS_ROUTE: &str =
    "/ec2-instance-connect/{instance}/latest/meta-data/managed-ssh-keys/active-keys/{user}/";
/// How long a pushed key is accepted (SendSSHPublicKey API reference: 60 seconds).
const KEY_LIFETIME: Duration = Duration::from_secs(60);
/// The API reference's pattern for `InstanceOSUser`.
const OS_USER_PATTERN: &str = r"^[A-Za-z_][A-Za-z0-9\@\._-]{0,30}[A-Za-z0-9\$_-]?$";

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDP0Pm8PSt0Q7+zSOt0DMtmRCBbOd3Wsk8mznyUtdVwD test";

    #[test]
    fn keys_expire_after_60_seconds_per_instance_and_user() {
        let keys = PushedKeys::default();
        let t0 = Instant::now();
        keys.push("i-1", "ec2-user", "k1", t0);
        keys.push("i-1", "ec2-user", "k2", t0 + Duration::from_secs(30));
        assert_eq!(
            keys.active("i-1", "ec2-user", t0 + Duration::from_secs(59)),
            ["k1", "k2"]
        );
        assert_eq!(
            keys.active("i-1", "ec2-user", t0 + Duration::from_secs(60)),
            ["k2"]
        );
        assert!(
            keys.active("i-1", "ec2-user", t0 + Duration::from_secs(90))
                .is_empty()
        );
        assert!(keys.active("i-1", "admin", t0).is_empty());
        assert!(keys.active("i-2", "ec2-user", t0).is_empty());
    }

    #[test]
    fn validates_as_the_api_reference_says() {
        assert!(is_valid_instance_id("i-0123456789abcdef0"));
        assert!(!is_valid_instance_id("mi-0123456789abcdef0"));
        assert!(!is_valid_instance_id("i-0123456789ABCDEF0"));
        for user in ["ec2-user", "ubuntu", "_svc", "a", "user$"] {
            assert!(is_valid_os_user(user), "{user}");
        }
        for user in ["", "-l", "9user", "a b", &"u".repeat(33)] {
            assert!(!is_valid_os_user(user), "{user}");
        }
        assert!(is_valid_public_key(KEY));
        assert!(!is_valid_public_key("ssh-dss AAAA"));
        let mislabelled = KEY.replacen("ssh-ed25519", "ssh-rsa", 1);
        assert!(!is_valid_public_key(&mislabelled));
    }
}
