//! EC2, SSM and Organizations against the emulator serving the sample fleet, with the real
//! `aws-sdk-ec2`, `aws-sdk-ssm` and `aws-sdk-organizations` clients: DescribeInstances pages and
//! filters, DescribeInstanceInformation, ListAccounts, cross-account isolation (a role's
//! credentials see only its account), and the ready line's accounts and regions.

use crate::support::emulator::{account, assume, base, fleet_emulator, fleet_ids, id_of, sdk};
use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::Filter;
use aws_sdk_ssm::types::{InstanceInformationStringFilter, PingStatus, ResourceType};
use postern_emulator::{EmulatorConfig, FleetShape, generate};

#[tokio::test]
async fn ready_line_lists_accounts_and_regions() {
    let emulator = fleet_emulator(|_| {}).await;
    let line = serde_json::to_value(emulator.ready_line()).unwrap();
    assert_eq!(
        line["regions"],
        serde_json::json!(["eu-west-1", "us-east-1"])
    );
    assert_eq!(line["region"], "eu-west-1");
    let accounts = line["accounts"].as_array().unwrap();
    assert_eq!(accounts.len(), 4);
    let prod = accounts.iter().find(|a| a["alias"] == "acme-prod").unwrap();
    assert_eq!(prod["env"], "prod");
    assert_eq!(prod["id"].as_str().unwrap().len(), 12);
    assert!(
        prod["roles"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r == "PosternAccess")
    );
    let mut keys: Vec<_> = prod.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    assert_eq!(keys, ["alias", "env", "id", "roles"]);
    assert_eq!(
        line["instances"].as_array().unwrap().len(),
        emulator.fleet().instances.len()
    );
}

#[tokio::test]
async fn describe_instances_pages_with_max_results_and_next_token() {
    let emulator = fleet_emulator(|_| {}).await;
    let prod = account(&emulator, "acme-prod").id.clone();
    let credentials = assume(&emulator, &prod, "PosternAccess").await;
    let ec2 = aws_sdk_ec2::Client::new(&sdk(&emulator, "eu-west-1", credentials));
    let expected = fleet_ids(&emulator, &prod, "eu-west-1", true);
    assert!(expected.len() > 10, "the sample has a dozen prod instances");

    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let output = ec2
            .describe_instances()
            .max_results(5)
            .set_next_token(token.clone())
            .send()
            .await
            .unwrap();
        pages += 1;
        let instances: Vec<_> = output
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .collect();
        assert!(instances.len() <= 5);
        for reservation in output.reservations() {
            assert_eq!(reservation.owner_id(), Some(prod.as_str()));
        }
        seen.extend(
            instances
                .iter()
                .map(|i| i.instance_id().unwrap().to_owned()),
        );
        match output.next_token() {
            Some(next) => token = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, expected);
    assert_eq!(pages, expected.len().div_ceil(5));

    // The SDK's paginator walks the same pages.
    let paged: Vec<String> = ec2
        .describe_instances()
        .max_results(5)
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .unwrap()
        .into_iter()
        .flat_map(|r| r.instances.unwrap_or_default())
        .map(|i| i.instance_id.unwrap())
        .collect();
    assert_eq!(paged, expected);

    // Tokens are opaque and bound to their listing.
    let err = ec2
        .describe_instances()
        .max_results(5)
        .next_token("not-a-token")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("InvalidParameterValue"));
    let err = ec2
        .describe_instances()
        .max_results(1)
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("InvalidParameterValue"));
}

#[tokio::test]
async fn describe_instances_filters_and_describes() {
    let emulator = fleet_emulator(|_| {}).await;
    let prod = account(&emulator, "acme-prod").id.clone();
    let credentials = assume(&emulator, &prod, "PosternReadOnly").await;
    let ec2 = aws_sdk_ec2::Client::new(&sdk(&emulator, "eu-west-1", credentials));
    let names = |output: aws_sdk_ec2::operation::describe_instances::DescribeInstancesOutput| {
        let mut names: Vec<String> = output
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .map(|i| {
                i.tags()
                    .iter()
                    .find(|t| t.key() == Some("Name"))
                    .and_then(|t| t.value())
                    .unwrap()
                    .to_owned()
            })
            .collect();
        names.sort();
        names
    };
    let filter = |name: &str, values: &[&str]| {
        Filter::builder()
            .name(name)
            .set_values(Some(values.iter().map(|v| (*v).to_owned()).collect()))
            .build()
    };

    let output = ec2
        .describe_instances()
        .filters(filter("tag:Name", &["web-frontend-prod-*"]))
        .send()
        .await
        .unwrap();
    assert_eq!(
        names(output),
        [
            "web-frontend-prod-1",
            "web-frontend-prod-2",
            "web-frontend-prod-3"
        ]
    );

    let output = ec2
        .describe_instances()
        .filters(filter("instance-state-name", &["stopped"]))
        .send()
        .await
        .unwrap();
    assert_eq!(names(output), ["redis-prod-1"]);

    let kafka = id_of(&emulator, "kafka-prod-2");
    let output = ec2
        .describe_instances()
        .filters(filter("instance-id", &[&kafka]))
        .filters(filter("instance-state-name", &["running"]))
        .send()
        .await
        .unwrap();
    let instance = output.reservations()[0].instances()[0].clone();
    assert_eq!(instance.instance_id(), Some(kafka.as_str()));
    assert_eq!(
        instance.state().unwrap().name().unwrap().as_str(),
        "running"
    );
    assert_eq!(instance.state().unwrap().code(), Some(16));
    let spec = emulator
        .fleet()
        .instances
        .iter()
        .find(|i| i.id == kafka)
        .unwrap();
    assert_eq!(
        instance.private_ip_address(),
        Some(spec.private_ip.as_str())
    );
    assert_eq!(instance.private_dns_name(), Some(spec.private_dns.as_str()));
    assert!(spec.private_dns.ends_with(".eu-west-1.compute.internal"));
    assert_eq!(instance.instance_type().unwrap().as_str(), "r6i.xlarge");
    let team = instance.tags().iter().find(|t| t.key() == Some("team"));
    assert_eq!(team.and_then(|t| t.value()), Some("data"));

    // Instance ids of this account work; another account's do not exist here.
    let output = ec2
        .describe_instances()
        .instance_ids(&kafka)
        .send()
        .await
        .unwrap();
    assert_eq!(names(output), ["kafka-prod-2"]);
    let dev_instance = id_of(&emulator, "kafka-dev-1");
    let err = ec2
        .describe_instances()
        .instance_ids(&dev_instance)
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("InvalidInstanceID.NotFound"));
    assert_eq!(
        err.message(),
        Some(format!("The instance ID '{dev_instance}' does not exist").as_str())
    );

    let err = ec2
        .describe_instances()
        .filters(filter("colour", &["blue"]))
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.message(), Some("The filter 'colour' is invalid"));
}

#[tokio::test]
async fn describe_instance_information_reports_agents_and_managed_instances() {
    let emulator = fleet_emulator(|_| {}).await;
    // Base credentials: the management account, which has two on-premises managed instances.
    let ssm = aws_sdk_ssm::Client::new(&base(&emulator, "us-east-1"));
    let management = emulator.fleet().management_account.clone();
    let list = ssm
        .describe_instance_information()
        .send()
        .await
        .unwrap()
        .instance_information_list
        .unwrap();
    let ids: Vec<_> = list
        .iter()
        .map(|i| i.instance_id().unwrap().to_owned())
        .collect();
    assert_eq!(ids, fleet_ids(&emulator, &management, "us-east-1", false));
    let mac = list
        .iter()
        .find(|i| i.instance_id().unwrap().starts_with("mi-"))
        .unwrap();
    assert_eq!(mac.resource_type(), Some(&ResourceType::ManagedInstance));
    assert_eq!(mac.name(), Some("onprem-build-mac-1"));
    assert_eq!(mac.platform_type().unwrap().as_str(), "MacOS");
    assert_eq!(mac.ping_status(), Some(&PingStatus::Online));
    let runner = list
        .iter()
        .find(|i| i.instance_id() == Some(id_of(&emulator, "gitlab-runner-2").as_str()))
        .unwrap();
    assert_eq!(runner.agent_version(), Some("3.0.161.0"));
    assert_eq!(runner.is_latest_version(), Some(false));
    assert_eq!(runner.resource_type(), Some(&ResourceType::Ec2Instance));
    assert!(runner.last_ping_date_time().is_some());

    // Pages of 5 in prod eu-west-1, filtered by ping status.
    let prod = account(&emulator, "acme-prod").id.clone();
    let credentials = assume(&emulator, &prod, "PosternAccess").await;
    let ssm = aws_sdk_ssm::Client::new(&sdk(&emulator, "eu-west-1", credentials));
    let mut pages = ssm
        .describe_instance_information()
        .max_results(5)
        .filters(
            InstanceInformationStringFilter::builder()
                .key("PingStatus")
                .values("Online")
                .build()
                .unwrap(),
        )
        .into_paginator()
        .send();
    let mut online = Vec::new();
    let mut count = 0;
    while let Some(page) = pages.next().await {
        let page = page.unwrap();
        count += 1;
        assert!(page.instance_information_list().len() <= 5);
        online.extend(
            page.instance_information_list()
                .iter()
                .map(|i| i.instance_id().unwrap().to_owned()),
        );
    }
    assert!(count >= 3);
    let expected: Vec<_> = emulator
        .fleet()
        .instances
        .iter()
        .filter(|i| i.account == prod && i.region == "eu-west-1")
        .filter(|i| i.ping_status == postern_emulator::PingStatus::Online)
        .map(|i| i.id.clone())
        .collect();
    assert_eq!(online, expected);
    assert!(!online.contains(&id_of(&emulator, "sftp-partner-prod-1")));

    let err = ssm
        .describe_instance_information()
        .max_results(51)
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("ValidationException"));
}

#[tokio::test]
async fn list_accounts_from_the_management_account_only() {
    let emulator = fleet_emulator(|_| {}).await;
    let organizations = aws_sdk_organizations::Client::new(&base(&emulator, "us-east-1"));
    let mut pages = organizations
        .list_accounts()
        .max_results(3)
        .into_paginator()
        .send();
    let mut accounts = Vec::new();
    let mut count = 0;
    while let Some(page) = pages.next().await {
        count += 1;
        accounts.extend(page.unwrap().accounts.unwrap_or_default());
    }
    assert_eq!(count, 2);
    let fleet = emulator.fleet();
    assert_eq!(accounts.len(), fleet.accounts.len());
    for (listed, spec) in accounts.iter().zip(&fleet.accounts) {
        assert_eq!(listed.id(), Some(spec.id.as_str()));
        assert_eq!(listed.name(), Some(spec.alias.as_str()));
        assert!(listed.arn().unwrap().ends_with(&format!("/{}", spec.id)));
        assert!(listed.email().unwrap().contains('@'));
        assert!(listed.joined_timestamp().is_some());
    }

    let prod = account(&emulator, "acme-prod").id.clone();
    let credentials = assume(&emulator, &prod, "PosternAccess").await;
    let err = aws_sdk_organizations::Client::new(&sdk(&emulator, "us-east-1", credentials))
        .list_accounts()
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("AccessDeniedException"));
}

#[tokio::test]
async fn a_roles_credentials_see_only_its_account() {
    let emulator = fleet_emulator(|_| {}).await;
    let fleet = emulator.fleet().clone();
    for spec in &fleet.accounts {
        let credentials = assume(&emulator, &spec.id, "PosternAccess").await;
        for region in &fleet.regions {
            let config = sdk(&emulator, region, credentials.clone());
            let ec2_ids: Vec<String> = aws_sdk_ec2::Client::new(&config)
                .describe_instances()
                .send()
                .await
                .unwrap()
                .reservations()
                .iter()
                .flat_map(|r| r.instances())
                .map(|i| i.instance_id().unwrap().to_owned())
                .collect();
            assert_eq!(
                ec2_ids,
                fleet_ids(&emulator, &spec.id, region, true),
                "{} in {region}",
                spec.alias
            );
            let ssm = aws_sdk_ssm::Client::new(&config);
            let ssm_ids: Vec<String> = ssm
                .describe_instance_information()
                .send()
                .await
                .unwrap()
                .instance_information_list()
                .iter()
                .map(|i| i.instance_id().unwrap().to_owned())
                .collect();
            let own = fleet_ids(&emulator, &spec.id, region, false);
            assert!(
                ssm_ids.iter().all(|id| own.contains(id)),
                "{} {region}",
                spec.alias
            );
            // Another account's instance is "not connected" from here, as in SSM.
            let other = fleet
                .instances
                .iter()
                .find(|i| i.account != spec.id && i.is_connected())
                .unwrap();
            let err = ssm
                .start_session()
                .target(&other.id)
                .send()
                .await
                .unwrap_err();
            assert_eq!(err.code(), Some("TargetNotConnected"));
        }
    }
    // And its own online instances start sessions.
    let prod = account(&emulator, "acme-prod").id.clone();
    let credentials = assume(&emulator, &prod, "PosternAccess").await;
    let ssm = aws_sdk_ssm::Client::new(&sdk(&emulator, "eu-west-1", credentials.clone()));
    let started = ssm
        .start_session()
        .target(id_of(&emulator, "kafka-prod-1"))
        .send()
        .await
        .unwrap();
    assert!(started.stream_url().unwrap().starts_with("ws://127.0.0.1:"));
    ssm.terminate_session()
        .session_id(started.session_id().unwrap())
        .send()
        .await
        .unwrap();
    // The same instance from the wrong region, or a stopped one, is not connected.
    let ssm_use1 = aws_sdk_ssm::Client::new(&sdk(&emulator, "us-east-1", credentials));
    for (client, name) in [(&ssm_use1, "kafka-prod-1"), (&ssm, "redis-prod-1")] {
        let err = client
            .start_session()
            .target(id_of(&emulator, name))
            .send()
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some("TargetNotConnected"), "{name}");
    }
}

#[tokio::test]
async fn generated_fleets_serve_every_instance() {
    let shape: FleetShape = "accounts=5,regions=2,instances=500".parse().unwrap();
    let fleet = generate(shape);
    let region = fleet.regions[1].clone();
    let emulator = postern_emulator::Emulator::start(EmulatorConfig {
        lifetime: Some(std::time::Duration::from_secs(90)),
        region: fleet.regions[0].clone(),
        fleet,
        ..EmulatorConfig::default()
    })
    .await
    .unwrap();
    let target = emulator.fleet().accounts[3].id.clone();
    let credentials = assume(&emulator, &target, "PosternAccess").await;
    let ec2 = aws_sdk_ec2::Client::new(&sdk(&emulator, &region, credentials));
    let reservations = ec2
        .describe_instances()
        .max_results(1000)
        .send()
        .await
        .unwrap()
        .reservations
        .unwrap();
    let ids: Vec<String> = reservations
        .into_iter()
        .flat_map(|r| r.instances.unwrap_or_default())
        .map(|i| i.instance_id.unwrap())
        .collect();
    assert_eq!(ids, fleet_ids(&emulator, &target, &region, true));
    assert_eq!(ids.len(), 50);
}

#[test]
fn generated_fleet_files_are_deterministic_and_valid() {
    let print = || {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_postern"))
            .args([
                "emulator",
                "--generate-fleet",
                "accounts=50,regions=3,instances=5000",
                "--print-fleet",
            ])
            .env("HOME", "/nonexistent")
            .output()
            .expect("run postern emulator --print-fleet");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    };
    let first = print();
    assert_eq!(first, print());
    let fleet: postern_emulator::Fleet = first.parse().unwrap();
    assert_eq!(fleet.accounts.len(), 50);
    assert_eq!(fleet.regions.len(), 3);
    assert_eq!(fleet.instances.len(), 5000);
}
