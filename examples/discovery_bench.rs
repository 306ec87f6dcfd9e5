//! Discovery benchmark (issue 8), run by `bench/discovery.sh`: an in-process emulator serving a
//! generated fleet with injected API latency; cold discovery with bounded concurrency against a
//! sequential baseline in the same run, warm start from the cache, fuzzy query latency over the
//! rows, and peak RSS (of this process, which also hosts the emulator).
//!
//! Knobs (environment): SHAPE (`50,3,5000`: accounts, regions, instances), LATENCY_MS (50),
//! CONCURRENCY (16), SEQUENTIAL (1: also run the sequential baseline; 0 to skip).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_types::SdkConfig;
use aws_types::region::Region;
use postern::discovery::{
    Cache, IndexOptions, Scope, ScopeConfigs, SdkSource, SourceError, build_index,
};
use postern::picker::{SearchFields, rank};
use postern_emulator::{Emulator, EmulatorConfig, FleetShape, generate};

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
        Ok(config(&self.endpoint, &scope.region, credentials))
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let shape = std::env::var("SHAPE").unwrap_or_else(|_| "50,3,5000".into());
    let parts: Vec<usize> = shape.split(',').map(str::parse).collect::<Result<_, _>>()?;
    let [accounts, regions, instances] = parts[..] else {
        anyhow::bail!("SHAPE is ACCOUNTS,REGIONS,INSTANCES");
    };
    let latency = Duration::from_millis(env_num("LATENCY_MS", 50));
    let concurrency = env_num("CONCURRENCY", 16) as usize;
    let fleet = generate(FleetShape {
        accounts,
        regions,
        instances,
    });
    let emulator = Emulator::start(EmulatorConfig {
        region: fleet.regions[0].clone(),
        fleet,
        api_latency: Some(latency),
        pacing: None,
        lifetime: Some(Duration::from_secs(900)),
        ..EmulatorConfig::default()
    })
    .await?;
    let endpoint = emulator.endpoint();
    let base = config(
        &endpoint,
        &emulator.fleet().regions[0],
        Credentials::new(
            emulator.base_credentials().access_key_id(),
            emulator.base_credentials().secret_access_key(),
            None,
            None,
            "bench",
        ),
    );
    let sts = aws_sdk_sts::Client::new(&base);
    let mut credentials = HashMap::new();
    let mut scopes = Vec::new();
    for account in &emulator.fleet().accounts {
        let role = account.roles.first().cloned().unwrap_or_default();
        let assumed = sts
            .assume_role()
            .role_arn(format!("arn:aws:iam::{}:role/{role}", account.id))
            .role_session_name("bench")
            .send()
            .await?
            .credentials
            .ok_or_else(|| anyhow::anyhow!("no credentials"))?;
        credentials.insert(
            account.id.clone(),
            Credentials::new(
                assumed.access_key_id,
                assumed.secret_access_key,
                Some(assumed.session_token),
                None,
                "bench",
            ),
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
    let source = Arc::new(SdkSource::new(PerAccount {
        endpoint,
        credentials,
    }));
    let dir = tempfile::tempdir()?;
    let cache = Cache::new(dir.path());
    println!(
        "fleet: {accounts} accounts x {regions} regions, {instances} instances, {} scopes, {} ms API latency",
        scopes.len(),
        latency.as_millis()
    );

    let options = IndexOptions {
        concurrency,
        refresh: true,
        ..IndexOptions::default()
    };
    let started = Instant::now();
    let index = build_index(Arc::clone(&source), &scopes, Some(&cache), options, |_| {}).await;
    let cold = started.elapsed();
    anyhow::ensure!(index.failures.is_empty(), "failures: {:?}", index.failures);
    println!(
        "cold discovery, concurrency {concurrency}: {:.2} s ({} instances)",
        cold.as_secs_f64(),
        index.instances.len()
    );
    if env_num("SEQUENTIAL", 1) == 1 {
        let sequential = IndexOptions {
            concurrency: 1,
            ..options
        };
        let started = Instant::now();
        let index = build_index(Arc::clone(&source), &scopes, None, sequential, |_| {}).await;
        println!(
            "cold discovery, sequential: {:.2} s ({} instances)",
            started.elapsed().as_secs_f64(),
            index.instances.len()
        );
    }
    let warm_options = IndexOptions {
        refresh: false,
        ..options
    };
    let started = Instant::now();
    let warm = build_index(
        Arc::clone(&source),
        &scopes,
        Some(&cache),
        warm_options,
        |_| {},
    )
    .await;
    println!(
        "warm start from the cache: {:.1} ms ({} scopes cached, {} listed)",
        started.elapsed().as_secs_f64() * 1e3,
        warm.cached,
        warm.listed
    );
    let texts: Vec<SearchFields> = warm
        .instances
        .iter()
        .map(|i| SearchFields::of(&i.summary()))
        .collect();
    for query in ["web", "prd use1", "i-0a3", "zzzz"] {
        let mut times = Vec::new();
        let mut hits = 0;
        for _ in 0..20 {
            let started = Instant::now();
            hits = rank(&texts, query).len();
            times.push(started.elapsed());
        }
        times.sort();
        println!(
            "fuzzy query {query:?} over {} rows: median {:.2} ms ({hits} matches)",
            texts.len(),
            times[times.len() / 2].as_secs_f64() * 1e3
        );
    }
    println!(
        "peak RSS (bench process, emulator included): {}",
        peak_rss()
    );
    Ok(())
}

fn config(endpoint: &str, region: &str, credentials: Credentials) -> SdkConfig {
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.to_owned()))
        .endpoint_url(endpoint)
        .retry_config(RetryConfig::disabled())
        .credentials_provider(SharedCredentialsProvider::new(credentials))
        .build()
}

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn peak_rss() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(|l| l["VmHWM:".len()..].trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into())
}
