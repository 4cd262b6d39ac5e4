//! A domain's state as libvirt reports it (virDomainState), with libvirt's
//! reason for it (the virDomain*Reason enums), over RPC as numbers or from
//! virsh as words.

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

/// Why a domain is in its state: libvirt's reason code, which means
/// something different for each state. "Paused" alone says nothing about
/// whether the guest serves: paused for a migration's switch-over it will
/// run again in a moment; paused on an I/O error it never will by itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status {
    pub state: DomainState,
    pub reason: i32,
}

/// What a paused domain is paused for (virDomainPausedReason).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pause {
    /// Paused by hand (virsh suspend): it would run if resumed.
    ByUser,
    /// A job libvirt runs pauses it and resumes it when done: migration,
    /// save, dump, snapshot, start-up, or shutdown in progress.
    ForJob,
    /// QEMU stopped it because a disk returned an error (error_policy='stop').
    OnIoError,
    /// The guest's watchdog fired with action='pause'.
    ByWatchdog,
    /// The guest panicked and QEMU keeps it for inspection.
    Crashed,
    /// The source of a post-copy migration: the target runs the guest and
    /// pulls the memory it still lacks from this QEMU. libvirt ends it here
    /// when the target has it all and never resumes it; destroying it loses
    /// the guest.
    PostCopy,
    /// A post-copy migration failed: part of its memory is elsewhere.
    PostCopyFailed,
    /// libvirt paused it after an API error, or gives no reason.
    Unexplained,
}

/// (code, words) for every virDomainPausedReason libvirt 9 has, in
/// virsh's words; codes past the table are unexplained.
const PAUSED: [(i32, &str, Pause); 15] = [
    (0, "unknown", Pause::Unexplained),
    (1, "user", Pause::ByUser),
    (2, "migrating", Pause::ForJob),
    (3, "saving", Pause::ForJob),
    (4, "dumping", Pause::ForJob),
    (5, "I/O error", Pause::OnIoError),
    (6, "watchdog", Pause::ByWatchdog),
    (7, "from snapshot", Pause::ForJob),
    (8, "shutting down", Pause::ForJob),
    (9, "creating snapshot", Pause::ForJob),
    (10, "crashed", Pause::Crashed),
    (11, "starting up", Pause::ForJob),
    (12, "post-copy", Pause::PostCopy),
    (13, "post-copy failed", Pause::PostCopyFailed),
    (14, "api error", Pause::Unexplained),
];
const RUNNING: [&str; 12] = [
    "unknown", "booted", "migrated", "restored", "from snapshot", "unpaused", "migration canceled", "save canceled", "event wakeup", "crashed", "post-copy", "post-copy failed",
];
const SHUTOFF: [&str; 9] = ["unknown", "shutdown", "destroyed", "crashed", "migrated", "saved", "failed", "from snapshot", "daemon"];
const CRASHED: [&str; 2] = ["unknown", "panicked"];
const SHUTDOWN: [&str; 2] = ["unknown", "user"];

impl Status {
    pub fn new(state: DomainState, reason: i32) -> Status {
        Status { state, reason }
    }

    fn reasons(self) -> Vec<&'static str> {
        match self.state {
            DomainState::Paused => PAUSED.iter().map(|(_, words, _)| *words).collect(),
            DomainState::Running => RUNNING.to_vec(),
            DomainState::ShutOff => SHUTOFF.to_vec(),
            DomainState::Crashed => CRASHED.to_vec(),
            DomainState::ShuttingDown => SHUTDOWN.to_vec(),
            _ => vec!["unknown"],
        }
    }

    /// The reason in virsh's words (`virsh domstate --reason`).
    pub fn reason_words(self) -> &'static str {
        usize::try_from(self.reason).ok().and_then(|i| self.reasons().get(i).copied()).unwrap_or("unknown")
    }

    /// Parses `virsh domstate --reason` output: "paused (I/O error)".
    pub fn from_virsh(text: &str) -> Status {
        let text = text.trim();
        let (state, reason) = text.split_once(" (").unwrap_or((text, ""));
        let state = DomainState::from_virsh(state);
        let reason = reason.trim_end_matches(')');
        let code = Status::new(state, 0).reasons().iter().position(|r| *r == reason).unwrap_or(0);
        Status::new(state, code as i32)
    }

    /// What a paused domain is paused for; `None` when it is not paused.
    pub fn pause(self) -> Option<Pause> {
        (self.state == DomainState::Paused)
            .then(|| PAUSED.iter().find(|(code, _, _)| *code == self.reason).map_or(Pause::Unexplained, |(_, _, pause)| *pause))
    }

    /// Running with part of its memory still on (or lost with) the source
    /// of a post-copy migration.
    pub fn postcopy_failed(self) -> bool {
        matches!((self.state, self.reason), (DomainState::Running, 11) | (DomainState::Paused, 13))
    }

    /// Caught in a migration's hand-over: paused for it, or running in post-copy.
    pub fn mid_handover(self) -> bool {
        matches!((self.state, self.reason), (DomainState::Paused, 2 | 12 | 13) | (DomainState::Running, 10 | 11))
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.state, self.reason_words())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_read_the_same_over_rpc_and_from_virsh() {
        for (code, words, _) in PAUSED {
            let rpc = Status::new(DomainState::Paused, code);
            assert_eq!(Status::from_virsh(&format!("paused ({words})\n")), rpc, "{words}");
            assert_eq!(rpc.reason_words(), words);
        }
        assert_eq!(Status::from_virsh("crashed (panicked)"), Status::new(DomainState::Crashed, 1));
        assert_eq!(Status::from_virsh("running (post-copy failed)"), Status::new(DomainState::Running, 11));
        assert_eq!(Status::from_virsh("shut off"), Status::new(DomainState::ShutOff, 0));
        assert_eq!(Status::new(DomainState::Paused, 99).reason_words(), "unknown");
    }

    #[test]
    fn every_pause_reason_has_a_meaning_and_unknown_ones_are_unexplained() {
        assert_eq!(Status::new(DomainState::Paused, 5).pause(), Some(Pause::OnIoError));
        assert_eq!(Status::new(DomainState::Paused, 6).pause(), Some(Pause::ByWatchdog));
        assert_eq!(Status::new(DomainState::Paused, 1).pause(), Some(Pause::ByUser));
        assert_eq!(Status::new(DomainState::Paused, 42).pause(), Some(Pause::Unexplained), "a reason newer than this table");
        assert_eq!(Status::new(DomainState::Running, 5).pause(), None);
        assert!(Status::new(DomainState::Paused, 13).postcopy_failed() && Status::new(DomainState::Running, 11).postcopy_failed());
        assert!(Status::new(DomainState::Paused, 2).mid_handover() && !Status::new(DomainState::Paused, 1).mid_handover());
        // A post-copy source is not paused for a job that resumes it: it is
        // never resumed here, only ended once the target has its memory.
        assert_eq!(Status::from_virsh("paused (post-copy)").pause(), Some(Pause::PostCopy));
        assert_eq!(Status::new(DomainState::Paused, 2).pause(), Some(Pause::ForJob));
    }
}
