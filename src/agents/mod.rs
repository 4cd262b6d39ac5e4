//! The agents: the only code that knows both OCF and a hypervisor backend.
//! Each agent is installed as a link named after it (see agents/ at the top of
//! the tree); `NAMES` is the list the CLI and `make install` agree on.

pub mod common;
pub mod virtual_domain;
pub mod xen;

use crate::ocf::Agent;

/// Every agent this binary carries, by installed name.
pub const NAMES: [&str; 2] = ["VirtualDomain", "Xen"];

pub fn by_name(name: &str) -> Option<Box<dyn Agent>> {
    match name {
        "VirtualDomain" => Some(Box::new(virtual_domain::VirtualDomain::new())),
        "Xen" => Some(Box::new(xen::Xen::new())),
        _ => None,
    }
}
