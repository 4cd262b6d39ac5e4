//! A domain's state as libvirt reports it (virDomainState), over RPC as a
//! number or from virsh as words.

use std::fmt;

/// virDomainState, as libvirt reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DomainState {
    NoState,
    Running,
    /// "idle" in virsh: running, but waiting.
    Blocked,
    Paused,
    /// Running, asked to shut down and not yet off.
    ShuttingDown,
    ShutOff,
    Crashed,
    /// Suspended by the guest's own power management.
    PmSuspended,
}

impl DomainState {
    pub fn from_code(code: i32) -> DomainState {
        match code {
            1 => DomainState::Running,
            2 => DomainState::Blocked,
            3 => DomainState::Paused,
            4 => DomainState::ShuttingDown,
            5 => DomainState::ShutOff,
            6 => DomainState::Crashed,
            7 => DomainState::PmSuspended,
            _ => DomainState::NoState,
        }
    }

    /// Parses `virsh domstate` output.
    pub fn from_virsh(text: &str) -> DomainState {
        match text.trim() {
            "running" => DomainState::Running,
            "idle" | "blocked" => DomainState::Blocked,
            "paused" => DomainState::Paused,
            "in shutdown" => DomainState::ShuttingDown,
            "shut off" => DomainState::ShutOff,
            "crashed" => DomainState::Crashed,
            "pmsuspended" => DomainState::PmSuspended,
            _ => DomainState::NoState,
        }
    }

    /// Whether a QEMU process for the domain exists (and holds its disks).
    pub fn is_active(self) -> bool {
        !matches!(self, DomainState::ShutOff)
    }
}

impl fmt::Display for DomainState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DomainState::NoState => "no state",
            DomainState::Running => "running",
            DomainState::Blocked => "blocked",
            DomainState::Paused => "paused",
            DomainState::ShuttingDown => "in shutdown",
            DomainState::ShutOff => "shut off",
            DomainState::Crashed => "crashed",
            DomainState::PmSuspended => "pmsuspended",
        })
    }
}
