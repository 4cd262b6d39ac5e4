//! The agents: the only code that knows both OCF and a hypervisor backend.
//!
//! `ALL` is the one list of agents. The CLI dispatches on it, `ferry list`
//! prints it, `make install` makes one link per name it prints, and the
//! tests check every agent in it. Adding an agent is one metadata XML, one
//! module, and one line here.

pub mod common;
pub mod lifecycle;
pub mod migration_slots;
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
    fn every_listed_agent_answers_to_its_own_name_and_metadata() {
        for name in names() {
            let agent = by_name(name).unwrap();
            assert_eq!(agent.name(), name);
            let metadata = crate::ocf::metadata::Metadata::parse(agent.metadata_xml()).unwrap();
            assert_eq!(metadata.agent, name, "metadata/{name}.xml names another agent");
            let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/agents");
            assert!(std::path::Path::new(dir).join(name).exists(), "agents/{name} is missing");
        }
        let files: Vec<String> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/agents")).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        assert_eq!(files.len(), ALL.len(), "agents/ holds {files:?}");
        assert!(by_name("Nonexistent").is_none());
    }
}
