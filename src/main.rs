//! ferry: OCF resource agents for virtual machines, in one static binary.
//!
//! Three layers, one directory each: `ocf` (the protocol, no hypervisor),
//! `backend` (libvirt and xl, no OCF), `agents` (the glue). `cli` picks the
//! agent from argv[0]; this file sets up what holds for the whole process
//! (SIGTERM noted, orphans adopted and ended) and turns the answer into the
//! exit code.

mod agents;
mod backend;
mod cli;
mod deadline;
mod fsread;
#[cfg(test)]
mod fuzz;
mod ocf;
mod process;

use std::process::ExitCode;

fn main() -> ExitCode {
    deadline::catch_termination();
    process::adopt_orphans();
    let code = cli::run(std::env::args_os().collect());
    // Whatever the action's children left behind ends with the action.
    process::end_strays();
    ExitCode::from(code)
}
