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
//!     |                  |-- domstate, domjobinfo (0.5 s)                  |                |
//!     |                  |   post-copy? (libvirt's word) wait, never abort |                |
//!     |                  |   stalled? ladder:      |                       |                |
//!     |                  |   1 migrate-setmaxdowntime (stepwise)           |                |
//!     |                  |   2 let auto-converge throttle                  |                |
//!     |                  |   3 migrate-postcopy (postcopy mode only)       |                |
//!     |                  |   4 domjobabort before the deadline ----------->|  Finish: kill  |
//!     |                  |   (every steering call ends before it is due)   |                |
//!     |                  |                         |  Confirm: resume here or kill here     |
//!     |<-- 0 when it left here and runs there (even if the job said otherwise,
//!     |    or post-copy still copies), else 1 + reason                     |                |
//!     |  migrate_from                                                      |                |
//!     |------------------------------------------------------------------------------------>|
//!     |                     find it by name or owner mark; wait: running, not mid-hand-over |
//!     |<------------------------------------------------------------- 0, or 1 + reason -----|
//!     |  stop (source): the guest is gone here, so it returns 0 at once;
//!     |  a post-copy source is waited for, never destroyed
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
//! - Post-copy is read from libvirt (the source's state reason), never
//!   assumed: a switch ordered here can fail, and virsh can switch by itself
//!   (--postcopy-after-precopy). Once it has begun the guest runs on the
//!   target and the source's QEMU holds the rest of its memory: nothing may
//!   abort or destroy it until libvirt ends the job.

use std::time::{Duration, Instant};

use crate::agents::migration_slots::{self, Taken};
use crate::backend::libvirt::migration::{JobStats, MigrationRequest, Phase, Stream};
use crate::backend::libvirt::tls::{migration_cert_dir, target_lacks_certs};
use crate::backend::libvirt::{unsupported_machine_type, DomainState, Libvirt, Pause, Status};
use crate::backend::{BackendError, MigrationJob};
use crate::ocf::{log, Context, Deadline, OcfError};

use super::encryption::Plan;
use super::ladder::{finishes_within, Ladder, Step};
use super::locate::Whereabouts;
use super::settings::{MigrationMode, Settings};
use super::uri::{data_uri, extra_options, target_uri, unreached_end};
use super::{refuse_clone, ConfigFile, VirtualDomain};
use crate::agents::common::{migration_peer, ProgressAttribute};
use crate::agents::lifecycle::{self, backend_error, StopBudget, POLL};

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
/// What one domjobabort needs: virsh connects, libvirt cancels.
const ABORT_CALL: Duration = Duration::from_secs(1);
/// The longest one call that watches or steers the job may take: a SIGTERM
/// during it must still leave its grace period (5 s) for the abort.
const STEER_CALL: Duration = Duration::from_secs(2);

impl VirtualDomain {
    pub(super) fn migrate_to(&self, ctx: &Context) -> Result<(), OcfError> {
        let settings = ctx.params.settings(Settings::from_params)?;
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
            progress.publish(&format!("waiting {:.0} s for one of {count} migration slots", waited.as_secs_f64()), ctx.deadline);
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
        // Reading the phase decides whether to abort, so it may run past the
        // abort point, but never into the time the abort itself needs.
        let decide_by = deadline.leaving(AFTER_ABORT + ABORT_CALL);
        let mut pace: (Option<JobStats>, Option<JobStats>) = (None, None);
        let mut extended = false;
        let started = Instant::now();
        let mut migration = libvirt.start_migration(&request, deadline).map_err(|e| Pushed::Failed(backend_error("cannot start the migration", e)))?;
        let mut ladder = Ladder::new(m);
        let mut aborted: Option<String> = None;
        // Set once libvirt reports post-copy, whoever switched: from then on
        // the guest runs on the target and libvirt refuses a plain abort,
        // and post-copy never turns back into pre-copy.
        let mut postcopy = false;
        let outcome = loop {
            if let Some(result) = migration.wait_for(JOB_POLL) {
                break result;
            }
            if deadline.remaining() < AFTER_ABORT {
                // libvirt is still winding the job down (a dead link waits
                // for its keepalive), or post-copy is still pulling memory.
                // Stop waiting: the answer must come before the timeout, and
                // p2p lets libvirtd finish alone.
                break Err(BackendError::TimedOut("virsh migrate had not returned".into()));
            }
            // Where the abort, when due, must begin: every call that watches
            // or steers the job ends there, and none takes more than
            // STEER_CALL (a SIGTERM may come during one). Issue 23: a slow
            // one ran past it, and the loop ended without an abort.
            let steer = if abort_at.expired() { finish_by } else { abort_at }.within(STEER_CALL);
            // Post-copy is libvirt's to report, not ferry's to assume: an
            // order to switch can fail or not take, and virsh switches by
            // itself with --postcopy-after-precopy or --timeout-postcopy.
            match libvirt.migration_phase(name, decide_by.within(STEER_CALL)) {
                Ok(Phase::PostCopy | Phase::PostCopyFailed) if !postcopy => {
                    postcopy = true;
                    let late = aborted.as_ref().map(|_| "; too late to abort").unwrap_or_default();
                    log::info(&format!("{name}: in post-copy: it runs on {target}, which pulls the rest of its memory from here{late}"));
                }
                // Gone from here: the job is over on this side, and virsh
                // returns at the next poll. Nothing to steer or abort.
                Ok(Phase::Left) => continue,
                Ok(_) => {}
                Err(e) => log::debug(&format!("domstate {name}: {e}")),
            }
            if postcopy {
                // Nothing to steer and nothing to abort: the job ends by
                // itself once the target has all of the memory, and what it
                // means when it has not by the deadline is for
                // after_failed_push to tell.
                if let Ok(job) = libvirt.job_stats(name, decide_by.within(STEER_CALL)) {
                    progress.publish(&format!("post-copy, {} MiB left", job.data_remaining >> 20), decide_by.within(STEER_CALL));
                }
                continue;
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
            if aborted.is_none() && ((abort_at.expired() && !finishing) || crate::deadline::terminated()) {
                let why = if crate::deadline::terminated() {
                    "ferry received SIGTERM".to_string()
                } else {
                    format!("it did not finish within the {:.0?} budget of this operation", started.elapsed())
                };
                log::warn(&format!("aborting the migration of {name}: {why}"));
                aborted = Some(why);
            }
            if aborted.is_some() {
                // Repeated each round until the job ends: an abort sent while
                // libvirt is between phases can find no job to abort. Sent
                // even when the phase could not be read: in post-copy
                // libvirt refuses it, so it can do no harm.
                if let Err(e) = libvirt.abort_job(name, deadline.leaving(AFTER_ABORT)) {
                    log::warn(&format!("cannot abort the migration of {name}: {e}"));
                }
                continue;
            }
            let job = match libvirt.job_stats(name, steer) {
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
            progress.publish(&format!("{}% sent, {} MiB left, pass {}, {}", job.percent_done(), job.data_remaining >> 20, job.memory_iteration, ladder.rung()), steer);
            let last = job;
            match step {
                Step::Wait => {}
                Step::SetDowntime(ms) => {
                    log::info(&format!("{name}: allowing {ms} ms downtime (pass {}, {} MiB left)", last.memory_iteration, last.data_remaining >> 20));
                    if let Err(e) = libvirt.set_max_downtime(name, ms, steer) {
                        log::warn(&format!("cannot set the downtime of {name}: {e}"));
                    }
                }
                Step::AwaitThrottle => log::info(&format!("{name}: still stalled; giving auto-converge (throttle {} %) time", last.throttle_percent)),
                Step::StartPostCopy => {
                    log::info(&format!("{name}: switching to post-copy"));
                    // Whether it took, libvirt says at the next polls; until
                    // it does, this is pre-copy, with its abort rules.
                    if let Err(e) = libvirt.start_postcopy(name, steer) {
                        log::warn(&format!("cannot switch {name} to post-copy: {e}; pre-copy goes on"));
                    }
                }
                Step::GiveUp => {
                    let why = format!("it stopped converging ({} MiB left after pass {}, {} dirty pages/s) and every rung of the ladder is spent", last.data_remaining >> 20, last.memory_iteration, last.dirty_pages_per_s);
                    log::warn(&format!("aborting the migration of {name}: {why}"));
                    aborted = Some(why);
                }
            }
        };
        let took = started.elapsed();
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
            Err(e) if aborted.is_none() && !postcopy && stream == Stream::Tls && target_lacks_certs(&e.to_string()) && libvirt.state(name, deadline) == Ok(Some(DomainState::Running)) => {
                Err(Pushed::TargetLacksCerts(e.to_string()))
            }
            Err(e) => {
                let said = e.to_string();
                let why = match (aborted, unsupported_machine_type(&said)) {
                    (Some(w), _) => format!("aborted the migration of {name} to {target}: {w}"),
                    // Refused in the target's Prepare phase: nothing was
                    // sent. Short, as Pacemaker keeps 128 bytes of a reason.
                    (None, Some(machine)) => {
                        log::warn(&format!(
                            "{name} runs with machine type {machine}, which the QEMU on {target} does not have: a guest started on a newer QEMU cannot move live to an older one (as from an upgraded node to one not yet upgraded). To let it, give it a machine type every node has in its config (`virsh capabilities` lists them) and restart it once"
                        ));
                        format!("{target}'s QEMU lacks machine type {machine} of {name}; nothing was sent")
                    }
                    (None, None) => format!("migration of {name} to {target} failed: {}", unreached_end(&said, &remote, data.as_deref()).unwrap_or(said)),
                };
                self.after_failed_push(libvirt, name, &remote, why, deadline).map_err(Pushed::Failed)
            }
        }
    }

    /// Where libvirt on this node has QEMU look for migration certificates.
    pub(super) fn migration_cert_dir(&self) -> std::path::PathBuf {
        migration_cert_dir(self.qemu_conf().as_deref())
    }

    /// After a successful push the guest must be gone from here.
    fn confirm_left(&self, libvirt: &Libvirt, name: &str, deadline: Deadline) -> Result<(), OcfError> {
        match libvirt.state(name, deadline) {
            Ok(None) | Ok(Some(DomainState::ShutOff)) => Ok(()),
            Ok(Some(state)) => Err(OcfError::generic(format!("libvirt reported the migration of {name} done, but it is still {state} here"))),
            Err(e) => Err(backend_error(&format!("cannot confirm {name} left this node"), e)),
        }
    }

    /// Works out where the guest is after a push that did not end well,
    /// makes sure it runs on exactly one node, and says whether it moved.
    /// Ok: it provably left this node and runs on the target, whatever the
    /// job's own exit said; failing then would only have Pacemaker stop it
    /// on both nodes. A target that does not answer is "unknown", never
    /// "not there": the guest is then left as it is for the cluster.
    fn after_failed_push(&self, libvirt: &Libvirt, name: &str, remote: &str, why: String, deadline: Deadline) -> Result<(), OcfError> {
        // libvirt's Confirm phase resumes a cancelled pre-copy here; give it
        // a moment, but keep time to ask the target. Post-copy is not
        // waited for: it takes as long as the memory left takes.
        let ask_target = Duration::from_secs(2).min(deadline.remaining() / 2);
        let settled = deadline.leaving(ask_target).wait_until(POLL, || match libvirt.status(name, deadline) {
            Ok(Some(s)) if s.pause() == Some(Pause::ForJob) => None,
            other => Some(other),
        });
        let there = || Libvirt::with_run_dir(remote, &*self.runner, &self.libvirt_run_dir).status(name, deadline);
        // Running for good: a post-copy that failed left it without part of its memory.
        let runs = |s: &Status| matches!(s.state, DomainState::Running | DomainState::Blocked) && !s.postcopy_failed();
        match settled {
            // Post-copy had begun: its vCPUs run on the target, which pulls
            // the rest of its memory from here, and libvirt never resumes
            // it here. The move is done but for the copying, which libvirt
            // finishes on its own; migrate_from waits for it.
            Some(Ok(Some(here))) if here.pause() == Some(Pause::PostCopy) => match there() {
                Ok(Some(t)) if runs(&t) => {
                    log::warn(&format!("{why}; but {name} is in post-copy: it runs on the target ({t}), which still fetches its memory from here, and the move cannot be undone"));
                    Ok(())
                }
                Ok(t) => Err(OcfError::generic(format!("{why}; {name} is in post-copy here, and the target reports it {}", t.map_or("absent".to_string(), |t| t.to_string())))),
                Err(e) => Err(OcfError::generic(format!("{why}; {name} is in post-copy here, and the target did not answer ({e})"))),
            },
            Some(Ok(Some(here))) if here.postcopy_failed() => Err(OcfError::generic(format!(
                "{why}; post-copy broke off: {name}'s memory is split between this node and the target until `virsh migrate --postcopy-resume` joins it"
            ))),
            Some(Ok(Some(here))) if here.state.is_active() && here.state != DomainState::Paused => Err(OcfError::generic(format!("{why}; {name} keeps running here"))),
            Some(Ok(Some(here))) if here.state == DomainState::Paused => {
                Err(OcfError::generic(format!("{why}; {name} is paused here by the operator or an I/O error, not by the migration")))
            }
            Some(Ok(_)) => match there() {
                Ok(Some(t)) if runs(&t) => {
                    log::warn(&format!("{why}; but {name} left this node and runs on the target ({t}): the migration happened"));
                    Ok(())
                }
                Ok(other) => Err(OcfError::generic(format!("{why}; {name} is gone from here and the target reports it {}", other.map_or("absent".to_string(), |s| s.to_string())))),
                Err(e) => Err(OcfError::generic(format!("{why}; {name} is gone from here and the target did not answer ({e})"))),
            },
            Some(Err(e)) => Err(OcfError::generic(format!("{why}; and libvirt here cannot say where {name} is: {e}"))),
            None => Err(match there() {
                // Still paused mid-hand-over here. Resume only if the target
                // certainly does not have it: two running copies would share disks.
                Ok(t) if t.is_none_or(|t| t.state == DomainState::ShutOff) => match libvirt.resume(name, deadline) {
                    Ok(()) => OcfError::generic(format!("{why}; the target does not have {name}, so it was resumed here")),
                    Err(e) => OcfError::generic(format!("{why}; {name} is paused here and cannot be resumed: {e}")),
                },
                Ok(t) => OcfError::generic(format!("{why}; {name} is paused here mid-hand-over and {} on the target: left for the cluster to resolve", t.map_or(DomainState::ShutOff, |t| t.state))),
                Err(e) => OcfError::generic(format!("{why}; {name} is paused here mid-hand-over and the target did not answer ({e}), so where it should run is unknown: left paused for the cluster to resolve")),
            }),
        }
    }

    /// stop, on the source of a post-copy migration: its QEMU holds the
    /// memory the target still lacks, so destroying it loses the guest, and
    /// a shutdown request cannot reach vCPUs that run on the target. Waits
    /// for libvirt to end the job, within the stop's graceful budget (the
    /// reserve stays for a destroy, should post-copy break off).
    /// `Ok(None)`: the guest has left this node. `Ok(Some(status))`: it is
    /// no longer in post-copy; stop it as it is now.
    ///
    /// If the budget runs out first, the stop fails instead of destroying.
    /// A destroy would lose the guest at once, by ferry's hand. A failed
    /// stop leaves the job running: where the cluster may leave a failed
    /// stop alone (on-fail=block, no fencing) the copy completes and the
    /// guest lives on the target; where it fences, the guest is lost as it
    /// would have been with the destroy, but the copy had until the fence
    /// to finish, and the cluster knows this node was not cleanly stopped.
    pub(super) fn await_postcopy_end(&self, libvirt: &Libvirt, name: &str, deadline: Deadline) -> Result<Option<Status>, OcfError> {
        let budget = StopBudget::new(deadline, None);
        log::info(&format!(
            "{name} is the source of a post-copy migration: it runs on the target, which fetches its memory from here; waiting up to {:.0?} for that to finish",
            budget.graceful.remaining()
        ));
        let started = Instant::now();
        let mut last = Ok(Some(Status::new(DomainState::Paused, 0)));
        // Each look may run past the graceful part, into half the reserve:
        // the last one comes at its very end.
        let look = deadline.leaving(budget.reserve / 2);
        let ended = budget.graceful.wait_until(POLL, || {
            last = libvirt.status(name, look);
            match &last {
                Ok(Some(s)) if s.pause() == Some(Pause::PostCopy) => None,
                Ok(now) => Some(*now),
                Err(_) => None,
            }
        });
        match (ended, last) {
            (Some(None), _) => {
                log::info(&format!("the post-copy migration of {name} finished after {:.0?}; it has left this node", started.elapsed()));
                Ok(None)
            }
            (Some(Some(now)), _) if now.state == DomainState::ShutOff => Ok(None),
            (Some(Some(now)), _) => {
                log::warn(&format!("{name} is no longer in post-copy here but {now}"));
                Ok(Some(now))
            }
            (None, Err(e)) => Err(OcfError::generic(format!(
                "{name} was the source of a post-copy migration and libvirt cannot say whether it finished ({e}); not destroying it, as the target may still need its memory"
            ))),
            (None, Ok(_)) => Err(OcfError::generic(format!(
                "{name} is the source of a post-copy migration that did not finish within {:.0?}: the target still fetches its memory from here, and destroying it would lose the guest; left for libvirt to finish (virsh domjobinfo {name})",
                started.elapsed()
            ))),
        }
    }

    /// The name of the guest arriving from `source`: the config's, or
    /// whatever name the domain carrying this resource's owner mark has (the
    /// config may be unreadable here, or name the guest otherwise since it
    /// started). Looks until it is here, within the action's time less a
    /// second for the last look.
    fn arriving(&self, ctx: &Context, libvirt: &Libvirt, config_name: Option<&str>, source: &str) -> Result<String, OcfError> {
        let looking = ctx.deadline.leaving(Duration::from_secs(1));
        let mut last = Whereabouts::NotHere;
        let found = looking.wait_until(JOB_POLL, || {
            last = self.locate(ctx, libvirt, config_name, looking);
            match &last {
                Whereabouts::Here { name, status } if status.state.is_active() => Some(name.clone()),
                _ => None,
            }
        });
        match (found, last) {
            (Some(name), _) => Ok(name),
            (None, Whereabouts::Unknown(why)) => Err(OcfError::generic(format!("cannot see whether the guest arrived from {source}: {why}"))),
            (None, Whereabouts::ProcessOnly { name, why, .. }) => Err(OcfError::generic(format!("{why}; {name} cannot be seen arriving from {source} without libvirt"))),
            (None, _) => Err(OcfError::generic(format!("{} never arrived from {source}", config_name.unwrap_or("the guest")))),
        }
    }

    pub(super) fn migrate_from(&self, ctx: &Context) -> Result<(), OcfError> {
        let settings = ctx.params.settings(Settings::from_params)?;
        refuse_clone(ctx)?;
        // Pacemaker always names the source; without it this is not half of a
        // migration, and waiting for a guest that nobody sends would only hang.
        let source = migration_peer(ctx, "migrate_source", "migrate_from")?;
        let config = ConfigFile::load(&settings.config, ctx.deadline);
        let libvirt = self.libvirt(&settings);
        if settings.migration.mode == MigrationMode::Save {
            // The image on shared storage is named after the guest, and only
            // the config names it.
            let (_, info) = config.require()?;
            let image = settings.migration.image(&info.name).ok_or_else(|| OcfError::configured("migration_mode=save needs migration_state_dir"))?;
            return lifecycle::restore_migrated(&libvirt, &info.name, &image, source, ctx.deadline);
        }
        // A push needs nothing of the config: the guest arrives with its
        // definition and its owner mark, which say what it is.
        if let ConfigFile::Unusable(why) = &config {
            log::warn(&format!("{why}; looking for the guest arriving from {source} by its owner mark"));
        }
        let name = self.arriving(ctx, &libvirt, config.name(), source)?;
        let name = name.as_str();
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
    use crate::ocf::env::OcfEnv;
    use crate::ocf::metadata::Metadata;
    use crate::process::recording::RecordingRunner;
    use crate::process::{Cmd, Job, Output, RunError, Runner};
    use std::cell::{Cell, RefCell};
    use std::rc::Rc;

    /// An agent whose libvirt answers come from `runner`.
    fn agent(runner: impl Runner + 'static) -> VirtualDomain {
        let nowhere = std::path::PathBuf::from("/nonexistent/ferry-unit");
        VirtualDomain { runner: Box::new(runner), proc_root: nowhere.clone(), libvirt_run_dir: nowhere.clone(), libvirt_conf: nowhere.clone(), slot_dir: nowhere }
    }

    const SOURCE: &str = "qemu+ssh://nodea/system";
    const TARGET: &str = "qemu+ssh://nodeb/system";

    fn domstate_reason(uri: &'static str) -> [&'static str; 7] {
        ["virsh", "--quiet", "--connect", uri, "domstate", "--reason", "vm"]
    }

    #[test]
    fn a_push_cut_short_in_post_copy_is_a_move_when_the_target_runs_the_guest() {
        let runner = RecordingRunner::new().reply(&domstate_reason(SOURCE), 0, "paused (post-copy)\n", "").reply(&domstate_reason(TARGET), 0, "running (post-copy)\n", "");
        let vd = agent(runner);
        let libvirt = Libvirt::new(SOURCE, &*vd.runner);
        let moved = vd.after_failed_push(&libvirt, "vm", TARGET, "the deadline came".into(), Deadline::after(Duration::from_millis(800)));
        assert_eq!(moved, Ok(()), "libvirt never resumes a post-copy source: the move is done but for the copying");
        let broken = RecordingRunner::new().reply(&domstate_reason(SOURCE), 0, "paused (post-copy failed)\n", "");
        let vd = agent(broken);
        let libvirt = Libvirt::new(SOURCE, &*vd.runner);
        let err = vd.after_failed_push(&libvirt, "vm", TARGET, "the link broke".into(), Deadline::after(Duration::from_millis(800))).unwrap_err();
        assert!(err.reason.contains("post-copy broke off") && err.reason.contains("--postcopy-resume"), "{}", err.reason);
    }

    #[test]
    fn a_failed_job_whose_guest_left_and_runs_on_the_target_is_a_move() {
        let gone = || {
            RecordingRunner::new()
                .reply(&domstate_reason(SOURCE), 1, "", "error: failed to get domain 'vm'\n")
                .reply(&["virsh", "--quiet", "--connect", SOURCE, "list", "--all", "--name"], 0, "\n", "")
        };
        let vd = agent(gone().reply(&domstate_reason(TARGET), 0, "running (migrated)\n", ""));
        let libvirt = Libvirt::new(SOURCE, &*vd.runner);
        let why = "migration of vm to nodeb failed: virsh migrate had not returned".to_string();
        assert_eq!(vd.after_failed_push(&libvirt, "vm", TARGET, why.clone(), Deadline::after(Duration::from_secs(2))), Ok(()));
        // Gone from here, but not whole there: not a move to report done.
        let vd = agent(gone().reply(&domstate_reason(TARGET), 0, "running (post-copy failed)\n", ""));
        let libvirt = Libvirt::new(SOURCE, &*vd.runner);
        let err = vd.after_failed_push(&libvirt, "vm", TARGET, why, Deadline::after(Duration::from_secs(2))).unwrap_err();
        assert!(err.reason.contains("gone from here") && err.reason.contains("post-copy failed"), "{}", err.reason);
    }

    #[test]
    fn a_target_that_does_not_answer_is_unknown_and_the_source_stays_paused() {
        let runner = RecordingRunner::new()
            .reply(&domstate_reason(SOURCE), 0, "paused (migrating)\n", "")
            .fail(&domstate_reason(TARGET), RunError::TimedOut { program: "virsh".into(), after: Duration::from_secs(1) });
        let vd = agent(runner);
        let libvirt = Libvirt::new(SOURCE, &*vd.runner);
        let err = vd.after_failed_push(&libvirt, "vm", TARGET, "the link broke".into(), Deadline::after(Duration::from_millis(800))).unwrap_err();
        assert!(err.reason.contains("did not answer") && err.reason.contains("left paused"), "{}", err.reason);
        assert!(err.reason.contains("the link broke"), "{}", err.reason);
    }

    /// A runner whose commands take real time, for the push loop's clock:
    /// each scripted command answers after its time (`None`: never), and
    /// one still running at its deadline is ended as the real runner ends
    /// it. `virsh migrate` runs until a domjobabort, then fails as libvirt
    /// reports a cancelled job.
    struct Clocked {
        script: Vec<(Vec<String>, Option<Duration>, Output)>,
        aborted: Rc<Cell<bool>>,
        calls: Rc<RefCell<Vec<Cmd>>>,
    }

    impl Clocked {
        fn new() -> Clocked {
            Clocked { script: Vec::new(), aborted: Rc::new(Cell::new(false)), calls: Rc::new(RefCell::new(Vec::new())) }
        }
        fn answer(mut self, prefix: &[&str], takes: Option<Duration>, code: i32, stdout: &str, stderr: &str) -> Clocked {
            self.script.push((prefix.iter().map(|s| s.to_string()).collect(), takes, Output { code: Some(code), stdout: stdout.into(), stderr: stderr.into() }));
            self
        }
    }

    struct ClockedJob {
        ends: Option<Instant>,
        deadline: Deadline,
        reply: Output,
        migration: Option<Rc<Cell<bool>>>,
    }

    impl Runner for Clocked {
        fn spawn<'a>(&'a self, cmd: &Cmd, deadline: Deadline) -> Result<Box<dyn Job + 'a>, RunError> {
            self.calls.borrow_mut().push(cmd.clone());
            if cmd.argv.iter().any(|a| a == "domjobabort") {
                self.aborted.set(true);
            }
            if deadline.expired() {
                return Err(RunError::TimedOut { program: cmd.program().into(), after: Duration::ZERO });
            }
            let (_, takes, reply) = self.script.iter().find(|(prefix, _, _)| cmd.starts_with(prefix)).unwrap_or_else(|| panic!("unscripted command: {cmd}"));
            let migration = cmd.argv.iter().any(|a| a == "migrate").then(|| self.aborted.clone());
            Ok(Box::new(ClockedJob { ends: takes.map(|t| Instant::now() + t), deadline, reply: reply.clone(), migration }))
        }
    }

    impl Job for ClockedJob {
        fn wait_for(&mut self, wait: Duration) -> Option<Result<Output, RunError>> {
            let until = Instant::now() + wait;
            loop {
                if self.migration.as_ref().is_some_and(|aborted| aborted.get()) {
                    return Some(Ok(Output { code: Some(1), stdout: String::new(), stderr: "error: operation aborted: job 'migration out' canceled by client\n".into() }));
                }
                if self.ends.is_some_and(|e| Instant::now() >= e) {
                    return Some(Ok(self.reply.clone()));
                }
                if self.deadline.expired() {
                    return Some(Err(RunError::TimedOut { program: "fake".into(), after: Duration::ZERO }));
                }
                if Instant::now() >= until {
                    return None;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    fn virsh_at(uri: &'static str, args: &[&'static str]) -> Vec<&'static str> {
        let mut v = vec!["virsh", "--quiet", "--connect", uri];
        v.extend_from_slice(args);
        v
    }

    const STALLED_JOB: &str = "Job type: 2\n\noperation: 5\ntime_elapsed: 8019\ndata_processed: 239237637\ndata_remaining: 41943040\ndata_total: 134750208\nmemory_iteration: 3\nmemory_dirty_rate: 7665\n";
    const FAST: Option<Duration> = Some(Duration::ZERO);

    /// Runs push_over for guest vm from nodea to nodeb under a cluster,
    /// with these parameters and `runner`, within `budget`.
    fn push(runner: Clocked, params: &[(&str, &str)], budget: Duration) -> (Result<(), OcfError>, Vec<Cmd>) {
        let calls = runner.calls.clone();
        let mut vars: Vec<(String, String)> = vec![
            ("OCF_RESOURCE_INSTANCE".into(), "r1".into()),
            ("OCF_RESKEY_config".into(), "/nonexistent/vm.xml".into()),
            ("OCF_RESKEY_hypervisor".into(), SOURCE.into()),
            ("OCF_RESKEY_crm_feature_set".into(), "3.16.2".into()),
            ("OCF_RESKEY_migration_encryption".into(), "none".into()),
        ];
        vars.extend(params.iter().map(|(k, v)| (format!("OCF_RESKEY_{k}"), v.to_string())));
        let env = OcfEnv::from_vars(vars);
        let resolved = Metadata::parse(super::super::METADATA).unwrap().resolve(&env.params).unwrap();
        let ctx = Context { env: &env, params: &resolved, deadline: Deadline::after(budget) };
        let settings = Settings::from_params(&resolved).unwrap();
        let vd = agent(runner);
        let libvirt = Libvirt::new(SOURCE, &*vd.runner);
        let result = vd.push_over(&ctx, &settings, &libvirt, "vm", "nodeb", Stream::Clear).map_err(Pushed::into_error);
        let calls = calls.borrow().clone();
        (result, calls)
    }

    fn called(calls: &[Cmd], words: &str) -> bool {
        calls.iter().any(|c| c.argv.iter().any(|a| a == words))
    }

    #[test]
    fn a_memory_stream_that_cannot_connect_is_named_so_not_libvirt_unreachable() {
        // libvirt opens the stream for QEMU itself, after the target's
        // libvirtd prepared to receive it, and says so in the words it uses
        // for a libvirtd it cannot reach (the chaos harness's link cut).
        let runner = Clocked::new()
            .answer(&virsh_at(SOURCE, &["migrate"]), FAST, 1, "", "error: unable to connect to server at 'nodeb-mig:49152': No route to host\n")
            .answer(&virsh_at(SOURCE, &["domstate"]), FAST, 0, "running (booted)\n", "")
            .answer(&virsh_at(SOURCE, &["domjobinfo"]), FAST, 0, "Job type: 0\n", "")
            .answer(&["attrd_updater"], FAST, 0, "", "");
        let (result, _) = push(runner, &[("migrateuri", "tcp://%n-mig")], Duration::from_secs(5));
        let err = result.unwrap_err();
        assert!(err.reason.contains("the memory stream could not connect to nodeb-mig:49152 (data URI tcp://nodeb-mig)"), "{}", err.reason);
        assert!(!err.reason.contains("libvirt unreachable"), "{}", err.reason);
    }

    #[test]
    fn a_target_whose_qemu_lacks_the_machine_type_is_named_and_the_guest_stays() {
        // A guest started on QEMU 10.0, moved to a node still on 7.2: the
        // target's Prepare phase refuses before any memory is sent.
        let runner = Clocked::new()
            .answer(
                &virsh_at(SOURCE, &["migrate"]),
                FAST,
                1,
                "",
                "error: unsupported configuration: Emulator '/usr/bin/qemu-system-x86_64' does not support machine type 'pc-i440fx-10.0'\n",
            )
            .answer(&virsh_at(SOURCE, &["domstate"]), FAST, 0, "running (booted)\n", "")
            .answer(&virsh_at(SOURCE, &["domjobinfo"]), FAST, 0, "Job type: 0\n", "")
            .answer(&["attrd_updater"], FAST, 0, "", "");
        let (result, calls) = push(runner, &[], Duration::from_secs(5));
        let err = result.unwrap_err();
        assert_eq!(err.reason, "nodeb's QEMU lacks machine type pc-i440fx-10.0 of vm; nothing was sent; vm keeps running here");
        assert!(!called(&calls, "destroy") && !called(&calls, "resume"), "{calls:?}");
    }

    #[test]
    fn a_slow_steering_call_near_the_abort_point_still_leaves_time_to_abort() {
        // attrd hangs; each call would otherwise take its 2 s, from just
        // before the abort point into the time the abort needs.
        let runner = Clocked::new()
            .answer(&virsh_at(SOURCE, &["migrate"]), None, 0, "", "")
            .answer(&virsh_at(SOURCE, &["domstate"]), FAST, 0, "running (booted)\n", "")
            .answer(&virsh_at(SOURCE, &["domjobinfo"]), FAST, 0, STALLED_JOB, "")
            .answer(&virsh_at(SOURCE, &["domjobabort"]), FAST, 0, "", "")
            .answer(&["attrd_updater"], None, 0, "", "");
        let started = Instant::now();
        let (result, calls) = push(runner, &[("migration_stall", "600")], Duration::from_secs(4));
        assert!(called(&calls, "domjobabort"), "the migration was never aborted: {calls:?}");
        let err = result.unwrap_err();
        assert!(err.reason.contains("aborted the migration") && err.reason.contains("keeps running here"), "{}", err.reason);
        assert!(started.elapsed() < Duration::from_secs(4), "{:?}", started.elapsed());
    }

    #[test]
    fn a_switch_to_post_copy_that_fails_leaves_the_abort_rules_on() {
        let runner = Clocked::new()
            .answer(&virsh_at(SOURCE, &["migrate-postcopy"]), FAST, 1, "", "error: Requested operation is not valid: post-copy migration is not enabled\n")
            .answer(&virsh_at(SOURCE, &["migrate"]), None, 0, "", "")
            .answer(&virsh_at(SOURCE, &["domstate"]), FAST, 0, "running (booted)\n", "")
            .answer(&virsh_at(SOURCE, &["domjobinfo"]), FAST, 0, STALLED_JOB, "")
            .answer(&virsh_at(SOURCE, &["domjobabort"]), FAST, 0, "", "")
            .answer(&["attrd_updater"], FAST, 0, "", "");
        let params = [("migration_mode", "postcopy"), ("migration_downtime_max", "0"), ("migration_auto_converge", "false"), ("migration_stall", "1")];
        let (result, calls) = push(runner, &params, Duration::from_secs(8));
        assert!(called(&calls, "migrate-postcopy"), "{calls:?}");
        assert!(called(&calls, "domjobabort"), "still pre-copy, so still abortable: {calls:?}");
        let err = result.unwrap_err();
        assert!(err.reason.contains("keeps running here") && !err.reason.contains("target"), "{}", err.reason);
    }

    #[test]
    fn a_switch_to_post_copy_made_by_libvirt_itself_is_seen_and_never_aborted() {
        // migrate_options --postcopy-after-precopy: virsh switched, nobody
        // here asked. At the deadline the guest runs on the target.
        let runner = Clocked::new()
            .answer(&virsh_at(SOURCE, &["migrate"]), None, 0, "", "")
            .answer(&virsh_at(SOURCE, &["domstate"]), FAST, 0, "paused (post-copy)\n", "")
            .answer(&virsh_at(TARGET, &["domstate"]), FAST, 0, "running (post-copy)\n", "")
            .answer(&virsh_at(SOURCE, &["domjobinfo"]), FAST, 0, STALLED_JOB, "")
            .answer(&virsh_at(SOURCE, &["domjobabort"]), FAST, 1, "", "error: Requested operation is not valid: cannot abort migration in post-copy mode\n")
            .answer(&virsh_at(SOURCE, &["migrate-setmaxdowntime"]), FAST, 0, "", "")
            .answer(&["attrd_updater"], FAST, 0, "", "");
        let params = [("migrate_options", "--postcopy --postcopy-after-precopy"), ("migration_stall", "1")];
        let (result, calls) = push(runner, &params, Duration::from_secs(5));
        assert!(!called(&calls, "domjobabort"), "{calls:?}");
        assert!(!called(&calls, "migrate-setmaxdowntime"), "the ladder has nothing to steer in post-copy: {calls:?}");
        assert_eq!(result, Ok(()), "the guest runs on the target and cannot come back");
    }
}
