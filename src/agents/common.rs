//! What every VM agent does the same way, whatever its hypervisor: refuse to
//! be a clone, check tools on PATH, run monitor scripts, set utilization,
//! publish a migration's progress.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::ocf::metadata::Params;
use crate::ocf::{log, Context, Deadline, OcfError};
use crate::process::{Cmd, Runner};

/// Whether `program` is an executable file on PATH (or at that path).
pub fn on_path(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| p.metadata().map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false);
    if program.contains('/') {
        return executable(Path::new(program));
    }
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| executable(&dir.join(program))))
        .unwrap_or(false)
}

/// A running guest must not also run elsewhere; a clone would be many copies.
pub fn refuse_clone(ctx: &Context, agent: &str) -> Result<(), OcfError> {
    if ctx.env.is_clone() {
        return Err(OcfError::configured(format!(
            "{agent} must not be a clone: two running copies of one guest corrupt its disks"
        )));
    }
    Ok(())
}

/// ERR_INSTALLED for the first monitor script that is not an executable file.
pub fn check_monitor_scripts(scripts: &[String]) -> Result<(), OcfError> {
    match scripts.iter().find(|p| !on_path(p)) {
        Some(script) => Err(OcfError::installed(format!("monitor script {script} is not an executable file"))),
        None => Ok(()),
    }
}

/// Runs each monitor script; the first failure fails the monitor with its
/// words. A script that cannot be started at all (a mistyped path, a file
/// that is not executable) is no verdict on the guest: it comes back as
/// `Ok(Some(why))`, for monitor to answer degraded (190) rather than fail a
/// running guest over a typo in the CIB. start checks the scripts first
/// (ERR_INSTALLED), so only a monitor meets this.
pub fn run_monitor_scripts(runner: &dyn Runner, scripts: &[String], deadline: Deadline) -> Result<Option<String>, OcfError> {
    for script in scripts {
        let out = match runner.run(&Cmd::new(&[script.as_str()]), deadline) {
            Ok(out) => out,
            Err(e @ crate::process::RunError::Spawn { .. }) => return Ok(Some(format!("monitor script {script} cannot be run ({e}); the guest runs, unchecked by it"))),
            Err(e) => return Err(OcfError::generic(format!("monitor script {script}: {e}"))),
        };
        if !out.success() {
            return Err(OcfError::generic(format!("monitor script {script} failed: {}", out.complaint())));
        }
    }
    Ok(None)
}

/// What to do with one utilization attribute when the guest starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UtilizationPolicy {
    Set,
    Delete,
    Keep,
}

/// Sets or deletes the resource's utilization attributes. Only under a
/// cluster, once per start: a running guest's size does not change by
/// itself, and a monitor should cost nothing extra. Failures are warnings.
pub fn update_utilization(runner: &dyn Runner, ctx: &Context, attributes: &[(&str, UtilizationPolicy, Option<String>)]) {
    if !ctx.env.under_cluster() {
        return;
    }
    for (attribute, policy, value) in attributes {
        let base = ["crm_resource", "-Q", "-r", ctx.env.instance.as_str(), "-z"];
        let cmd = match (policy, value) {
            (UtilizationPolicy::Set, Some(v)) => Cmd::new(&base).arg("-p").arg(*attribute).arg("-v").arg(v.as_str()),
            (UtilizationPolicy::Delete, _) => Cmd::new(&base).arg("-d").arg(*attribute),
            _ => continue,
        };
        match runner.run(&cmd, ctx.deadline) {
            Ok(out) if out.success() => {}
            Ok(out) => log::warn(&format!("cannot update utilization {attribute}: {}", out.complaint())),
            Err(e) => log::warn(&format!("cannot update utilization {attribute}: {e}")),
        }
    }
}

/// A migration's progress, as a private node attribute in Pacemaker's
/// attribute manager while migrate_to runs: `ferry-migration-RESOURCE` on
/// the source (`attrd_updater -Q -A -n …`, and `ferry status`).
///
/// Private (`-p`), never written to the CIB, because the controller aborts
/// its running transition on every transient attribute change in the CIB.
/// An aborted transition starts nothing new until every action in flight
/// has ended: with progress in the CIB, a drain ran in waves, each waiting
/// for its slowest migration (issue 12, 6 guests in the lab: Pacemaker
/// logged "Transition 18 aborted by status-1-ferry-migration-…" at each
/// update, and the drain took 42.8 s, against 40.5 s with it private).
///
/// Only under a cluster. Written at most every `PROGRESS_EVERY`; removed
/// when the migration ends, and by Drop on any other way out (a SIGKILL
/// alone can leave it, until the next migration of the resource from this
/// node replaces it).
pub struct ProgressAttribute<'r> {
    runner: &'r dyn Runner,
    name: String,
    /// Off outside a cluster, and after attrd_updater failed once: progress
    /// is worth no more than one failed call.
    working: bool,
    written: Option<Instant>,
    deadline: Deadline,
}

const PROGRESS_EVERY: Duration = Duration::from_secs(2);
/// Each attrd_updater call; attrd answers in milliseconds when it is up.
const ATTRD_CALL: Duration = Duration::from_secs(2);

impl<'r> ProgressAttribute<'r> {
    pub fn new(runner: &'r dyn Runner, ctx: &Context) -> ProgressAttribute<'r> {
        ProgressAttribute { runner, name: format!("ferry-migration-{}", ctx.env.instance), working: ctx.env.under_cluster(), written: None, deadline: ctx.deadline }
    }

    /// Publishes `value` unless one was published less than PROGRESS_EVERY
    /// ago. `until` bounds the call: a migration's progress must never eat
    /// into the time its abort needs, so the caller says where that begins.
    pub fn publish(&mut self, value: &str, until: Deadline) {
        if !self.working || self.written.is_some_and(|t| t.elapsed() < PROGRESS_EVERY) {
            return;
        }
        self.written = Some(Instant::now());
        self.attrd(&["-U", value], until);
    }

    /// Removes the attribute, if anything was published.
    pub fn clear(&mut self) {
        if self.working && self.written.take().is_some() {
            self.attrd(&["-D"], self.deadline);
        }
    }

    fn attrd(&mut self, what: &[&str], until: Deadline) {
        let cmd = Cmd::new(&["attrd_updater", "-p", "-n", self.name.as_str()]);
        let cmd = what.iter().fold(cmd, |c, w| c.arg(*w));
        let failure = match self.runner.run(&cmd, until.within(ATTRD_CALL)) {
            Ok(out) if out.success() => return,
            Ok(out) => out.complaint(),
            Err(e) => e.to_string(),
        };
        log::warn(&format!("cannot publish the migration's progress as node attribute {}: {failure}", self.name));
        self.working = false;
    }
}

/// The progress a migrate_to on this node publishes for `resource`, if one
/// runs now: for `ferry status`. None outside a cluster, or when attrd has
/// no value (the attribute is private, so only attrd knows it).
pub fn migration_progress(runner: &dyn Runner, resource: &str, deadline: Deadline) -> Option<String> {
    let name = format!("ferry-migration-{resource}");
    let out = runner.run(&Cmd::new(&["attrd_updater", "-Q", "-n", name.as_str()]), deadline.within(ATTRD_CALL)).ok()?;
    if !out.success() {
        return None;
    }
    // name="ferry-migration-vm1" host="nodea" value="37% sent, …", a line
    // per node on Pacemaker 2.1.5 (3.0 answers for this node alone). Only
    // the node running the migrate_to writes a value (a SIGKILLed one's can
    // stay until that node's next migration of the resource), so the first
    // one not empty is this node's but for that leftover.
    out.stdout.lines().filter_map(|line| line.split(" value=\"").nth(1)?.trim_end().strip_suffix('"')).find(|v| !v.is_empty()).map(String::from)
}

impl Drop for ProgressAttribute<'_> {
    fn drop(&mut self) {
        self.clear();
    }
}

/// The source or target node Pacemaker names for a migration; without it
/// the action is not half of a migration, which is a configuration error.
pub fn migration_peer<'c>(ctx: &'c Context, key: &str, action: &str) -> Result<&'c str, OcfError> {
    ctx.env
        .meta
        .get(key)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| OcfError::configured(format!("{action} needs the {} node (OCF_RESKEY_CRM_meta_{key})", key.trim_start_matches("migrate_"))))
}

/// A path parameter that must be absolute: a relative one would mean
/// something different in every process's working directory.
pub fn absolute_path(params: &Params, name: &str) -> Result<Option<PathBuf>, OcfError> {
    match params.str(name).map(PathBuf::from) {
        Some(path) if !path.is_absolute() => Err(OcfError::configured(format!("{name} '{}' must be an absolute path", path.display()))),
        other => Ok(other),
    }
}

/// The directory on shared storage a save migration needs; ERR_CONFIGURED
/// when the mode asks for one and none is set.
pub fn save_migration_dir(state_dir: Option<PathBuf>) -> Result<PathBuf, OcfError> {
    state_dir.ok_or_else(|| OcfError::configured("migration_mode=save needs migration_state_dir, a directory on storage all nodes share"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ocf::env::OcfEnv;
    use crate::ocf::metadata::Metadata;
    use crate::process::recording::RecordingRunner;

    const NO_PARAMETERS: &str = r#"<?xml version="1.0"?><resource-agent name="T" version="1"><version>1.1</version><longdesc lang="en">t</longdesc><shortdesc lang="en">t</shortdesc><parameters/><actions><action name="monitor" timeout="20s"/></actions></resource-agent>"#;

    /// Drives a ProgressAttribute for resource vm1, under a cluster or not.
    fn with_progress(runner: &RecordingRunner, cluster: bool, drive: impl FnOnce(&mut ProgressAttribute)) {
        let mut vars = vec![("OCF_RESOURCE_INSTANCE".to_string(), "vm1".to_string())];
        if cluster {
            vars.push(("OCF_RESKEY_crm_feature_set".into(), "3.16.2".into()));
        }
        let env = OcfEnv::from_vars(vars);
        let params = Metadata::parse(NO_PARAMETERS).unwrap().resolve(&Default::default()).unwrap();
        let ctx = Context { env: &env, params: &params, deadline: Deadline::after(Duration::from_secs(5)) };
        let mut progress = ProgressAttribute::new(runner, &ctx);
        drive(&mut progress);
    }

    #[test]
    fn progress_is_published_sparingly_and_removed_at_the_end() {
        let runner = RecordingRunner::new().reply(&["attrd_updater"], 0, "", "");
        with_progress(&runner, true, |p| {
            let soon = Deadline::after(Duration::from_secs(5));
            p.publish("10% sent", soon);
            p.publish("20% sent", soon); // within 2 s of the last: not written
        });
        // -p: never in the CIB, where each change would abort the transition.
        assert!(runner.called(&["attrd_updater", "-p", "-n", "ferry-migration-vm1", "-U", "10% sent"]));
        assert!(!runner.called(&["attrd_updater", "-p", "-n", "ferry-migration-vm1", "-U", "20% sent"]));
        assert!(runner.called(&["attrd_updater", "-p", "-n", "ferry-migration-vm1", "-D"]), "dropping it removes the attribute");
    }

    #[test]
    fn ferry_status_reads_the_progress_back_from_attrd() {
        let running = RecordingRunner::new().reply(&["attrd_updater", "-Q"], 0, "name=\"ferry-migration-vm1\" host=\"nodea\" value=\"37% sent, 81 MiB left, pass 2, pre-copy\"\n", "");
        let deadline = Deadline::after(Duration::from_secs(5));
        assert_eq!(migration_progress(&running, "vm1", deadline).as_deref(), Some("37% sent, 81 MiB left, pass 2, pre-copy"));
        let ended = RecordingRunner::new().reply(&["attrd_updater", "-Q"], 0, "name=\"ferry-migration-vm1\" host=\"nodea\" value=\"\"\n", "");
        let every_node = RecordingRunner::new().reply(&["attrd_updater", "-Q"], 0, "name=\"ferry-migration-vm1\" host=\"nodea\" value=\"\"\nname=\"ferry-migration-vm1\" host=\"nodeb\" value=\"5% sent\"\n", "");
        assert_eq!(migration_progress(&every_node, "vm1", Deadline::after(Duration::from_secs(1))).as_deref(), Some("5% sent"), "a line per node, as Pacemaker 2.1.5 answers");
        assert_eq!(migration_progress(&ended, "vm1", deadline), None, "a deleted attribute is an empty value");
        let unknown = RecordingRunner::new().reply(&["attrd_updater", "-Q"], 105, "", "Could not query value of ferry-migration-vm1: attribute does not exist\n");
        assert_eq!(migration_progress(&unknown, "vm1", deadline), None);
    }

    #[test]
    fn outside_a_cluster_or_after_a_failure_nothing_more_is_tried() {
        let outside = RecordingRunner::new().reply(&["attrd_updater"], 0, "", "");
        with_progress(&outside, false, |p| p.publish("10% sent", Deadline::after(Duration::from_secs(5))));
        assert!(!outside.called(&["attrd_updater"]));
        let broken = RecordingRunner::new().reply(&["attrd_updater"], 1, "", "Could not connect to attrd\n");
        with_progress(&broken, true, |p| p.publish("10% sent", Deadline::after(Duration::from_secs(5))));
        assert!(!broken.called(&["attrd_updater", "-p", "-n", "ferry-migration-vm1", "-D"]), "one failure is enough");
    }
}
