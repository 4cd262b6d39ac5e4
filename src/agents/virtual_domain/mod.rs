//! ocf:ferry:VirtualDomain — a libvirt guest as a cluster resource.
//!
//! The glue between the OCF protocol and the libvirt backend: it reads the
//! parameters, finds the guest (`locate`), and turns what libvirt says into
//! OCF answers. Where ocf:heartbeat:VirtualDomain is known to be wrong, this
//! does otherwise:
//! - an unreadable config never makes a running guest look stopped (#856);
//! - libvirtd being down never makes a running guest look stopped (#546, #1613);
//! - stop keeps a real reserve for destroy, and `shutdown_mode` works (#1018);
//! - start never undefines the operator's persistent definition (#487);
//! - no state on the node: the guest carries its owner mark in its own XML.

mod encryption;
mod health;
mod ladder;
mod locate;
mod migration;
mod settings;
mod uri;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::backend::libvirt::domxml::{self, DomainInfo, OwnerMark};
use crate::backend::libvirt::lease::{self, LeaseConflict};
use crate::backend::libvirt::{procscan, unsupported_machine_type};
use crate::backend::libvirt::{default_uri, DomainState, Libvirt, Pause, Status};
use health::{Silence, Verdict};
use crate::backend::{BackendError, Hypervisor};
use super::lifecycle::{self, backend_error, StopBudget};
use crate::ocf::{log, Agent, Context, Deadline, Health, OcfError, OwnedGuest};
use super::common;
use crate::process::{Cmd, Runner, SystemRunner};
use locate::{Finder, Whereabouts};
use settings::Settings;

pub const METADATA: &str = include_str!("../../../metadata/VirtualDomain.xml");

/// How long a guest resumed after an I/O error gets to show whether the
/// storage answers again: QEMU retries the failed write at once.
const RESUME_SETTLE: Duration = Duration::from_secs(2);


pub struct VirtualDomain {
    runner: Box<dyn Runner>,
    proc_root: PathBuf,
    libvirt_run_dir: PathBuf,
    libvirt_conf: PathBuf,
    /// Where migrate_to takes its migration slot (tests use a scratch dir).
    slot_dir: PathBuf,
}

impl VirtualDomain {
    pub fn new() -> VirtualDomain {
        VirtualDomain {
            runner: Box::new(SystemRunner),
            proc_root: PathBuf::from("/proc"),
            libvirt_run_dir: PathBuf::from("/run/libvirt"),
            libvirt_conf: PathBuf::from("/etc/libvirt/libvirt.conf"),
            slot_dir: PathBuf::from(crate::agents::migration_slots::SLOT_DIR),
        }
    }
}

impl Default for VirtualDomain {
    fn default() -> Self {
        Self::new()
    }
}

/// The config file on this node, as far as it could be read.
enum ConfigFile {
    Read { xml: String, info: DomainInfo },
    /// Unreadable or not a domain definition; the reason says which.
    Unusable(String),
}

impl ConfigFile {
    /// Reads the config within a third of what is left of `deadline`: a
    /// file on storage that does not answer (a hung hard NFS mount) or is
    /// not a file at all (a FIFO) is unreadable in time, and monitor and
    /// stop still have the time to look for the guest by its owner mark.
    fn load(path: &Path, deadline: Deadline) -> ConfigFile {
        let xml = match crate::fsread::read_to_string(path, deadline.within(deadline.remaining() / 3)) {
            Ok(x) => x,
            Err(e) => return ConfigFile::Unusable(format!("config file {} is not readable: {e}", path.display())),
        };
        match domxml::parse(&xml) {
            Ok(info) => ConfigFile::Read { xml, info },
            Err(e) => ConfigFile::Unusable(format!("config file {} is not a domain definition: {e}", path.display())),
        }
    }

    fn name(&self) -> Option<&str> {
        match self {
            ConfigFile::Read { info, .. } => Some(&info.name),
            ConfigFile::Unusable(_) => None,
        }
    }

    /// The definition, or ERR_INSTALLED: this node's copy is missing or bad.
    fn require(self) -> Result<(String, DomainInfo), OcfError> {
        match self {
            ConfigFile::Read { xml, info } => Ok((xml, info)),
            ConfigFile::Unusable(why) => Err(OcfError::installed(why)),
        }
    }
}

fn refuse_clone(ctx: &Context) -> Result<(), OcfError> {
    common::refuse_clone(ctx, "VirtualDomain")
}

impl VirtualDomain {
    fn libvirt<'a>(&'a self, settings: &Settings) -> Libvirt<'a> {
        let uri = settings.hypervisor.clone().unwrap_or_else(|| default_uri(std::fs::read_to_string(&self.libvirt_conf).ok().as_deref()));
        Libvirt::with_run_dir(&uri, &*self.runner, &self.libvirt_run_dir).shutting_down_by(settings.shutdown_mode.as_deref())
    }

    fn mark(ctx: &Context) -> OwnerMark {
        OwnerMark { agent: "VirtualDomain".into(), resource: ctx.env.instance.clone() }
    }

    fn locate(&self, ctx: &Context, libvirt: &Libvirt, name: Option<&str>, deadline: Deadline) -> Whereabouts {
        let mark = Self::mark(ctx);
        let status_dir = self.libvirt_run_dir.join("qemu");
        let finder = Finder { libvirt: libvirt, mark: &mark, proc_root: &self.proc_root, status_dir: &status_dir };
        finder.locate(name, deadline)
    }

    /// Checks what only this node can get wrong: files and tools. ERR_INSTALLED.
    fn check_node(&self, settings: &Settings) -> Result<(), OcfError> {
        if let Some(dir) = &settings.snapshot_dir {
            if !dir.is_dir() {
                return Err(OcfError::installed(format!("snapshot directory {} does not exist", dir.display())));
            }
        }
        if let Some(backing) = &settings.backing_file {
            if !backing.is_file() {
                return Err(OcfError::installed(format!("backingfile {} does not exist", backing.display())));
            }
        }
        let mut tools = vec!["virsh"];
        if settings.backing_file.is_some() {
            tools.push("qemu-img");
        }
        if !settings.copy_in_dirs.is_empty() {
            tools.push("virt-copy-in");
        }
        if settings.sync_config_on_stop {
            tools.push("csync2");
        }
        if let Some(missing) = tools.into_iter().find(|t| !common::on_path(t)) {
            return Err(OcfError::installed(format!("{missing} is not installed on this node")));
        }
        common::check_monitor_scripts(&settings.monitor_scripts)
    }

    fn run_monitor_scripts(&self, settings: &Settings, deadline: Deadline) -> Result<Option<String>, OcfError> {
        common::run_monitor_scripts(&*self.runner, &settings.monitor_scripts, deadline)
    }

    /// Restores the guest from a saved memory image, if one waits for it: a
    /// save migration that never reached migrate_from, or stop's `snapshot`.
    /// True: restored. The image is taken out of every start's reach first
    /// (`lifecycle::take_image`), and one that cannot be taken fails the
    /// start, nothing restored: booting instead would leave it for a later
    /// start to restore over newer disks. A failed restore is kept aside
    /// as `.failed`, never restored twice, and the guest boots instead.
    fn restore_saved(&self, settings: &Settings, libvirt: &Libvirt, name: &str, deadline: Deadline) -> Result<bool, OcfError> {
        let waiting = [settings.migration_image(name), settings.state_file(name)];
        let Some(file) = waiting.into_iter().flatten().find(|f| f.exists()) else { return Ok(false) };
        let taken = lifecycle::take_image(&file)?;
        match lifecycle::restore_taken(libvirt, name, &file, &taken, deadline) {
            Ok(()) => Ok(true),
            Err(e) => {
                log::warn(&format!("{}; booting instead", e.reason));
                Ok(false)
            }
        }
    }

    fn prepare_disk(&self, settings: &Settings, deadline: Deadline) -> Result<(), OcfError> {
        let Some(backing) = &settings.backing_file else { return Ok(()) };
        let disk = settings.overlay_disk();
        if disk.exists() && !settings.stateless {
            return Ok(());
        }
        if disk.exists() {
            std::fs::remove_file(&disk).map_err(|e| OcfError::generic(format!("cannot remove {}: {e}", disk.display())))?;
        }
        let backing = backing.to_string_lossy();
        let disk_s = disk.to_string_lossy();
        let create = Cmd::new(&["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", &backing, &disk_s]);
        let out = self.runner.run(&create, deadline).map_err(|e| OcfError::generic(e.to_string()))?;
        if !out.success() {
            return Err(OcfError::generic(format!("cannot create {disk_s}: {}", out.complaint())));
        }
        for dir in &settings.copy_in_dirs {
            let copy = Cmd::new(&["virt-copy-in", "-a", &disk_s, dir.as_str(), "/"]);
            let out = self.runner.run(&copy, deadline).map_err(|e| OcfError::generic(e.to_string()))?;
            if !out.success() {
                return Err(OcfError::generic(format!("cannot copy {dir} into {disk_s}: {}", out.complaint())));
            }
        }
        Ok(())
    }

    /// The utilization attributes from the guest's size (see `common`).
    fn update_utilization(&self, ctx: &Context, settings: &Settings, info: &DomainInfo) {
        let attributes: Vec<_> = settings
            .utilization
            .iter()
            .map(|(attribute, policy)| {
                let value = match *attribute {
                    "cpu" => info.vcpus.map(|v| v.to_string()),
                    _ => info.memory_mib.map(|v| v.to_string()),
                };
                (*attribute, *policy, value)
            })
            .collect();
        common::update_utilization(&*self.runner, ctx, &attributes);
    }

    fn save_config(&self, settings: &Settings, libvirt: &Libvirt, name: &str, deadline: Deadline) {
        let result = libvirt
            .inactive_xml(name, deadline)
            .map_err(|e| e.to_string())
            .and_then(|xml| domxml::without_mark(&xml))
            .and_then(|xml| {
                let tmp = settings.config.with_extension("ferry-tmp");
                std::fs::write(&tmp, xml)
                    .and_then(|()| std::fs::rename(&tmp, &settings.config))
                    .map_err(|e| format!("cannot write {}: {e}", settings.config.display()))
            });
        match result {
            Ok(()) => log::info(&format!("saved the definition of {name} to {}", settings.config.display())),
            Err(e) => log::warn(&format!("save_config_on_stop: {e}")),
        }
        if settings.sync_config_on_stop {
            let config = settings.config.to_string_lossy();
            match self.runner.run(&Cmd::new(&["csync2", "-x", &config]), deadline) {
                Ok(out) if out.success() => {}
                Ok(out) => log::warn(&format!("csync2 -x {config}: {}", out.complaint())),
                Err(e) => log::warn(&format!("csync2: {e}")),
            }
        }
    }

    /// Judges the guest by its state and reason (see `health`), and does
    /// what the verdict asks first: resumes a guest paused on an I/O error
    /// under io_error_policy=resume, and waits out a shutdown in progress.
    /// What comes back is never `Resume` or `ShuttingDown`.
    fn verdict(&self, settings: &Settings, libvirt: &Libvirt, name: &str, status: Status, deadline: Deadline) -> Verdict {
        let verdict = self.act_on(settings, libvirt, name, status, deadline);
        if status.pause() != Some(Pause::OnIoError) || !matches!(verdict, Verdict::Failed(_) | Verdict::Degraded(_)) {
            return verdict;
        }
        // Which disk, and what error: the first thing an operator asks.
        let Some(errors) = libvirt.disk_errors(name, deadline).ok().filter(|e| !e.is_empty()) else { return verdict };
        match verdict {
            Verdict::Failed(why) => Verdict::Failed(format!("{why} ({errors})")),
            Verdict::Degraded(why) => Verdict::Degraded(format!("{why} ({errors})")),
            other => other,
        }
    }

    fn act_on(&self, settings: &Settings, libvirt: &Libvirt, name: &str, status: Status, deadline: Deadline) -> Verdict {
        match health::judge(name, status, settings.io_errors) {
            Verdict::Resume => {
                if let Err(e) = libvirt.resume(name, deadline) {
                    return Verdict::Degraded(format!("{name} is paused on a disk I/O error and cannot be resumed ({e}); ferry tries again at the next monitor"));
                }
                // QEMU retries the failed request at once; storage that
                // still fails pauses the guest again within moments.
                std::thread::sleep(RESUME_SETTLE.min(deadline.remaining() / 2));
                match libvirt.status(name, deadline) {
                    Ok(Some(now)) if now.state == DomainState::Running => {
                        log::warn(&format!("{name} was paused on a disk I/O error and has been resumed (io_error_policy=resume)"));
                        Verdict::Running
                    }
                    Ok(Some(now)) if now.pause() == Some(Pause::OnIoError) => Verdict::Degraded(format!(
                        "{name} paused on a disk I/O error again after a resume; the storage still fails, and ferry tries again at the next monitor"
                    )),
                    Ok(Some(now)) => health::judge(name, now, settings.io_errors),
                    Ok(None) => Verdict::NotRunning,
                    Err(e) => Verdict::Failed(format!("{name} was resumed after an I/O error, but libvirt cannot say how it is now: {e}")),
                }
            }
            Verdict::ShuttingDown => {
                // A shutdown ends in moments; one that lasts the whole
                // monitor is a guest that serves nothing and will not go.
                let started = std::time::Instant::now();
                let mut last = Ok(Some(status));
                let settled = deadline.leaving(Duration::from_secs(2)).wait_until(lifecycle::POLL, || {
                    last = libvirt.status(name, deadline);
                    match &last {
                        Ok(Some(s)) if s.state == DomainState::ShuttingDown => None,
                        _ => Some(()),
                    }
                });
                match (settled, last) {
                    (None, _) => Verdict::Failed(format!("{name} has been shutting down for {:.0?} and is still not off", started.elapsed())),
                    (Some(()), Ok(Some(now))) => match health::judge(name, now, settings.io_errors) {
                        Verdict::Resume | Verdict::ShuttingDown => Verdict::Failed(format!("{name} is {now}")),
                        other => other,
                    },
                    (Some(()), Ok(None)) => Verdict::NotRunning,
                    (Some(()), Err(e)) => Verdict::Failed(format!("{name} was shutting down, and then libvirt could not be asked: {e}")),
                }
            }
            other => other,
        }
    }

    /// Depth 10: asks the guest itself, through its guest agent. QEMU can
    /// run a guest whose kernel hangs; only the guest can say it answers.
    /// An agent that has not connected yet is not silence while the guest
    /// is younger than guest_agent_boot_grace: it is still booting, and a
    /// recurring monitor starts right after start.
    fn ask_guest(&self, settings: &Settings, libvirt: &Libvirt, name: &str, deadline: Deadline) -> Result<Health, OcfError> {
        let e = match libvirt.ping_guest_agent(name, settings.guest_agent_timeout, deadline) {
            Ok(()) => return Ok(Health::Running),
            Err(e) => e,
        };
        // libvirt's words for an agent whose channel the guest has not opened.
        if e.to_string().contains("not connected") && libvirt.is_local() {
            if let procscan::Scan::Found(pid) = procscan::find_qemu_guest(&self.proc_root, name, deadline) {
                if let Some(age) = procscan::age(&self.proc_root, pid).filter(|age| *age < settings.guest_agent_boot_grace) {
                    log::info(&format!(
                        "{name}'s guest agent has not connected yet; the guest started {:.0?} ago, within guest_agent_boot_grace",
                        Duration::from_secs(age.as_secs())
                    ));
                    return Ok(Health::Running);
                }
            }
        }
        if let Some(missing) = Self::without_agent_channel(libvirt, name, deadline) {
            return Ok(missing);
        }
        let why = format!("{name} runs, but its guest agent did not answer guest-ping within {}s: {e}", settings.guest_agent_timeout.as_secs());
        match settings.guest_agent_silence {
            Silence::Fail => Err(OcfError::generic(why)),
            Silence::Degraded => Ok(Health::Degraded(why)),
        }
    }

    /// After a failed guest-ping: a guest whose live definition has no
    /// guest agent channel cannot be asked at all, and says nothing about
    /// its health. Read only then, so a depth-10 monitor that gets its
    /// answer costs nothing more. If the definition cannot be read, the
    /// silence is judged as silence.
    ///
    /// 190, whatever guest_agent_silence says. It is a fact of the guest's
    /// definition, not of the guest: 1 would have Pacemaker restart a guest
    /// that serves, and after the restart the channel is still missing, so
    /// it would restart it at every deep monitor for ever; 6 would stop it
    /// on every node, an outage for a monitoring mistake (a monitor's 6 is
    /// fatal, see "What each answer means to Pacemaker" in the README).
    /// 190 keeps the guest running and puts the reason in front of the
    /// operator as a failed operation, as for a monitor script that cannot
    /// be started. validate-all at depth 10 warns of it beforehand.
    fn without_agent_channel(libvirt: &Libvirt, name: &str, deadline: Deadline) -> Option<Health> {
        let info = libvirt.live_xml(name, deadline).ok().and_then(|xml| domxml::parse(&xml).ok())?;
        (!info.guest_agent_channel).then(|| Health::Degraded(format!("{name} runs, but has no guest agent channel, so a depth-10 monitor cannot ask it; {}", Self::AGENT_CHANNEL_HINT)))
    }

    const AGENT_CHANNEL_HINT: &'static str = "add <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel> to its definition, or monitor it at depth 0";

    /// Destroy failed, most often because libvirtd died or hung mid-stop:
    /// where is the guest now? A failed stop fences the node, so one that
    /// can still end the guest (by its QEMU process) or prove it gone does.
    fn after_failed_destroy(&self, ctx: &Context, libvirt: &Libvirt, name: Option<&str>, failed: OcfError) -> Result<(), OcfError> {
        match self.locate(ctx, libvirt, name, ctx.deadline) {
            Whereabouts::NotHere => Ok(()),
            Whereabouts::Here { status, .. } if !status.state.is_active() => Ok(()),
            Whereabouts::ProcessOnly { name, pid, .. } => self.kill_orphan(&name, pid, ctx.deadline),
            _ => Err(failed),
        }
    }

    /// This node's qemu.conf, beside libvirt.conf, if it can be read.
    fn qemu_conf(&self) -> Option<String> {
        std::fs::read_to_string(self.libvirt_conf.with_file_name("qemu.conf")).ok()
    }

    /// Why libvirt refused to start the guest. A disk lease held elsewhere
    /// means a copy of the guest (or something else) has its disk open on
    /// another node: said so, and answered 1, not 5 or 6, which would ban
    /// the resource from this node or the cluster for good, when the cluster
    /// only has to find and stop the other copy.
    fn start_refused(name: &str, disks: &[String], e: BackendError) -> OcfError {
        let text = match &e {
            BackendError::Failed(text) => text.as_str(),
            _ => "",
        };
        // What this node's QEMU cannot run, no node of its generation can
        // fix by retrying: "not installed", so Pacemaker bans this node for
        // the resource (however start-failure-is-fatal is set) and starts
        // it on one that can, and never reads it as a broken config (6),
        // which would stop it everywhere.
        if let Some(machine) = unsupported_machine_type(text) {
            return OcfError::installed(format!("this node's QEMU has no machine type {machine}, which {name}'s config asks for; it cannot run here"));
        }
        match lease::conflict(text, disks) {
            // The disk first: Pacemaker keeps only the first 128 bytes of a
            // reason, and the lease's name is a 64-digit hash.
            Some(LeaseConflict { lease, disk: Some(disk) }) => OcfError::generic(format!(
                "disk {disk} is in use by another host, so {name} was not started (a copy may run there; its lease {lease} is held)"
            )),
            Some(LeaseConflict { lease, disk: None }) => OcfError::generic(format!(
                "a disk of {name} is in use by another host, so it was not started (a copy may run there; the lease {lease} is held)"
            )),
            None => backend_error(&format!("cannot start {name}"), e),
        }
    }

    /// Ends the guest's QEMU process by PID when libvirtd is down: the only way
    /// left to make sure it no longer runs here.
    fn kill_orphan(&self, name: &str, pid: u32, deadline: Deadline) -> Result<(), OcfError> {
        log::warn(&format!("libvirt is unreachable; ending {name}'s QEMU process {pid} directly"));
        procscan::end_qemu_guest(&self.proc_root, pid, name, deadline).map_err(OcfError::generic)
    }
}

impl Agent for VirtualDomain {
    fn name(&self) -> &'static str {
        "VirtualDomain"
    }

    fn metadata_xml(&self) -> &'static str {
        METADATA
    }

    fn validate(&self, ctx: &Context) -> Result<(), OcfError> {
        let settings = ctx.params.settings(Settings::from_params)?;
        refuse_clone(ctx)?;
        for warning in settings.migration.stream.upgrade_warnings(settings.migration.options.as_deref()) {
            log::warn(&warning);
        }
        // Depth 0 checks the parameters alone (OCF 1.1): pcs runs
        // validate-all when a resource is created, on a node that need not
        // hold the config file. Depth 10 checks this node too.
        if ctx.env.check_level < 10 {
            return Ok(());
        }
        self.check_node(&settings)?;
        // The issue is the node's, but 6 says at once to the operator who
        // asked for TLS that nothing will migrate until it is fixed.
        match settings.migration.stream.check_node(settings.migration.mode, &self.migration_cert_dir()) {
            Err(why) => return Err(OcfError::configured(why)),
            Ok(Some(warning)) if ctx.env.check_level >= 10 => log::warn(&warning),
            Ok(_) => {}
        }
        let (_, info) = ConfigFile::load(&settings.config, ctx.deadline).require()?;
        // A warning, not a refusal: validate-all cannot know whether a
        // depth-10 monitor is configured, and without one the guest needs
        // no agent.
        if !info.guest_agent_channel {
            log::warn(&format!("{} has no guest agent channel: a depth-10 monitor cannot ask it and answers 190; {}", info.name, Self::AGENT_CHANNEL_HINT));
        }
        // Leases are the second line against two copies; qemu.conf is this
        // node's, so it says nothing of a libvirt elsewhere.
        let local = settings.hypervisor.as_deref().is_none_or(|uri| uri.starts_with("qemu:///"));
        if local && !info.disks.is_empty() {
            if lease::lock_manager(self.qemu_conf().as_deref()).is_none() {
                log::warn(&format!(
                    "{} has disks, but this node's libvirt takes no disk leases (no lock_manager in qemu.conf): only the cluster keeps a second copy from opening them; see the README's \"Disk leases\"",
                    info.name
                ));
            }
        }
        // The hypervisor answers: a depth-10 validate that passes on a node
        // whose libvirtd is down would promise a start that cannot happen.
        self.libvirt(&settings)
            .state(&info.name, ctx.deadline)
            .map_err(|e| backend_error("the hypervisor does not answer", e))?;
        Ok(())
    }

    fn owned_guests(&self, deadline: Deadline) -> Option<Result<Vec<OwnedGuest>, String>> {
        let uri = default_uri(std::fs::read_to_string(&self.libvirt_conf).ok().as_deref());
        let libvirt = Libvirt::with_run_dir(&uri, &*self.runner, &self.libvirt_run_dir);
        let listed = match libvirt.marked_domains(deadline) {
            Ok(listed) => listed,
            Err(e) => return Some(Err(format!("cannot list the domains of {uri}: {e}"))),
        };
        let owned = listed
            .into_iter()
            .filter_map(|d| {
                (d.mark.agent == self.name()).then(|| OwnedGuest { resource: d.mark.resource, guest: d.name, state: d.status.to_string() })
            })
            .collect();
        Some(Ok(owned))
    }

    fn reload(&self, ctx: &Context) -> Result<(), OcfError> {
        // The new values are checked as validate-all at depth 0 checks them;
        // every later action reads them afresh, so nothing else is kept. The
        // guest is not touched.
        let settings = ctx.params.settings(Settings::from_params)?;
        refuse_clone(ctx)?;
        if settings.utilization.iter().any(|(_, policy)| !matches!(policy, common::UtilizationPolicy::Keep)) {
            if let Ok((_, info)) = ConfigFile::load(&settings.config, ctx.deadline).require() {
                self.update_utilization(ctx, &settings, &info);
            }
        }
        log::info("reloaded: the new parameters apply from the next action; the guest was not touched");
        Ok(())
    }

    fn start(&self, ctx: &Context) -> Result<(), OcfError> {
        let settings = ctx.params.settings(Settings::from_params)?;
        refuse_clone(ctx)?;
        self.check_node(&settings)?;
        let (xml, info) = ConfigFile::load(&settings.config, ctx.deadline).require()?;
        let libvirt = self.libvirt(&settings);
        let name = info.name.as_str();
        match libvirt.state(name, ctx.deadline) {
            Ok(Some(DomainState::ShutOff)) | Ok(None) => match self.locate(ctx, &libvirt, None, ctx.deadline) {
                // The config's <name> was edited while the old guest runs:
                // a start under the new name would be a second copy.
                Whereabouts::Here { name: running, status } if status.state.is_active() => {
                    return Err(OcfError::generic(format!("this resource's guest already runs here as {running} ({}); stop it before starting it as {name}", status.state)));
                }
                Whereabouts::ProcessOnly { name: running, why, .. } => {
                    return Err(OcfError::generic(format!("{why}; this resource's guest may still run here as {running}")));
                }
                Whereabouts::Unknown(why) => {
                    return Err(OcfError::generic(format!("cannot tell whether this resource's guest already runs here under another name: {why}")));
                }
                Whereabouts::Here { .. } | Whereabouts::NotHere => {}
            },
            Ok(Some(DomainState::Crashed)) | Ok(Some(DomainState::NoState)) => {
                log::warn(&format!("{name} is crashed or stateless; destroying it before starting afresh"));
                lifecycle::destroy(&libvirt, name, ctx.deadline)?;
            }
            Ok(Some(state)) => {
                log::info(&format!("{name} is already {state}"));
                return Ok(());
            }
            Err(e) => return Err(backend_error(&format!("cannot start {name}"), e)),
        }
        if settings.start_resources {
            for pool in &info.pools {
                libvirt.ensure_pool(pool, ctx.deadline).map_err(|e| backend_error(&format!("cannot start storage pool {pool}"), e))?;
            }
            for net in &info.networks {
                libvirt.ensure_network(net, ctx.deadline).map_err(|e| backend_error(&format!("cannot start network {net}"), e))?;
            }
        }
        if !self.restore_saved(&settings, &libvirt, name, ctx.deadline)? {
            self.prepare_disk(&settings, ctx.deadline)?;
            let marked = domxml::with_mark(&xml, &Self::mark(ctx)).map_err(|e| OcfError::installed(format!("cannot mark {name}: {e}")))?;
            libvirt.create(&marked, ctx.deadline).map_err(|e| Self::start_refused(name, &info.disks, e))?;
        }
        lifecycle::wait_started(&libvirt, name, ctx.deadline, || matches!(self.run_monitor_scripts(&settings, ctx.deadline), Ok(None)))?;
        self.update_utilization(ctx, &settings, &info);
        log::info(&format!("started {name}"));
        Ok(())
    }

    fn stop(&self, ctx: &Context) -> Result<(), OcfError> {
        let settings = ctx.params.settings(Settings::from_params)?;
        let config = ConfigFile::load(&settings.config, ctx.deadline);
        let libvirt = self.libvirt(&settings);
        let (name, status) = match self.locate(ctx, &libvirt, config.name(), ctx.deadline) {
            Whereabouts::NotHere => {
                log::info("the guest is not running here");
                return Ok(());
            }
            Whereabouts::Here { status, .. } if status.state == DomainState::ShutOff => {
                log::info("the guest is not running here");
                return Ok(());
            }
            Whereabouts::Here { name, status } => (name, status),
            Whereabouts::ProcessOnly { name, pid, .. } => return self.kill_orphan(&name, pid, ctx.deadline),
            Whereabouts::Unknown(why) => return Err(OcfError::generic(format!("cannot tell whether the guest runs here: {why}"))),
        };
        // The source of a post-copy migration holds memory the target
        // still needs: never shut down or destroyed while it does.
        let status = match status.pause() {
            Some(Pause::PostCopy) => match self.await_postcopy_end(&libvirt, &name, ctx.deadline)? {
                None => return Ok(()),
                Some(now) => now,
            },
            _ => status,
        };
        let budget = StopBudget::new(ctx.deadline, None);
        let mut stopped = false;
        // A guest that is crashed, or paused for anything but a job libvirt
        // runs, cannot run its shutdown handler: asking would only spend
        // the graceful part of the budget before the destroy.
        let unresponsive = status.state == DomainState::Crashed || status.pause().is_some_and(|p| p != Pause::ForJob);
        if unresponsive && !settings.force_stop {
            log::warn(&format!("{name} is {status} and cannot shut down by itself; destroying it"));
        }
        if !settings.force_stop && !unresponsive {
            if let Some(file) = settings.state_file(&name) {
                match libvirt.save(&name, &file, budget.graceful) {
                    Ok(()) => stopped = true,
                    Err(e) => log::warn(&format!("cannot save {name} to {}: {e}; shutting it down instead", file.display())),
                }
            }
            if !stopped && settings.save_config_on_stop {
                self.save_config(&settings, &libvirt, &name, budget.graceful);
            }
            if !stopped {
                stopped = lifecycle::shut_down(&libvirt, &name, budget.graceful);
                if !stopped {
                    log::warn(&format!("{name} did not shut down in time; destroying it with {:.0?} left", budget.reserve));
                }
            }
        }
        if !stopped {
            if let Err(e) = lifecycle::destroy(&libvirt, &name, ctx.deadline) {
                return self.after_failed_destroy(ctx, &libvirt, config.name(), e);
            }
        }
        log::info(&format!("stopped {name}"));
        Ok(())
    }

    fn monitor(&self, ctx: &Context) -> Result<Health, OcfError> {
        let settings = ctx.params.settings(Settings::from_params)?;
        let config = ConfigFile::load(&settings.config, ctx.deadline);
        let libvirt = self.libvirt(&settings);
        let (health, here) = match self.locate(ctx, &libvirt, config.name(), ctx.deadline) {
            Whereabouts::NotHere => return Ok(Health::NotRunning),
            Whereabouts::Here { name, status } => match self.verdict(&settings, &libvirt, &name, status, ctx.deadline) {
                Verdict::NotRunning => return Ok(Health::NotRunning),
                Verdict::Failed(why) => return Err(OcfError::generic(why)),
                Verdict::Degraded(why) => (Health::Degraded(why), Some(name)),
                _ if config.name().is_some_and(|n| n != name) => {
                    let renamed = format!("the guest runs as {name}, but the config now names it {}; a restart applies the new name", config.name().unwrap_or_default());
                    (Health::Degraded(renamed), Some(name))
                }
                _ => (Health::Running, Some(name)),
            },
            Whereabouts::ProcessOnly { name, pid, why } => (Health::Degraded(format!("{why}; {name} still runs here as QEMU process {pid}")), None),
            Whereabouts::Unknown(why) => {
                return Err(OcfError::generic(format!("cannot tell whether the guest runs here: {why}")));
            }
        };
        if let ConfigFile::Unusable(why) = &config {
            // Found through its mark. It runs, but could not be started again here.
            return Ok(Health::Degraded(format!("{why}; the guest was found through its owner mark")));
        }
        if let Some(why) = self.run_monitor_scripts(&settings, ctx.deadline)? {
            return Ok(Health::Degraded(why));
        }
        match here {
            Some(name) if ctx.env.check_level >= 10 && health == Health::Running => self.ask_guest(&settings, &libvirt, &name, ctx.deadline),
            _ => Ok(health),
        }
    }

    fn migrate_to(&self, ctx: &Context) -> Result<(), OcfError> {
        VirtualDomain::migrate_to(self, ctx)
    }

    fn migrate_from(&self, ctx: &Context) -> Result<(), OcfError> {
        VirtualDomain::migrate_from(self, ctx)
    }
}

#[cfg(test)]
mod tests;
