//! Version-threshold decisions against `versions.json`, recorded from the official client's
//! (`session-manager-plugin` 1.2.0.0) and agent's (`amazon-ssm-agent` 3.3.0.0) own code.

use postern_protocol::testkit::vectors::{load_json, str_field};
use postern_protocol::version::{
    agent_disables_smux_keepalive, agent_uses_mux, agent_warns_no_output_separation,
    client_disables_smux_keepalive, client_sends_terminate_flag, client_uses_mux,
};
use serde_json::Value;

#[test]
fn client_decisions_match_every_plugin_row() {
    let rows = rows("plugin_decisions_by_agent_version", 16);
    for row in &rows {
        let agent = str_field(row, "agent_version");
        assert_eq!(
            client_uses_mux(agent),
            flag(row, "client_uses_mux_for_LocalPortForwarding"),
            "mux, agent {agent:?}"
        );
        assert_eq!(
            client_disables_smux_keepalive(agent),
            flag(row, "client_disables_smux_keepalive"),
            "keepalive, agent {agent:?}"
        );
        assert_eq!(
            client_sends_terminate_flag(agent),
            flag(row, "client_sends_terminate_session_flag"),
            "terminate flag, agent {agent:?}"
        );
    }
}

#[test]
fn agent_decisions_match_every_agent_row() {
    let rows = rows("agent_decisions_by_client_version", 13);
    for row in &rows {
        let client = str_field(row, "client_version");
        assert_eq!(
            agent_uses_mux(client),
            flag(row, "agent_uses_mux_for_LocalPortForwarding"),
            "mux, client {client:?}"
        );
        assert_eq!(
            agent_disables_smux_keepalive(client),
            flag(row, "agent_disables_smux_keepalive"),
            "keepalive, client {client:?}"
        );
        assert_eq!(
            agent_warns_no_output_separation(client),
            flag(row, "agent_warns_no_output_separation"),
            "output separation, client {client:?}"
        );
    }
}

#[test]
fn our_reported_client_version_gets_every_modern_agent_feature() {
    // SPEC §12 MUST 3: report a plain dotted version above 1.2.331.0.
    let file = load_json("versions.json");
    let plugin = str_field(&file, "plugin_version_constant");
    assert!(agent_uses_mux(plugin));
    let modern = "1.2.707.0";
    assert!(agent_uses_mux(modern) && agent_disables_smux_keepalive(modern));
    assert!(!agent_warns_no_output_separation(modern));
}

fn rows(key: &str, expected: usize) -> Vec<Value> {
    let file = load_json("versions.json");
    let rows = file[key]
        .as_array()
        .unwrap_or_else(|| panic!("versions.json: no {key:?}"))
        .clone();
    assert_eq!(rows.len(), expected, "versions.json: {key} count");
    rows
}

fn flag(row: &Value, key: &str) -> bool {
    row[key]
        .as_bool()
        .unwrap_or_else(|| panic!("versions.json row has no bool {key:?}: {row}"))
}
