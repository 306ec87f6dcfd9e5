//! Discovery against the in-process emulator with the real EC2 and SSM clients: the join of
//! DescribeInstances and DescribeInstanceInformation over every account and region of the
//! sample fleet, a broken account leaving the rest listed, and a generated fleet.

use std::collections::HashMap;
use std::sync::Arc;

use aws_credential_types::Credentials;
use aws_types::SdkConfig;
use postern::discovery::{
    Cache, IndexOptions, InstanceSource as _, RetryPolicy, Scope, ScopeConfigs, SdkSource,
    SourceError, build_index,
};
use postern_emulator::{EmulatorHandle, FleetShape, generate};

use crate::support::aws::sdk_config;
use crate::support::emulator::{assume, fleet_emulator};

/// Per-account credentials, as the role broker will give them.
struct PerAccount {
    endpoint: String,
    credentials: HashMap<String, Credentials>,
}

impl ScopeConfigs for PerAccount {
    async fn config(&self, scope: &Scope) -> Result<SdkConfig, SourceError> {
        let credentials = self
            .credentials
            .get(&scope.account)
            .cloned()
            .ok_or_else(|| SourceError::local(scope, "AssumeRole", "no credentials"))?;
        Ok(sdk_config(&self.endpoint, &scope.region, credentials))
    }
}

async fn per_account(emulator: &EmulatorHandle) -> (PerAccount, Vec<Scope>) {
    let mut credentials = HashMap::new();
    let mut scopes = Vec::new();
    for account in &emulator.fleet().accounts {
        credentials.insert(
            account.id.clone(),
            assume(emulator, &account.id, "PosternAccess").await,
        );
        for region in &emulator.fleet().regions {
            scopes.push(Scope {
                account: account.id.clone(),
                alias: account.alias.clone(),
                env: Some(account.env.to_string()),
                region: region.clone(),
            });
        }
    }
    let configs = PerAccount {
        endpoint: emulator.endpoint(),
        credentials,
    };
    (configs, scopes)
}

#[tokio::test]
async fn joins_ec2_and_ssm_for_every_account_and_region_of_the_sample_fleet() {
    let emulator = fleet_emulator(|_| {}).await;
    let (configs, scopes) = per_account(&emulator).await;
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path());
    let index = build_index(
        Arc::new(SdkSource::new(configs)),
        &scopes,
        Some(&cache),
        IndexOptions::default(),
        |_| {},
    )
    .await;
    assert!(index.failures.is_empty(), "{:?}", index.failures);
    assert_eq!(index.listed, scopes.len());
    let fleet = emulator.fleet();
    assert_eq!(index.instances.len(), fleet.instances.len());
    for expected in &fleet.instances {
        let found: Vec<_> = index
            .instances
            .iter()
            .filter(|i| i.id == expected.id)
            .collect();
        assert_eq!(found.len(), 1, "{} listed once", expected.id);
        let found = found[0];
        assert_eq!(found.name, expected.name, "{}", expected.id);
        assert_eq!(found.region, expected.region);
        assert_eq!(found.account, expected.account);
        if expected.is_managed_instance() {
            assert!(found.state.is_empty(), "{} has no EC2 state", expected.id);
            assert!(found.ping_status.is_some());
        } else {
            assert!(!found.state.is_empty(), "{} has an EC2 state", expected.id);
            assert_eq!(
                found.private_ip.as_deref(),
                Some(expected.private_ip.as_str())
            );
        }
    }
    assert!(index.instances.iter().any(|i| i.is_online()));
    assert!(index.instances.iter().any(|i| !i.is_online()));
    assert!(index.instances.iter().any(|i| i.id.starts_with("mi-")));
    // Every scope was cached.
    for scope in &scopes {
        assert!(cache.load(scope).is_some(), "{scope} cached");
    }
}

#[tokio::test]
async fn a_broken_account_leaves_the_rest_listed() {
    let emulator = fleet_emulator(|_| {}).await;
    let (mut configs, scopes) = per_account(&emulator).await;
    let broken = emulator.fleet().accounts[1].id.clone();
    let good = configs.credentials[&broken].clone();
    configs.credentials.insert(
        broken.clone(),
        Credentials::new(
            good.access_key_id(),
            good.secret_access_key(),
            Some("not-the-session-token".to_owned()),
            None,
            "broken",
        ),
    );
    let index = build_index(
        Arc::new(SdkSource::new(configs)),
        &scopes,
        None,
        IndexOptions::default(),
        |_| {},
    )
    .await;
    let regions = emulator.fleet().regions.len();
    assert_eq!(index.failures.len(), regions);
    for failure in &index.failures {
        assert_eq!(failure.error.scope.account, broken);
        assert!(failure.error.code.is_some(), "{}", failure.error);
        assert!(!failure.error.throttled);
    }
    let expected = emulator
        .fleet()
        .instances
        .iter()
        .filter(|i| i.account != broken)
        .count();
    assert_eq!(index.instances.len(), expected);
}

#[tokio::test]
async fn lists_a_generated_fleet_under_throttling() {
    let fleet = generate(FleetShape {
        accounts: 3,
        regions: 2,
        instances: 600,
    });
    let emulator = fleet_emulator(|config| {
        config.region = fleet.regions[0].clone();
        config.fleet = fleet;
        config.throttle_rate = Some(20.0);
    })
    .await;
    let (configs, scopes) = per_account(&emulator).await;
    let source = SdkSource::new(configs);
    // A single scope lists every page of DescribeInstances and DescribeInstanceInformation.
    let one = source.list(&scopes[0]).await;
    let one = match one {
        Ok(rows) => rows,
        Err(e) if e.throttled => Vec::new(),
        Err(e) => panic!("{e}"),
    };
    let options = IndexOptions {
        concurrency: 4,
        retry: RetryPolicy {
            max_attempts: 20,
            initial_backoff: std::time::Duration::from_millis(20),
            max_backoff: std::time::Duration::from_millis(200),
        },
        ..IndexOptions::default()
    };
    let index = build_index(Arc::new(source), &scopes, None, options, |_| {}).await;
    assert!(index.failures.is_empty(), "{:?}", index.failures);
    assert_eq!(index.instances.len(), emulator.fleet().instances.len());
    if !one.is_empty() {
        let first = &scopes[0];
        let in_scope = emulator
            .fleet()
            .instances
            .iter()
            .filter(|i| i.account == first.account && i.region == first.region)
            .count();
        assert_eq!(one.len(), in_scope);
    }
}
