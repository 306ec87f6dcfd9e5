//! EC2 `DescribeInstances` (EC2 query protocol, XML as EC2 sends it): the caller's account's
//! instances in the region the request was signed for, with filters (`tag:KEY`, `tag-key`,
//! `instance-state-name`, `instance-id`, `instance-type`, `private-ip-address`,
//! `private-dns-name`, `platform`), tags, and `MaxResults`/`NextToken` pagination. Managed
//! (`mi-`) instances are not EC2 instances and never appear.

use crate::awserror::{AwsError, EC2_XMLNS};
use crate::control::Caller;
use crate::instances::{InstanceSpec, Platform, is_valid_instance_id};
use crate::query::{Form, Xml, page, wildcard_match};
use crate::server::Shared;

/// Runs one EC2 action; the `Ok` value is the XML body.
pub(crate) fn handle(
    shared: &Shared,
    caller: &Caller,
    form: &Form,
    request_id: &str,
) -> Result<String, AwsError> {
    match form.get("Action").unwrap_or_default() {
        "DescribeInstances" => describe_instances(shared, caller, form, request_id),
        other => Err(AwsError::new(
            "InvalidAction",
            format!("The action {other} is not valid for this web service."),
        )),
    }
}

fn describe_instances(
    shared: &Shared,
    caller: &Caller,
    form: &Form,
    request_id: &str,
) -> Result<String, AwsError> {
    if form.get("DryRun") == Some("true") {
        return Err(AwsError::new(
            "DryRunOperation",
            "Request would have succeeded, but DryRun flag is set.",
        ));
    }
    let ids = form.list("InstanceId");
    let max = match form.get("MaxResults") {
        None => None,
        Some(_) if !ids.is_empty() => {
            return Err(AwsError::new(
                "InvalidParameterCombination",
                "The parameter instancesSet cannot be used with the parameter maxResults",
            ));
        }
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (MIN_RESULTS..=MAX_RESULTS).contains(&n) => Some(n),
            _ => {
                return Err(AwsError::new(
                    "InvalidParameterValue",
                    format!(
                        "Value ( {text} ) for parameter maxResults is invalid. Expecting a \
                         value between {MIN_RESULTS} and {MAX_RESULTS}."
                    ),
                ));
            }
        },
    };
    if let Some(bad) = ids
        .iter()
        .find(|id| !is_valid_instance_id(id) || id.starts_with("mi-"))
    {
        return Err(AwsError::new(
            "InvalidInstanceID.Malformed",
            format!("Invalid id: \"{bad}\""),
        ));
    }
    let filters = form.filters();
    for (name, _) in &filters {
        if !is_known_filter(name) {
            return Err(AwsError::new(
                "InvalidParameterValue",
                format!("The filter '{name}' is invalid"),
            ));
        }
    }
    let visible: Vec<&InstanceSpec> = shared
        .config
        .fleet
        .instances
        .iter()
        .filter(|i| !i.is_managed_instance() && caller.sees(i))
        .collect();
    let missing: Vec<&str> = ids
        .iter()
        .filter(|id| !visible.iter().any(|i| &i.id == *id))
        .map(String::as_str)
        .collect();
    match missing.as_slice() {
        [] => {}
        [one] => {
            return Err(AwsError::new(
                "InvalidInstanceID.NotFound",
                format!("The instance ID '{one}' does not exist"),
            ));
        }
        many => {
            return Err(AwsError::new(
                "InvalidInstanceID.NotFound",
                format!("The instance IDs '{}' do not exist", many.join(", ")),
            ));
        }
    }
    let selected: Vec<&InstanceSpec> = visible
        .into_iter()
        .filter(|i| ids.is_empty() || ids.contains(&i.id))
        .filter(|i| {
            filters
                .iter()
                .all(|(name, values)| matches(i, name, values))
        })
        .collect();
    let scope = format!(
        "ec2:{}:{}:{}",
        caller.principal.account,
        caller.region,
        form.filters()
            .iter()
            .map(|(n, v)| format!("{n}={}", v.join(",")))
            .collect::<Vec<_>>()
            .join(";")
    );
    let (items, next) = page(
        &selected,
        max.unwrap_or(usize::MAX),
        form.get("NextToken"),
        &scope,
    )
    .map_err(|()| AwsError::new("InvalidParameterValue", "Unable to parse pagination token"))?;
    let mut xml = Xml::document("DescribeInstancesResponse", EC2_XMLNS);
    xml.leaf("requestId", request_id).start("reservationSet");
    for instance in items {
        reservation(&mut xml, instance);
    }
    xml.end();
    if let Some(next) = next {
        xml.leaf("nextToken", &next);
    }
    Ok(xml.finish())
}

/// One reservation per instance, as for instances launched one at a time.
fn reservation(xml: &mut Xml, instance: &InstanceSpec) {
    let suffix = instance.id.trim_start_matches("i-");
    xml.start("item")
        .leaf("reservationId", &format!("r-{suffix}"))
        .leaf("ownerId", &instance.account)
        .leaf("groupSet", "")
        .start("instancesSet")
        .start("item")
        .leaf("instanceId", &instance.id)
        .leaf("imageId", AMI)
        .start("instanceState")
        .leaf("code", &instance.state.code().to_string())
        .leaf("name", instance.state.as_str())
        .end()
        .leaf("privateDnsName", &instance.private_dns)
        .leaf("dnsName", "")
        .leaf("reason", "")
        .leaf("amiLaunchIndex", "0")
        .leaf("productCodes", "")
        .leaf("instanceType", &instance.instance_type)
        .leaf("launchTime", LAUNCH_TIME)
        .start("placement")
        .leaf("availabilityZone", &format!("{}a", instance.region))
        .leaf("groupName", "")
        .leaf("tenancy", "default")
        .end();
    if instance.platform == Platform::Windows {
        xml.leaf("platform", "windows");
    }
    xml.start("monitoring")
        .leaf("state", "disabled")
        .end()
        .leaf(
            "subnetId",
            &format!("subnet-{}", &suffix[..suffix.len().min(8)]),
        )
        .leaf("vpcId", &format!("vpc-{}", &instance.account[..8]))
        .leaf("privateIpAddress", &instance.private_ip)
        .leaf("architecture", "x86_64")
        .leaf("rootDeviceType", "ebs")
        .leaf("rootDeviceName", "/dev/xvda")
        .leaf(
            "platformDetails",
            if instance.platform == Platform::Windows {
                "Windows"
            } else {
                "Linux/UNIX"
            },
        )
        .start("tagSet");
    tag(xml, "Name", &instance.name);
    for (key, value) in &instance.tags {
        tag(xml, key, value);
    }
    xml.end() // tagSet
        .end() // instance item
        .end() // instancesSet
        .end(); // reservation item
}

fn tag(xml: &mut Xml, key: &str, value: &str) {
    xml.start("item")
        .leaf("key", key)
        .leaf("value", value)
        .end();
}

fn is_known_filter(name: &str) -> bool {
    name.starts_with("tag:")
        || matches!(
            name,
            "tag-key"
                | "instance-state-name"
                | "instance-state-code"
                | "instance-id"
                | "instance-type"
                | "private-ip-address"
                | "private-dns-name"
                | "platform"
                | "availability-zone"
                | "owner-id"
        )
}

/// Whether `instance` passes one filter: any of `values` matches (wildcards allowed).
fn matches(instance: &InstanceSpec, name: &str, values: &[String]) -> bool {
    let any = |text: &str| values.iter().any(|v| wildcard_match(v, text));
    if let Some(key) = name.strip_prefix("tag:") {
        return match key {
            "Name" => any(&instance.name),
            _ => instance.tags.get(key).is_some_and(|v| any(v)),
        };
    }
    match name {
        "tag-key" => any("Name") || instance.tags.keys().any(|k| any(k)),
        "instance-state-name" => any(instance.state.as_str()),
        "instance-state-code" => any(&instance.state.code().to_string()),
        "instance-id" => any(&instance.id),
        "instance-type" => any(&instance.instance_type),
        "private-ip-address" => any(&instance.private_ip),
        "private-dns-name" => any(&instance.private_dns),
        "platform" => instance.platform == Platform::Windows && any("windows"),
        "availability-zone" => any(&format!("{}a", instance.region)),
        "owner-id" => any(&instance.account),
        _ => false,
    }
}

const MIN_RESULTS: usize = 5;
const MAX_RESULTS: usize = 1000;
const AMI: &str = "ami-0c55b159cbfafe1f0";
const LAUNCH_TIME: &str = "2025-01-06T09:30:00.000Z";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_match_names_tags_and_states() {
        let mut instance = InstanceSpec::new("i-0123456789abcdef0", "3.3.0.0");
        instance.name = "web-prod-1".to_owned();
        instance
            .tags
            .insert("team".to_owned(), "payments".to_owned());
        let v = |s: &str| vec![s.to_owned()];
        assert!(matches(&instance, "tag:Name", &v("web-*")));
        assert!(!matches(&instance, "tag:Name", &v("api-*")));
        assert!(matches(&instance, "tag:team", &v("payments")));
        assert!(!matches(&instance, "tag:owner", &v("*")));
        assert!(matches(&instance, "tag-key", &v("team")));
        assert!(matches(&instance, "instance-state-name", &v("running")));
        assert!(matches(
            &instance,
            "instance-state-name",
            &["stopped".to_owned(), "running".to_owned()]
        ));
        assert!(matches(&instance, "instance-id", &v("i-0123456789abcdef0")));
        assert!(!matches(&instance, "platform", &v("windows")));
    }
}
