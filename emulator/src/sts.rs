//! STS operations (AWS query protocol, XML responses as STS sends them): `AssumeRole`,
//! `GetCallerIdentity` and `GetSessionToken` (with an MFA serial and code).
//!
//! AssumeRole succeeds only for role names the target account lists in the fleet; anything else
//! is AccessDenied worded as STS words it. Issued credentials act in the role's account until
//! their expiration (`--credential-lifetime` overrides the requested duration). Secret keys and
//! tokens appear only in the response body, never in logs.

use std::time::{Duration, SystemTime};

use crate::auth::{IssuedCredentials, Principal, PrincipalKind};
use crate::awserror::{AwsError, STS_XMLNS};
use crate::control::Caller;
use crate::query::{Form, Xml};
use crate::server::Shared;

/// Runs one STS action; the `Ok` value is the XML body.
pub(crate) fn handle(
    shared: &Shared,
    caller: &Caller,
    form: &Form,
    request_id: &str,
) -> Result<String, AwsError> {
    match form.get("Action").unwrap_or_default() {
        "AssumeRole" => assume_role(shared, caller, form, request_id),
        "GetCallerIdentity" => Ok(caller_identity(&caller.principal, request_id)),
        "GetSessionToken" => session_token(shared, caller, form, request_id),
        other => Err(AwsError::new(
            "InvalidAction",
            format!("Could not find operation {other} for version 2011-06-15"),
        )),
    }
}

fn assume_role(
    shared: &Shared,
    caller: &Caller,
    form: &Form,
    request_id: &str,
) -> Result<String, AwsError> {
    let role_arn = required(form, "RoleArn", "roleArn")?;
    let session_name = required(form, "RoleSessionName", "roleSessionName")?;
    if !is_valid_session_name(session_name) {
        return Err(validation(&format!(
            "Value '{session_name}' at 'roleSessionName' failed to satisfy constraint: Member \
             must satisfy regular expression pattern: [\\w+=,.@-]*"
        )));
    }
    let duration = duration(form, DEFAULT_ROLE_DURATION, MAX_ROLE_DURATION)?;
    if let Some(code) = form.get("TokenCode") {
        check_mfa_code(shared, code)?;
    }
    let denied = || {
        AwsError::new(
            "AccessDenied",
            format!(
                "User: {} is not authorized to perform: sts:AssumeRole on resource: {role_arn}",
                caller.principal.arn
            ),
        )
    };
    let (account, role) = parse_role_arn(role_arn).ok_or_else(|| {
        validation(&format!(
            "Value '{role_arn}' at 'roleArn' failed to satisfy constraint: Member must be a \
             valid role ARN"
        ))
    })?;
    let allowed = shared
        .config
        .fleet
        .account(account)
        .is_some_and(|a| a.roles.iter().any(|r| r == role));
    if !allowed {
        tracing::info!(%account, %role, caller = %caller.principal.arn, "AssumeRole denied");
        return Err(denied());
    }
    let principal = Principal::assumed_role(account, role, session_name);
    let lifetime = shared
        .config
        .role_credential_lifetime
        .or(shared.config.credential_lifetime)
        .unwrap_or(duration);
    let issued = shared
        .credentials
        .issue(principal.clone(), lifetime, SystemTime::now());
    tracing::info!(%account, %role, %session_name, ?lifetime, "AssumeRole");
    let mut xml = Xml::document("AssumeRoleResponse", STS_XMLNS);
    xml.start("AssumeRoleResult")
        .start("AssumedRoleUser")
        .leaf("AssumedRoleId", &principal.user_id)
        .leaf("Arn", &principal.arn)
        .end();
    credentials_element(&mut xml, &issued);
    xml.end();
    response_metadata(&mut xml, request_id);
    Ok(xml.finish())
}

fn caller_identity(principal: &Principal, request_id: &str) -> String {
    let mut xml = Xml::document("GetCallerIdentityResponse", STS_XMLNS);
    xml.start("GetCallerIdentityResult")
        .leaf("Arn", &principal.arn)
        .leaf("UserId", &principal.user_id)
        .leaf("Account", &principal.account)
        .end();
    response_metadata(&mut xml, request_id);
    xml.finish()
}

fn session_token(
    shared: &Shared,
    caller: &Caller,
    form: &Form,
    request_id: &str,
) -> Result<String, AwsError> {
    if caller.principal.kind != PrincipalKind::User {
        return Err(AwsError::new(
            "AccessDenied",
            "Cannot call GetSessionToken with session credentials",
        ));
    }
    let duration = duration(form, DEFAULT_SESSION_DURATION, MAX_SESSION_DURATION)?;
    let mfa = match (form.get("SerialNumber"), form.get("TokenCode")) {
        (None, None) => false,
        (Some(serial), Some(code)) => {
            check_mfa_serial(&caller.principal, serial)?;
            check_mfa_code(shared, code)?;
            true
        }
        _ => {
            return Err(AwsError::new(
                "AccessDenied",
                "MultiFactorAuthentication failed, must provide both MFA serial number and one \
                 time pass code.",
            ));
        }
    };
    let lifetime = shared.config.credential_lifetime.unwrap_or(duration);
    let issued = shared.credentials.issue(
        caller.principal.with_session(mfa),
        lifetime,
        SystemTime::now(),
    );
    tracing::info!(account = %caller.principal.account, mfa, ?lifetime, "GetSessionToken");
    let mut xml = Xml::document("GetSessionTokenResponse", STS_XMLNS);
    xml.start("GetSessionTokenResult");
    credentials_element(&mut xml, &issued);
    xml.end();
    response_metadata(&mut xml, request_id);
    Ok(xml.finish())
}

fn credentials_element(xml: &mut Xml, issued: &IssuedCredentials) {
    xml.start("Credentials")
        .leaf("AccessKeyId", &issued.access_key_id)
        .leaf("SecretAccessKey", issued.secret_access_key.expose())
        .leaf("SessionToken", issued.session_token.expose())
        .leaf(
            "Expiration",
            &humantime::format_rfc3339_seconds(issued.expiration).to_string(),
        )
        .end();
}

fn response_metadata(xml: &mut Xml, request_id: &str) {
    xml.start("ResponseMetadata")
        .leaf("RequestId", request_id)
        .end();
}

/// `arn:aws:iam::ACCOUNT:role/[PATH/]NAME` into (account, name).
fn parse_role_arn(arn: &str) -> Option<(&str, &str)> {
    let rest = arn.strip_prefix("arn:aws:iam::")?;
    let (account, resource) = rest.split_once(':')?;
    let path = resource.strip_prefix("role/")?;
    let name = path.rsplit('/').next()?;
    let valid_account = account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit());
    (valid_account && !name.is_empty()).then_some((account, name))
}

/// An MFA device of the caller's account: `arn:aws:iam::ACCOUNT:mfa/NAME`, or a hardware
/// serial (letters and digits).
fn check_mfa_serial(principal: &Principal, serial: &str) -> Result<(), AwsError> {
    let valid = match serial.strip_prefix("arn:aws:iam::") {
        Some(rest) => rest
            .split_once(":mfa/")
            .is_some_and(|(account, name)| account == principal.account && !name.is_empty()),
        None => {
            (9..=256).contains(&serial.len()) && serial.bytes().all(|b| b.is_ascii_alphanumeric())
        }
    };
    if valid {
        Ok(())
    } else {
        Err(AwsError::new(
            "AccessDenied",
            "MultiFactorAuthentication failed, unable to validate MFA code.  Please verify your \
             MFA serial number is valid and associated with this user.",
        ))
    }
}

/// Six digits, equal to `--mfa-code` when one is configured.
fn check_mfa_code(shared: &Shared, code: &str) -> Result<(), AwsError> {
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(validation(&format!(
            "Value '{code}' at 'tokenCode' failed to satisfy constraint: Member must satisfy \
             regular expression pattern: [\\d]*"
        )));
    }
    match &shared.config.mfa_code {
        Some(expected) if expected != code => Err(AwsError::new(
            "AccessDenied",
            "MultiFactorAuthentication failed with invalid MFA one time pass code. ",
        )),
        _ => Ok(()),
    }
}

fn duration(form: &Form, default: Duration, max: Duration) -> Result<Duration, AwsError> {
    let Some(text) = form.get("DurationSeconds") else {
        return Ok(default);
    };
    let seconds: u64 = text.parse().map_err(|_| {
        validation(&format!(
            "Value '{text}' at 'durationSeconds' is not a number"
        ))
    })?;
    if seconds < MIN_DURATION.as_secs() {
        return Err(validation(&format!(
            "Value '{seconds}' at 'durationSeconds' failed to satisfy constraint: Member must \
             have value greater than or equal to {}",
            MIN_DURATION.as_secs()
        )));
    }
    if seconds > max.as_secs() {
        return Err(validation(&format!(
            "The requested DurationSeconds exceeds the MaxSessionDuration set for this role \
             ({} seconds)",
            max.as_secs()
        )));
    }
    Ok(Duration::from_secs(seconds))
}

fn required<'a>(form: &'a Form, key: &str, member: &str) -> Result<&'a str, AwsError> {
    form.get(key).filter(|v| !v.is_empty()).ok_or_else(|| {
        validation(&format!(
            "Value null at '{member}' failed to satisfy constraint: Member must not be null"
        ))
    })
}

/// 2-64 of `[\w+=,.@-]`.
fn is_valid_session_name(name: &str) -> bool {
    (2..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+=,.@-".contains(&b))
}

fn validation(detail: &str) -> AwsError {
    AwsError::new(
        "ValidationError",
        format!("1 validation error detected: {detail}"),
    )
}

const MIN_DURATION: Duration = Duration::from_secs(900);
/// A role's default MaxSessionDuration (1 h), also the default AssumeRole duration.
const DEFAULT_ROLE_DURATION: Duration = Duration::from_secs(3600);
const MAX_ROLE_DURATION: Duration = Duration::from_secs(3600);
/// GetSessionToken: 12 h by default, at most 36 h.
const DEFAULT_SESSION_DURATION: Duration = Duration::from_secs(43_200);
const MAX_SESSION_DURATION: Duration = Duration::from_secs(129_600);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_role_arns_with_paths() {
        assert_eq!(
            parse_role_arn("arn:aws:iam::123456789012:role/PosternAccess"),
            Some(("123456789012", "PosternAccess"))
        );
        assert_eq!(
            parse_role_arn("arn:aws:iam::123456789012:role/ops/Admin"),
            Some(("123456789012", "Admin"))
        );
        assert_eq!(parse_role_arn("arn:aws:iam::1234:role/X"), None);
        assert_eq!(parse_role_arn("arn:aws:iam::123456789012:user/X"), None);
    }

    #[test]
    fn mfa_serials_must_belong_to_the_callers_account() {
        let principal = Principal::base_user("111111111111");
        assert!(check_mfa_serial(&principal, "arn:aws:iam::111111111111:mfa/alice").is_ok());
        assert!(check_mfa_serial(&principal, "GAHT12345678").is_ok());
        let err = check_mfa_serial(&principal, "arn:aws:iam::222222222222:mfa/alice").unwrap_err();
        assert_eq!(err.code, "AccessDenied");
    }

    #[test]
    fn session_names_follow_the_sts_pattern() {
        assert!(is_valid_session_name("alice@example.com"));
        assert!(!is_valid_session_name("a"));
        assert!(!is_valid_session_name("has space"));
    }
}
