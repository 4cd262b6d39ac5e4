//! Where is this resource's guest, and what state is it in?
//!
//! The answer must never be "not running" for a guest that may be running: a
//! second copy started elsewhere would corrupt its disks. So:
//! 1. With the config readable, ask libvirt about the domain of that name.
//! 2. Without it (shared storage not mounted, file deleted), ask libvirt for the
//!    domain carrying this resource's owner mark.
//! 3. With libvirt unreachable, look for the guest's QEMU process in /proc (the
//!    name from the config, or from the mark in libvirt's status files).
//! 4. Anything that cannot be settled is `Unknown`, which fails the action.
//!
//! "Not here" must be proven: libvirt answered "no such domain", its list
//! was read whole and holds no domain of ours, or this node's QEMU processes
//! were all read and none is the guest. A broken connection, a timeout, an
//! unreadable status file or a domain that could not be read are `Unknown`.
//! Even a name libvirt does not know is checked against the mark: the
//! config's `<name>` may have been edited while the old guest runs on.

use std::path::Path;
use std::time::Duration;

use crate::backend::libvirt::domxml::{self, OwnerMark};
use crate::backend::libvirt::procscan::{self, Scan};
use crate::backend::libvirt::{Libvirt, MarkSeen, Status};
use crate::backend::BackendError;
use crate::fsread;
use crate::ocf::{log, Deadline};

/// How long this node's own files (libvirt's status files, /proc) may take
/// to read once libvirt has failed. libvirt had half of the action's time;
/// these reads take milliseconds, and one stuck this long is stuck (a
/// process whose memory map is held by a hung mount): "unknown".
const LOCAL_READ: Duration = Duration::from_secs(2);

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Whereabouts {
    /// libvirt knows the domain here, in this state, for this reason.
    Here { name: String, status: Status },
    /// Provably not on this node.
    NotHere,
    /// libvirt is unreachable, but the guest's QEMU process runs here.
    ProcessOnly { name: String, pid: u32, why: String },
    /// Cannot tell; the reason says why.
    Unknown(String),
}

pub struct Finder<'a> {
    pub libvirt: &'a Libvirt<'a>,
    pub mark: &'a OwnerMark,
    pub proc_root: &'a Path,
    /// libvirt's QEMU status directory (normally /run/libvirt/qemu).
    pub status_dir: &'a Path,
}

impl Finder<'_> {
    /// Looks for the guest by name (when the config gave one), else by mark.
    pub fn locate(&self, name: Option<&str>, deadline: Deadline) -> Whereabouts {
        // libvirt gets half of what is left, so a hung daemon still leaves
        // time to look in /proc and to act on the answer.
        let asking = deadline.within(deadline.remaining() / 2);
        match name {
            Some(n) => match self.by_name(n, asking) {
                Whereabouts::NotHere => self.by_mark(asking),
                // A shut-off definition under the config's name says nothing
                // of the guest: the config's <name> may have been edited
                // while the marked guest runs on under its old one.
                Whereabouts::Here { name, status } if !status.state.is_active() => match self.by_mark(asking) {
                    Whereabouts::NotHere => Whereabouts::Here { name, status },
                    Whereabouts::Unknown(why) => Whereabouts::Unknown(format!("{name} is {status} here, and whether this resource's guest runs under another name cannot be told: {why}")),
                    marked => marked,
                },
                found => found,
            },
            None => self.by_mark(asking),
        }
    }

    fn by_name(&self, name: &str, deadline: Deadline) -> Whereabouts {
        match self.libvirt.status_and_mark(name, deadline) {
            Ok(Some((status, mark))) => {
                if status.state.is_active() && mark == MarkSeen::None {
                    self.adopt(name, deadline);
                }
                Whereabouts::Here { name: name.to_string(), status }
            }
            Ok(None) => Whereabouts::NotHere,
            Err(e) => self.without_libvirt(Some(name), e),
        }
    }

    /// Marks a running guest of this resource that carries no mark: one
    /// another agent started (heartbeat:VirtualDomain, before the provider
    /// was switched in maintenance mode). Found by the config's name now,
    /// it must still be found by its mark when the config is unreadable
    /// later, or the probe would answer 7 while it runs. A failure costs
    /// only that fallback, so it is a warning.
    fn adopt(&self, name: &str, deadline: Deadline) {
        match self.libvirt.add_owner_mark(name, self.mark, deadline) {
            Ok(()) => log::info(&format!("{name} runs without an owner mark (started by another agent?); marked it as resource {}'s guest", self.mark.resource)),
            Err(e) => log::warn(&format!("{name} runs without an owner mark, and marking it failed: {e}")),
        }
    }

    fn by_mark(&self, deadline: Deadline) -> Whereabouts {
        match self.libvirt.find_marked(self.mark, deadline) {
            Ok(Some(d)) if d.status.state.is_active() => Whereabouts::Here { name: d.name, status: d.status },
            Ok(_) => Whereabouts::NotHere,
            Err(e) => {
                let name = self.name_from_status_files();
                match name {
                    Ok(found) => self.without_libvirt(found.as_deref(), e),
                    Err(why) => Whereabouts::Unknown(format!("{e}; {why}")),
                }
            }
        }
    }

    /// The name of the running domain whose status file carries our mark.
    /// `Ok(None)`: no running domain here carries it. Each file is read
    /// within `LOCAL_READ` of the call, not within libvirt's half of the
    /// time, which a hung daemon has spent: a file that is not read by then
    /// (or is not a file) leaves the answer unknown.
    fn name_from_status_files(&self) -> Result<Option<String>, String> {
        let deadline = Deadline::after(LOCAL_READ);
        let entries = match std::fs::read_dir(self.status_dir) {
            Ok(e) => e,
            // No status directory: this node's libvirt runs no QEMU domains.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot read {}: {e}", self.status_dir.display())),
        };
        for entry in entries {
            let path = entry.map_err(|e| format!("cannot list {}: {e}", self.status_dir.display()))?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("xml") {
                continue;
            }
            let text = match fsread::read_to_string(&path, deadline) {
                Ok(t) => t,
                // The domain ended between the listing and the read.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
            };
            if domxml::read_mark(&text).as_ref() == Some(self.mark) {
                return Ok(path.file_stem().map(|stem| stem.to_string_lossy().into_owned()));
            }
        }
        Ok(None)
    }

    /// libvirt failed with `error`; decide from this node's processes.
    fn without_libvirt(&self, name: Option<&str>, error: BackendError) -> Whereabouts {
        let local = self.libvirt.is_local();
        let unreachable = matches!(error, BackendError::Unreachable(_) | BackendError::TimedOut(_));
        if !local || !unreachable {
            return Whereabouts::Unknown(error.to_string());
        }
        let Some(name) = name else {
            // Reachable status files named no domain of ours, and the daemon is
            // down: no guest of this resource was running here.
            return Whereabouts::NotHere;
        };
        match procscan::find_qemu_guest(self.proc_root, name, Deadline::after(LOCAL_READ)) {
            Scan::Found(pid) => Whereabouts::ProcessOnly { name: name.to_string(), pid, why: error.to_string() },
            Scan::Absent => Whereabouts::NotHere,
            Scan::Undecided(why) => Whereabouts::Unknown(format!("{error}; {why}")),
        }
    }
}
