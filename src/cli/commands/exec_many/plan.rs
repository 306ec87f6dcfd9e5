//! The arguments of `postern exec` on several instances and their validated plan: which
//! instances (a query with filters, or the picker's rows), how many sessions at once, and how
//! output is shown. No network call.

use crate::cli::commands::list::parse_tags;
use crate::cli::commands::session::ExecPlan;
use crate::cli::common::CommonArgs;
use crate::cli::reach::Reach;
use crate::discovery::Instance;
use crate::report::{ErrorKind, ExpectedError};

/// `postern exec`'s options for several instances.
#[derive(clap::Args, Debug, Clone, Default, PartialEq, Eq)]
pub struct FleetArgs {
    /// Run COMMAND on every online instance `postern list QUERY` shows (with --account, --env,
    /// --region and --tag); `--all ''` matches every instance. Offline matches are reported as
    /// not started.
    #[arg(long, value_name = "QUERY", conflicts_with_all = ["target", "tty"])]
    pub all: Option<String>,

    /// With --all: only instances of this environment (dev, stg, prod).
    #[arg(long, value_name = "ENV", requires = "all")]
    pub env: Option<String>,

    /// With --all: only instances with this tag value. Repeatable; all must match.
    #[arg(long = "tag", value_name = "KEY=VALUE", requires = "all")]
    pub tags: Vec<String>,

    /// On several instances: how many sessions may be open at once (1-256).
    #[arg(long, value_name = "N", default_value_t = 16,
          value_parser = clap::value_parser!(u16).range(1..=256))]
    pub parallel: u16,

    /// On several instances: print each instance's output as one block when it ends, instead
    /// of line by line as it comes.
    #[arg(long, conflicts_with = "json")]
    pub group: bool,

    /// On several instances: one JSON object per instance when it ends (instance, name,
    /// account, region, status, exit status, duration, stdout, stderr, error).
    #[arg(long)]
    pub json: bool,
}

/// How the instances' output is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputMode {
    /// Line by line as it arrives, each line after its instance's name.
    Stream,
    /// Each instance's output as one block when it ends.
    Group,
    /// One JSON object per instance when it ends.
    Json,
}

/// A validated `postern exec` on several instances.
#[derive(Debug)]
pub struct ExecManyPlan {
    /// The identities the instances are listed and opened with.
    pub(crate) reach: Reach,
    /// The command and session options (its target stays empty).
    pub exec: ExecPlan,
    /// Which instances.
    pub(crate) selection: Selection,
    /// Sessions open at once.
    pub parallel: usize,
    /// How output is shown.
    pub output: OutputMode,
}

/// Which instances a run covers.
#[derive(Debug)]
pub(crate) enum Selection {
    /// What `postern list QUERY` shows with these filters.
    Query {
        /// The fuzzy query (empty: every instance).
        query: String,
        /// `--account`.
        account: Option<String>,
        /// `--env`.
        env: Option<String>,
        /// `--tag`.
        tags: Vec<(String, String)>,
    },
    /// Rows chosen in the picker.
    Chosen(Vec<Instance>),
}

impl ExecManyPlan {
    /// `postern exec --all QUERY`: validates the filters.
    pub(crate) fn new(common: &CommonArgs, exec: ExecPlan) -> Result<Self, ExpectedError> {
        if exec.tty == Some(true) {
            return Err(ExpectedError::new(
                ErrorKind::Usage,
                "--tty cannot be used on several instances",
            ));
        }
        let selection = Selection::Query {
            query: exec.fleet.all.clone().unwrap_or_default(),
            account: common.account.clone(),
            env: exec.fleet.env.clone(),
            tags: parse_tags(&exec.fleet.tags)?,
        };
        Ok(Self::with(Reach::new(common)?, exec, selection))
    }

    /// Several instances chosen in the picker.
    pub(crate) fn chosen(reach: Reach, exec: ExecPlan, instances: Vec<Instance>) -> Self {
        Self::with(reach, exec, Selection::Chosen(instances))
    }

    fn with(reach: Reach, exec: ExecPlan, selection: Selection) -> Self {
        let output = if exec.fleet.json {
            OutputMode::Json
        } else if exec.fleet.group {
            OutputMode::Group
        } else {
            OutputMode::Stream
        };
        Self {
            reach,
            parallel: usize::from(exec.fleet.parallel),
            output,
            exec,
            selection,
        }
    }
}
