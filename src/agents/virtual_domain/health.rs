//! What a guest's libvirt state and reason mean to the cluster: the one
//! table monitor answers from. "Paused" alone is not an answer. A guest
//! paused for a migration's switch-over serves again in a moment. A guest
//! paused on an I/O error or by its watchdog never will by itself, and
//! reporting it "running" would leave it Started and unrecovered for good.

use crate::backend::libvirt::{DomainState, Pause, Status};
use crate::ocf::OcfError;

/// What to do about a guest QEMU paused because a disk failed (io_error_policy).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IoErrorPolicy {
    /// Fail the monitor: Pacemaker recovers the guest (stop, then start,
    /// here or elsewhere).
    #[default]
    Fail,
    /// Report it degraded (190) and leave the decision to an operator.
    Degraded,
    /// Resume it, as oVirt's auto-resume does: storage that answers again
    /// takes the retried write; storage that does not pauses it again.
    Resume,
}

impl IoErrorPolicy {
    pub const NAMES: [&'static str; 3] = ["fail", "degraded", "resume"];

    pub fn parse(value: &str) -> Result<IoErrorPolicy, OcfError> {
        match value {
            "fail" => Ok(IoErrorPolicy::Fail),
            "degraded" => Ok(IoErrorPolicy::Degraded),
            "resume" => Ok(IoErrorPolicy::Resume),
            other => Err(OcfError::configured(format!("io_error_policy '{other}' is not one of {}", Self::NAMES.join(", ")))),
        }
    }
}

/// What a silent guest agent means at depth 10 (guest_agent_silence).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Silence {
    /// A guest whose kernel or agent hangs serves nothing: recover it.
    #[default]
    Fail,
    /// Report degraded (190): running, but an operator should look.
    Degraded,
}

impl Silence {
    pub fn parse(value: &str) -> Result<Silence, OcfError> {
        match value {
            "fail" => Ok(Silence::Fail),
            "degraded" => Ok(Silence::Degraded),
            other => Err(OcfError::configured(format!("guest_agent_silence '{other}' is not one of fail, degraded"))),
        }
    }
}

/// monitor's answer for one state and reason, before any action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// 0: it serves, or will in a moment (a job paused it).
    Running,
    /// 7: provably not running here.
    NotRunning,
    /// 190: running, not serving, and not for the cluster to fix.
    Degraded(String),
    /// 1: not serving and not coming back by itself; Pacemaker recovers it.
    Failed(String),
    /// Paused on an I/O error under io_error_policy=resume: resume it, then judge again.
    Resume,
    /// Shutting down: look again until it ends or the monitor's time does.
    ShuttingDown,
}

/// The table. Every state and reason libvirt can report has an answer;
/// a reason newer than this table counts as unexplained, which fails.
pub fn judge(name: &str, status: Status, io_errors: IoErrorPolicy) -> Verdict {
    let why = status.reason_words();
    match status.state {
        DomainState::Running | DomainState::Blocked if status.postcopy_failed() => {
            Verdict::Failed(format!("{name} runs, but its post-copy migration failed and part of its memory is lost"))
        }
        DomainState::Running | DomainState::Blocked => Verdict::Running,
        DomainState::Paused => match status.pause().unwrap_or(Pause::Unexplained) {
            // A post-copy source serves through the target, which still
            // pulls from it: as much a migration in progress as pre-copy.
            Pause::ForJob | Pause::PostCopy => Verdict::Running,
            Pause::ByUser => Verdict::Degraded(format!("{name} is paused by an operator (virsh suspend); it serves nothing until resumed")),
            Pause::OnIoError => match io_errors {
                IoErrorPolicy::Fail => Verdict::Failed(format!("{name} is paused on a disk I/O error")),
                IoErrorPolicy::Degraded => Verdict::Degraded(format!("{name} is paused on a disk I/O error (io_error_policy=degraded)")),
                IoErrorPolicy::Resume => Verdict::Resume,
            },
            Pause::ByWatchdog => Verdict::Failed(format!("{name} is paused by its watchdog: the guest stopped feeding it")),
            Pause::Crashed => Verdict::Failed(format!("{name} is paused after the guest panicked")),
            Pause::PostCopyFailed => Verdict::Failed(format!("{name} is paused after a failed post-copy migration; part of its memory is lost")),
            Pause::Unexplained => Verdict::Failed(format!("{name} is paused for a reason libvirt does not explain ({why})")),
        },
        DomainState::Crashed if why == "panicked" => Verdict::Failed(format!("guest panicked: {name} is kept crashed (on_crash=preserve)")),
        DomainState::Crashed => Verdict::Failed(format!("{name} has crashed")),
        DomainState::PmSuspended => Verdict::Degraded(format!("{name} is suspended by its own power management")),
        DomainState::ShuttingDown => Verdict::ShuttingDown,
        DomainState::ShutOff => Verdict::NotRunning,
        DomainState::NoState => Verdict::Failed(format!("libvirt reports no state for {name}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(state: DomainState, reason: i32) -> Verdict {
        judge("vm", Status::new(state, reason), IoErrorPolicy::Fail)
    }

    fn failed(v: &Verdict, words: &str) -> bool {
        matches!(v, Verdict::Failed(why) if why.contains(words))
    }

    /// The whole table, reason by reason, as libvirt 9 defines them.
    #[test]
    fn every_state_and_reason_has_a_documented_answer() {
        use DomainState::*;
        for reason in 0..=11 {
            let v = verdict(Running, reason);
            if reason == 11 {
                assert!(failed(&v, "post-copy migration failed"), "{v:?}");
            } else {
                assert_eq!(v, Verdict::Running, "running, reason {reason}");
            }
            assert_eq!(verdict(Blocked, if reason == 11 { 0 } else { reason }), Verdict::Running);
        }
        // virDomainPausedReason 0..=14 and one from a newer libvirt.
        let paused: Vec<Verdict> = (0..=15).map(|r| verdict(Paused, r)).collect();
        assert!(failed(&paused[0], "does not explain (unknown)"));
        assert!(matches!(&paused[1], Verdict::Degraded(w) if w.contains("by an operator")));
        for job in [2, 3, 4, 7, 8, 9, 11, 12] {
            assert_eq!(paused[job], Verdict::Running, "paused for a job, reason {job}");
        }
        assert!(failed(&paused[5], "I/O error"));
        assert!(failed(&paused[6], "watchdog"));
        assert!(failed(&paused[10], "panicked"));
        assert!(failed(&paused[13], "post-copy"));
        assert!(failed(&paused[14], "api error"));
        assert!(failed(&paused[15], "does not explain"));
        assert!(failed(&verdict(Crashed, 1), "guest panicked"));
        assert!(failed(&verdict(Crashed, 0), "has crashed"));
        assert!(matches!(verdict(PmSuspended, 0), Verdict::Degraded(_)));
        assert_eq!(verdict(ShuttingDown, 1), Verdict::ShuttingDown);
        for reason in 0..=8 {
            assert_eq!(verdict(ShutOff, reason), Verdict::NotRunning);
        }
        assert!(failed(&verdict(NoState, 0), "no state"));
    }

    #[test]
    fn the_io_error_policy_decides_only_the_io_error_case() {
        let io = Status::new(DomainState::Paused, 5);
        assert!(matches!(judge("vm", io, IoErrorPolicy::Degraded), Verdict::Degraded(w) if w.contains("I/O error")));
        assert_eq!(judge("vm", io, IoErrorPolicy::Resume), Verdict::Resume);
        let watchdog = Status::new(DomainState::Paused, 6);
        assert!(matches!(judge("vm", watchdog, IoErrorPolicy::Resume), Verdict::Failed(_)));
        assert_eq!(IoErrorPolicy::parse("resume"), Ok(IoErrorPolicy::Resume));
        assert_eq!(IoErrorPolicy::parse("retry").unwrap_err().code, crate::ocf::OcfCode::ErrConfigured);
        assert_eq!(Silence::parse("degraded"), Ok(Silence::Degraded));
        assert!(Silence::parse("ignore").is_err());
    }
}
