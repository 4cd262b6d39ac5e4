//! ocf:ferry:Xen — a Xen guest (domU) as a cluster resource, through xl.
//!
//! The glue between the OCF protocol and the xl backend. Where
//! ocf:heartbeat:Xen is known to be wrong, this does otherwise:
//! - allow_mem_management never rewrites the operator's xmfile (the anchor
//!   runs `sed -i` on it); the starting guest's share is a command-line
//!   override, and running guests are resized with `xl mem-set`;
//! - stop fails when the guest survives destroy, instead of always
//!   answering 0; every wait is bounded by the operation's deadline;
//! - a broken toolstack is an error, never "not running", and monitor and
//!   stop never answer "not installed" (5), which a probe's reader takes
//!   for "not running": only a full `xl list` without the guest proves it
//!   absent, and one row xl prints that ferry cannot read makes only that
//!   domain's answer unknown;
//! - a guest whose name cannot be known (xmfile unreadable, no `name`) is
//!   not running here only if no guest at all runs here; otherwise monitor
//!   and stop fail (1) and say why;
//! - the guest is looked for under the names xl's migration gives it too
//!   (`NAME--incoming`, `NAME--migratedaway`): stop destroys both;
//! - migration goes over ssh unless the operator names another transport;
//!   xend's unauthenticated relocation service is never used;
//! - migrate_from is bounded by its own timeout and checks the guest runs.
//!
//! Migration, as Pacemaker sequences it:
//!
//! ```text
//!  Pacemaker     ferry@source                xl@source        xl@target       ferry@target
//!     | migrate_to    |                          |                 |                |
//!     |-------------->| xl migrate [-s T] D A -->| T A xl migrate-receive -------->|
//!     |               |                          |== pre-copy (<= 5 rounds) ==>|    |
//!     |               |                          |   suspend, last copy, go    |    |
//!     |<-- 0 (D gone here) or 1 + reason (D still runs here)                   |    |
//!     | migrate_from                                                               |
//!     |------------------------------------------------------------------------->|
//!     |                                           wait: D running, bounded       |
//!     |<-------------------------------------------------- 0, or 1 + reason -----|
//! ```

mod memory;
mod settings;

use std::time::Duration;

use crate::backend::xl::{state_words, ShutdownReason, Sighting, Xl, XlDomain};
use crate::backend::{GuestState, Hypervisor, MigrationJob};
use crate::ocf::{log, Agent, Context, Deadline, Health, OcfCode, OcfError};
use crate::process::{Cmd, Runner, SystemRunner};

use super::common::{self, migration_peer, UtilizationPolicy};
use super::lifecycle::{self, backend_error, StopBudget, POLL};
use settings::{DomainName, Settings};

pub const METADATA: &str = include_str!("../../../metadata/Xen.xml");

/// How long a recurring monitor looks again before calling a guest gone: a
/// rebooting guest is briefly absent from `xl list` (resource-agents PR #314).
const REBOOT_GAP: Duration = Duration::from_secs(5);

pub struct Xen {
    runner: Box<dyn Runner>,
}

impl Xen {
    pub fn new() -> Xen {
        Xen { runner: Box::new(SystemRunner) }
    }
}

impl Default for Xen {
    fn default() -> Self {
        Self::new()
    }
}

impl Xen {
    fn xl(&self, settings: &Settings) -> Xl<'_> {
        Xl::new(&*self.runner).shutting_down_by_power_button(settings.shutdown_acpi)
    }

    /// For the actions that need the guest's files on this node.
    fn settings_and_name(&self, ctx: &Context) -> Result<(Settings, String), OcfError> {
        let settings = ctx.params.settings(Settings::from_params)?;
        let name = settings.domain_name(&ctx.env.instance, ctx.deadline)?.required()?;
        Ok((settings, name))
    }

    /// The guest's state here, for start, validate and migrate; a toolstack
    /// that cannot answer is an error.
    fn state(&self, xl: &Xl, name: &str, deadline: Deadline) -> Result<Option<GuestState>, OcfError> {
        xl.guest_state(name, deadline).map_err(|e| backend_error("cannot list Xen domains", e))
    }

    /// Where the guest is, for monitor and stop. xl that cannot answer, or
    /// cannot even be started (missing, or fork failing in a small dom0),
    /// leaves the answer unknown (1), never "not installed".
    fn look(&self, xl: &Xl, name: &str, deadline: Deadline) -> Result<Sighting, OcfError> {
        xl.sighting(name, deadline).map_err(|e| OcfError::generic(format!("cannot list Xen domains: {e}")))
    }

    /// With the guest's name unknowable, only a node that runs no guest at
    /// all proves it does not run this one (`verdict` says what cannot be
    /// done otherwise).
    fn no_guest_at_all(&self, xl: &Xl, verdict: &str, why: &str, deadline: Deadline) -> Result<(), OcfError> {
        let list = xl.list(deadline).map_err(|e| OcfError::generic(format!("{verdict}: {why}; and Xen's domains cannot be listed: {e}")))?;
        match list.guests() {
            0 => {
                log::warn(&format!("{why}; no guest runs on this node, so neither does this one"));
                Ok(())
            }
            n => Err(OcfError::generic(format!("{verdict}: {why}; {n} guest domain(s) run here and any could be this one"))),
        }
    }

    /// The row of `xl list` for a running guest, for its size and id.
    fn domain(&self, xl: &Xl, name: &str, deadline: Deadline) -> Option<XlDomain> {
        xl.list(deadline).ok()?.domains.into_iter().find(|d| d.name == name)
    }

    /// What this node must have for the guest to start here.
    fn check_node_and_files(&self, settings: &Settings) -> Result<(), OcfError> {
        if !common::on_path("xl") {
            return Err(OcfError::installed("xl is not installed on this node"));
        }
        common::check_monitor_scripts(&settings.monitor_scripts)?;
        if !settings.xmfile.is_file() {
            return Err(OcfError::installed(format!("xmfile {} does not exist on this node", settings.xmfile.display())));
        }
        Ok(())
    }

    fn migration_address(&self, settings: &Settings, target: &str, deadline: Deadline) -> String {
        let Some(attribute) = &settings.node_ip_attribute else { return target.to_string() };
        let query = Cmd::new(&["crm_attribute", "--type", "nodes", "--node", target, "-n", attribute.as_str(), "-G", "-q"]);
        match self.runner.run(&query, deadline) {
            Ok(out) if out.success() && !out.stdout.trim().is_empty() && out.stdout.trim() != "(null)" => {
                let address = out.stdout.trim().to_string();
                log::info(&format!("{target} is reached at {address} ({attribute})"));
                address
            }
            _ => {
                log::warn(&format!("node attribute {attribute} of {target} is not set; migrating to the node name"));
                target.to_string()
            }
        }
    }
}

impl Agent for Xen {
    fn name(&self) -> &'static str {
        "Xen"
    }

    fn metadata_xml(&self) -> &'static str {
        METADATA
    }

    fn validate(&self, ctx: &Context) -> Result<(), OcfError> {
        let settings = ctx.params.settings(Settings::from_params)?;
        common::refuse_clone(ctx, "Xen")?;
        // Depth 0 checks the parameters alone (OCF 1.1): pcs runs
        // validate-all at create time, on a node that need not hold the
        // xmfile. Depth 10, and every start, check this node too.
        if ctx.env.check_level < 10 {
            return Ok(());
        }
        self.check_node_and_files(&settings)?;
        // The toolstack answers.
        let name = settings.domain_name(&ctx.env.instance, ctx.deadline)?.required()?;
        self.state(&self.xl(&settings), &name, ctx.deadline)?;
        Ok(())
    }

    fn reload(&self, ctx: &Context) -> Result<(), OcfError> {
        // Every action reads its parameters afresh; a reload checks the new
        // values and never touches the guest. Utilization with autoset on is
        // the one value kept outside the agent: it is set again from the
        // running domain, as VirtualDomain's reload does, so turning
        // autoset_utilization_* on takes effect now and not at the next
        // start. A guest that is not here (or not known) keeps what it has.
        let settings = ctx.params.settings(Settings::from_params)?;
        common::refuse_clone(ctx, "Xen")?;
        if settings.utilization_cpu || settings.utilization_hv_memory {
            if let Ok(DomainName::Known(name)) = settings.domain_name(&ctx.env.instance, ctx.deadline) {
                if let Some(domain) = self.domain(&self.xl(&settings), &name, ctx.deadline) {
                    self.set_utilization(ctx, &settings, &domain);
                }
            }
        }
        log::info("reloaded: the new parameters apply from the next action; the guest was not touched");
        Ok(())
    }

    fn start(&self, ctx: &Context) -> Result<(), OcfError> {
        let settings = ctx.params.settings(Settings::from_params)?;
        common::refuse_clone(ctx, "Xen")?;
        self.check_node_and_files(&settings)?;
        let name = settings.domain_name(&ctx.env.instance, ctx.deadline)?.required()?;
        let xl = self.xl(&settings);
        match self.state(&xl, &name, ctx.deadline)? {
            Some(GuestState::Running | GuestState::Paused { .. }) => {
                log::info(&format!("{name} is already running"));
                return Ok(());
            }
            Some(_) => {
                log::warn(&format!("clearing a crashed or half-migrated {name} before starting afresh"));
                lifecycle::destroy(&xl, &name, ctx.deadline).map_err(|e| OcfError::generic(format!("cannot clear the old {name}: {}", e.reason)))?;
            }
            None => {}
        }
        let leftover = settings.migration_image(&name).filter(|f| f.exists());
        let mut overrides = vec![format!("name=\"{name}\"")];
        if settings.balance_memory {
            if let Some(share) = memory::balance(&xl, settings.reserved_dom0_mib, true, ctx.deadline) {
                overrides.push(format!("memory={share}"));
            }
        }
        match leftover {
            // A save migration that never reached migrate_from: its memory
            // is newer than anything a fresh boot would have.
            Some(image) => lifecycle::restore_image(&xl, &name, &image, ctx.deadline)?,
            None => xl.create(&settings.xmfile, &overrides, ctx.deadline).map_err(|e| backend_error(&format!("cannot start {name}"), e))?,
        }
        lifecycle::wait_started(&xl, &name, ctx.deadline, || matches!(common::run_monitor_scripts(&*self.runner, &settings.monitor_scripts, ctx.deadline), Ok(None)))?;
        let domain = self.domain(&xl, &name, ctx.deadline);
        if let Some(domain) = &domain {
            self.set_utilization(ctx, &settings, domain);
        }
        log::info(&format!("started {name}{}", domain.map(|d| format!(" (domain {})", d.id)).unwrap_or_default()));
        Ok(())
    }

    fn stop(&self, ctx: &Context) -> Result<(), OcfError> {
        let settings = ctx.params.settings(Settings::from_params)?;
        let xl = self.xl(&settings);
        let name = match settings.domain_name(&ctx.env.instance, ctx.deadline)? {
            DomainName::Known(name) => name,
            DomainName::Unknowable(why) => return self.no_guest_at_all(&xl, "cannot tell which domain to stop", &why, ctx.deadline),
        };
        self.stop_named(&xl, &settings, &name, ctx.deadline).map_err(unknown_not_missing)
    }

    fn monitor(&self, ctx: &Context) -> Result<Health, OcfError> {
        let settings = ctx.params.settings(Settings::from_params)?;
        let xl = self.xl(&settings);
        let name = match settings.domain_name(&ctx.env.instance, ctx.deadline)? {
            DomainName::Known(name) => name,
            DomainName::Unknowable(why) => {
                self.no_guest_at_all(&xl, "cannot tell whether the guest runs here", &why, ctx.deadline)?;
                return Ok(Health::NotRunning);
            }
        };
        let mut seen = self.look(&xl, &name, ctx.deadline)?;
        // Between its shutdown and its new domain, a rebooting guest is
        // listed shut down, then not at all: a recurring monitor looks
        // again for a while before it judges.
        if passing(&seen) && !ctx.env.is_probe() {
            let until = ctx.deadline.leaving(Duration::from_secs(1)).within(REBOOT_GAP);
            // The answer is the last look's: a toolstack that stops
            // answering during the gap proves nothing about the guest. Each
            // look has the action's time, not the gap's, which has run out
            // by the last one.
            let mut last = Ok(seen.clone());
            until.wait_until(Duration::from_secs(1), || {
                last = self.look(&xl, &name, ctx.deadline);
                matches!(&last, Ok(seen) if !passing(seen)).then_some(())
            });
            seen = last?;
        }
        if let (Some(_), Some(away)) = (&seen.own, &seen.migrated_away) {
            log::warn(&format!("{} is left here by a broken migration of {name} ({}); stop destroys it", away.name, state_words(away)));
        }
        match (seen.own, seen.incoming, seen.migrated_away) {
            (Some(own), _, _) => match own.shutdown_reason() {
                _ if own.dying() => Err(OcfError::generic(format!("{name} is dying but xl still lists it; stop clears it"))),
                Some(ShutdownReason::Crash) => Err(OcfError::generic(format!("{name} has crashed and is kept by Xen (on_crash=\"preserve\"); stop destroys it"))),
                Some(reason) => Err(OcfError::generic(format!("{name} is {} ({}) but xl still lists it; stop clears it", reason.describe(), own.flags))),
                None if own.paused() => Ok(Health::Degraded(format!("{name} is paused (xl pause); it serves nothing until xl unpause"))),
                None => match common::run_monitor_scripts(&*self.runner, &settings.monitor_scripts, ctx.deadline)? {
                    Some(why) => Ok(Health::Degraded(why)),
                    None => Ok(Health::Running),
                },
            },
            (None, Some(_), _) => Ok(Health::Degraded(format!("{name} is arriving by migration"))),
            // Not running, but not absent: its memory is here, and the
            // target may or may not have started its copy.
            (None, None, Some(away)) => Err(OcfError::generic(format!(
                "{name}'s memory is here as {} ({}), left by a migration that broke after xl told the target to start it; stop destroys it",
                away.name,
                state_words(&away)
            ))),
            (None, None, None) => Ok(Health::NotRunning),
        }
    }

    fn migrate_to(&self, ctx: &Context) -> Result<(), OcfError> {
        let (settings, name) = self.settings_and_name(ctx)?;
        common::refuse_clone(ctx, "Xen")?;
        let target = migration_peer(ctx, "migrate_target", "migrate_to")?;
        let xl = self.xl(&settings);
        if !matches!(self.state(&xl, &name, ctx.deadline)?, Some(GuestState::Running | GuestState::Paused { .. })) {
            return Err(OcfError::generic(format!("{name} is not running here; there is nothing to migrate")));
        }
        if let Some(image) = settings.migration_image(&name) {
            return lifecycle::save_for_migration(&xl, &name, &image, ctx.deadline);
        }
        let address = self.migration_address(&settings, target, ctx.deadline);
        log::info(&format!("migrating {name} to {target} ({address})"));
        let started = std::time::Instant::now();
        // Xen cannot abort a migration; only killing xl stops it. So xl
        // gets the whole budget but one second to report where the guest is.
        let until = ctx.deadline.leaving(Duration::from_secs(1));
        let mut migration = xl
            .start_migration(&name, &address, settings.transport.as_deref(), until)
            .map_err(|e| backend_error("cannot start xl migrate", e))?;
        let result = loop {
            if let Some(r) = migration.wait_for(Duration::from_secs(1)) {
                break r;
            }
        };
        match (result, xl.guest_state(&name, ctx.deadline)) {
            // xl destroys the source once the target has it; Xen may still
            // be tearing it down (dying) when xl exits.
            (Ok(()), Ok(None | Some(GuestState::Dying))) => {
                if settings.balance_memory {
                    memory::balance(&xl, settings.reserved_dom0_mib, false, ctx.deadline);
                }
                for line in migration.account().lines().map(str::trim).filter(|l| !l.is_empty()) {
                    log::info(&format!("xl: {line}"));
                }
                log::info(&format!("migrated {name} to {target} in {:.2?}", started.elapsed()));
                Ok(())
            }
            (Ok(()), _) => Err(OcfError::generic(format!("xl migrate reported success, but {name} is still here"))),
            (Err(e), Ok(Some(GuestState::Running | GuestState::Paused { .. }))) => {
                Err(OcfError::generic(format!("migration of {name} to {target} failed: {e}; {name} keeps running here")))
            }
            (Err(e), Ok(_)) => match xl.sighting(&name, ctx.deadline).unwrap_or_default() {
                // Cut after xl suspended it: the target may hold a complete
                // copy, which xl's hand-shake alone could tell, so resuming
                // this one could make two. It stays suspended for stop.
                Sighting { own: Some(left), .. } if left.shut_down() => Err(OcfError::generic(format!(
                    "migration of {name} to {target} failed: {e}; xl left {name} suspended here ({}) and cannot resume it; it stays suspended until stop destroys it",
                    left.flags
                ))),
                // Cut after xl told the target to start it: the target may
                // run it already.
                Sighting { migrated_away: Some(away), .. } if !away.dying() => Err(OcfError::generic(format!(
                    "migration of {name} to {target} failed: {e}; xl had told {target} to start it and left this copy suspended here as {}; stop destroys it",
                    away.name
                ))),
                _ => Err(OcfError::generic(format!("migration of {name} to {target} failed: {e}; {name} is no longer running here"))),
            },
            (Err(e), Err(here)) => Err(OcfError::generic(format!("migration of {name} to {target} failed: {e}; and xl cannot say where it is: {here}"))),
        }
    }

    fn migrate_from(&self, ctx: &Context) -> Result<(), OcfError> {
        let (settings, name) = self.settings_and_name(ctx)?;
        common::refuse_clone(ctx, "Xen")?;
        let source = migration_peer(ctx, "migrate_source", "migrate_from")?;
        let xl = self.xl(&settings);
        if let Some(image) = settings.migration_image(&name) {
            return lifecycle::restore_migrated(&xl, &name, &image, source, ctx.deadline);
        }
        lifecycle::wait_arrival(&xl, &name, source, ctx.deadline)?;
        log::info(&format!("{name} arrived from {source}"));
        Ok(())
    }
}

impl Xen {
    /// The guest's vCPUs and memory as its resource's utilization, for each
    /// autoset_utilization_* that is on.
    fn set_utilization(&self, ctx: &Context, settings: &Settings, domain: &XlDomain) {
        let policy = |on: bool| if on { UtilizationPolicy::Set } else { UtilizationPolicy::Keep };
        common::update_utilization(
            &*self.runner,
            ctx,
            &[
                ("cpu", policy(settings.utilization_cpu), Some(domain.vcpus.to_string())),
                ("hv_memory", policy(settings.utilization_hv_memory), Some(domain.memory_mib.to_string())),
            ],
        );
    }

    /// Stop, the guest's name known: graceful while it runs, destroy
    /// otherwise, and every name xl gave it cleared.
    fn stop_named(&self, xl: &Xl, settings: &Settings, name: &str, deadline: Deadline) -> Result<(), OcfError> {
        let mut seen = self.look(xl, name, deadline)?;
        if seen.is_absent() {
            log::info(&format!("{name} is not running here"));
            return Ok(());
        }
        let budget = StopBudget::new(deadline, settings.shutdown_timeout);
        // A shut-down guest is one xl acts on at once: its per-domain
        // process restarts a rebooting one or destroys a powered-off one,
        // and `xl save` or `xl migrate` destroys a suspended one when done.
        // Destroying it under xl's feet could race a restart into a new
        // domain; so it gets a moment, and what is left then (a source a
        // cut migration left suspended, a domain kept by "preserve") is
        // destroyed.
        if seen.own.as_ref().is_some_and(settling) {
            budget.graceful.within(REBOOT_GAP).wait_until(POLL, || match self.look(xl, name, deadline) {
                Ok(now) if !now.own.as_ref().is_some_and(settling) => {
                    seen = now;
                    Some(())
                }
                _ => None,
            });
            if seen.is_absent() {
                log::info(&format!("{name} is gone: xl finished with it"));
                return Ok(());
            }
        }
        let halves: Vec<&str> = [&seen.incoming, &seen.migrated_away].into_iter().flatten().map(|d| d.name.as_str()).collect();
        match &seen.own {
            Some(own) if own.dying() && halves.is_empty() => {
                log::info(&format!("{name} is already being torn down by Xen"));
                return Ok(());
            }
            None => log::warn(&format!("destroying what a broken migration left of {name}: {}", halves.join(", "))),
            Some(own) if own.shut_down() || own.dying() => {
                log::warn(&format!("{name} is {} ({}) and cannot shut down by itself; destroying it", state_words(own), own.flags))
            }
            Some(_) => {}
        }
        let graceful = seen.own.as_ref().is_some_and(|own| !own.shut_down() && !own.dying());
        if !(graceful && lifecycle::shut_down(xl, name, budget.graceful)) {
            if graceful && settings.shutdown_timeout != Some(Duration::ZERO) {
                log::warn(&format!("{name} did not shut down in time; destroying it"));
            }
            lifecycle::destroy(xl, name, deadline)?;
        }
        if settings.balance_memory {
            memory::balance(xl, settings.reserved_dom0_mib, false, deadline);
        }
        log::info(&format!("stopped {name}"));
        Ok(())
    }
}

/// Shut down for a reason xl acts on by itself (not a crash, not yet dying).
fn settling(own: &XlDomain) -> bool {
    own.shut_down() && !own.crashed() && !own.dying()
}

/// A state a recurring monitor looks past for a while: absent under every
/// name (a reboot's gap), or shut down or dying (a reboot's first half).
fn passing(seen: &Sighting) -> bool {
    match &seen.own {
        None => seen.is_absent(),
        Some(own) => settling(own) || own.dying(),
    }
}

/// Stop never answers "not installed": a stop that fails fences the node
/// whatever its code, and 5 says "this node lacks it" of a guest that may
/// well run here. The lifecycle's destroy reports a missing xl so.
fn unknown_not_missing(e: OcfError) -> OcfError {
    if e.code == OcfCode::ErrInstalled {
        OcfError::generic(e.reason)
    } else {
        e
    }
}

#[cfg(test)]
mod tests;
