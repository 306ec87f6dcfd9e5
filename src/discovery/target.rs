//! Target resolution: what the user typed (an instance id, a Name tag, `name@account-alias`, a
//! private IP or DNS name) to one instance of the index.
//!
//! Rules, in order: an instance id is taken as it is (no discovery); `NAME@ALIAS` matches the
//! Name tag within that account alias; otherwise an exact Name tag, private IP, private DNS
//! name (or its first label, `ip-10-0-1-5`). When several instances match and some are online,
//! only the online ones count. One match resolves; several are ambiguous; none is not found.

use crate::discovery::Instance;

/// The outcome of resolving a target.
#[derive(Debug, PartialEq, Eq)]
pub enum Resolution<'a> {
    /// Exactly one instance.
    Found(&'a Instance),
    /// Several instances, in index order.
    Ambiguous(Vec<&'a Instance>),
    /// Nothing matched.
    NotFound,
}

/// Whether `raw` is an instance id (`i-` with 8 or 17 hex digits, `mi-` with 17), which needs no
/// discovery.
pub fn is_instance_id(raw: &str) -> bool {
    let valid = |hex: &str, lens: &[usize]| {
        lens.contains(&hex.len()) && hex.bytes().all(|b| b.is_ascii_hexdigit())
    };
    match raw.split_once('-') {
        Some(("i", hex)) => valid(hex, &[8, 17]),
        Some(("mi", hex)) => valid(hex, &[17]),
        _ => false,
    }
}

/// Resolves `target` against `instances`.
pub fn resolve<'a>(target: &str, instances: &'a [Instance]) -> Resolution<'a> {
    let target = target.trim();
    let matches: Vec<&Instance> = if is_instance_id(&target.to_ascii_lowercase()) {
        instances
            .iter()
            .filter(|i| i.id.eq_ignore_ascii_case(target))
            .collect()
    } else if let Some((name, alias)) = target.rsplit_once('@') {
        instances
            .iter()
            .filter(|i| i.name == name && (i.alias == alias || i.account == alias))
            .collect()
    } else {
        let exact: Vec<_> = instances
            .iter()
            .filter(|i| matches_exactly(i, target))
            .collect();
        if exact.is_empty() {
            // Names differing only in case still resolve when nothing matches exactly.
            instances
                .iter()
                .filter(|i| i.name.eq_ignore_ascii_case(target))
                .collect()
        } else {
            exact
        }
    };
    let online: Vec<&Instance> = matches.iter().copied().filter(|i| i.is_online()).collect();
    let matches = if online.is_empty() { matches } else { online };
    match matches.as_slice() {
        [] => Resolution::NotFound,
        [one] => Resolution::Found(one),
        _ => Resolution::Ambiguous(matches),
    }
}

/// One line per candidate for an error message: `NAME  ID  ALIAS REGION  IP  STATUS`.
pub fn describe_candidates(candidates: &[&Instance]) -> String {
    let width = candidates
        .iter()
        .map(|i| i.name.chars().count())
        .max()
        .unwrap_or(0);
    candidates
        .iter()
        .map(|i| {
            format!(
                "  {:width$}  {}  {} {}  {}  {}",
                i.name,
                i.id,
                i.alias,
                i.region,
                i.private_ip.as_deref().unwrap_or("-"),
                i.agent_status(),
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn matches_exactly(instance: &Instance, target: &str) -> bool {
    instance.name == target
        || instance.private_ip.as_deref() == Some(target)
        || instance.private_dns.as_deref().is_some_and(|dns| {
            dns.eq_ignore_ascii_case(target)
                || dns
                    .split_once('.')
                    .is_some_and(|(label, _)| label.eq_ignore_ascii_case(target))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(id: &str, name: &str, alias: &str, online: bool) -> Instance {
        Instance {
            id: id.into(),
            name: name.into(),
            alias: alias.into(),
            account: format!("{alias}-id"),
            region: "eu-west-1".into(),
            private_ip: Some(format!("10.0.0.{}", &id[id.len() - 1..])),
            private_dns: Some(format!("ip-10-0-0-{}.eu-west-1.compute.internal", &id[2..])),
            ping_status: Some(if online { "Online" } else { "ConnectionLost" }.into()),
            ..Instance::default()
        }
    }

    fn fleet() -> Vec<Instance> {
        vec![
            instance("i-0000000a", "web", "acme-dev", true),
            instance("i-0000000b", "web", "acme-prod", true),
            instance("i-0000000c", "db", "acme-prod", true),
            instance("i-0000000d", "db", "acme-prod", false),
            instance("i-0000000e", "Bastion", "acme-dev", true),
        ]
    }

    fn id(r: Resolution<'_>) -> &str {
        match r {
            Resolution::Found(i) => &i.id,
            other => panic!("expected one instance, got {other:?}"),
        }
    }

    #[test]
    fn recognises_instance_ids() {
        assert!(is_instance_id("i-0123456789abcdef0"));
        assert!(is_instance_id("i-01234567"));
        assert!(is_instance_id("mi-0123456789abcdef0"));
        assert!(!is_instance_id("mi-01234567"));
        assert!(!is_instance_id("web-1"));
        assert!(!is_instance_id("i-0123456789abcdefg"));
    }

    #[test]
    fn resolves_by_id_name_alias_ip_and_dns() {
        let fleet = fleet();
        assert_eq!(id(resolve("I-0000000C", &fleet)), "i-0000000c");
        assert_eq!(id(resolve("web@acme-prod", &fleet)), "i-0000000b");
        assert_eq!(id(resolve("web@acme-dev-id", &fleet)), "i-0000000a");
        assert_eq!(id(resolve("10.0.0.c", &fleet)), "i-0000000c");
        assert_eq!(id(resolve("ip-10-0-0-0000000e", &fleet)), "i-0000000e");
        assert_eq!(
            id(resolve(
                "ip-10-0-0-0000000e.eu-west-1.compute.internal",
                &fleet
            )),
            "i-0000000e"
        );
        assert_eq!(id(resolve("bastion", &fleet)), "i-0000000e");
    }

    #[test]
    fn prefers_online_instances_among_several_matches() {
        let fleet = fleet();
        assert_eq!(id(resolve("db", &fleet)), "i-0000000c");
    }

    #[test]
    fn reports_ambiguity_and_absence() {
        let fleet = fleet();
        let Resolution::Ambiguous(candidates) = resolve("web", &fleet) else {
            panic!("web is in two accounts");
        };
        assert_eq!(candidates.len(), 2);
        let text = describe_candidates(&candidates);
        assert!(text.contains("i-0000000a  acme-dev eu-west-1"), "{text}");
        assert!(text.contains("i-0000000b  acme-prod eu-west-1"), "{text}");
        assert_eq!(resolve("nope", &fleet), Resolution::NotFound);
        assert_eq!(resolve("web@acme-stg", &fleet), Resolution::NotFound);
    }
}
