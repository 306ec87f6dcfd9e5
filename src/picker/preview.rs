//! The preview pane: the highlighted instance's details. Every value came from AWS or the
//! agent and is escaped; the only escape sequences in the pane are our own colours.

use std::fmt::Write as _;

use crate::discovery::Instance;
use crate::picker::row::RowContext;
use crate::term::{Colour, escape, paint};

/// The preview of `instance`: name and id, why it cannot be opened (offline), account, role
/// and environment, region, state and instance type, addresses, VPC and subnet, launch time,
/// agent and platform, the last session, what the agent's version cannot do, and every tag.
pub(super) fn render(instance: &Instance, context: &RowContext) -> String {
    let mut out = String::new();
    let title = if instance.name.is_empty() {
        escape(&instance.id).into_owned()
    } else {
        format!("{}  {}", escape(&instance.name), escape(&instance.id))
    };
    let title = match instance.env.as_deref() {
        _ if instance.is_prod() => paint(&title, Colour::Prod),
        Some("stg" | "staging") => paint(&title, Colour::Staging),
        _ => title,
    };
    let _ = writeln!(out, "{title}");
    if !instance.is_online() {
        let _ = writeln!(
            out,
            "{}",
            paint(
                &format!(
                    "agent {}: no session can be opened",
                    escape(instance.agent_status())
                ),
                Colour::Dim
            )
        );
    }
    let mut field = |label: &str, value: &str| {
        if !value.is_empty() {
            let _ = writeln!(out, "{label:<11}{}", escape(value));
        }
    };
    let account = if instance.alias == instance.account || instance.account.is_empty() {
        instance.alias.clone()
    } else {
        format!("{} ({})", instance.alias, instance.account)
    };
    field("account", &account);
    field("env", instance.env.as_deref().unwrap_or("-"));
    field(
        "role",
        context
            .roles
            .get(&instance.account)
            .map_or("the command line's identity", String::as_str),
    );
    field("region", &instance.region);
    field("state", &instance.state);
    field(
        "type",
        instance.instance_type.as_deref().unwrap_or_default(),
    );
    field(
        "private",
        &join(&[&instance.private_ip, &instance.private_dns]),
    );
    field("public", instance.public_ip.as_deref().unwrap_or_default());
    field("vpc", instance.vpc_id.as_deref().unwrap_or_default());
    field("subnet", instance.subnet_id.as_deref().unwrap_or_default());
    field(
        "launched",
        instance.launch_time.as_deref().unwrap_or_default(),
    );
    field(
        "agent",
        &format!(
            "{} {}",
            instance.agent_version.as_deref().unwrap_or("-"),
            instance.agent_status()
        ),
    );
    field("platform", &instance.platform);
    let last = match context.last_sessions.get(&instance.id) {
        Some((time, kind)) => format!("{time} ({kind})"),
        None => "never (from this machine's history)".to_owned(),
    };
    field("last used", &last);
    if let Some(version) = instance.agent_version.as_deref() {
        let features = crate::doctor::agent_features(version);
        if features.status != crate::doctor::Status::Pass {
            field("lacks", features.detail.trim_start_matches("agent "));
        }
    }
    if !instance.tags.is_empty() {
        let _ = writeln!(out, "tags");
        for (key, value) in &instance.tags {
            let _ = writeln!(out, "  {} = {}", escape(key), escape(value));
        }
    }
    out
}

fn join(parts: &[&Option<String>]) -> String {
    parts
        .iter()
        .filter_map(|p| p.as_deref())
        .collect::<Vec<_>>()
        .join("  ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance() -> Instance {
        let mut tags = std::collections::BTreeMap::new();
        tags.insert("team".to_owned(), "orders".to_owned());
        tags.insert("Name".to_owned(), "api\x1b[2J".to_owned());
        Instance {
            id: "i-0123456789abcdef0".into(),
            name: "api\x1b[2J".into(),
            account: "111111111111".into(),
            alias: "acme-prod".into(),
            env: Some("prod".into()),
            region: "eu-west-1".into(),
            state: "running".into(),
            private_ip: Some("10.0.0.1".into()),
            private_dns: Some("ip-10-0-0-1.internal".into()),
            vpc_id: Some("vpc-1".into()),
            subnet_id: Some("subnet-0a1b2c3d".into()),
            instance_type: Some("t3.micro".into()),
            agent_version: Some("2.3.0.0".into()),
            ping_status: Some("Online".into()),
            platform: "Amazon Linux".into(),
            tags,
            ..Instance::default()
        }
    }

    #[test]
    fn shows_facts_tags_role_history_and_missing_features() {
        let mut context = RowContext::default();
        context
            .roles
            .insert("111111111111".into(), "PosternAccess".into());
        context.last_sessions.insert(
            "i-0123456789abcdef0".into(),
            ("2026-12-01T21:30:00Z".into(), "shell".into()),
        );
        let text = render(&instance(), &context);
        for expected in [
            "acme-prod (111111111111)",
            "PosternAccess",
            "10.0.0.1  ip-10-0-0-1.internal",
            "vpc-1",
            "subnet     subnet-0a1b2c3d",
            "type       t3.micro",
            "2.3.0.0 Online",
            "2026-12-01T21:30:00Z (shell)",
            "lacks",
            "team = orders",
        ] {
            assert!(text.contains(expected), "{expected:?} missing:\n{text}");
        }
    }

    #[test]
    fn only_our_colours_reach_the_pane() {
        let text = render(&instance(), &RowContext::default());
        assert!(text.contains("api\\x1b[2J"));
        // The only ESC bytes are the title's colour and its reset.
        let title = text.lines().next().unwrap();
        assert_eq!(text.matches('\x1b').count(), title.matches('\x1b').count());
        assert!(!text.contains('\x07'));
    }
}
