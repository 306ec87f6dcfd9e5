//! Guardrails between environments: production accounts are painted red, need a confirmation
//! (or `--yes`) and, when configured, a `--reason`; an environment that requires its own source
//! identity refuses any other (no prod role from a dev identity).
//!
//! Pure decisions plus the one confirmation prompt; it never prints anything else.

use std::io::{BufRead, BufReader, Write};

use crate::config::Environment;
use crate::term::Colour;

/// Why a guardrail stopped the command.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Production needs `--yes` or a typed confirmation, and there is no terminal to ask on.
    #[error("{env} account {alias} needs a confirmation")]
    NeedsConfirmation {
        /// The account alias.
        alias: String,
        /// Its environment.
        env: String,
    },
    /// The user did not confirm.
    #[error("not confirmed for {env} account {alias}")]
    Declined {
        /// The account alias.
        alias: String,
        /// Its environment.
        env: String,
    },
    /// The environment requires `--reason`.
    #[error("{env} account {alias} requires a reason")]
    NeedsReason {
        /// The account alias.
        alias: String,
        /// Its environment.
        env: String,
    },
    /// The source identity in use is limited to other environments.
    #[error(
        "refusing to assume a role in {env} account {alias} from source identity {used}: {used} \
         may only reach {allowed}"
    )]
    SourceNotForEnv {
        /// The account alias.
        alias: String,
        /// Its environment.
        env: String,
        /// The source identity in use.
        used: String,
        /// The environments it may reach, comma-separated.
        allowed: String,
    },
    /// The environment must be reached from another source identity.
    #[error(
        "refusing to assume a role in {env} account {alias} from source identity {used}: {env} \
         requires source identity {required}"
    )]
    WrongSource {
        /// The account alias.
        alias: String,
        /// Its environment.
        env: String,
        /// The source identity the environment requires.
        required: String,
        /// The one in use.
        used: String,
    },
}

/// How a confirmation is obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Confirmation {
    /// `--yes` was given.
    Given,
    /// Ask on the terminal (stdin and stderr are terminals).
    Ask,
    /// No terminal and no `--yes`.
    Impossible,
}

impl Confirmation {
    /// `Given` with `--yes`, else `Ask` when stdin and stderr are terminals, else `Impossible`.
    pub fn from_terminal(yes: bool) -> Self {
        use std::io::IsTerminal as _;
        if yes {
            Self::Given
        } else if std::io::stdin().is_terminal() && std::io::stderr().is_terminal() {
            Self::Ask
        } else {
            Self::Impossible
        }
    }
}

/// Checks confirmation and reason for opening a session (or issuing credentials) in `alias`.
pub fn check_session(
    alias: &str,
    env_name: &str,
    env: &Environment,
    confirmation: Confirmation,
    reason: Option<&str>,
) -> Result<(), Refusal> {
    check_sessions(alias, env_name, env, confirmation, reason, None)
}

/// [`check_session`] for a command about to run on `instances` of the account's instances
/// (`postern exec --all`): asked once for them all, the prompt naming how many.
pub fn check_sessions(
    alias: &str,
    env_name: &str,
    env: &Environment,
    confirmation: Confirmation,
    reason: Option<&str>,
    instances: Option<usize>,
) -> Result<(), Refusal> {
    if env.require_reason && reason.is_none_or(|r| r.trim().is_empty()) {
        return Err(Refusal::NeedsReason {
            alias: alias.to_owned(),
            env: env_name.to_owned(),
        });
    }
    if !env.confirm {
        return Ok(());
    }
    match confirmation {
        Confirmation::Given => Ok(()),
        Confirmation::Impossible => Err(Refusal::NeedsConfirmation {
            alias: alias.to_owned(),
            env: env_name.to_owned(),
        }),
        Confirmation::Ask => {
            if ask(alias, env_name, instances).unwrap_or(false) {
                Ok(())
            } else {
                Err(Refusal::Declined {
                    alias: alias.to_owned(),
                    env: env_name.to_owned(),
                })
            }
        }
    }
}

/// Checks that the source identity `used` may reach an account of `env`: an environment
/// naming a source accepts only that one, and a source limited to environments (`allowed`,
/// empty for any) reaches only those.
pub fn check_source(
    alias: &str,
    env_name: &str,
    env: &Environment,
    used: &str,
    allowed: &[String],
) -> Result<(), Refusal> {
    if !allowed.is_empty() && !allowed.iter().any(|a| crate::config::same_env(a, env_name)) {
        return Err(Refusal::SourceNotForEnv {
            alias: alias.to_owned(),
            env: env_name.to_owned(),
            used: used.to_owned(),
            allowed: allowed.join(", "),
        });
    }
    match &env.source {
        Some(required) if required != used => Err(Refusal::WrongSource {
            alias: alias.to_owned(),
            env: env_name.to_owned(),
            required: required.clone(),
            used: used.to_owned(),
        }),
        _ => Ok(()),
    }
}

/// `text` in the environment's colour when `colour` is on: production red and bold, `stg`
/// and `staging` yellow, others green (postern's colours, through crossterm).
pub fn paint(text: &str, env_name: &str, env: &Environment, colour: bool) -> String {
    if !colour {
        return text.to_owned();
    }
    let colour = if env.production {
        Colour::Prod
    } else if matches!(env_name, "stg" | "staging") {
        Colour::Staging
    } else {
        Colour::Other
    };
    crate::term::paint(text, colour)
}

/// Asks on the terminal for the alias to be typed back.
fn ask(alias: &str, env_name: &str, instances: Option<usize>) -> std::io::Result<bool> {
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")?;
    let mut writer = &tty;
    write!(
        writer,
        "{}",
        prompt(
            &paint(alias, env_name, &Environment::defaults("prod"), true),
            env_name,
            instances
        )
    )?;
    writer.flush()?;
    let mut line = String::new();
    BufReader::new(&tty).read_line(&mut line)?;
    Ok(line.trim() == alias)
}

/// The confirmation question: the account, and how many of its instances a command will run
/// on when it runs on several.
fn prompt(alias: &str, env_name: &str, instances: Option<usize>) -> String {
    match instances {
        None => format!("{alias} is a {env_name} account. Type its alias to continue: "),
        Some(n) => format!(
            "{alias} is a {env_name} account: the command will run on {n} of its instance{}. \
             Type its alias to continue: ",
            if n == 1 { "" } else { "s" }
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prod(require_reason: bool) -> Environment {
        Environment {
            require_reason,
            ..Environment::defaults("prod")
        }
    }

    #[test]
    fn production_needs_yes_without_a_terminal() {
        let env = prod(false);
        assert_eq!(
            check_session("acme-prod", "prod", &env, Confirmation::Impossible, None),
            Err(Refusal::NeedsConfirmation {
                alias: "acme-prod".to_owned(),
                env: "prod".to_owned()
            })
        );
        assert_eq!(
            check_session("acme-prod", "prod", &env, Confirmation::Given, None),
            Ok(())
        );
        let dev = Environment::defaults("dev");
        assert_eq!(
            check_session("acme-dev", "dev", &dev, Confirmation::Impossible, None),
            Ok(())
        );
    }

    #[test]
    fn reasons_are_required_when_configured() {
        let env = prod(true);
        let err = check_session("p", "prod", &env, Confirmation::Given, Some("  ")).unwrap_err();
        assert_eq!(err.to_string(), "prod account p requires a reason");
        assert_eq!(
            check_session("p", "prod", &env, Confirmation::Given, Some("INC-42")),
            Ok(())
        );
    }

    #[test]
    fn environments_with_a_source_refuse_others() {
        let env = Environment {
            source: Some("prod-admin".to_owned()),
            ..prod(false)
        };
        let err = check_source("acme-prod", "prod", &env, "default", &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "refusing to assume a role in prod account acme-prod from source identity default: \
             prod requires source identity prod-admin"
        );
        assert_eq!(
            check_source("acme-prod", "prod", &env, "prod-admin", &[]),
            Ok(())
        );
        assert_eq!(
            check_source("d", "dev", &Environment::defaults("dev"), "x", &[]),
            Ok(())
        );
    }

    #[test]
    fn a_source_limited_to_environments_reaches_no_other_in_either_direction() {
        let prod_only = ["prod".to_owned()];
        let dev_only = ["dev".to_owned(), "stg".to_owned()];
        let dev = Environment::defaults("dev");
        let production = Environment::defaults("production");
        // The production identity cannot open dev...
        let err = check_source("acme-dev", "dev", &dev, "prod", &prod_only).unwrap_err();
        assert_eq!(
            err.to_string(),
            "refusing to assume a role in dev account acme-dev from source identity prod: prod \
             may only reach prod"
        );
        // ...and the dev identity cannot open prod, however prod is spelt.
        for env_name in [
            "prod",
            "production",
            "prd",
            "live",
            "prod-eu",
            "Prod Workloads",
        ] {
            assert!(
                check_source("p", env_name, &production, "dev", &dev_only).is_err(),
                "{env_name}"
            );
            assert_eq!(
                check_source("p", env_name, &production, "prod", &prod_only),
                Ok(()),
                "{env_name}"
            );
        }
        assert_eq!(check_source("s", "staging", &dev, "dev", &dev_only), Ok(()));
    }

    #[test]
    fn production_names_and_unknown_need_confirmation() {
        for name in [
            "prod",
            "production",
            "prd",
            "live",
            "prod-eu",
            "Prod Workloads",
            "PRD",
        ] {
            let env = Environment::defaults(name);
            assert!(env.production && env.confirm, "{name}");
        }
        for name in ["unknown", "", "  "] {
            let env = Environment::defaults(name);
            assert!(!env.production && env.confirm, "{name:?}");
        }
        for name in ["dev", "stg", "staging", "sandbox", "qa"] {
            let env = Environment::defaults(name);
            assert!(!env.production && !env.confirm, "{name}");
        }
        assert_eq!(
            check_session(
                "a",
                "unknown",
                &Environment::defaults("unknown"),
                Confirmation::Impossible,
                None
            ),
            Err(Refusal::NeedsConfirmation {
                alias: "a".to_owned(),
                env: "unknown".to_owned()
            })
        );
    }

    #[test]
    fn paints_production_red_only_with_colour() {
        let env = prod(false);
        assert_eq!(paint("p", "prod", &env, false), "p");
        assert_eq!(
            paint("p", "prod", &env, true),
            crate::term::paint("p", Colour::Prod)
        );
        assert_eq!(
            paint("s", "stg", &Environment::defaults("stg"), true),
            crate::term::paint("s", Colour::Staging)
        );
        assert_eq!(
            paint("d", "dev", &Environment::defaults("dev"), true),
            crate::term::paint("d", Colour::Other)
        );
    }

    #[test]
    fn the_prompt_names_how_many_instances_will_run() {
        assert_eq!(
            prompt("acme-prod", "prod", None),
            "acme-prod is a prod account. Type its alias to continue: "
        );
        assert_eq!(
            prompt("acme-prod", "prod", Some(3)),
            "acme-prod is a prod account: the command will run on 3 of its instances. Type \
             its alias to continue: "
        );
        assert!(prompt("p", "prod", Some(1)).contains("on 1 of its instance."));
    }
}
