//! argv[0] dispatch and the operator CLI.
//!
//! Installed as /usr/lib/ocf/resource.d/ferry/<Agent> (a link to this binary),
//! the file name of argv[0] selects the agent and argv[1] is the OCF action.
//! Run under any other name, ferry is a small CLI for operators:
//!   ferry list                 the agents this binary carries
//!   ferry AGENT ACTION         run an agent action, as the link would
//!   ferry --version

use std::ffi::OsString;
use std::path::Path;

use crate::agents;
use crate::ocf::{agent, log, OcfCode};

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn usage() -> String {
    format!(
        "usage: ferry list | ferry AGENT ACTION | ferry --version\nagents: {}",
        agents::names().collect::<Vec<_>>().join(", ")
    )
}

fn strings(args: &[OsString]) -> Vec<String> {
    args.iter().map(|a| a.to_string_lossy().into_owned()).collect()
}

/// Runs one invocation; returns the process exit code.
pub fn run(argv: Vec<OsString>) -> u8 {
    let invoked = argv
        .first()
        .and_then(|a| Path::new(a).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if let Some(agent) = agents::by_name(&invoked) {
        return agent::run(agent.as_ref(), &strings(&argv[1..])).value();
    }
    let args = strings(argv.get(1..).unwrap_or_default());
    match args.first().map(String::as_str) {
        Some("list") => {
            for name in agents::names() {
                log::stdout_text(&format!("{name}\n"));
            }
            0
        }
        Some("--version") | Some("version") => {
            log::stdout_text(&format!("ferry {VERSION}\n"));
            0
        }
        Some("--help") | Some("-h") | Some("help") => {
            log::stdout_text(&format!("{}\n", usage()));
            0
        }
        Some(name) => match agents::by_name(name) {
            Some(agent) => agent::run(agent.as_ref(), &args[1..]).value(),
            None => {
                log::stderr_line(&format!("ferry: no agent named '{name}'\n{}", usage()));
                OcfCode::ErrArgs.value()
            }
        },
        None => {
            log::stderr_line(&usage());
            OcfCode::ErrArgs.value()
        }
    }
}
