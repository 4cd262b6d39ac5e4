//! How Pacemaker reads each answer, action by action: the one table every
//! agent is written against, and the guard that keeps an agent from giving
//! an answer whose reading would start a second copy of a guest.
//!
//! Why it matters: Pacemaker does not take an exit code at its word. A
//! probe (a monitor with interval 0) that answers 2 or 5 is masked as "not
//! running" (`pcmk_xe_mask_probe_failure()`, lib/common/probes.c, applied
//! in lib/pengine/unpack.c as an "equivalent probe result", since 2.1.3),
//! so the scheduler may start the guest on another node while it runs
//! here. A failed stop gets the node fenced, and every guest on it dies. 6
//! from any action stops the resource everywhere and bans it.
//!
//! The rule ferry keeps: a probe says "not running here" only after it
//! proved that the guest does not run on this node, and then it says 7.
//! Where it cannot prove that, it answers 1, which Pacemaker reads as
//! "failed here" and answers with a stop on this node, never with a start
//! elsewhere. So a probe never answers 2 or 5: `guard` turns either into 1
//! (a node that lacks a tool or a file and has proven the guest absent
//! loses nothing by saying 7). 7 is an answer an agent gives only from a
//! proven absence (`Health::NotRunning`), which the agents' walk tests
//! check path by path.

use super::action::Action;
use super::agent::Health;
use super::exit::{OcfCode, OcfError};

/// What was asked, as far as the meaning of an answer depends on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Asked {
    /// A monitor with interval 0: Pacemaker's question "is it here?".
    Probe,
    /// A recurring monitor: the resource is believed to run here.
    Monitor,
    Start,
    Stop,
    /// migrate_to or migrate_from.
    Migration,
    /// validate-all and reload-agent: nothing about the guest changes.
    Check,
}

impl Asked {
    pub fn of(action: Action, probe: bool) -> Asked {
        match action {
            Action::Monitor | Action::Status if probe => Asked::Probe,
            Action::Monitor | Action::Status => Asked::Monitor,
            Action::Start => Asked::Start,
            Action::Stop => Asked::Stop,
            Action::MigrateTo | Action::MigrateFrom => Asked::Migration,
            Action::ValidateAll | Action::ReloadAgent | Action::MetaData => Asked::Check,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Asked::Probe => "probe",
            Asked::Monitor => "monitor",
            Asked::Start => "start",
            Asked::Stop => "stop",
            Asked::Migration => "migrate_to/from",
            Asked::Check => "validate-all, reload-agent",
        }
    }
}

/// One row: what Pacemaker does with `codes` from `asked`, and when ferry
/// may answer them.
pub struct Row {
    pub asked: Asked,
    pub codes: &'static [u8],
    pub pacemaker: &'static str,
    pub ferry: &'static str,
}

/// The table, printed in the README ("What each answer means to
/// Pacemaker"); a unit test keeps the two the same.
pub const TABLE: &[Row] = &[
    Row { asked: Asked::Probe, codes: &[0, 190], pacemaker: "runs here (190 is recorded as a failed operation)", ferry: "the guest was found running here" },
    Row { asked: Asked::Probe, codes: &[7], pacemaker: "not running here: may be started elsewhere", ferry: "only after proving the guest is not here" },
    Row { asked: Asked::Probe, codes: &[2, 5], pacemaker: "masked as \"not running here\": may be started elsewhere", ferry: "never: 1 instead (7 where the guest is proven absent)" },
    Row { asked: Asked::Probe, codes: &[1], pacemaker: "failed here: stop here, then place it", ferry: "cannot tell whether the guest runs here" },
    Row { asked: Asked::Probe, codes: &[6], pacemaker: "fatal: stopped everywhere and banned", ferry: "a parameter is unusable" },
    Row { asked: Asked::Monitor, codes: &[0, 190], pacemaker: "runs (190 is recorded as a failed operation)", ferry: "the guest runs here" },
    Row { asked: Asked::Monitor, codes: &[7], pacemaker: "stopped by itself: recovered (stop, start)", ferry: "only after proving the guest is not here" },
    Row { asked: Asked::Monitor, codes: &[1], pacemaker: "failed: recovered (stop, start)", ferry: "cannot tell, or the guest is unwell" },
    Row { asked: Asked::Monitor, codes: &[2, 5], pacemaker: "hard error: stopped here, banned from this node", ferry: "never from a running guest" },
    Row { asked: Asked::Monitor, codes: &[6], pacemaker: "fatal: stopped everywhere and banned", ferry: "a parameter is unusable" },
    Row { asked: Asked::Stop, codes: &[0], pacemaker: "stopped", ferry: "only when the guest is proven gone from this node" },
    Row { asked: Asked::Stop, codes: &[1, 2, 5, 6], pacemaker: "failed stop: the node is fenced", ferry: "only when the guest may still run here" },
    Row { asked: Asked::Start, codes: &[1], pacemaker: "failed: stopped here, may be started elsewhere", ferry: "the guest did not come up" },
    Row { asked: Asked::Start, codes: &[5], pacemaker: "this node cannot run it: banned from this node", ferry: "a file or tool is missing here" },
    Row { asked: Asked::Start, codes: &[6], pacemaker: "fatal: stopped everywhere and banned", ferry: "the configuration is wrong" },
    Row { asked: Asked::Migration, codes: &[1, 5, 6], pacemaker: "stopped on both nodes, then started again", ferry: "only when the guest did not move; a move that happened is 0" },
    Row { asked: Asked::Check, codes: &[6], pacemaker: "validate-all: refused; reload-agent: recovered (stop, start)", ferry: "a bad value, refused before it can do harm" },
];

fn codes_text(codes: &[u8]) -> String {
    codes.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(", ")
}

/// The table as the README prints it.
pub fn markdown() -> String {
    let mut text = String::from("| asked | answer | Pacemaker does | ferry answers it |\n|---|---|---|---|\n");
    for row in TABLE {
        text.push_str(&format!("| {} | {} | {} | {} |\n", row.asked.name(), codes_text(row.codes), row.pacemaker, row.ferry));
    }
    text
}

/// Holds an agent's answer to the table before it becomes an exit code.
/// A probe's 2 or 5 becomes 1: Pacemaker would read it as "not running
/// here" and could start a second copy.
pub fn guard(asked: Asked, result: Result<Health, OcfError>) -> Result<Health, OcfError> {
    match result {
        Err(e) if asked == Asked::Probe && matches!(e.code, OcfCode::ErrArgs | OcfCode::ErrInstalled) => Err(OcfError::generic(format!(
            "{}; answering 1, not {}: a probe's {} reads as \"not running\", and the guest was not proven absent from this node",
            e.reason,
            e.code.value(),
            e.code.value()
        ))),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_code() -> [OcfCode; 12] {
        [
            OcfCode::Success,
            OcfCode::ErrGeneric,
            OcfCode::ErrArgs,
            OcfCode::ErrUnimplemented,
            OcfCode::ErrPerm,
            OcfCode::ErrInstalled,
            OcfCode::ErrConfigured,
            OcfCode::NotRunning,
            OcfCode::RunningPromoted,
            OcfCode::FailedPromoted,
            OcfCode::Degraded,
            OcfCode::DegradedPromoted,
        ]
    }

    #[test]
    fn a_probe_never_answers_2_or_5() {
        for code in [OcfCode::ErrArgs, OcfCode::ErrInstalled] {
            let e = guard(Asked::Probe, Err(OcfError::new(code, "xmfile /x is not readable"))).unwrap_err();
            assert_eq!(e.code, OcfCode::ErrGeneric, "{code:?}");
            assert!(e.reason.starts_with("xmfile /x is not readable; answering 1"), "{}", e.reason);
        }
    }

    #[test]
    fn every_other_answer_passes_unchanged() {
        let asked = [Asked::Probe, Asked::Monitor, Asked::Start, Asked::Stop, Asked::Migration, Asked::Check];
        for a in asked {
            for code in every_code() {
                if a == Asked::Probe && matches!(code, OcfCode::ErrArgs | OcfCode::ErrInstalled) {
                    continue;
                }
                let e = OcfError::new(code, "why");
                assert_eq!(guard(a, Err(e.clone())), Err(e), "{a:?} {code:?}");
            }
            for health in [Health::Running, Health::NotRunning, Health::Degraded("d".into())] {
                assert_eq!(guard(a, Ok(health.clone())), Ok(health));
            }
        }
    }

    #[test]
    fn what_was_asked_follows_the_action_and_the_interval() {
        assert_eq!(Asked::of(Action::Monitor, true), Asked::Probe);
        assert_eq!(Asked::of(Action::Status, true), Asked::Probe);
        assert_eq!(Asked::of(Action::Monitor, false), Asked::Monitor);
        assert_eq!(Asked::of(Action::Stop, true), Asked::Stop, "only a monitor is a probe");
        assert_eq!(Asked::of(Action::MigrateFrom, false), Asked::Migration);
    }

    #[test]
    fn the_table_names_every_code_a_probe_monitor_and_stop_can_give_once() {
        // 0, 1, 2, 5, 6, 7 and 190 are every code the agents give from these.
        for asked in [Asked::Probe, Asked::Monitor] {
            for code in [0u8, 1, 2, 5, 6, 7, 190] {
                let rows = TABLE.iter().filter(|r| r.asked == asked && r.codes.contains(&code)).count();
                assert_eq!(rows, 1, "{asked:?} {code}");
            }
        }
        for code in [0u8, 1, 2, 5, 6] {
            assert_eq!(TABLE.iter().filter(|r| r.asked == Asked::Stop && r.codes.contains(&code)).count(), 1, "stop {code}");
        }
    }

    #[test]
    fn the_readme_prints_the_table() {
        let readme = include_str!("../../README.md");
        assert!(readme.contains(&markdown()), "README.md must carry the answer table exactly as ocf::answers::markdown() writes it:\n{}", markdown());
    }
}
