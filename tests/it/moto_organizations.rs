//! Organizations requests against moto: an organization with more accounts than one
//! ListAccounts page, listed with the SDK paginator exactly as postern's demo discovery does
//! (`src/emulator/demo.rs`), and the calls `postern accounts sync --env-from-tag` /
//! `--env-from-ou` need: ListTagsForResource, ListParents, DescribeOrganizationalUnit.

use std::collections::{BTreeMap, BTreeSet};

use crate::support::moto::{MOTO_ACCOUNT, Moto};
use aws_sdk_organizations::types::{ChildType, OrganizationFeatureSet, ParentType, Tag};

/// More than moto's default ListAccounts page (100), so the default paginator turns pages too.
const ACCOUNTS: usize = 105;
const ENVS: [&str; 2] = ["dev", "prod"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_accounts_pages_through_every_account_with_tags_and_ous() {
    let moto = Moto::start();
    let client = aws_sdk_organizations::Client::new(&moto.sdk("us-east-1"));
    client
        .create_organization()
        .feature_set(OrganizationFeatureSet::All)
        .send()
        .await
        .expect("CreateOrganization");
    let root = client.list_roots().send().await.expect("ListRoots").roots()[0]
        .id()
        .expect("root id")
        .to_owned();
    let mut ous = BTreeMap::new();
    for env in ENVS {
        let ou = client
            .create_organizational_unit()
            .parent_id(&root)
            .name(env)
            .send()
            .await
            .expect("CreateOrganizationalUnit")
            .organizational_unit
            .expect("an OU");
        ous.insert(env, ou.id.expect("OU id"));
    }

    // Account id -> (name, env); the management account has no env.
    let mut created = BTreeMap::new();
    for n in 0..ACCOUNTS {
        let env = ENVS[n % 2];
        let name = format!("svc-{n:03}-{env}");
        let status = client
            .create_account()
            .email(format!("{name}@example.com"))
            .account_name(&name)
            .tags(tag("env", env))
            .tags(tag("team", &format!("team-{}", n % 7)))
            .send()
            .await
            .expect("CreateAccount")
            .create_account_status
            .expect("a status");
        assert_eq!(status.state().map(|s| s.as_str()), Some("SUCCEEDED"));
        let id = status.account_id.expect("an account id");
        client
            .move_account()
            .account_id(&id)
            .source_parent_id(&root)
            .destination_parent_id(&ous[env])
            .send()
            .await
            .expect("MoveAccount");
        created.insert(id, (name, env));
    }

    // The demo's loop: default page size, pages until the paginator stops.
    let (accounts, pages) = list_accounts(&client, None).await;
    assert_eq!(
        pages, 2,
        "105 accounts plus the management one over 100-account pages"
    );
    check_listing(&accounts, &created);
    // Smaller pages, as real AWS gives (at most 20 per ListAccounts page).
    let (accounts, pages) = list_accounts(&client, Some(20)).await;
    assert_eq!(pages, 6);
    check_listing(&accounts, &created);

    // The environment from a tag (`--env-from-tag env`) and from the OU (`--env-from-ou`).
    for (id, (_, env)) in &created {
        let tags = client
            .list_tags_for_resource()
            .resource_id(id)
            .send()
            .await
            .expect("ListTagsForResource")
            .tags
            .unwrap_or_default();
        let env_tag = tags.iter().find(|t| t.key() == "env").map(Tag::value);
        assert_eq!(env_tag, Some(*env), "tags of {id}: {tags:?}");

        let parents = client
            .list_parents()
            .child_id(id)
            .send()
            .await
            .expect("ListParents")
            .parents
            .unwrap_or_default();
        assert_eq!(parents.len(), 1, "{parents:?}");
        assert_eq!(parents[0].r#type(), Some(&ParentType::OrganizationalUnit));
        let ou = client
            .describe_organizational_unit()
            .organizational_unit_id(parents[0].id().expect("parent id"))
            .send()
            .await
            .expect("DescribeOrganizationalUnit")
            .organizational_unit
            .expect("an OU");
        assert_eq!(ou.name(), Some(*env));
    }
    // The management account stays under the root.
    let parents = client
        .list_parents()
        .child_id(MOTO_ACCOUNT)
        .send()
        .await
        .expect("ListParents of the management account")
        .parents
        .unwrap_or_default();
    assert_eq!(parents[0].id(), Some(root.as_str()));
    assert_eq!(parents[0].r#type(), Some(&ParentType::Root));

    // The other way round: the OUs under the root, and each OU's accounts.
    let children = client
        .list_children()
        .parent_id(&root)
        .child_type(ChildType::OrganizationalUnit)
        .send()
        .await
        .expect("ListChildren")
        .children
        .unwrap_or_default();
    assert_eq!(children.len(), ENVS.len());
    for env in ENVS {
        let mut ids = BTreeSet::new();
        let mut pages = client
            .list_accounts_for_parent()
            .parent_id(&ous[env])
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.expect("ListAccountsForParent");
            ids.extend(
                page.accounts()
                    .iter()
                    .filter_map(|a| a.id().map(str::to_owned)),
            );
        }
        let expected: BTreeSet<String> = created
            .iter()
            .filter(|(_, (_, e))| *e == env)
            .map(|(id, _)| id.clone())
            .collect();
        assert_eq!(ids, expected, "accounts of OU {env}");
    }

    // LEAD: `postern accounts sync` (src/cli/broker.rs) can be checked here against this
    // organization: run the binary with a `moto_support::Home` config and
    // `moto.postern(&home, "us-east-1", &["accounts", "sync", "--env-from-tag", "env"])`
    // (and `--env-from-ou`), then assert that `postern accounts` lists every id of `created`
    // with its name and env, and that the management account keeps no env.
}

/// ListAccounts through the SDK paginator (as `src/emulator/demo.rs` does): the accounts and
/// the number of pages.
async fn list_accounts(
    client: &aws_sdk_organizations::Client,
    page_size: Option<i32>,
) -> (Vec<aws_sdk_organizations::types::Account>, usize) {
    let mut accounts = Vec::new();
    let mut count = 0;
    let mut pages = client
        .list_accounts()
        .set_max_results(page_size)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.expect("ListAccounts");
        count += 1;
        accounts.extend(page.accounts.unwrap_or_default());
    }
    (accounts, count)
}

/// Every created account exactly once with its name, plus the management account.
fn check_listing(
    accounts: &[aws_sdk_organizations::types::Account],
    created: &BTreeMap<String, (String, &str)>,
) {
    let mut seen = BTreeMap::new();
    for account in accounts {
        let id = account.id().expect("account id").to_owned();
        let previous = seen.insert(id.clone(), account.name().unwrap_or_default().to_owned());
        assert!(previous.is_none(), "{id} listed twice");
        assert_eq!(account.status().map(|s| s.as_str()), Some("ACTIVE"));
    }
    assert!(
        seen.remove(MOTO_ACCOUNT).is_some(),
        "the management account"
    );
    let expected: BTreeMap<String, String> = created
        .iter()
        .map(|(id, (name, _))| (id.clone(), name.clone()))
        .collect();
    assert_eq!(seen, expected);
}

fn tag(key: &str, value: &str) -> Tag {
    Tag::builder()
        .key(key)
        .value(value)
        .build()
        .expect("key and value are set")
}
