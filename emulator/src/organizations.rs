//! Organizations (JSON 1.1) for callers in the management account only (member accounts get
//! AccessDeniedException, as from AWS): `ListAccounts` with `MaxResults`/`NextToken`
//! pagination; `ListTagsForResource` (each account is tagged `environment=<env>`);
//! `ListParents` and `DescribeOrganizationalUnit` (member accounts sit in one OU per
//! environment, named `Dev`, `Stg` or `Prod`; the management account sits in the root).

use serde::Deserialize;
use serde_json::{Value, json};

use crate::awserror::AwsError;
use crate::control::Caller;
use crate::fleet::{AccountSpec, Env};
use crate::query::page;
use crate::server::Shared;

/// Runs one Organizations operation.
pub(crate) fn handle(
    shared: &Shared,
    caller: &Caller,
    operation: &str,
    body: &[u8],
) -> Result<Value, AwsError> {
    match operation {
        "ListAccounts" => list_accounts(shared, caller, body),
        "ListTagsForResource" => list_tags(shared, caller, body),
        "ListParents" => list_parents(shared, caller, body),
        "DescribeOrganizationalUnit" => describe_ou(shared, caller, body),
        other => Err(AwsError::unknown_operation(&format!(
            "AWSOrganizationsV20161128.{other}"
        ))),
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct ListAccountsRequest {
    max_results: Option<usize>,
    next_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListTagsRequest {
    resource_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListParentsRequest {
    child_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DescribeOuRequest {
    organizational_unit_id: String,
}

fn list_accounts(shared: &Shared, caller: &Caller, body: &[u8]) -> Result<Value, AwsError> {
    let request: ListAccountsRequest = if body.is_empty() {
        ListAccountsRequest::default()
    } else {
        decode(body)?
    };
    let fleet = &shared.config.fleet;
    management_only(shared, caller)?;
    let max = request.max_results.unwrap_or(MAX_RESULTS);
    if !(1..=MAX_RESULTS).contains(&max) {
        return Err(AwsError::new(
            "InvalidInputException",
            format!(
                "You provided a value that does not match the required pattern. (MaxResults {max} is not between 1 and {MAX_RESULTS})"
            ),
        ));
    }
    let scope = format!("organizations:{}", fleet.management_account);
    let (accounts, next) = page(&fleet.accounts, max, request.next_token.as_deref(), &scope)
        .map_err(|()| {
            AwsError::new(
                "InvalidInputException",
                "You specified an invalid value for nextToken. You must get the value from the \
             response to a previous call to the API.",
            )
        })?;
    let organization = organization_id(&fleet.management_account);
    let accounts: Vec<Value> = accounts
        .iter()
        .map(|account| {
            json!({
                "Id": account.id,
                "Arn": format!(
                    "arn:aws:organizations::{}:account/{organization}/{}",
                    fleet.management_account, account.id
                ),
                "Email": account.email,
                "Name": account.alias,
                "Status": "ACTIVE",
                "State": "ACTIVE",
                "JoinedMethod": if account.id == fleet.management_account { "CREATED" } else { "INVITED" },
                "JoinedTimestamp": JOINED_TIMESTAMP,
            })
        })
        .collect();
    let mut response = json!({ "Accounts": accounts });
    if let Some(next) = next {
        response["NextToken"] = Value::String(next);
    }
    Ok(response)
}

fn list_tags(shared: &Shared, caller: &Caller, body: &[u8]) -> Result<Value, AwsError> {
    let request: ListTagsRequest = decode(body)?;
    management_only(shared, caller)?;
    let account = member(shared, &request.resource_id)?;
    Ok(json!({ "Tags": [{ "Key": ENV_TAG, "Value": account.env.as_str() }] }))
}

fn list_parents(shared: &Shared, caller: &Caller, body: &[u8]) -> Result<Value, AwsError> {
    let request: ListParentsRequest = decode(body)?;
    management_only(shared, caller)?;
    let fleet = &shared.config.fleet;
    let account = member(shared, &request.child_id)?;
    let parent = if account.id == fleet.management_account {
        json!({ "Id": root_id(&fleet.management_account), "Type": "ROOT" })
    } else {
        json!({ "Id": ou_id(&fleet.management_account, account.env), "Type": "ORGANIZATIONAL_UNIT" })
    };
    Ok(json!({ "Parents": [parent] }))
}

fn describe_ou(shared: &Shared, caller: &Caller, body: &[u8]) -> Result<Value, AwsError> {
    let request: DescribeOuRequest = decode(body)?;
    management_only(shared, caller)?;
    let management = &shared.config.fleet.management_account;
    let env = [Env::Dev, Env::Stg, Env::Prod]
        .into_iter()
        .find(|env| ou_id(management, *env) == request.organizational_unit_id)
        .ok_or_else(|| {
            AwsError::new(
                "OrganizationalUnitNotFoundException",
                "We can't find an organizational unit (OU) with the OUId that you specified.",
            )
        })?;
    let name = match env {
        Env::Dev => "Dev",
        Env::Stg => "Stg",
        Env::Prod => "Prod",
    };
    Ok(json!({
        "OrganizationalUnit": {
            "Id": request.organizational_unit_id,
            "Arn": format!(
                "arn:aws:organizations::{management}:ou/{}/{}",
                organization_id(management),
                request.organizational_unit_id
            ),
            "Name": name,
        }
    }))
}

fn decode<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, AwsError> {
    serde_json::from_slice(body).map_err(|err| AwsError::serialization(err.to_string()))
}

fn management_only(shared: &Shared, caller: &Caller) -> Result<(), AwsError> {
    if caller.principal.account == shared.config.fleet.management_account {
        Ok(())
    } else {
        Err(AwsError::new(
            "AccessDeniedException",
            "You don't have permissions to access this resource.",
        ))
    }
}

fn member<'a>(shared: &'a Shared, id: &str) -> Result<&'a AccountSpec, AwsError> {
    shared.config.fleet.account(id).ok_or_else(|| {
        AwsError::new(
            "AccountNotFoundException",
            "You specified an account that doesn't exist.",
        )
    })
}

/// `r-` and 4 characters derived from the management account.
fn root_id(management_account: &str) -> String {
    format!("r-{}", &organization_id(management_account)[2..6])
}

/// The OU of one environment's accounts: `ou-<root>-<8 characters>`.
fn ou_id(management_account: &str, env: Env) -> String {
    let root = &root_id(management_account)[2..];
    format!("ou-{root}-{:0>8}", env.as_str())
}

/// `o-` and 10 lowercase alphanumerics derived from the management account.
fn organization_id(management_account: &str) -> String {
    let digits: String = management_account.chars().rev().take(10).collect();
    format!("o-{digits}")
}

/// The tag key carrying each account's environment.
const ENV_TAG: &str = "environment";
/// ListAccounts returns at most 20 accounts per page.
const MAX_RESULTS: usize = 20;
/// 2023-01-02T10:00:00Z, as JSON 1.1 sends timestamps (epoch seconds).
const JOINED_TIMESTAMP: f64 = 1_672_653_600.0;
