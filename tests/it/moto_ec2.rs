//! Discovery's EC2 and SSM requests against moto: 2,000 instances over two regions, listed by
//! `postern list --json --regions … --refresh` (the real binary) and by the library's
//! `SdkSource` with small pages, every instance exactly once with its Name tag and region.
//!
//! moto pages DescribeInstances by reservation (its `MaxResults` counts reservations, real EC2
//! counts instances), so instances are launched 50 per RunInstances call: 20 reservations per
//! region, several pages at the API's smallest page size. moto does not implement SSM
//! DescribeInstanceInformation (HTTP 500, "not been implemented"): postern lists the EC2
//! instances without agent status and warns.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::support::home::Home;
use crate::support::moto::{MOTO_ACCOUNT, Moto};
use crate::support::process::{run, text};
use aws_sdk_ec2::types::{InstanceType, ResourceType, Tag, TagSpecification};
use postern::discovery::{Instance, InstanceSource, Scope, SdkSource, SingleProfile};

const REGIONS: [&str; 2] = ["eu-west-1", "us-east-1"];
const PER_REGION: i32 = 1_000;
const BATCH: i32 = 50;
/// The smallest DescribeInstances page the API allows: 5 reservations a page in moto.
const PAGE: i32 = 5;
/// An Amazon Linux image from moto's default set.
const IMAGE: &str = "ami-760aaa0f";
const LIMIT: Duration = Duration::from_secs(120);

/// What RunInstances said about one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Launched {
    name: String,
    region: String,
    private_ip: Option<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_2000_instances_over_two_regions_and_many_pages() {
    let moto = Moto::start();
    let (first, second) = tokio::join!(launch(&moto, REGIONS[0]), launch(&moto, REGIONS[1]));
    let mut launched = first;
    launched.extend(second);
    assert_eq!(launched.len(), 2 * PER_REGION as usize);

    // moto turns pages at PAGE reservations: 4 pages per region.
    for region in REGIONS {
        let page = aws_sdk_ec2::Client::new(&moto.sdk(region))
            .describe_instances()
            .max_results(PAGE)
            .send()
            .await
            .expect("DescribeInstances");
        assert_eq!(page.reservations().len(), PAGE as usize, "in {region}");
        assert!(page.next_token().is_some(), "more pages in {region}");
    }

    // The library's source over those pages.
    let source = SdkSource::new(SingleProfile::new(moto.sdk(REGIONS[0]))).with_page_size(PAGE);
    let mut rows = Vec::new();
    for region in REGIONS {
        let scope = Scope {
            account: "moto".into(),
            alias: "moto".into(),
            env: Some("dev".into()),
            region: region.into(),
        };
        let listed = source.list(&scope).await.unwrap_or_else(|e| {
            panic!(
                "SdkSource::list({region}) failed: {e}\nmoto log:\n{}",
                moto.log()
            )
        });
        for row in &listed {
            assert_eq!(row.account, MOTO_ACCOUNT, "the reservation owner");
            assert_eq!(row.state, "running");
            assert_eq!(row.ping_status, None, "moto has no SSM inventory");
        }
        rows.extend(listed);
    }
    check(&launched, rows.iter().map(|r| (r.id.clone(), facts(r))));

    // The binary: both regions at once, DescribeInstances at its own page size.
    let home = Home::new(None);
    let output = run(
        moto.postern(
            &home,
            REGIONS[0],
            &[
                "list",
                "--json",
                "--regions",
                &REGIONS.join(","),
                "--refresh",
            ],
        ),
        LIMIT,
    );
    let stderr = text(&output.stderr);
    assert!(
        output.status.success(),
        "postern list failed: {stderr}\nmoto log:\n{}",
        moto.log()
    );
    for region in REGIONS {
        assert!(
            stderr
                .lines()
                .any(|l| l.contains("DescribeInstanceInformation failed")
                    && l.contains(region)
                    && l.contains("listing the EC2 instances without agent status")),
            "a warning for {region}: {stderr}"
        );
    }
    let rows: Vec<serde_json::Value> = text(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    for row in &rows {
        assert_eq!(row["tags"]["Name"], row["name"], "{row}");
        assert!(row.get("ping_status").is_none(), "{row}");
    }
    check(
        &launched,
        rows.iter().map(|r| {
            let id = r["id"].as_str().expect("id").to_owned();
            let facts = Launched {
                name: r["name"].as_str().expect("name").to_owned(),
                region: r["region"].as_str().expect("region").to_owned(),
                private_ip: r["private_ip"].as_str().map(str::to_owned),
            };
            (id, facts)
        }),
    );
}

/// Launches PER_REGION instances in `region`, BATCH per call, each batch with its own Name.
async fn launch(moto: &Moto, region: &str) -> BTreeMap<String, Launched> {
    let ec2 = aws_sdk_ec2::Client::new(&moto.sdk(region));
    let mut launched = BTreeMap::new();
    for batch in 0..PER_REGION / BATCH {
        let name = format!("web-{region}-{batch:02}");
        let tags = TagSpecification::builder()
            .resource_type(ResourceType::Instance)
            .tags(Tag::builder().key("Name").value(&name).build())
            .build();
        let output = ec2
            .run_instances()
            .image_id(IMAGE)
            .instance_type(InstanceType::T3Micro)
            .min_count(BATCH)
            .max_count(BATCH)
            .tag_specifications(tags)
            .send()
            .await
            .unwrap_or_else(|e| panic!("RunInstances in {region}: {e:?}\n{}", moto.log()));
        for instance in output.instances() {
            let id = instance.instance_id().expect("instance id").to_owned();
            launched.insert(
                id,
                Launched {
                    name: name.clone(),
                    region: region.to_owned(),
                    private_ip: instance.private_ip_address().map(str::to_owned),
                },
            );
        }
    }
    assert_eq!(launched.len(), PER_REGION as usize, "in {region}");
    launched
}

fn facts(row: &Instance) -> Launched {
    Launched {
        name: row.name.clone(),
        region: row.region.clone(),
        private_ip: row.private_ip.clone(),
    }
}

/// Every launched instance listed exactly once with its name, region and private IP.
fn check(launched: &BTreeMap<String, Launched>, listed: impl Iterator<Item = (String, Launched)>) {
    let mut seen = BTreeMap::new();
    for (id, facts) in listed {
        if let Some(previous) = seen.insert(id.clone(), facts) {
            panic!("{id} listed twice (first as {previous:?})");
        }
    }
    let missing: Vec<_> = launched
        .keys()
        .filter(|id| !seen.contains_key(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} not listed, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    assert_eq!(
        seen.len(),
        launched.len(),
        "nothing but the launched instances"
    );
    for (id, expected) in launched {
        assert_eq!(&seen[id], expected, "{id}");
    }
}
