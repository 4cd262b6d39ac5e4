//! The agents: the only code that knows both OCF and a hypervisor backend.
//!
//! `ALL` is the one list of agents. The CLI dispatches on it, `ferry list`
//! prints it, `make install` makes one link per name it prints, and the
//! tests check every agent in it. Adding an agent is one metadata XML, one
//! module, and one line here.

pub mod common;
pub mod lifecycle;
pub mod virtual_domain;
pub mod xen;

use crate::ocf::Agent;

/// An agent's installed name and how to make one.
pub struct Entry {
    pub name: &'static str,
    pub make: fn() -> Box<dyn Agent>,
}

/// Every agent this binary carries.
pub const ALL: [Entry; 2] = [
    Entry { name: "VirtualDomain", make: || Box::new(virtual_domain::VirtualDomain::new()) },
    Entry { name: "Xen", make: || Box::new(xen::Xen::new()) },
];

pub fn names() -> impl Iterator<Item = &'static str> {
    ALL.iter().map(|e| e.name)
}

pub fn by_name(name: &str) -> Option<Box<dyn Agent>> {
    ALL.iter().find(|e| e.name == name).map(|e| (e.make)())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_agent_answers_to_its_own_name() {
        for name in names() {
            assert_eq!(by_name(name).map(|a| a.name()), Some(name));
        }
        assert!(by_name("Nonexistent").is_none());
    }
}
