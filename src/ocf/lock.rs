//! One action at a time per resource.
//!
//! Pacemaker serializes operations on a resource, but an operator's
//! `crm_resource --force-*` or `ferry AGENT ACTION` does not go through that
//! queue. An flock on a file named after the resource keeps a manual stop from
//! interleaving with a monitor or a start. The lock lives in /run (tmpfs): it is
//! a lock, not state, and it vanishes with the process or the node.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::deadline::Deadline;
use super::exit::OcfError;

pub const LOCK_DIR: &str = "/run/ferry/lock";

pub struct ResourceLock {
    _file: File,
}

/// A file name for a resource, safe whatever characters its name holds.
fn lock_name(agent: &str, instance: &str) -> String {
    let safe: String = instance
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || "-_.:".contains(c) { c } else { '_' })
        .collect();
    format!("{agent}-{safe}.lock")
}

pub fn lock_path(dir: &Path, agent: &str, instance: &str) -> PathBuf {
    dir.join(lock_name(agent, instance))
}

impl ResourceLock {
    /// Takes the resource's lock, waiting for a holder until the deadline.
    pub fn acquire(dir: &Path, agent: &str, instance: &str, deadline: Deadline) -> Result<ResourceLock, OcfError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| OcfError::perm(format!("cannot create lock directory {}: {e}", dir.display())))?;
        let path = lock_path(dir, agent, instance);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| OcfError::perm(format!("cannot open lock {}: {e}", path.display())))?;
        // flock(2) underneath: released by the kernel however ferry ends.
        let got = deadline.wait_until(Duration::from_millis(50), || file.try_lock().ok());
        match got {
            Some(()) => Ok(ResourceLock { _file: file }),
            None => Err(OcfError::generic(format!(
                "another action on resource {instance} still holds {} at the deadline",
                path.display()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lock_blocks_a_second_taker_until_the_deadline() {
        let dir = std::env::temp_dir().join(format!("ferry-lock-test-{}", std::process::id()));
        let first = ResourceLock::acquire(&dir, "Demo", "r/1", Deadline::after(Duration::from_secs(1))).unwrap();
        let second = ResourceLock::acquire(&dir, "Demo", "r/1", Deadline::after(Duration::from_millis(150)));
        assert!(second.is_err());
        drop(first);
        assert!(ResourceLock::acquire(&dir, "Demo", "r/1", Deadline::after(Duration::from_millis(150))).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn odd_instance_names_make_safe_file_names() {
        assert_eq!(lock_name("VirtualDomain", "../etc/x y"), "VirtualDomain-.._etc_x_y.lock");
    }
}
