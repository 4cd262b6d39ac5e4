//! ocf:ferry:Xen — a Xen guest (domU) as a cluster resource, through xl.
//!
//! The glue between the OCF protocol and the xl backend. Where
//! ocf:heartbeat:Xen is known to be wrong, this does otherwise:
//! - allow_mem_management never rewrites the operator's xmfile (the anchor
//!   runs `sed -i` on it); the starting guest's share is a command-line
//!   override, and running guests are resized with `xl mem-set`;
//! - stop fails when the guest survives destroy, instead of always
//!   answering 0; every wait is bounded by the operation's deadline;
//! - a broken toolstack is an error, never "not running";
//! - a guest whose name cannot be known (xmfile unreadable, no `name`) is
//!   not reported stopped: the probe says the node cannot run it (5);
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

use std::path::PathBuf;
use std::time::Duration;

use crate::backend::xl::{config_name, Xl, XlDomain, XlError};
use crate::ocf::metadata::Params;
use crate::ocf::{log, Agent, Context, Deadline, Health, OcfError};
use crate::process::{Cmd, Runner, SystemRunner};

use super::common::{self, migration_peer, UtilizationPolicy};

pub const METADATA: &str = include_str!("../../../metadata/Xen.xml");

const POLL: Duration = Duration::from_millis(250);
const SHUTDOWN_REPEAT: Duration = Duration::from_secs(5);
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

#[derive(Clone, Debug)]
struct Settings {
    xmfile: PathBuf,
    name: Option<String>,
    /// `None`: two thirds of the stop budget.
    shutdown_timeout: Option<Duration>,
    shutdown_acpi: bool,
    balance_memory: bool,
    reserved_dom0_mib: u64,
    node_ip_attribute: Option<String>,
    monitor_scripts: Vec<String>,
    utilization_cpu: bool,
    utilization_hv_memory: bool,
    transport: Option<String>,
    /// Set for `migration_mode=save`: where the image waits, on shared storage.
    save_dir: Option<PathBuf>,
}

fn bad(reason: String) -> OcfError {
    OcfError::configured(reason)
}

fn valid_domain_name(name: &str) -> bool {
    !name.is_empty() && !name.contains('%') && !name.chars().any(char::is_whitespace)
}

impl Settings {
    fn from_params(p: &Params) -> Result<Settings, OcfError> {
        let xmfile = PathBuf::from(p.str("xmfile").unwrap_or_default());
        if !xmfile.is_absolute() {
            return Err(bad(format!("xmfile '{}' must be an absolute path", xmfile.display())));
        }
        let name = p.str("name").map(String::from);
        if let Some(n) = &name {
            if !valid_domain_name(n) {
                return Err(bad(format!("name '{n}' is not a usable domain name (no spaces or %)")));
            }
        }
        let shutdown_timeout = match p.str("shutdown_timeout") {
            None => None,
            Some(v) => Some(Duration::from_secs(
                v.trim().parse::<u64>().map_err(|_| bad(format!("shutdown_timeout '{v}' is not a number of seconds")))?,
            )),
        };
        let reserved = p.str("reserved_Dom0_memory").unwrap_or("512");
        let reserved_dom0_mib = reserved
            .trim()
            .parse::<u64>()
            .map_err(|_| bad(format!("reserved_Dom0_memory '{reserved}' is not a number of MiB")))?;
        let transport = p.str("migration_transport").map(String::from);
        let state_dir = p.str("migration_state_dir").map(PathBuf::from);
        if let Some(dir) = &state_dir {
            if !dir.is_absolute() {
                return Err(bad(format!("migration_state_dir '{}' must be an absolute path", dir.display())));
            }
        }
        let save_dir = match p.str("migration_mode").unwrap_or("live") {
            "live" => None,
            "save" => Some(state_dir.ok_or_else(|| bad("migration_mode=save needs migration_state_dir, a directory on storage all nodes share".into()))?),
            other => return Err(bad(format!("migration_mode '{other}' is not one of live, save"))),
        };
        Ok(Settings {
            xmfile,
            name,
            shutdown_timeout,
            shutdown_acpi: p.bool("shutdown_acpi"),
            balance_memory: p.bool("allow_mem_management"),
            reserved_dom0_mib,
            node_ip_attribute: p.str("node_ip_attribute").map(String::from),
            monitor_scripts: p.str("monitor_scripts").map(|v| v.split_whitespace().map(String::from).collect()).unwrap_or_default(),
            utilization_cpu: p.bool("autoset_utilization_cpu"),
            utilization_hv_memory: p.bool("autoset_utilization_hv_memory"),
            transport,
            save_dir,
        })
    }

    /// Where a save migration keeps `name`'s memory in flight.
    fn migration_image(&self, name: &str) -> Option<PathBuf> {
        self.save_dir.as_ref().map(|d| d.join(format!("{name}.migrating")))
    }

    /// The domain name: `name`, else the xmfile's name=, else the resource's
    /// name. `Err` (ERR_INSTALLED) when only the unreadable xmfile could say.
    fn domain_name(&self, instance: &str) -> Result<String, OcfError> {
        if let Some(n) = &self.name {
            return Ok(n.clone());
        }
        let text = std::fs::read_to_string(&self.xmfile).map_err(|e| {
            OcfError::installed(format!("xmfile {} is not readable ({e}) and no name parameter says which domain to look for", self.xmfile.display()))
        })?;
        match config_name(&text) {
            Some(n) if valid_domain_name(&n) => Ok(n),
            Some(n) => Err(bad(format!("the name '{n}' in {} is not usable (no spaces or %)", self.xmfile.display()))),
            None => Ok(instance.to_string()),
        }
    }
}

fn xl_err(what: &str, e: XlError) -> OcfError {
    match e {
        XlError::Missing(m) => OcfError::installed(format!("{what}: {m}")),
        other => OcfError::generic(format!("{what}: {other}")),
    }
}

/// Where the guest is on this node.
enum Found {
    Running(XlDomain),
    Crashed(XlDomain),
    /// Half of a migration in progress (`NAME--incoming`).
    Incoming,
    Absent,
}

impl Xen {
    fn find(&self, xl: &Xl, name: &str, deadline: Deadline) -> Result<Found, OcfError> {
        let domains = xl.list(deadline).map_err(|e| xl_err("cannot list Xen domains", e))?;
        let incoming = format!("{name}--incoming");
        if let Some(d) = domains.iter().find(|d| d.name == name && !d.ending()) {
            return Ok(if d.crashed() { Found::Crashed(d.clone()) } else { Found::Running(d.clone()) });
        }
        if domains.iter().any(|d| d.name == incoming) {
            return Ok(Found::Incoming);
        }
        Ok(Found::Absent)
    }

    fn settings_and_name(&self, ctx: &Context) -> Result<(Settings, String), OcfError> {
        let s = Settings::from_params(ctx.params)?;
        let name = s.domain_name(&ctx.env.instance)?;
        Ok((s, name))
    }

    fn check_node(&self, s: &Settings) -> Result<(), OcfError> {
        if !common::on_path("xl") {
            return Err(OcfError::installed("xl is not installed on this node"));
        }
        common::check_monitor_scripts(&s.monitor_scripts)
    }

    /// Waits until no domain of `name` (or its migration halves) is left.
    fn wait_gone(&self, xl: &Xl, name: &str, until: Deadline) -> bool {
        until.wait_until(POLL, || matches!(self.find(xl, name, until), Ok(Found::Absent)).then_some(())).is_some()
    }

    /// Shares the host's memory (less dom0's reserve) between the running
    /// guests and one that is `starting`; returns the share.
    fn balance_memory(&self, s: &Settings, xl: &Xl, starting: bool, deadline: Deadline) -> Option<u64> {
        let total = xl.total_memory_mib(deadline).map_err(|e| log::warn(&format!("allow_mem_management: {e}"))).ok()?;
        let guests: Vec<XlDomain> = xl.list(deadline).ok()?.into_iter().filter(|d| d.id != 0).collect();
        let count = guests.len() as u64 + u64::from(starting);
        if count == 0 {
            return None;
        }
        let share = total.saturating_sub(s.reserved_dom0_mib) / count;
        for g in &guests {
            if let Err(e) = xl.mem_set(&g.name, share, deadline) {
                log::warn(&format!("allow_mem_management: cannot resize {} to {share} MiB: {e}", g.name));
            }
        }
        log::info(&format!("allow_mem_management: {count} guests share {} MiB, {share} MiB each", total.saturating_sub(s.reserved_dom0_mib)));
        Some(share)
    }

    fn migration_address(&self, s: &Settings, target: &str, deadline: Deadline) -> String {
        let Some(attr) = &s.node_ip_attribute else { return target.to_string() };
        let query = Cmd::new(&["crm_attribute", "--type", "nodes", "--node", target, "-n", attr.as_str(), "-G", "-q"]);
        match self.runner.run(&query, deadline) {
            Ok(out) if out.success() && !out.stdout.trim().is_empty() && out.stdout.trim() != "(null)" => {
                let addr = out.stdout.trim().to_string();
                log::info(&format!("{target} is reached at {addr} ({attr})"));
                addr
            }
            _ => {
                log::warn(&format!("node attribute {attr} of {target} is not set; migrating to the node name"));
                target.to_string()
            }
        }
    }
}

impl Xen {
    /// Pull, first half: the guest's memory to shared storage, written under
    /// a temporary name and renamed when complete.
    fn save_for_migration(&self, xl: &Xl, name: &str, image: &std::path::Path, deadline: Deadline) -> Result<(), OcfError> {
        let dir = image.parent().expect("image is inside migration_state_dir");
        if !dir.is_dir() {
            return Err(OcfError::installed(format!("migration_state_dir {} does not exist on this node", dir.display())));
        }
        let partial = image.with_extension("migrating.part");
        let _ = std::fs::remove_file(&partial);
        let started = std::time::Instant::now();
        if let Err(e) = xl.save(name, &partial, deadline) {
            let _ = std::fs::remove_file(&partial);
            let here = match self.find(xl, name, deadline) {
                Ok(Found::Running(_)) => "it keeps running here",
                Ok(_) => "it is no longer running here",
                Err(_) => "xl cannot say whether it still runs here",
            };
            return Err(OcfError::generic(format!("cannot save {name} to {}: {e}; {here}", partial.display())));
        }
        common::publish_image(&partial, image).map_err(|e| OcfError::generic(format!("{name} saved, but {} cannot be published: {e}", partial.display())))?;
        log::info(&format!("saved {name} to {} in {:.2?} for the target to restore", image.display(), started.elapsed()));
        Ok(())
    }

    /// Pull, second half (or a start after a cut-short migration).
    fn restore_image(&self, xl: &Xl, name: &str, image: &std::path::Path, deadline: Deadline) -> Result<(), OcfError> {
        let started = std::time::Instant::now();
        xl.restore(image, deadline).map_err(|e| xl_err(&format!("cannot restore {name} from {} (kept for a later start)", image.display()), e))?;
        // Left behind, a later start would restore stale memory over newer disks.
        std::fs::remove_file(image).map_err(|e| OcfError::generic(format!("restored {name}, but cannot remove {}: {e}", image.display())))?;
        log::info(&format!("restored {name} from {} in {:.2?}", image.display(), started.elapsed()));
        Ok(())
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
        let (s, _) = self.settings_and_name(ctx)?;
        common::refuse_clone(ctx, "Xen")?;
        self.check_node(&s)?;
        if !s.xmfile.is_file() {
            return Err(OcfError::installed(format!("xmfile {} does not exist on this node", s.xmfile.display())));
        }
        Ok(())
    }

    fn start(&self, ctx: &Context) -> Result<(), OcfError> {
        self.validate(ctx)?;
        let (s, name) = self.settings_and_name(ctx)?;
        let xl = Xl::new(&*self.runner);
        match self.find(&xl, &name, ctx.deadline)? {
            Found::Running(_) => {
                log::info(&format!("{name} is already running"));
                return Ok(());
            }
            Found::Crashed(_) | Found::Incoming => {
                log::warn(&format!("clearing a crashed or half-migrated {name} before starting afresh"));
                let _ = xl.destroy(&name, ctx.deadline);
                let _ = xl.destroy(&format!("{name}--incoming"), ctx.deadline);
                if !self.wait_gone(&xl, &name, ctx.deadline) {
                    return Err(OcfError::generic(format!("cannot clear the old {name}")));
                }
            }
            Found::Absent => {}
        }
        let leftover = s.migration_image(&name).filter(|f| f.exists());
        let mut overrides = vec![format!("name=\"{name}\"")];
        if s.balance_memory {
            if let Some(share) = self.balance_memory(&s, &xl, true, ctx.deadline) {
                overrides.push(format!("memory={share}"));
            }
        }
        match leftover {
            // A save migration that never reached migrate_from: its memory
            // is newer than anything a fresh boot would have.
            Some(image) => self.restore_image(&xl, &name, &image, ctx.deadline)?,
            None => xl.create(&s.xmfile, &overrides, ctx.deadline).map_err(|e| xl_err(&format!("cannot start {name}"), e))?,
        }
        let up = ctx.deadline.wait_until(POLL, || match self.find(&xl, &name, ctx.deadline) {
            Ok(Found::Running(d)) => common::run_monitor_scripts(&*self.runner, &s.monitor_scripts, ctx.deadline).ok().map(|()| d),
            _ => None,
        });
        let Some(domain) = up else {
            return Err(OcfError::generic(format!("{name} did not reach a running state with passing monitor scripts in time")));
        };
        let policy = |on: bool| if on { UtilizationPolicy::Set } else { UtilizationPolicy::Keep };
        common::update_utilization(
            &*self.runner,
            ctx,
            &[
                ("cpu", policy(s.utilization_cpu), Some(domain.vcpus.to_string())),
                ("hv_memory", policy(s.utilization_hv_memory), Some(domain.memory_mib.to_string())),
            ],
        );
        log::info(&format!("started {name} (domain {})", domain.id));
        Ok(())
    }

    fn stop(&self, ctx: &Context) -> Result<(), OcfError> {
        let (s, name) = self.settings_and_name(ctx)?;
        let xl = Xl::new(&*self.runner);
        let found = self.find(&xl, &name, ctx.deadline)?;
        if matches!(found, Found::Absent) {
            log::info(&format!("{name} is not running here"));
            return Ok(());
        }
        // destroy needs time of its own; keep a third of the budget (2-20 s).
        let reserve = (ctx.deadline.remaining() / 3).clamp(Duration::from_secs(2), Duration::from_secs(20));
        let graceful = match s.shutdown_timeout {
            Some(t) => ctx.deadline.leaving(reserve).within(t),
            None => ctx.deadline.leaving(reserve),
        };
        let mut gone = false;
        if let Found::Running(_) = found {
            while !graceful.expired() && !gone {
                let asked = if s.shutdown_acpi { xl.power_button(&name, graceful) } else { xl.shutdown(&name, graceful) };
                if let Err(e) = asked {
                    log::warn(&format!("graceful shutdown of {name} failed: {e}"));
                }
                gone = self.wait_gone(&xl, &name, graceful.within(SHUTDOWN_REPEAT));
            }
        }
        if !gone {
            if matches!(found, Found::Running(_)) && s.shutdown_timeout != Some(Duration::ZERO) {
                log::warn(&format!("{name} did not shut down in time; destroying it"));
            }
            // A failed migration can leave the target's half behind as well.
            for victim in [name.clone(), format!("{name}--incoming")] {
                if let Err(e) = xl.destroy(&victim, ctx.deadline) {
                    log::debug(&format!("xl destroy {victim}: {e}"));
                }
            }
            if !self.wait_gone(&xl, &name, ctx.deadline) {
                return Err(OcfError::generic(format!("{name} is still present after destroy")));
            }
        }
        if s.balance_memory {
            self.balance_memory(&s, &xl, false, ctx.deadline);
        }
        log::info(&format!("stopped {name}"));
        Ok(())
    }

    fn monitor(&self, ctx: &Context) -> Result<Health, OcfError> {
        let s = Settings::from_params(ctx.params)?;
        let xl = Xl::new(&*self.runner);
        let name = match s.domain_name(&ctx.env.instance) {
            Ok(n) => n,
            Err(e) => return Err(e),
        };
        let mut found = self.find(&xl, &name, ctx.deadline)?;
        if matches!(found, Found::Absent) && !ctx.env.is_probe() {
            let until = ctx.deadline.within(REBOOT_GAP);
            // The answer is the last look's: a toolstack that stops
            // answering during the gap proves nothing about the guest.
            let mut last = Ok(());
            if let Some(f) = until.wait_until(Duration::from_secs(1), || match self.find(&xl, &name, until) {
                Ok(Found::Absent) => {
                    last = Ok(());
                    None
                }
                Err(e) => {
                    last = Err(e);
                    None
                }
                Ok(other) => Some(other),
            }) {
                found = f;
            } else {
                last?;
            }
        }
        match found {
            Found::Absent => Ok(Health::NotRunning),
            Found::Crashed(d) => Err(OcfError::generic(format!("{name} (domain {}) has crashed", d.id))),
            Found::Incoming => Ok(Health::Degraded(format!("{name} is arriving by migration"))),
            Found::Running(_) => {
                common::run_monitor_scripts(&*self.runner, &s.monitor_scripts, ctx.deadline)?;
                Ok(Health::Running)
            }
        }
    }

    fn migrate_to(&self, ctx: &Context) -> Result<(), OcfError> {
        let (s, name) = self.settings_and_name(ctx)?;
        common::refuse_clone(ctx, "Xen")?;
        let target = migration_peer(ctx, "migrate_target", "migrate_to")?;
        let xl = Xl::new(&*self.runner);
        if !matches!(self.find(&xl, &name, ctx.deadline)?, Found::Running(_)) {
            return Err(OcfError::generic(format!("{name} is not running here; there is nothing to migrate")));
        }
        if let Some(image) = s.migration_image(&name) {
            return self.save_for_migration(&xl, &name, &image, ctx.deadline);
        }
        let address = self.migration_address(&s, target, ctx.deadline);
        log::info(&format!("migrating {name} to {target} ({address})"));
        let started = std::time::Instant::now();
        // Xen cannot abort a migration; only killing xl stops it. So xl
        // gets the whole budget but one second to report where the guest is.
        let until = ctx.deadline.leaving(Duration::from_secs(1));
        let mut migration = xl
            .start_migration(&name, &address, s.transport.as_deref(), until)
            .map_err(|e| xl_err("cannot start xl migrate", e))?;
        let result = loop {
            if let Some(r) = migration.wait_for(Duration::from_secs(1)) {
                break r;
            }
        };
        let here = self.find(&xl, &name, ctx.deadline);
        match (result, here) {
            (Ok(()), Ok(Found::Absent)) => {
                if s.balance_memory {
                    self.balance_memory(&s, &xl, false, ctx.deadline);
                }
                log::info(&format!("migrated {name} to {target} in {:.2?}", started.elapsed()));
                Ok(())
            }
            (Ok(()), _) => Err(OcfError::generic(format!("xl migrate reported success, but {name} is still here"))),
            (Err(e), Ok(Found::Running(_))) => Err(OcfError::generic(format!("migration of {name} to {target} failed: {e}; {name} keeps running here"))),
            (Err(e), Ok(_)) => Err(OcfError::generic(format!("migration of {name} to {target} failed: {e}; {name} is no longer running here"))),
            (Err(e), Err(here)) => Err(OcfError::generic(format!("migration of {name} to {target} failed: {e}; and: {}", here.reason))),
        }
    }

    fn migrate_from(&self, ctx: &Context) -> Result<(), OcfError> {
        let (s, name) = self.settings_and_name(ctx)?;
        common::refuse_clone(ctx, "Xen")?;
        let source = migration_peer(ctx, "migrate_source", "migrate_from")?;
        let xl = Xl::new(&*self.runner);
        if let Some(image) = s.migration_image(&name) {
            if image.exists() {
                return self.restore_image(&xl, &name, &image, ctx.deadline);
            }
            if matches!(self.find(&xl, &name, ctx.deadline)?, Found::Running(_)) {
                log::info(&format!("{name} already runs here"));
                return Ok(());
            }
            return Err(OcfError::generic(format!("no saved image of {name} at {}: {source} did not save it", image.display())));
        }
        let mut last = String::from("not here");
        let arrived = ctx.deadline.leaving(Duration::from_secs(1)).wait_until(POLL, || match self.find(&xl, &name, ctx.deadline) {
            Ok(Found::Running(d)) if !d.paused() => Some(d),
            Ok(Found::Running(_)) => {
                last = "paused".into();
                None
            }
            Ok(Found::Incoming) => {
                last = "still arriving".into();
                None
            }
            Ok(_) => None,
            Err(e) => {
                last = e.reason;
                None
            }
        });
        match arrived {
            Some(d) => {
                log::info(&format!("{name} arrived from {source} (domain {})", d.id));
                Ok(())
            }
            None if last == "not here" => Err(OcfError::generic(format!("{name} never arrived from {source}"))),
            None => Err(OcfError::generic(format!("{name} from {source} is {last}"))),
        }
    }
}

#[cfg(test)]
mod tests;
