//! argv[0] dispatch and the operator CLI.
//!
//! Installed as /usr/lib/ocf/resource.d/ferry/<Agent> (a link to this binary),
//! the file name of argv[0] selects the agent and argv[1] is the OCF action.
//! Run under any other name, ferry is a small CLI for operators:
//!   ferry list                 the agents this binary carries
//!   ferry status               the guests on this node that ferry's agents own
//!   ferry man AGENT            the agent's man page (roff), from its meta-data
//!   ferry answers              what each exit code means to Pacemaker, per action
//!   ferry AGENT ACTION         run an agent action, as the link would
//!   ferry --version

use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use crate::agents;
use crate::process::SystemRunner;
use crate::ocf::metadata::Metadata;
use crate::ocf::{agent, answers, log, manpage, Deadline, OcfCode};

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn usage() -> String {
    format!(
        "usage: ferry list | ferry status | ferry man AGENT | ferry answers | ferry AGENT ACTION | ferry --version\nagents: {}",
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
        Some("status") => status(),
        Some("answers") => {
            log::stdout_text(&answers::markdown());
            0
        }
        Some("man") => match args.get(1).and_then(|name| agents::by_name(name)) {
            Some(agent) => {
                let md = Metadata::parse(agent.metadata_xml()).expect("embedded meta-data is valid (tested)");
                log::stdout_text(&manpage::render(&md, VERSION));
                0
            }
            None => {
                log::stderr_line(&format!("ferry man: name an agent\n{}", usage()));
                OcfCode::ErrArgs.value()
            }
        },
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

/// How long `ferry status` may wait for the hypervisor: an operator in an
/// incident needs an answer, not a hang.
const STATUS_TIMEOUT: Duration = Duration::from_secs(20);

/// Lists every guest on this node that carries an owner mark, one line
/// each: resource, agent, guest, state (with the hypervisor's reason).
/// Exit 0 when every agent could answer, 1 when one could not.
fn status() -> u8 {
    let deadline = Deadline::for_operation(STATUS_TIMEOUT);
    let mut rows = vec![["RESOURCE".to_string(), "AGENT".into(), "GUEST".into(), "STATE".into()]];
    let mut code = 0;
    for name in agents::names() {
        let agent = agents::by_name(name).expect("listed");
        match agent.owned_guests(deadline) {
            None => {}
            Some(Ok(guests)) => rows.extend(guests.into_iter().map(|g| {
                // A migrate_to running here publishes its progress in attrd.
                let state = match agents::common::migration_progress(&SystemRunner, &g.resource, deadline) {
                    Some(progress) => format!("{}, migrating: {progress}", g.state),
                    None => g.state,
                };
                [g.resource, name.to_string(), g.guest, state]
            })),
            Some(Err(why)) => {
                log::stderr_line(&format!("ferry status: {name}: {why}"));
                code = 1;
            }
        }
    }
    let width = |col: usize| rows.iter().map(|r| r[col].len()).max().unwrap_or(0);
    let widths = [width(0), width(1), width(2)];
    let mut text = String::new();
    for r in &rows {
        text.push_str(&format!("{:w0$}  {:w1$}  {:w2$}  {}\n", r[0], r[1], r[2], r[3], w0 = widths[0], w1 = widths[1], w2 = widths[2]));
    }
    log::stdout_text(&text);
    code
}
