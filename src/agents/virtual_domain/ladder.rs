//! The convergence ladder: the pure policy that decides, from the job's
//! progress alone, when a stalled pre-copy gets more downtime, time for
//! auto-converge's throttle, a switch to post-copy, or is given up. It
//! orders nothing itself, so every decision is unit-tested; the push in
//! migration.rs acts on it and alone watches the deadline.
//!
//! It rules pre-copy only. Whether post-copy has begun is libvirt's to say
//! (the source's state reason, read every poll): an order to switch can
//! fail or not take, and virsh can switch by itself. So asking for
//! post-copy is one more rung, not a state: a pre-copy still stalled a
//! stall period after it is given up like any other.

use std::time::Duration;

use crate::backend::libvirt::migration::JobStats;

use super::settings::{MigrationMode, MigrationSettings};

/// QEMU's own downtime limit, where the ladder starts when none is configured.
const QEMU_DEFAULT_DOWNTIME_MS: u64 = 300;

/// What the ladder asks for after looking at the job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Wait,
    SetDowntime(u64),
    /// Nothing to order: give auto-converge's throttle a stall period.
    AwaitThrottle,
    StartPostCopy,
    /// Every rung is climbed and the job still stalls.
    GiveUp,
}

/// The convergence ladder: when pre-copy stops making progress, climb one
/// rung per stall period. Pure, so its decisions are unit-tested; the caller
/// acts on them and alone watches the deadline.
#[derive(Debug)]
pub struct Ladder {
    stall: Duration,
    initial_downtime_ms: Option<u64>,
    downtime_from_ms: u64,
    downtime_max_ms: u64,
    downtime_steps: u32,
    auto_converge: bool,
    postcopy_allowed: bool,
    // progress
    best_remaining: Option<u64>,
    last_progress: Duration,
    // rungs climbed
    initial_set: bool,
    steps_taken: u32,
    throttle_awaited: bool,
    postcopy_asked: bool,
}

impl Ladder {
    pub fn new(m: &MigrationSettings) -> Ladder {
        let from = if m.downtime_ms > 0 { m.downtime_ms as u64 } else { QEMU_DEFAULT_DOWNTIME_MS };
        Ladder {
            stall: m.stall,
            initial_downtime_ms: (m.downtime_ms > 0).then_some(m.downtime_ms as u64),
            downtime_from_ms: from,
            downtime_max_ms: m.downtime_max_ms,
            downtime_steps: if m.downtime_max_ms > from { m.downtime_steps } else { 0 },
            auto_converge: m.auto_converge && m.mode != MigrationMode::Pause,
            postcopy_allowed: m.mode == MigrationMode::PostCopy,
            best_remaining: None,
            last_progress: Duration::ZERO,
            initial_set: false,
            steps_taken: 0,
            throttle_awaited: false,
            postcopy_asked: false,
        }
    }

    /// `now` is the time since the job started; `time_left` what remains
    /// before the caller must abort. Only for a job still in pre-copy.
    pub fn observe(&mut self, now: Duration, job: &JobStats, time_left: Duration) -> Step {
        if !self.initial_set {
            self.initial_set = true;
            self.last_progress = now;
            if let Some(ms) = self.initial_downtime_ms {
                return Step::SetDowntime(ms);
            }
        }
        // The first pass always moves forward. After it, progress is a new low
        // of the data left to send (by 5 %): a dirtying guest's sawtooth that
        // never reaches a new low is a stall.
        let progressed = job.memory_iteration <= 1
            || match self.best_remaining {
                None => true,
                Some(best) => job.data_remaining < best - best / 20,
            };
        if job.memory_iteration > 1 {
            self.best_remaining = Some(self.best_remaining.map_or(job.data_remaining, |b| b.min(job.data_remaining)));
        }
        if progressed {
            self.last_progress = now;
            return Step::Wait;
        }
        if now.saturating_sub(self.last_progress) < self.stall {
            return Step::Wait;
        }
        self.last_progress = now; // each rung gets a full stall period
        if self.steps_taken < self.downtime_steps {
            self.steps_taken += 1;
            let span = self.downtime_max_ms - self.downtime_from_ms;
            return Step::SetDowntime(self.downtime_from_ms + span * self.steps_taken as u64 / self.downtime_steps as u64);
        }
        if self.auto_converge && !self.throttle_awaited {
            self.throttle_awaited = true;
            return Step::AwaitThrottle;
        }
        // Post-copy only with time for it: one more pass over memory at most.
        // Asked once: still in pre-copy a stall period later, the switch
        // failed or did not take, and the job is given up.
        if self.postcopy_allowed && !self.postcopy_asked && time_left > self.stall.saturating_mul(2) {
            self.postcopy_asked = true;
            return Step::StartPostCopy;
        }
        Step::GiveUp
    }

    /// The rung reached, in words, for the progress an operator sees.
    pub fn rung(&self) -> String {
        if self.postcopy_asked {
            "post-copy asked".into()
        } else if self.throttle_awaited {
            "auto-converge".into()
        } else if self.steps_taken > 0 {
            let span = self.downtime_max_ms - self.downtime_from_ms;
            format!("downtime {} ms", self.downtime_from_ms + span * self.steps_taken as u64 / self.downtime_steps as u64)
        } else {
            "pre-copy".into()
        }
    }
}

/// Whether, at the pace between two polls of the same pass, the data left
/// reaches zero within `left`. Net pace: what was sent less what the guest
/// dirtied meanwhile, so a migration that is not converging never finishes.
pub fn finishes_within(prev: &JobStats, now: &JobStats, left: Duration) -> bool {
    let dt_ms = now.elapsed_ms.saturating_sub(prev.elapsed_ms);
    if dt_ms == 0 || now.memory_iteration != prev.memory_iteration || now.data_remaining >= prev.data_remaining {
        return false;
    }
    let per_ms = (prev.data_remaining - now.data_remaining) as f64 / dt_ms as f64;
    now.data_remaining as f64 / per_ms < left.as_millis() as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use super::super::settings::tests::migration_settings as settings;


    fn job(iteration: u64, remaining_mib: u64) -> JobStats {
        JobStats { active: true, memory_iteration: iteration, data_remaining: remaining_mib << 20, ..Default::default() }
    }

    #[test]
    fn the_pace_of_the_last_poll_says_whether_a_job_finishes_in_time() {
        let at = |ms: u64, iteration: u64, mib: u64| JobStats { elapsed_ms: ms, ..job(iteration, mib) };
        // 8 MiB/s net, 20 MiB left: 2.5 s.
        assert!(finishes_within(&at(10_000, 1, 24), &at(10_500, 1, 20), Duration::from_secs(3)));
        assert!(!finishes_within(&at(10_000, 1, 24), &at(10_500, 1, 20), Duration::from_secs(2)));
        // A plateau (the guest dirties as fast as the link sends) never ends.
        assert!(!finishes_within(&at(10_000, 3, 20), &at(10_500, 3, 20), Duration::from_secs(60)));
        // A new pass starts over: no pace to speak of.
        assert!(!finishes_within(&at(10_000, 1, 2), &at(10_500, 2, 1), Duration::from_secs(60)));
        assert!(!finishes_within(&at(10_000, 1, 24), &at(10_000, 1, 20), Duration::from_secs(60)), "no time between the polls");
    }

    #[test]
    fn a_converging_job_is_left_alone() {
        let mut ladder = Ladder::new(&settings(&[]));
        let t = |s: u64| Duration::from_secs(s);
        for (i, (iteration, left)) in [(1, 100), (1, 50), (2, 20), (3, 10), (4, 4)].into_iter().enumerate() {
            assert_eq!(ladder.observe(t(i as u64 * 3), &job(iteration, left), t(60)), Step::Wait);
        }
    }

    #[test]
    fn a_stalled_job_climbs_downtime_then_throttle_then_gives_up() {
        let mut ladder = Ladder::new(&settings(&[("migration_stall", "2")]));
        let t = Duration::from_secs;
        assert_eq!(ladder.observe(t(0), &job(1, 100), t(60)), Step::Wait);
        assert_eq!(ladder.observe(t(1), &job(2, 40), t(60)), Step::Wait);
        // A sawtooth that never reaches a new low is a stall.
        assert_eq!(ladder.observe(t(2), &job(3, 45), t(60)), Step::Wait);
        assert_eq!(ladder.rung(), "pre-copy");
        assert_eq!(ladder.observe(t(3), &job(3, 39), t(60)), Step::SetDowntime(866));
        assert_eq!(ladder.rung(), "downtime 866 ms");
        assert_eq!(ladder.observe(t(4), &job(4, 41), t(60)), Step::Wait);
        assert_eq!(ladder.observe(t(5), &job(4, 40), t(60)), Step::SetDowntime(1433));
        assert_eq!(ladder.observe(t(7), &job(5, 40), t(60)), Step::SetDowntime(2000));
        assert_eq!(ladder.observe(t(9), &job(6, 40), t(60)), Step::AwaitThrottle);
        assert_eq!(ladder.rung(), "auto-converge");
        assert_eq!(ladder.observe(t(10), &job(6, 40), t(60)), Step::Wait);
        assert_eq!(ladder.observe(t(11), &job(7, 40), t(60)), Step::GiveUp);
    }

    #[test]
    fn real_progress_resets_the_stall_clock() {
        let mut ladder = Ladder::new(&settings(&[("migration_stall", "2")]));
        let t = Duration::from_secs;
        ladder.observe(t(0), &job(2, 40), t(60));
        assert_eq!(ladder.observe(t(1), &job(3, 41), t(60)), Step::Wait);
        assert_eq!(ladder.observe(t(2), &job(3, 30), t(60)), Step::Wait, "a new low is progress");
        assert_eq!(ladder.observe(t(3), &job(4, 31), t(60)), Step::Wait);
        assert_eq!(ladder.observe(t(4), &job(4, 31), t(60)), Step::SetDowntime(866));
    }

    #[test]
    fn post_copy_comes_last_only_when_allowed_and_with_time_for_it() {
        let t = Duration::from_secs;
        let stalled = |ladder: &mut Ladder, at: u64, left: u64| ladder.observe(t(at), &job(3, 40), t(left));
        let mut ladder = Ladder::new(&settings(&[("migration_mode", "postcopy"), ("migration_downtime_max", "0"), ("migration_auto_converge", "false"), ("migration_stall", "1")]));
        ladder.observe(t(0), &job(2, 40), t(60));
        assert_eq!(stalled(&mut ladder, 1, 60), Step::StartPostCopy);
        assert_eq!(ladder.rung(), "post-copy asked");
        let mut late = Ladder::new(&settings(&[("migration_mode", "postcopy"), ("migration_downtime_max", "0"), ("migration_auto_converge", "false"), ("migration_stall", "1")]));
        late.observe(t(0), &job(2, 40), t(60));
        assert_eq!(stalled(&mut late, 1, 1), Step::GiveUp, "too late to start post-copy safely");
    }

    #[test]
    fn a_switch_to_post_copy_that_does_not_take_is_given_up_not_waited_on() {
        // Called only while libvirt still reports pre-copy: a stall period
        // after the order, the switch failed or never happened.
        let t = Duration::from_secs;
        let mut ladder = Ladder::new(&settings(&[("migration_mode", "postcopy"), ("migration_downtime_max", "0"), ("migration_auto_converge", "false"), ("migration_stall", "1")]));
        ladder.observe(t(0), &job(2, 40), t(60));
        assert_eq!(ladder.observe(t(1), &job(3, 40), t(60)), Step::StartPostCopy);
        assert_eq!(ladder.observe(t(1), &job(3, 40), t(60)), Step::Wait, "a stall period for the switch");
        assert_eq!(ladder.observe(t(2), &job(4, 40), t(60)), Step::GiveUp, "asked once, never again");
    }

    #[test]
    fn a_configured_downtime_is_set_first_and_the_ladder_starts_from_it() {
        let mut ladder = Ladder::new(&settings(&[("migration_downtime", "500"), ("migration_downtime_max", "1100"), ("migration_downtime_steps", "2"), ("migration_stall", "1")]));
        let t = Duration::from_secs;
        assert_eq!(ladder.observe(t(0), &job(1, 100), t(60)), Step::SetDowntime(500));
        ladder.observe(t(1), &job(2, 40), t(60));
        assert_eq!(ladder.observe(t(2), &job(3, 40), t(60)), Step::SetDowntime(800));
        assert_eq!(ladder.observe(t(3), &job(3, 40), t(60)), Step::SetDowntime(1100));
    }
}
