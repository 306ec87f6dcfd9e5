//! The picker's rows and the choice logic shared by every [`Picker`].

use crate::discovery::Instance;
use crate::picker::matcher::Matcher;

/// One line of the picker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// Columns: account alias, env, region, Name, instance id, private IP, platform, agent status.
    pub columns: Vec<String>,
    /// The text the query matches against (the columns joined by spaces).
    pub text: String,
    /// Offline instances are shown but cannot be chosen for a session.
    pub selectable: bool,
    /// Production rows are drawn in a distinct colour.
    pub prod: bool,
}

/// Shows rows and lets the user choose one. The TTY implementation draws on the terminal;
/// [`ScriptedPicker`] answers from a script, so the logic is testable without a TTY.
pub trait Picker {
    /// Shows `rows`, with `query` pre-filled; the index chosen, or `None` when cancelled.
    fn pick(&mut self, rows: &[Row], query: &str) -> std::io::Result<Option<usize>>;
}

/// What [`choose`] decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PickOutcome {
    /// The index of the chosen row.
    Chosen(usize),
    /// The user cancelled.
    Cancelled,
}

#[cfg(test)]
/// A picker that chooses the `nth` selectable row matching the pre-filled query, best first;
/// it records each query it was opened with.
#[derive(Debug, Default)]
pub(crate) struct ScriptedPicker {
    /// Which match to choose; `None` cancels.
    pub nth: Option<usize>,
    /// Queries the picker was opened with.
    pub opened: Vec<String>,
}

/// The rows for `instances`, in the same order.
pub fn rows_for(instances: &[Instance]) -> Vec<Row> {
    instances
        .iter()
        .map(|i| {
            let columns = vec![
                i.alias.clone(),
                i.env.clone().unwrap_or_default(),
                i.region.clone(),
                i.name.clone(),
                i.id.clone(),
                i.private_ip.clone().unwrap_or_default(),
                i.platform.clone(),
                i.agent_status().to_owned(),
            ];
            let text = columns.join(" ");
            Row {
                columns,
                text,
                selectable: i.is_online(),
                prod: i.is_prod(),
            }
        })
        .collect()
}

/// Chooses a row: with `select_one`, a query matching exactly one selectable row chooses it
/// without showing the picker; otherwise the picker decides. A non-selectable choice counts as
/// cancelled.
pub fn choose(
    picker: &mut dyn Picker,
    rows: &[Row],
    query: &str,
    select_one: bool,
) -> std::io::Result<PickOutcome> {
    if select_one {
        let matcher = Matcher::new(query);
        let mut selectable = rows
            .iter()
            .enumerate()
            .filter(|(_, r)| r.selectable && matcher.score(&r.text).is_some());
        if let (Some((only, _)), None) = (selectable.next(), selectable.next()) {
            return Ok(PickOutcome::Chosen(only));
        }
    }
    Ok(match picker.pick(rows, query)? {
        Some(i) if rows.get(i).is_some_and(|r| r.selectable) => PickOutcome::Chosen(i),
        _ => PickOutcome::Cancelled,
    })
}

#[cfg(test)]
impl Picker for ScriptedPicker {
    fn pick(&mut self, rows: &[Row], query: &str) -> std::io::Result<Option<usize>> {
        self.opened.push(query.to_owned());
        let texts: Vec<&str> = rows.iter().map(|r| r.text.as_str()).collect();
        let ranked = Matcher::new(query).rank(&texts);
        Ok(self
            .nth
            .and_then(|n| ranked.into_iter().filter(|&i| rows[i].selectable).nth(n)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(id: &str, name: &str, online: bool, env: &str) -> Instance {
        Instance {
            id: id.into(),
            name: name.into(),
            alias: format!("acme-{env}"),
            env: Some(env.into()),
            region: "us-east-1".into(),
            ping_status: Some(if online { "Online" } else { "ConnectionLost" }.into()),
            ..Instance::default()
        }
    }

    fn fleet() -> Vec<Row> {
        rows_for(&[
            instance("i-01", "web-1", true, "prod"),
            instance("i-02", "web-2", false, "prod"),
            instance("i-03", "db-1", true, "dev"),
        ])
    }

    #[test]
    fn rows_carry_columns_prod_and_selectability() {
        let rows = fleet();
        assert_eq!(
            rows[0].columns[..5],
            ["acme-prod", "prod", "us-east-1", "web-1", "i-01"]
        );
        assert!(rows[0].prod && rows[0].selectable);
        assert!(!rows[1].selectable);
        assert!(!rows[2].prod);
    }

    #[test]
    fn select_one_skips_the_picker_on_a_single_selectable_match() {
        let mut picker = ScriptedPicker::default();
        // web-2 matches too but is offline.
        let outcome = choose(&mut picker, &fleet(), "web", true).unwrap();
        assert_eq!(outcome, PickOutcome::Chosen(0));
        assert!(picker.opened.is_empty());
    }

    #[test]
    fn opens_the_picker_with_the_query_otherwise() {
        let mut picker = ScriptedPicker {
            nth: Some(1),
            ..ScriptedPicker::default()
        };
        let outcome = choose(&mut picker, &fleet(), "1", true).unwrap();
        assert_eq!(outcome, PickOutcome::Chosen(2));
        assert_eq!(picker.opened, ["1"]);
    }

    #[test]
    fn cancelling_or_choosing_an_offline_row_is_cancelled() {
        let mut picker = ScriptedPicker::default();
        assert_eq!(
            choose(&mut picker, &fleet(), "", false).unwrap(),
            PickOutcome::Cancelled
        );
        struct Offline;
        impl Picker for Offline {
            fn pick(&mut self, _: &[Row], _: &str) -> std::io::Result<Option<usize>> {
                Ok(Some(1))
            }
        }
        assert_eq!(
            choose(&mut Offline, &fleet(), "", false).unwrap(),
            PickOutcome::Cancelled
        );
    }
}
