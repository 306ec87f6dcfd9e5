//! Organizations `ListAccounts` (JSON 1.1): the fleet's accounts, for callers in the management
//! account only (member accounts get AccessDeniedException, as from AWS), with
//! `MaxResults`/`NextToken` pagination.

use serde::Deserialize;
use serde_json::{Value, json};

use crate::emulator::awserror::AwsError;
use crate::emulator::control::Caller;
use crate::emulator::query::page;
use crate::emulator::server::Shared;

/// Runs one Organizations operation.
pub(crate) fn handle(
    shared: &Shared,
    caller: &Caller,
    operation: &str,
    body: &[u8],
) -> Result<Value, AwsError> {
    match operation {
        "ListAccounts" => list_accounts(shared, caller, body),
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

fn list_accounts(shared: &Shared, caller: &Caller, body: &[u8]) -> Result<Value, AwsError> {
    let request: ListAccountsRequest = if body.is_empty() {
        ListAccountsRequest::default()
    } else {
        serde_json::from_slice(body).map_err(|err| AwsError::serialization(err.to_string()))?
    };
    let fleet = &shared.config.fleet;
    if caller.principal.account != fleet.management_account {
        return Err(AwsError::new(
            "AccessDeniedException",
            "You don't have permissions to access this resource.",
        ));
    }
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

/// `o-` and 10 lowercase alphanumerics derived from the management account.
fn organization_id(management_account: &str) -> String {
    let digits: String = management_account.chars().rev().take(10).collect();
    format!("o-{digits}")
}

/// ListAccounts returns at most 20 accounts per page.
const MAX_RESULTS: usize = 20;
/// 2023-01-02T10:00:00Z, as JSON 1.1 sends timestamps (epoch seconds).
const JOINED_TIMESTAMP: f64 = 1_672_653_600.0;
