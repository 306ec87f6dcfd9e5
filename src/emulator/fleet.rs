//! Fleet files. Part 1 reads only the instances of a fleet file, from a minimal TOML subset:
//! `[[instances]]` tables with string keys `id`, `name` and `agent_version`; every other table
//! (accounts, regions: part 2) and key is skipped. Part 2 replaces this with a full TOML parser.

use std::path::Path;

use crate::emulator::error::EmulatorError;
use crate::emulator::instances::{CURRENT_AGENT_VERSION, InstanceSpec};

/// Reads the instances of the fleet file at `path`.
pub(crate) fn load(path: &Path) -> Result<Vec<InstanceSpec>, EmulatorError> {
    let text = std::fs::read_to_string(path).map_err(|source| EmulatorError::FleetRead {
        path: path.to_owned(),
        source,
    })?;
    parse(&text).map_err(|reason| EmulatorError::FleetInvalid {
        path: path.to_owned(),
        reason,
    })
}

fn parse(text: &str) -> Result<Vec<InstanceSpec>, String> {
    let mut instances = Vec::new();
    let mut current: Option<Partial> = None;
    for (index, raw) in text.lines().enumerate() {
        let line_no = index + 1;
        let line = strip_comment(raw).trim();
        if line.is_empty() {
            continue;
        }
        if line.starts_with('[') {
            if let Some(partial) = current.take() {
                instances.push(partial.finish()?);
            }
            if line == "[[instances]]" {
                current = Some(Partial {
                    line: line_no,
                    ..Partial::default()
                });
            }
            continue;
        }
        let Some(partial) = current.as_mut() else {
            continue;
        };
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| format!("line {line_no}: expected key = value"))?;
        let key = key.trim();
        let value = value.trim();
        let slot = match key {
            "id" => &mut partial.id,
            "name" => &mut partial.name,
            "agent_version" => &mut partial.agent_version,
            _ => continue,
        };
        let unquoted = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .ok_or_else(|| format!("line {line_no}: {key} must be a quoted string"))?;
        *slot = Some(unquoted.to_owned());
    }
    if let Some(partial) = current.take() {
        instances.push(partial.finish()?);
    }
    if instances.is_empty() {
        return Err("no [[instances]] found".to_owned());
    }
    Ok(instances)
}

#[derive(Default)]
struct Partial {
    line: usize,
    id: Option<String>,
    name: Option<String>,
    agent_version: Option<String>,
}

impl Partial {
    fn finish(self) -> Result<InstanceSpec, String> {
        let id = self
            .id
            .ok_or_else(|| format!("the instance at line {} has no id", self.line))?;
        let version = self
            .agent_version
            .unwrap_or_else(|| CURRENT_AGENT_VERSION.to_owned());
        let mut spec: InstanceSpec = format!("{id}={version}")
            .parse()
            .map_err(|err: EmulatorError| format!("instance at line {}: {err}", self.line))?;
        if let Some(name) = self.name {
            spec.name = name;
        }
        Ok(spec)
    }
}

fn strip_comment(line: &str) -> &str {
    // Good enough for the subset: `#` never appears inside our quoted values.
    line.split_once('#').map_or(line, |(before, _)| before)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_instances_and_skips_other_tables() {
        let text = r#"
# sample
[[accounts]]
id = "111111111111"

[[instances]]
id = "i-0123456789abcdef0"
name = "web-1"   # tag Name
agent_version = "3.0.161.0"
platform = "Linux"

[[instances]]
id = "mi-0123456789abcdef1"
"#;
        let instances = parse(text).unwrap();
        assert_eq!(instances.len(), 2);
        assert_eq!(instances[0].name, "web-1");
        assert_eq!(instances[0].agent_version, "3.0.161.0");
        assert_eq!(instances[1].agent_version, CURRENT_AGENT_VERSION);
    }

    #[test]
    fn rejects_instances_without_id() {
        let err = parse("[[instances]]\nname = \"x\"\n").unwrap_err();
        assert!(err.contains("no id"), "{err}");
    }
}
