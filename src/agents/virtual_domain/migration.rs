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

use crate::backend::libvirt::migration::{JobStats, MigrationRequest};
use crate::backend::libvirt::{DomainState, Libvirt, LibvirtError};
use crate::ocf::{log, Context, Deadline, OcfError};

use super::locate::Whereabouts;
use crate::agents::common::migration_peer;
use super::settings::{words, MigrationMode, MigrationSettings, Settings};
use super::{lv_err, refuse_clone, ConfigFile, VirtualDomain, POLL};

/// How often migrate_to looks at the job (Nova's monitor uses the same).
const JOB_POLL: Duration = Duration::from_millis(500);
/// Kept at the end of migrate_to to find out where the guest is after an abort.
const AFTER_ABORT: Duration = Duration::from_millis(1500);
/// QEMU's own downtime limit, where the ladder starts when none is configured.
const QEMU_DEFAULT_DOWNTIME_MS: u64 = 300;

/// The libvirt URI of `node` as the source's libvirtd should open it.
/// `remoteuri` wins; otherwise the local URI's driver and path with the
/// transport (ssh unless told), user and migration network suffix.
pub fn target_uri(m: &MigrationSettings, local_uri: &str, node: &str) -> String {
    if let Some(uri) = &m.remote_uri {
        return uri.replace("%n", node);
    }
    let (scheme, rest) = local_uri.split_once("://").unwrap_or(("qemu", "/system"));
    let driver = scheme.split('+').next().unwrap_or("qemu");
    let path = rest.find('/').map(|i| &rest[i..]).unwrap_or("/system");
    let path = path.split('?').next().unwrap_or(path);
    let transport = m.transport.as_deref().filter(|t| !t.is_empty()).unwrap_or("ssh");
    let user = m.user.as_deref().map(|u| format!("{u}@")).unwrap_or_default();
    format!("{driver}+{transport}://{user}{}{path}", migration_host(m, node))
}

/// The data stream's URI: `migrateuri`, else a `--migrateuri=` inside
/// `migrate_options` (the anchor accepts it there), else one on the migration
/// network when a suffix or port is set; `None` lets libvirt choose.
pub fn data_uri(m: &MigrationSettings, node: &str) -> Option<String> {
    let in_options = words(m.options.as_deref()).into_iter().find_map(|w| w.strip_prefix("--migrateuri=").map(String::from));
    if let Some(uri) = m.migrate_uri.clone().or(in_options) {
        return Some(uri.replace("%n", node));
    }
    let suffixed = m.network_suffix.as_deref().is_some_and(|s| !s.is_empty());
    if !suffixed && m.port.is_none() {
        return None;
    }
    let port = m.port.map(|p| format!(":{p}")).unwrap_or_default();
    Some(format!("tcp://{}{port}", migration_host(m, node)))
}

/// `migrate_options` as virsh words, without a `--migrateuri=` (see `data_uri`).
pub fn extra_options(m: &MigrationSettings) -> Vec<String> {
    words(m.options.as_deref()).into_iter().filter(|w| !w.starts_with("--migrateuri=")).collect()
}

/// `node` with the migration network suffix after its short name
/// (node1.example.com with -mig becomes node1-mig.example.com).
fn migration_host(m: &MigrationSettings, node: &str) -> String {
    match m.network_suffix.as_deref().filter(|s| !s.is_empty()) {
        Some(suffix) => match node.split_once('.') {
            Some((short, domain)) => format!("{short}{suffix}.{domain}"),
            None => format!("{node}{suffix}"),
        },
        None => node.to_string(),
    }
}

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
    pub in_postcopy: bool,
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
            in_postcopy: false,
        }
    }

    /// `now` is the time since the job started; `time_left` what remains
    /// before the caller must abort.
    pub fn observe(&mut self, now: Duration, job: &JobStats, time_left: Duration) -> Step {
        if !self.initial_set {
            self.initial_set = true;
            self.last_progress = now;
            if let Some(ms) = self.initial_downtime_ms {
                return Step::SetDowntime(ms);
            }
        }
        if self.in_postcopy {
            return Step::Wait; // post-copy always ends; it must not be aborted
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
        if self.postcopy_allowed && time_left > self.stall.saturating_mul(2) {
            self.in_postcopy = true;
            return Step::StartPostCopy;
        }
        Step::GiveUp
    }
}

fn mode_name(mode: MigrationMode) -> &'static str {
    match mode {
        MigrationMode::Live => "live",
        MigrationMode::Pause => "pause",
        MigrationMode::PostCopy => "postcopy",
        MigrationMode::Save => "save",
    }
}

impl VirtualDomain {
    pub(super) fn hand_over(&self, ctx: &Context) -> Result<(), OcfError> {
        let s = Settings::from_params(ctx.params)?;
        refuse_clone(ctx)?;
        let target = migration_peer(ctx, "migrate_target", "migrate_to")?;
        let config = ConfigFile::load(&s.config);
        let lv = self.libvirt(&s);
        let name = match self.locate(ctx, &lv, config.name(), ctx.deadline) {
            Whereabouts::Here { name, state } if state.is_active() && state != DomainState::Crashed => name,
            Whereabouts::Here { name, state } => return Err(OcfError::generic(format!("{name} is {state} here; there is nothing to migrate"))),
            Whereabouts::NotHere => return Err(OcfError::generic("the guest is not running here; there is nothing to migrate")),
            Whereabouts::ProcessOnly { name, why, .. } => {
                return Err(OcfError::generic(format!("{why}; {name} cannot be migrated without libvirt")));
            }
            Whereabouts::Unknown(why) => return Err(OcfError::generic(format!("cannot tell whether the guest runs here: {why}"))),
        };
        log::info(&format!("migrating {name} to {target} ({})", mode_name(s.migration.mode)));
        match s.migration.mode {
            MigrationMode::Save => self.save_for_migration(&s, &lv, &name, ctx.deadline),
            _ => self.push(&s, &lv, &name, target, ctx.deadline),
        }
    }

    /// Push: run the migration, steer it up the ladder, abort it in time.
    fn push(&self, s: &Settings, lv: &Libvirt, name: &str, target: &str, deadline: Deadline) -> Result<(), OcfError> {
        let m = &s.migration;
        let remote = target_uri(m, &lv.uri, target);
        let data = data_uri(m, target);
        let extra = extra_options(m);
        let request = MigrationRequest {
            domain: name,
            target_uri: &remote,
            data_uri: data.as_deref(),
            live: m.mode != MigrationMode::Pause,
            postcopy: m.mode == MigrationMode::PostCopy,
            auto_converge: m.auto_converge && m.mode != MigrationMode::Pause,
            bandwidth_mib_s: (m.speed_mib_s > 0).then_some(m.speed_mib_s as u64),
            extra: &extra,
        };
        // Aborting takes time too: libvirt cancels, tells the target, and
        // resumes the guest here. Keep a sixth of the budget (3-20 s) for it.
        let reserve = (deadline.remaining() / 6).clamp(Duration::from_secs(3), Duration::from_secs(20));
        let abort_at = deadline.leaving(reserve);
        let started = Instant::now();
        let mut migration = lv.start_migration(&request, deadline).map_err(|e| lv_err("cannot start the migration", e))?;
        let mut ladder = Ladder::new(m);
        let mut aborted: Option<String> = None;
        let outcome = loop {
            if let Some(result) = migration.wait_for(JOB_POLL) {
                break result;
            }
            // A SIGTERM shortens the deadline to a grace period; abort at once
            // so the grace is spent seeing the guest resumed here.
            if aborted.is_none() && !ladder.in_postcopy && (abort_at.expired() || crate::ocf::deadline::terminated()) {
                aborted = Some(if crate::ocf::deadline::terminated() {
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
                    break Err(LibvirtError::TimedOut("virsh migrate had not returned after the abort".into()));
                }
                // Repeated each round until the job ends: an abort sent while
                // libvirt is between phases can find no job to abort.
                if let Err(e) = lv.abort_job(name, deadline) {
                    log::warn(&format!("cannot abort the migration of {name}: {e}"));
                }
                continue;
            }
            let job = match lv.job_stats(name, abort_at.within(Duration::from_secs(5))) {
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
            let step = ladder.observe(started.elapsed(), &job, abort_at.remaining());
            let last = job;
            match step {
                Step::Wait => {}
                Step::SetDowntime(ms) => {
                    log::info(&format!("{name}: allowing {ms} ms downtime (pass {}, {} MiB left)", last.memory_iteration, last.data_remaining >> 20));
                    if let Err(e) = lv.set_max_downtime(name, ms, deadline) {
                        log::warn(&format!("cannot set the downtime of {name}: {e}"));
                    }
                }
                Step::AwaitThrottle => log::info(&format!("{name}: still stalled; giving auto-converge (throttle {} %) time", last.throttle_percent)),
                Step::StartPostCopy => {
                    log::info(&format!("{name}: switching to post-copy"));
                    if let Err(e) = lv.start_postcopy(name, deadline) {
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
        match outcome {
            Ok(()) if aborted.is_none() => {
                self.confirm_left(lv, name, deadline)?;
                log::info(&format!("migrated {name} to {target} in {took:.2?}"));
                Ok(())
            }
            Ok(()) => {
                // The abort lost the race with the switch-over: it is done.
                self.confirm_left(lv, name, deadline)?;
                log::info(&format!("migrated {name} to {target} in {took:.2?} (finished before the abort took hold)"));
                Ok(())
            }
            Err(e) => {
                let why = aborted.map(|w| format!("aborted the migration of {name} to {target}: {w}")).unwrap_or_else(|| format!("migration of {name} to {target} failed: {e}"));
                Err(self.after_failed_push(lv, name, &remote, why, ladder.in_postcopy, deadline))
            }
        }
    }

    /// After a successful push the guest must be gone from here.
    fn confirm_left(&self, lv: &Libvirt, name: &str, deadline: Deadline) -> Result<(), OcfError> {
        match lv.state(name, deadline) {
            Ok(None) | Ok(Some(DomainState::ShutOff)) => Ok(()),
            Ok(Some(state)) => Err(OcfError::generic(format!("libvirt reported the migration of {name} done, but it is still {state} here"))),
            Err(e) => Err(lv_err(&format!("cannot confirm {name} left this node"), e)),
        }
    }

    /// Works out where the guest is after a failed push, makes sure it runs
    /// on exactly one node, and returns the error to report. A target that
    /// does not answer is "unknown", never "not there": the guest is then
    /// left as it is for the cluster to resolve.
    fn after_failed_push(&self, lv: &Libvirt, name: &str, remote: &str, why: String, postcopy: bool, deadline: Deadline) -> OcfError {
        // libvirt's Confirm phase resumes the guest here; give it a moment,
        // but keep time to ask the target.
        let ask_target = Duration::from_secs(2).min(deadline.remaining() / 2);
        let settled = deadline.leaving(ask_target).wait_until(POLL, || match lv.handover_state(name, deadline) {
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
                Ok(other) => OcfError::generic(format!("{why}; {name} is gone from here and the target reports it {}", other.map_or("absent".to_string(), |s| s.to_string()))),
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
                Ok(None) | Ok(Some(DomainState::ShutOff)) => match lv.resume(name, deadline) {
                    Ok(()) => OcfError::generic(format!("{why}; the target does not have {name}, so it was resumed here")),
                    Err(e) => OcfError::generic(format!("{why}; {name} is paused here and cannot be resumed: {e}")),
                },
                Ok(Some(state)) => OcfError::generic(format!("{why}; {name} is paused here mid-hand-over and {state} on the target: left for the cluster to resolve")),
                Err(e) => OcfError::generic(format!("{why}; {name} is paused here mid-hand-over and the target did not answer ({e}), so where it should run is unknown: left paused for the cluster to resolve")),
            },
        }
    }

    /// Pull, first half: the guest's memory to shared storage, atomically.
    fn save_for_migration(&self, s: &Settings, lv: &Libvirt, name: &str, deadline: Deadline) -> Result<(), OcfError> {
        let image = s.migration_image(name).expect("save mode requires migration_state_dir (checked)");
        let dir = image.parent().expect("image is inside migration_state_dir");
        if !dir.is_dir() {
            return Err(OcfError::installed(format!("migration_state_dir {} does not exist on this node", dir.display())));
        }
        let partial = image.with_extension("migrating.part");
        let _ = std::fs::remove_file(&partial);
        let started = Instant::now();
        if let Err(e) = lv.save(name, &partial, deadline) {
            let _ = std::fs::remove_file(&partial);
            let still = lv.state(name, deadline);
            return Err(OcfError::generic(format!("cannot save {name} to {}: {e}; it is {} here", partial.display(), match still {
                Ok(Some(state)) => state.to_string(),
                Ok(None) => "gone".into(),
                Err(e) => format!("unknown ({e})"),
            })));
        }
        crate::agents::common::publish_image(&partial, &image)
            .map_err(|e| OcfError::generic(format!("{name} saved, but {} cannot be published as {}: {e}", partial.display(), image.display())))?;
        log::info(&format!("saved {name} to {} in {:.2?} for the target to restore", image.display(), started.elapsed()));
        Ok(())
    }

    pub(super) fn take_over(&self, ctx: &Context) -> Result<(), OcfError> {
        let s = Settings::from_params(ctx.params)?;
        refuse_clone(ctx)?;
        // Pacemaker always names the source; without it this is not half of a
        // migration, and waiting for a guest that nobody sends would only hang.
        let source = migration_peer(ctx, "migrate_source", "migrate_from")?;
        let (_, info) = ConfigFile::load(&s.config).require()?;
        let name = info.name.as_str();
        let lv = self.libvirt(&s);
        if s.migration.mode == MigrationMode::Save {
            return self.restore_migrated(&s, &lv, name, source, ctx.deadline);
        }
        // Bounded: Pacemaker runs this only after migrate_to succeeded, so the
        // guest is here or about to be. If not, say so instead of hanging.
        let mut last: Result<Option<(DomainState, bool)>, LibvirtError> = Ok(None);
        // The last look gets a second of its own to be answered.
        let arrived = ctx.deadline.leaving(Duration::from_secs(1)).wait_until(POLL, || {
            last = lv.handover_state(name, ctx.deadline);
            matches!(&last, Ok(Some((DomainState::Running | DomainState::Blocked, false)))).then_some(())
        });
        match (arrived, last) {
            (Some(()), _) => {
                match lv.completed_job_stats(name, ctx.deadline) {
                    Ok(j) if j.downtime_ms.is_some() => log::info(&format!(
                        "{name} arrived from {source}: migration {} ms, downtime {} ms",
                        j.total_ms.unwrap_or(0),
                        j.downtime_ms.unwrap_or(0)
                    )),
                    _ => log::info(&format!("{name} arrived from {source}")),
                }
                Ok(())
            }
            (None, Ok(None)) => Err(OcfError::generic(format!("{name} never arrived from {source}"))),
            (None, Ok(Some((state, true)))) => Err(OcfError::generic(format!("{name} is still {state} mid-hand-over from {source}"))),
            (None, Ok(Some((state, false)))) => Err(OcfError::generic(format!("{name} arrived from {source} but is {state}, not running"))),
            (None, Err(e)) => Err(lv_err(&format!("cannot see whether {name} arrived"), e)),
        }
    }

    /// Pull, second half: restore what migrate_to saved, then delete it.
    fn restore_migrated(&self, s: &Settings, lv: &Libvirt, name: &str, source: &str, deadline: Deadline) -> Result<(), OcfError> {
        let image = s.migration_image(name).expect("save mode requires migration_state_dir (checked)");
        if !image.exists() {
            // A retried migrate_from may find the guest already restored.
            if let Ok(Some(DomainState::Running | DomainState::Blocked)) = lv.state(name, deadline) {
                log::info(&format!("{name} already runs here"));
                return Ok(());
            }
            return Err(OcfError::generic(format!("no saved image of {name} at {}: {source} did not save it", image.display())));
        }
        let started = Instant::now();
        lv.restore(&image, deadline).map_err(|e| lv_err(&format!("cannot restore {name} from {} (kept for a later start)", image.display()), e))?;
        if let Err(e) = std::fs::remove_file(&image) {
            // Left behind, a later start would restore stale memory over newer disks.
            return Err(OcfError::generic(format!("restored {name}, but cannot remove {}: {e}", image.display())));
        }
        log::info(&format!("restored {name} from {} in {:.2?}", image.display(), started.elapsed()));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> MigrationSettings {
        let md = crate::ocf::metadata::Metadata::parse(super::super::METADATA).unwrap();
        let mut given: std::collections::BTreeMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        given.insert("config".into(), "/vm.xml".into());
        Settings::from_params(&md.resolve(&given).unwrap()).unwrap().migration
    }

    fn job(iteration: u64, remaining_mib: u64) -> JobStats {
        JobStats { active: true, memory_iteration: iteration, data_remaining: remaining_mib << 20, ..Default::default() }
    }

    /// An agent whose libvirt answers come from `runner`.
    fn agent(runner: crate::process::recording::RecordingRunner) -> VirtualDomain {
        let nowhere = std::path::PathBuf::from("/nonexistent/ferry-unit");
        VirtualDomain { runner: Box::new(runner), proc_root: nowhere.clone(), libvirt_run_dir: nowhere.clone(), libvirt_conf: nowhere }
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
        let lv = Libvirt::new(SOURCE, &*vd.runner);
        let err = vd.after_failed_push(&lv, "vm", TARGET, "the deadline came".into(), true, Deadline::after(Duration::from_millis(800)));
        assert!(err.reason.contains("runs on the target"), "{}", err.reason);
        assert!(!err.reason.contains("left paused"), "{}", err.reason);
    }

    #[test]
    fn a_target_that_does_not_answer_is_unknown_and_the_source_stays_paused() {
        use crate::process::recording::RecordingRunner;
        use crate::process::RunError;
        let runner = RecordingRunner::new()
            .reply(&domstate_reason(SOURCE), 0, "paused (migrating)\n", "")
            .fail(&["virsh", "--quiet", "--connect", TARGET, "domstate", "vm"], RunError::TimedOut { program: "virsh".into(), after: Duration::from_secs(1) });
        let vd = agent(runner);
        let lv = Libvirt::new(SOURCE, &*vd.runner);
        let err = vd.after_failed_push(&lv, "vm", TARGET, "the link broke".into(), false, Deadline::after(Duration::from_millis(800)));
        assert!(err.reason.contains("did not answer") && err.reason.contains("left paused"), "{}", err.reason);
        assert!(err.reason.contains("the link broke"), "{}", err.reason);
    }

    #[test]
    fn target_uris_follow_the_anchor_s_parameters() {
        let m = settings(&[]);
        assert_eq!(target_uri(&m, "qemu:///system", "nodeb"), "qemu+ssh://nodeb/system");
        assert_eq!(target_uri(&m, "qemu+unix:///system?socket=/x", "nodeb"), "qemu+ssh://nodeb/system");
        let m = settings(&[("migration_transport", "tcp"), ("migration_user", "mig"), ("migration_network_suffix", "-mig"), ("migrateport", "49999")]);
        assert_eq!(target_uri(&m, "qemu:///system", "node2.example.com"), "qemu+tcp://mig@node2-mig.example.com/system");
        assert_eq!(data_uri(&m, "node2.example.com").as_deref(), Some("tcp://node2-mig.example.com:49999"));
        let m = settings(&[("remoteuri", "qemu+tls://%n.lan/system"), ("migrateuri", "tcp://%n-fast")]);
        assert_eq!(target_uri(&m, "qemu:///system", "b"), "qemu+tls://b.lan/system");
        assert_eq!(data_uri(&m, "b").as_deref(), Some("tcp://b-fast"));
        assert_eq!(data_uri(&settings(&[]), "b"), None);
        let m = settings(&[("migration_network_suffix", "-mig")]);
        assert_eq!(data_uri(&m, "b").as_deref(), Some("tcp://b-mig"), "the data goes over the migration network");
        let m = settings(&[("migrate_options", "--compressed --migrateuri=tcp://%n-x:5000 --abort-on-error")]);
        assert_eq!(data_uri(&m, "b").as_deref(), Some("tcp://b-x:5000"));
        assert_eq!(extra_options(&m), ["--compressed", "--abort-on-error"]);
    }

    #[test]
    fn a_converging_job_is_left_alone() {
        let mut l = Ladder::new(&settings(&[]));
        let t = |s: u64| Duration::from_secs(s);
        for (i, (iteration, left)) in [(1, 100), (1, 50), (2, 20), (3, 10), (4, 4)].into_iter().enumerate() {
            assert_eq!(l.observe(t(i as u64 * 3), &job(iteration, left), t(60)), Step::Wait);
        }
    }

    #[test]
    fn a_stalled_job_climbs_downtime_then_throttle_then_gives_up() {
        let mut l = Ladder::new(&settings(&[("migration_stall", "2")]));
        let t = Duration::from_secs;
        assert_eq!(l.observe(t(0), &job(1, 100), t(60)), Step::Wait);
        assert_eq!(l.observe(t(1), &job(2, 40), t(60)), Step::Wait);
        // A sawtooth that never reaches a new low is a stall.
        assert_eq!(l.observe(t(2), &job(3, 45), t(60)), Step::Wait);
        assert_eq!(l.observe(t(3), &job(3, 39), t(60)), Step::SetDowntime(866));
        assert_eq!(l.observe(t(4), &job(4, 41), t(60)), Step::Wait);
        assert_eq!(l.observe(t(5), &job(4, 40), t(60)), Step::SetDowntime(1433));
        assert_eq!(l.observe(t(7), &job(5, 40), t(60)), Step::SetDowntime(2000));
        assert_eq!(l.observe(t(9), &job(6, 40), t(60)), Step::AwaitThrottle);
        assert_eq!(l.observe(t(10), &job(6, 40), t(60)), Step::Wait);
        assert_eq!(l.observe(t(11), &job(7, 40), t(60)), Step::GiveUp);
    }

    #[test]
    fn real_progress_resets_the_stall_clock() {
        let mut l = Ladder::new(&settings(&[("migration_stall", "2")]));
        let t = Duration::from_secs;
        l.observe(t(0), &job(2, 40), t(60));
        assert_eq!(l.observe(t(1), &job(3, 41), t(60)), Step::Wait);
        assert_eq!(l.observe(t(2), &job(3, 30), t(60)), Step::Wait, "a new low is progress");
        assert_eq!(l.observe(t(3), &job(4, 31), t(60)), Step::Wait);
        assert_eq!(l.observe(t(4), &job(4, 31), t(60)), Step::SetDowntime(866));
    }

    #[test]
    fn post_copy_comes_last_only_when_allowed_and_with_time_for_it() {
        let t = Duration::from_secs;
        let stalled = |l: &mut Ladder, at: u64, left: u64| l.observe(t(at), &job(3, 40), t(left));
        let mut l = Ladder::new(&settings(&[("migration_mode", "postcopy"), ("migration_downtime_max", "0"), ("migration_auto_converge", "false"), ("migration_stall", "1")]));
        l.observe(t(0), &job(2, 40), t(60));
        assert_eq!(stalled(&mut l, 1, 60), Step::StartPostCopy);
        assert!(l.in_postcopy);
        assert_eq!(stalled(&mut l, 30, 0), Step::Wait, "post-copy is never given up");
        let mut late = Ladder::new(&settings(&[("migration_mode", "postcopy"), ("migration_downtime_max", "0"), ("migration_auto_converge", "false"), ("migration_stall", "1")]));
        late.observe(t(0), &job(2, 40), t(60));
        assert_eq!(stalled(&mut late, 1, 1), Step::GiveUp, "too late to start post-copy safely");
    }

    #[test]
    fn a_configured_downtime_is_set_first_and_the_ladder_starts_from_it() {
        let mut l = Ladder::new(&settings(&[("migration_downtime", "500"), ("migration_downtime_max", "1100"), ("migration_downtime_steps", "2"), ("migration_stall", "1")]));
        let t = Duration::from_secs;
        assert_eq!(l.observe(t(0), &job(1, 100), t(60)), Step::SetDowntime(500));
        l.observe(t(1), &job(2, 40), t(60));
        assert_eq!(l.observe(t(2), &job(3, 40), t(60)), Step::SetDowntime(800));
        assert_eq!(l.observe(t(3), &job(3, 40), t(60)), Step::SetDowntime(1100));
    }
}
