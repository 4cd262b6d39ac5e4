//! Moving a VirtualDomain between nodes: migrate_to on the source, then
//! migrate_from on the target, then Pacemaker's stop on the source.
//!
//! Push models (`live`, `pause`, `postcopy`): migrate_to does the work.
//!
//! ```text
//!  Pacemaker        ferry@source             libvirtd@source        libvirtd@target   ferry@target
//!     |  migrate_to      |                         |                       |                |
//!     |----------------->| virsh migrate --p2p --->|  Begin/Prepare ------>|                |
//!     |                  |                         |  Perform: pre-copy -->|                |
//!     |                  |-- domjobinfo (0.5 s) -->|                       |                |
//!     |                  |   stalled? ladder:      |                       |                |
//!     |                  |   1 migrate-setmaxdowntime (stepwise)           |                |
//!     |                  |   2 let auto-converge throttle                  |                |
//!     |                  |   3 migrate-postcopy (postcopy mode only)       |                |
//!     |                  |   4 domjobabort before the deadline ----------->|  Finish: kill  |
//!     |                  |                         |  Confirm: resume here or kill here     |
//!     |<-- 0, or 1 + reason (guest still running here)                     |                |
//!     |  migrate_from                                                      |                |
//!     |------------------------------------------------------------------------------------>|
//!     |                                            wait: running, not mid-hand-over, bounded |
//!     |<------------------------------------------------------------- 0, or 1 + reason -----|
//!     |  stop (source): the guest is gone here, so it returns 0 at once
//! ```
//!
//! Before it starts, migrate_to takes one of the node's `migration_slots`
//! (agents/migration_slots.rs) when that cap is set (it is off by default).
//!
//! Pull model (`save`), for nodes whose hypervisors cannot reach each other:
//! migrate_to saves the guest's memory to `migration_state_dir` (shared
//! storage) as NAME.migrating, written under a temporary name and renamed when
//! complete; migrate_from restores it and deletes it. A start that finds an
//! image there restores it too, so a migration cut short loses nothing.
//!
//! Why it is shaped this way:
//! - Pacemaker SIGKILLs an agent at its timeout. A killed agent in the middle
//!   of a migration leaves the cluster guessing, so ferry aborts the job itself
//!   before its deadline, keeping a reserve to see the guest resumed.
//! - Peer-to-peer: libvirtd, not virsh, drives the exchange, so even a killed
//!   ferry cannot leave the guest paused on both nodes.
//! - No state on the node: the guest carries its owner mark inside its XML,
//!   and the domain is transient on both ends, so the target needs nothing
//!   the source had.
//! - The guest must run on exactly one node. When a migration ends in doubt
//!   (paused here, and maybe running there), ferry resumes it only after the
//!   target says it does not have it.

use std::time::{Duration, Instant};

use crate::agents::migration_slots::{self, Taken};
use crate::backend::libvirt::migration::{JobStats, MigrationRequest, Stream};
use crate::backend::libvirt::tls::{migration_cert_dir, target_lacks_certs};
use crate::backend::libvirt::{DomainState, Libvirt};
use crate::backend::{BackendError, MigrationJob};
use crate::ocf::{log, Context, Deadline, OcfError};

use super::encryption::Plan;
use super::ladder::{finishes_within, Ladder, Step};
use super::locate::Whereabouts;
use super::settings::{MigrationMode, Settings};
use super::uri::{data_uri, extra_options, target_uri};
use super::{refuse_clone, ConfigFile, VirtualDomain};
use crate::agents::common::{migration_peer, ProgressAttribute};
use crate::agents::lifecycle::{self, backend_error, POLL};

/// How a push ended, when it did not succeed.
enum Pushed {
    /// The target has no migration certificates; nothing was sent.
    TargetLacksCerts(String),
    Failed(OcfError),
}

impl Pushed {
    fn into_error(self) -> OcfError {
        match self {
            Pushed::TargetLacksCerts(e) => OcfError::generic(format!("the target cannot receive a TLS migration: {e}")),
            Pushed::Failed(e) => e,
        }
    }
}

impl From<OcfError> for Pushed {
    fn from(e: OcfError) -> Self {
        Pushed::Failed(e)
    }
}

/// How often migrate_to looks at the job (Nova's monitor uses the same).
const JOB_POLL: Duration = Duration::from_millis(500);
/// Kept at the end of migrate_to to find out where the guest is after an abort.
const AFTER_ABORT: Duration = Duration::from_millis(1500);

impl VirtualDomain {
    pub(super) fn migrate_to(&self, ctx: &Context) -> Result<(), OcfError> {
        let settings = Settings::from_params(ctx.params)?;
        refuse_clone(ctx)?;
        let target = migration_peer(ctx, "migrate_target", "migrate_to")?;
        let config = ConfigFile::load(&settings.config, ctx.deadline);
        let libvirt = self.libvirt(&settings);
        let name = match self.locate(ctx, &libvirt, config.name(), ctx.deadline) {
            Whereabouts::Here { name, status } if status.state.is_active() && status.state != DomainState::Crashed => name,
            Whereabouts::Here { name, status } => return Err(OcfError::generic(format!("{name} is {} here; there is nothing to migrate", status.state))),
            Whereabouts::NotHere => return Err(OcfError::generic("the guest is not running here; there is nothing to migrate")),
            Whereabouts::ProcessOnly { name, why, .. } => {
                return Err(OcfError::generic(format!("{why}; {name} cannot be migrated without libvirt")));
            }
            Whereabouts::Unknown(why) => return Err(OcfError::generic(format!("cannot tell whether the guest runs here: {why}"))),
        };
        log::info(&format!("migrating {name} to {target} ({})", settings.migration.mode.name()));
        match settings.migration.image(&name) {
            Some(image) => lifecycle::save_for_migration(&libvirt, &name, &image, ctx.deadline),
            None => self.push(ctx, &settings, &libvirt, &name, target),
        }
    }

    /// Push, over the stream migration_encryption chooses on this node.
    fn push(&self, ctx: &Context, settings: &Settings, libvirt: &Libvirt, name: &str, target: &str) -> Result<(), OcfError> {
        let cert_dir = self.migration_cert_dir();
        let plan = settings.migration.stream.plan(&cert_dir).map_err(|why| OcfError::generic(format!("cannot migrate {name}: {why}")))?;
        let stream = match &plan {
            Plan::Use(stream) => *stream,
            Plan::TlsElseClear => Stream::Tls,
            Plan::Clear { why } => {
                log::warn(&format!("migrating {name} to {target} in clear text: {why}. Anyone who can see the migration network can read the guest's memory; see migration_encryption"));
                Stream::Clear
            }
        };
        let _slot = self.take_migration_slot(ctx, settings, name)?;
        match self.push_over(ctx, settings, libvirt, name, target, stream) {
            Err(Pushed::TargetLacksCerts(e)) if plan == Plan::TlsElseClear => {
                log::warn(&format!(
                    "migrating {name} to {target} in clear text: {target} has no migration certificates ({e}). Anyone who can see the migration network can read the guest's memory; see migration_encryption"
                ));
                self.push_over(ctx, settings, libvirt, name, target, Stream::Clear).map_err(Pushed::into_error)
            }
            other => other.map_err(Pushed::into_error),
        }
    }

    /// Waits for one of this node's `migration_slots` outgoing migrations.
    /// The wait counts against the action's timeout, so it keeps back what
    /// a migration here needs: a quarter more than the last one this node
    /// completed took, at least a sixth of the time left (the abort's
    /// reserve); half of the time left when none has completed since boot.
    ///
    /// No slot in time means no migration: rc 1, the guest running here and
    /// nothing started. Going anyway would crowd the link the slots share
    /// out and could make the running migrations miss their timeouts too
    /// (issue 12's bench: 2 restarts out of 8 that way, at 30 s timeouts).
    ///
    /// The ladder's clock starts after the wait, so a migration that waited
    /// is not taken for one that stalls. A SIGTERM ends the wait as well.
    fn take_migration_slot(&self, ctx: &Context, settings: &Settings, name: &str) -> Result<Option<migration_slots::Slot>, OcfError> {
        let count = settings.migration.slots;
        if count == 0 {
            return Ok(None);
        }
        let remaining = ctx.deadline.remaining();
        let last = migration_slots::last_duration(&self.slot_dir);
        let keep = match last {
            Some(took) => (took * 5 / 4).max(remaining / 6),
            None => remaining / 2,
        };
        let mut progress = ProgressAttribute::new(&*self.runner, ctx);
        let owner = format!("{} ({name})", ctx.env.instance);
        let (slot, taken) = migration_slots::take(&self.slot_dir, count, &owner, ctx.deadline.leaving(keep), |waited| {
            progress.publish(&format!("waiting {:.0} s for one of {count} migration slots", waited.as_secs_f64()));
        });
        match taken {
            Taken::Held { index, waited } => {
                if waited >= Duration::from_millis(500) {
                    log::info(&format!("{name}: took migration slot {} of {count} after waiting {waited:.1?}", index + 1));
                }
                Ok(slot)
            }
            Taken::Busy { .. } if crate::deadline::terminated() => {
                Err(OcfError::generic(format!("ferry received SIGTERM while {name} waited for a migration slot; nothing was started and it keeps running here")))
            }
            Taken::Busy { waited } => {
                let needs = last.map_or("half of what was left".to_string(), |took| format!("{:.0?}, as the last migration here took {took:.1?}", keep));
                Err(OcfError::generic(format!(
                    "{name} waited {waited:.1?} for one of {count} migration slots, and the rest of migrate_to's timeout is too short for a migration (it keeps {needs}); nothing was started and it keeps running here. Raise migrate_to's timeout, or let Pacemaker queue migrations with migration-limit"
                )))
            }
            Taken::Unusable(why) => {
                log::warn(&format!("{name}: migrating without a migration slot: {why}"));
                Ok(None)
            }
        }
    }

    /// Push: run the migration, steer it up the ladder, abort it in time.
    fn push_over(&self, ctx: &Context, settings: &Settings, libvirt: &Libvirt, name: &str, target: &str, stream: Stream) -> Result<(), Pushed> {
        let deadline = ctx.deadline;
        let m = &settings.migration;
        let remote = target_uri(m, &libvirt.uri, target);
        // A tunnel goes to where the libvirt connection goes; that is the
        // migration network when a suffix names one.
        let data = data_uri(m, target).filter(|_| stream != Stream::Tunnelled);
        let extra = extra_options(m);
        let request = MigrationRequest {
            domain: name,
            target_uri: &remote,
            data_uri: data.as_deref(),
            live: m.mode != MigrationMode::Pause,
            postcopy: m.mode == MigrationMode::PostCopy,
            auto_converge: m.auto_converge && m.mode != MigrationMode::Pause,
            bandwidth_mib_s: (m.speed_mib_s > 0).then_some(m.speed_mib_s as u64),
            stream,
            parallel: m.stream.parallel,
            extra: &extra,
        };
        let mut progress = ProgressAttribute::new(&*self.runner, ctx);
        // Aborting takes time too: libvirt cancels, tells the target, and
        // resumes the guest here. Keep a sixth of the budget (3-20 s) for it.
        let reserve = (deadline.remaining() / 6).clamp(Duration::from_secs(3), Duration::from_secs(20));
        let abort_at = deadline.leaving(reserve);
        // Past abort_at, a migration that at its last pace will be done
        // before finish_by goes on: aborting it would only trade a move for
        // a restart (issue 12: at 30 s timeouts, migrations heartbeat finished
        // in their last seconds, ferry had aborted). finish_by keeps the
        // smallest reserve, for an abort if the pace fails it.
        let finish_by = deadline.leaving(Duration::from_secs(3).min(reserve));
        let mut pace: (Option<JobStats>, Option<JobStats>) = (None, None);
        let mut extended = false;
        let started = Instant::now();
        let mut migration = libvirt.start_migration(&request, deadline).map_err(|e| Pushed::Failed(backend_error("cannot start the migration", e)))?;
        let mut ladder = Ladder::new(m);
        let mut aborted: Option<String> = None;
        let outcome = loop {
            if let Some(result) = migration.wait_for(JOB_POLL) {
                break result;
            }
            // A SIGTERM shortens the deadline to a grace period; abort at once
            // so the grace is spent seeing the guest resumed here.
            let finishing = !finish_by.expired()
                && match &pace {
                    (Some(prev), Some(now)) => finishes_within(prev, now, finish_by.remaining()),
                    _ => false,
                };
            if aborted.is_none() && abort_at.expired() && finishing && !extended {
                extended = true;
                log::info(&format!("{name}: past the abort point, but at its pace it finishes within the {:.1?} left; letting it", finish_by.remaining()));
            }
            if aborted.is_none() && !ladder.in_postcopy && ((abort_at.expired() && !finishing) || crate::deadline::terminated()) {
                aborted = Some(if crate::deadline::terminated() {
                    "ferry received SIGTERM".to_string()
                } else {
                    format!("it did not finish within the {:.0?} budget of this operation", started.elapsed())
                });
            }
            if aborted.is_some() {
                if deadline.remaining() < AFTER_ABORT {
                    // libvirt is still winding the job down (a dead link waits
                    // for its keepalive). Stop waiting: the answer must come
                    // before the timeout, and p2p lets libvirtd finish alone.
                    break Err(BackendError::TimedOut("virsh migrate had not returned after the abort".into()));
                }
                // Repeated each round until the job ends: an abort sent while
                // libvirt is between phases can find no job to abort.
                if let Err(e) = libvirt.abort_job(name, deadline) {
                    log::warn(&format!("cannot abort the migration of {name}: {e}"));
                }
                continue;
            }
            let job = match libvirt.job_stats(name, finish_by.within(Duration::from_secs(5))) {
                Ok(j) if j.active => j,
                Ok(_) => continue,
                Err(e) => {
                    log::debug(&format!("domjobinfo {name}: {e}"));
                    continue;
                }
            };
            log::debug(&format!(
                "job: {} ms, pass {}, {} B left, {} dirty pages/s, throttle {} %",
                job.elapsed_ms, job.memory_iteration, job.data_remaining, job.dirty_pages_per_s, job.throttle_percent
            ));
            pace = (pace.1.take(), Some(job.clone()));
            let step = ladder.observe(started.elapsed(), &job, abort_at.remaining());
            progress.publish(&format!("{}% sent, {} MiB left, pass {}, {}", job.percent_done(), job.data_remaining >> 20, job.memory_iteration, ladder.rung()));
            let last = job;
            match step {
                Step::Wait => {}
                Step::SetDowntime(ms) => {
                    log::info(&format!("{name}: allowing {ms} ms downtime (pass {}, {} MiB left)", last.memory_iteration, last.data_remaining >> 20));
                    if let Err(e) = libvirt.set_max_downtime(name, ms, deadline) {
                        log::warn(&format!("cannot set the downtime of {name}: {e}"));
                    }
                }
                Step::AwaitThrottle => log::info(&format!("{name}: still stalled; giving auto-converge (throttle {} %) time", last.throttle_percent)),
                Step::StartPostCopy => {
                    log::info(&format!("{name}: switching to post-copy"));
                    if let Err(e) = libvirt.start_postcopy(name, deadline) {
                        log::warn(&format!("cannot switch {name} to post-copy: {e}"));
                    }
                }
                Step::GiveUp => aborted = Some(format!("it stopped converging ({} MiB left after pass {}, {} dirty pages/s) and every rung of the ladder is spent", last.data_remaining >> 20, last.memory_iteration, last.dirty_pages_per_s)),
            }
            if let Some(why) = &aborted {
                log::warn(&format!("aborting the migration of {name}: {why}"));
            }
        };
        let took = started.elapsed();
        progress.clear();
        let over = match stream {
            Stream::Tls => "TLS",
            Stream::Tunnelled => "tunnelled",
            Stream::Clear => "clear text",
        };
        match outcome {
            Ok(()) if aborted.is_none() => {
                self.confirm_left(libvirt, name, deadline)?;
                // For the next migrate_to waiting for a slot here; without
                // slots nobody reads it.
                if m.slots > 0 {
                    migration_slots::record_duration(&self.slot_dir, took);
                }
                log::info(&format!("migrated {name} to {target} in {took:.2?} ({over})"));
                Ok(())
            }
            Ok(()) => {
                // The abort lost the race with the switch-over: it is done.
                self.confirm_left(libvirt, name, deadline)?;
                log::info(&format!("migrated {name} to {target} in {took:.2?} ({over}; finished before the abort took hold)"));
                Ok(())
            }
            // The target could not load certificates while libvirt set the
            // stream up: nothing was sent and the guest never paused here.
            Err(e) if aborted.is_none() && stream == Stream::Tls && target_lacks_certs(&e.to_string()) && libvirt.state(name, deadline) == Ok(Some(DomainState::Running)) => {
                Err(Pushed::TargetLacksCerts(e.to_string()))
            }
            Err(e) => {
                let why = aborted.map(|w| format!("aborted the migration of {name} to {target}: {w}")).unwrap_or_else(|| format!("migration of {name} to {target} failed: {e}"));
                Err(Pushed::Failed(self.after_failed_push(libvirt, name, &remote, why, ladder.in_postcopy, deadline)))
            }
        }
    }

    /// Where libvirt on this node has QEMU look for migration certificates.
    pub(super) fn migration_cert_dir(&self) -> std::path::PathBuf {
        let qemu_conf = self.libvirt_conf.with_file_name("qemu.conf");
        migration_cert_dir(std::fs::read_to_string(qemu_conf).ok().as_deref())
    }

    /// After a successful push the guest must be gone from here.
    fn confirm_left(&self, libvirt: &Libvirt, name: &str, deadline: Deadline) -> Result<(), OcfError> {
        match libvirt.state(name, deadline) {
            Ok(None) | Ok(Some(DomainState::ShutOff)) => Ok(()),
            Ok(Some(state)) => Err(OcfError::generic(format!("libvirt reported the migration of {name} done, but it is still {state} here"))),
            Err(e) => Err(backend_error(&format!("cannot confirm {name} left this node"), e)),
        }
    }

    /// Works out where the guest is after a failed push, makes sure it runs
    /// on exactly one node, and returns the error to report. A target that
    /// does not answer is "unknown", never "not there": the guest is then
    /// left as it is for the cluster to resolve.
    fn after_failed_push(&self, libvirt: &Libvirt, name: &str, remote: &str, why: String, postcopy: bool, deadline: Deadline) -> OcfError {
        // libvirt's Confirm phase resumes the guest here; give it a moment,
        // but keep time to ask the target.
        let ask_target = Duration::from_secs(2).min(deadline.remaining() / 2);
        let settled = deadline.leaving(ask_target).wait_until(POLL, || match libvirt.handover_state(name, deadline) {
            Ok(Some((_, true))) => None,
            other => Some(other),
        });
        let there = || Libvirt::with_run_dir(remote, &*self.runner, &self.libvirt_run_dir).state(name, deadline);
        match settled {
            Some(Ok(Some((state, _)))) if state.is_active() && state != DomainState::Paused => {
                OcfError::generic(format!("{why}; {name} keeps running here"))
            }
            Some(Ok(Some((DomainState::Paused, _)))) => OcfError::generic(format!("{why}; {name} is paused here by the operator or an I/O error, not by the migration")),
            Some(Ok(_)) => match there() {
                Ok(Some(state)) if state.is_active() => {
                    log::warn(&format!("{why}; but {name} is {state} on the target and gone from here"));
                    OcfError::generic(format!("{why}; {name} now runs only on the target"))
                }
                Ok(other) => OcfError::generic(format!("{why}; {name} is gone from here and the target reports it {}", other.map_or("absent".to_string(), |state| state.to_string()))),
                Err(e) => OcfError::generic(format!("{why}; {name} is gone from here and the target did not answer ({e})")),
            },
            Some(Err(e)) => OcfError::generic(format!("{why}; and libvirt here cannot say where {name} is: {e}")),
            // Post-copy had begun: the guest's vCPUs run on the target, which
            // pulls the rest of its memory from here until libvirt is done.
            None if postcopy => OcfError::generic(format!(
                "{why}; {name} was switched to post-copy and runs on the target, which is still fetching its memory from here; libvirt finishes the job on its own"
            )),
            None => match there() {
                // Still paused mid-hand-over here. Resume only if the target
                // certainly does not have it: two running copies would share disks.
                Ok(None) | Ok(Some(DomainState::ShutOff)) => match libvirt.resume(name, deadline) {
                    Ok(()) => OcfError::generic(format!("{why}; the target does not have {name}, so it was resumed here")),
                    Err(e) => OcfError::generic(format!("{why}; {name} is paused here and cannot be resumed: {e}")),
                },
                Ok(Some(state)) => OcfError::generic(format!("{why}; {name} is paused here mid-hand-over and {state} on the target: left for the cluster to resolve")),
                Err(e) => OcfError::generic(format!("{why}; {name} is paused here mid-hand-over and the target did not answer ({e}), so where it should run is unknown: left paused for the cluster to resolve")),
            },
        }
    }

    pub(super) fn migrate_from(&self, ctx: &Context) -> Result<(), OcfError> {
        let settings = Settings::from_params(ctx.params)?;
        refuse_clone(ctx)?;
        // Pacemaker always names the source; without it this is not half of a
        // migration, and waiting for a guest that nobody sends would only hang.
        let source = migration_peer(ctx, "migrate_source", "migrate_from")?;
        let (_, info) = ConfigFile::load(&settings.config, ctx.deadline).require()?;
        let name = info.name.as_str();
        let libvirt = self.libvirt(&settings);
        if let Some(image) = settings.migration.image(name) {
            return lifecycle::restore_migrated(&libvirt, name, &image, source, ctx.deadline);
        }
        lifecycle::wait_arrival(&libvirt, name, source, ctx.deadline)?;
        match libvirt.completed_job_stats(name, ctx.deadline) {
            Ok(j) if j.downtime_ms.is_some() => log::info(&format!(
                "{name} arrived from {source}: migration {} ms, downtime {} ms",
                j.total_ms.unwrap_or(0),
                j.downtime_ms.unwrap_or(0)
            )),
            _ => log::info(&format!("{name} arrived from {source}")),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An agent whose libvirt answers come from `runner`.
    fn agent(runner: crate::process::recording::RecordingRunner) -> VirtualDomain {
        let nowhere = std::path::PathBuf::from("/nonexistent/ferry-unit");
        VirtualDomain { runner: Box::new(runner), proc_root: nowhere.clone(), libvirt_run_dir: nowhere.clone(), libvirt_conf: nowhere.clone(), slot_dir: nowhere }
    }

    const SOURCE: &str = "qemu+ssh://nodea/system";
    const TARGET: &str = "qemu+ssh://nodeb/system";

    fn domstate_reason(uri: &'static str) -> [&'static str; 7] {
        ["virsh", "--quiet", "--connect", uri, "domstate", "--reason", "vm"]
    }

    #[test]
    fn a_post_copy_cut_short_is_reported_running_on_the_target_not_left_paused() {
        use crate::process::recording::RecordingRunner;
        let vd = agent(RecordingRunner::new().reply(&domstate_reason(SOURCE), 0, "paused (post-copy)\n", ""));
        let libvirt = Libvirt::new(SOURCE, &*vd.runner);
        let err = vd.after_failed_push(&libvirt, "vm", TARGET, "the deadline came".into(), true, Deadline::after(Duration::from_millis(800)));
        assert!(err.reason.contains("runs on the target"), "{}", err.reason);
        assert!(!err.reason.contains("left paused"), "{}", err.reason);
    }

    #[test]
    fn a_target_that_does_not_answer_is_unknown_and_the_source_stays_paused() {
        use crate::process::recording::RecordingRunner;
        use crate::process::RunError;
        let runner = RecordingRunner::new()
            .reply(&domstate_reason(SOURCE), 0, "paused (migrating)\n", "")
            .fail(&["virsh", "--quiet", "--connect", TARGET, "domstate", "--reason", "vm"], RunError::TimedOut { program: "virsh".into(), after: Duration::from_secs(1) });
        let vd = agent(runner);
        let libvirt = Libvirt::new(SOURCE, &*vd.runner);
        let err = vd.after_failed_push(&libvirt, "vm", TARGET, "the link broke".into(), false, Deadline::after(Duration::from_millis(800)));
        assert!(err.reason.contains("did not answer") && err.reason.contains("left paused"), "{}", err.reason);
        assert!(err.reason.contains("the link broke"), "{}", err.reason);
    }
}
