//! ferry: OCF resource agents for virtual machines, in one static binary.
//!
//! Three layers, one directory each: `ocf` (the protocol, no hypervisor),
//! `backend` (libvirt, no OCF), `agents` (the glue). `cli` picks the agent from
//! argv[0]; this file only turns its answer into the process exit code.

mod agents;
mod backend;
mod cli;
mod ocf;
mod process;

use std::process::ExitCode;

fn main() -> ExitCode {
    ExitCode::from(cli::run(std::env::args_os().collect()))
}
