//! The libvirt backend: domains on any hypervisor libvirt drives (KVM/QEMU here).
//!
//! Reads on a local daemon (domain state, definitions, the list of domains) go
//! straight over libvirt's UNIX socket (`rpc`), because a monitor asks them every
//! few seconds for every guest. Orders (create, shutdown, destroy, save,
//! restore, pools, networks) go through `virsh`, which speaks every transport
//! libvirt has; they are rare, and virsh's own error text is what an operator
//! wants to read. Both are bounded by the caller's deadline.

pub mod domxml;
pub mod migration;
pub mod procscan;
pub mod rpc;
pub mod xdr;

use std::fmt;
use std::path::{Path, PathBuf};

use crate::ocf::Deadline;
use crate::process::{Cmd, Output, RunError, Runner};

/// virDomainState, as libvirt reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DomainState {
    NoState,
    Running,
    /// "idle" in virsh: running, but waiting.
    Blocked,
    Paused,
    /// Running, asked to shut down and not yet off.
    ShuttingDown,
    ShutOff,
    Crashed,
    /// Suspended by the guest's own power management.
    PmSuspended,
}

impl DomainState {
    pub fn from_code(code: i32) -> DomainState {
        match code {
            1 => DomainState::Running,
            2 => DomainState::Blocked,
            3 => DomainState::Paused,
            4 => DomainState::ShuttingDown,
            5 => DomainState::ShutOff,
            6 => DomainState::Crashed,
            7 => DomainState::PmSuspended,
            _ => DomainState::NoState,
        }
    }

    /// Parses `virsh domstate` output.
    pub fn from_virsh(text: &str) -> DomainState {
        match text.trim() {
            "running" => DomainState::Running,
            "idle" | "blocked" => DomainState::Blocked,
            "paused" => DomainState::Paused,
            "in shutdown" => DomainState::ShuttingDown,
            "shut off" => DomainState::ShutOff,
            "crashed" => DomainState::Crashed,
            "pmsuspended" => DomainState::PmSuspended,
            _ => DomainState::NoState,
        }
    }

    /// Whether a QEMU process for the domain exists (and holds its disks).
    pub fn is_active(self) -> bool {
        !matches!(self, DomainState::ShutOff)
    }
}

impl fmt::Display for DomainState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DomainState::NoState => "no state",
            DomainState::Running => "running",
            DomainState::Blocked => "blocked",
            DomainState::Paused => "paused",
            DomainState::ShuttingDown => "in shutdown",
            DomainState::ShutOff => "shut off",
            DomainState::Crashed => "crashed",
            DomainState::PmSuspended => "pmsuspended",
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LibvirtError {
    /// The daemon could not be reached: nothing is known about its domains.
    Unreachable(String),
    /// The daemon answered: no such domain.
    NoDomain,
    /// The daemon (or virsh) refused or failed the request.
    Failed(String),
    /// A tool this needs is not installed.
    Missing(String),
    TimedOut(String),
}

impl fmt::Display for LibvirtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LibvirtError::Unreachable(m) => write!(f, "libvirt unreachable: {m}"),
            LibvirtError::NoDomain => f.write_str("no such domain"),
            LibvirtError::Failed(m) | LibvirtError::Missing(m) | LibvirtError::TimedOut(m) => f.write_str(m),
        }
    }
}

/// Sorts virsh's failure text (LC_ALL=C) into what the caller must decide on.
pub fn classify_virsh_failure(out: &Output) -> LibvirtError {
    let text = out.complaint();
    let lower = text.to_lowercase();
    if lower.contains("failed to connect")
        || lower.contains("unable to connect")
        || lower.contains("cannot recv data")
        || lower.contains("no connection driver available")
        || lower.contains("end of file while reading data")
    {
        LibvirtError::Unreachable(text)
    } else if lower.contains("domain not found") || lower.contains("failed to get domain") {
        LibvirtError::NoDomain
    } else {
        LibvirtError::Failed(text)
    }
}

impl From<RunError> for LibvirtError {
    fn from(e: RunError) -> Self {
        match e {
            RunError::Spawn { .. } => LibvirtError::Missing(e.to_string()),
            RunError::TimedOut { .. } => LibvirtError::TimedOut(e.to_string()),
        }
    }
}

/// How to reach a local daemon's socket directly, for URIs that name one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalSocket {
    pub path: PathBuf,
    /// The URI the daemon opens (without transport and socket parameters).
    pub open_uri: String,
}

/// The local socket behind `uri`, if it is a local `qemu` URI; `run_dir` is
/// normally /run/libvirt. Remote and non-QEMU URIs go through virsh.
pub fn local_socket(uri: &str, run_dir: &Path) -> Option<LocalSocket> {
    let (scheme, rest) = uri.split_once("://")?;
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if !path.starts_with('/') || path != "/system" {
        return None;
    }
    let explicit = query.split('&').find_map(|kv| kv.strip_prefix("socket=")).map(PathBuf::from);
    let socket = match (scheme, explicit) {
        ("qemu+unix", Some(p)) => p,
        ("qemu" | "qemu+unix", None) => {
            // Split daemons (virtqemud) take over from libvirtd where installed.
            let modular = run_dir.join("virtqemud-sock");
            if modular.exists() {
                modular
            } else {
                run_dir.join("libvirt-sock")
            }
        }
        _ => return None,
    };
    Some(LocalSocket { path: socket, open_uri: "qemu:///system".into() })
}

/// The URI virsh would use when none is configured: `LIBVIRT_DEFAULT_URI`, then
/// `uri_default` in /etc/libvirt/libvirt.conf, then the system QEMU driver (what
/// libvirt picks for root on a KVM host). Found without running virsh, which
/// would cost a process on every monitor.
pub fn default_uri(conf_text: Option<&str>) -> String {
    if let Ok(uri) = std::env::var("LIBVIRT_DEFAULT_URI") {
        if !uri.is_empty() {
            return uri;
        }
    }
    if let Some(text) = conf_text {
        for line in text.lines() {
            let line = line.trim();
            if let Some(value) = line.strip_prefix("uri_default") {
                let value = value.trim_start().trim_start_matches('=').trim().trim_matches('"').trim_matches('\'');
                if !value.is_empty() {
                    return value.to_string();
                }
            }
        }
    }
    "qemu:///system".to_string()
}

/// A domain as listed by the daemon, with its live definition.
#[derive(Clone, Debug)]
pub struct ListedDomain {
    pub name: String,
    pub state: DomainState,
    pub xml: String,
}

pub struct Libvirt<'r> {
    pub uri: String,
    local: Option<LocalSocket>,
    runner: &'r dyn Runner,
}

const VIR_DOMAIN_XML_SECURE: u32 = 1;

impl<'r> Libvirt<'r> {
    #[cfg(test)]
    pub fn new(uri: &str, runner: &'r dyn Runner) -> Libvirt<'r> {
        Self::with_run_dir(uri, runner, Path::new("/run/libvirt"))
    }

    pub fn with_run_dir(uri: &str, runner: &'r dyn Runner, run_dir: &Path) -> Libvirt<'r> {
        Libvirt { uri: uri.to_string(), local: local_socket(uri, run_dir), runner }
    }

    /// Whether domains of this connection run as processes of this node.
    pub fn is_local(&self) -> bool {
        self.local.is_some()
    }

    fn rpc(&self, deadline: Deadline) -> Option<Result<rpc::Client, LibvirtError>> {
        let local = self.local.as_ref()?;
        Some(rpc::Client::open(&local.path, &local.open_uri, deadline).map_err(rpc_error))
    }

    /// `virsh` on this connection with `args`.
    fn virsh_cmd(&self, args: &[&str]) -> Cmd {
        args.iter().fold(Cmd::new(&["virsh", "--quiet", "--connect", &self.uri]), |cmd, a| cmd.arg(*a))
    }

    fn virsh(&self, args: &[&str], deadline: Deadline) -> Result<Output, LibvirtError> {
        self.run_virsh(self.virsh_cmd(args), deadline)
    }

    fn run_virsh(&self, cmd: Cmd, deadline: Deadline) -> Result<Output, LibvirtError> {
        let out = self.runner.run(&cmd, deadline)?;
        if out.success() {
            Ok(out)
        } else {
            Err(classify_virsh_failure(&out))
        }
    }

    /// Runs `ask` once, and once more on a fresh connection if the first
    /// broke: one reset socket must not decide what a monitor answers. A
    /// timeout is not retried (the deadline is spent), nor is any answer.
    fn asking_twice<T>(&self, deadline: Deadline, mut ask: impl FnMut() -> Result<T, LibvirtError>) -> Result<T, LibvirtError> {
        match ask() {
            Err(LibvirtError::Unreachable(first)) if !deadline.expired() => ask().map_err(|e| match e {
                LibvirtError::Unreachable(second) if second != first => LibvirtError::Unreachable(format!("{first}; then {second}")),
                other => other,
            }),
            other => other,
        }
    }

    /// The domain's state; `Ok(None)` only when the daemon answered that it
    /// knows no such domain.
    pub fn state(&self, name: &str, deadline: Deadline) -> Result<Option<DomainState>, LibvirtError> {
        let found = self.asking_twice(deadline, || match self.rpc(deadline) {
            Some(client) => client.and_then(|mut c| {
                let dom = c.lookup_by_name(name).map_err(rpc_error)?;
                c.state(&dom).map(|(s, _)| DomainState::from_code(s)).map_err(rpc_error)
            }),
            None => self.virsh(&["domstate", name], deadline).map(|o| DomainState::from_virsh(&o.stdout)),
        });
        match found {
            Ok(s) => Ok(Some(s)),
            Err(LibvirtError::NoDomain) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every domain the daemon knows, with its live definition. All or
    /// nothing: a domain that could not be read fails the whole list, since
    /// the caller looks for one guest in it and must not miss it. Only a
    /// domain the daemon says is gone (it ended between the list and the
    /// question) is left out.
    pub fn list_with_xml(&self, deadline: Deadline) -> Result<Vec<ListedDomain>, LibvirtError> {
        self.asking_twice(deadline, || self.list_with_xml_once(deadline))
    }

    fn list_with_xml_once(&self, deadline: Deadline) -> Result<Vec<ListedDomain>, LibvirtError> {
        let mut listed = Vec::new();
        if let Some(client) = self.rpc(deadline) {
            let mut c = client?;
            for dom in c.list_all_domains().map_err(rpc_error)? {
                let read = c.state(&dom).and_then(|(state, _)| Ok((state, c.xml_desc(&dom, VIR_DOMAIN_XML_SECURE)?)));
                match read.map_err(rpc_error) {
                    Ok((state, xml)) => listed.push(ListedDomain { name: dom.name, state: DomainState::from_code(state), xml }),
                    Err(LibvirtError::NoDomain) => {}
                    Err(e) => return Err(e),
                }
            }
            return Ok(listed);
        }
        let names = self.virsh(&["list", "--all", "--name"], deadline)?;
        for name in names.stdout.lines().map(str::trim).filter(|n| !n.is_empty()) {
            let read = self.virsh(&["domstate", name], deadline).and_then(|state| {
                let xml = self.virsh(&["dumpxml", "--security-info", name], deadline)?;
                Ok((DomainState::from_virsh(&state.stdout), xml.stdout))
            });
            match read {
                Ok((state, xml)) => listed.push(ListedDomain { name: name.to_string(), state, xml }),
                Err(LibvirtError::NoDomain) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(listed)
    }

    /// Starts a transient domain from `xml` (nothing is left defined on the node).
    pub fn create(&self, xml: &str, deadline: Deadline) -> Result<(), LibvirtError> {
        let cmd = self.virsh_cmd(&["create", "/dev/stdin"]).stdin(xml.as_bytes().to_vec());
        self.run_virsh(cmd, deadline).map(drop)
    }

    /// Asks the guest to shut down; `mode` is virsh's `--mode` list (acpi,agent,…).
    pub fn shutdown(&self, name: &str, mode: Option<&str>, deadline: Deadline) -> Result<(), LibvirtError> {
        match mode {
            Some(m) => self.virsh(&["shutdown", name, "--mode", m], deadline),
            None => self.virsh(&["shutdown", name], deadline),
        }
        .map(drop)
    }

    /// Ends the domain at once. A domain that is already gone or not running
    /// is what destroy asks for, not a failure.
    pub fn destroy(&self, name: &str, deadline: Deadline) -> Result<(), LibvirtError> {
        match self.virsh(&["destroy", name], deadline) {
            Ok(_) | Err(LibvirtError::NoDomain) => Ok(()),
            Err(LibvirtError::Failed(m)) if m.contains("domain is not running") => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Saves the running guest's memory to `path` and stops it.
    pub fn save(&self, name: &str, path: &Path, deadline: Deadline) -> Result<(), LibvirtError> {
        self.virsh(&["save", name, &path.to_string_lossy()], deadline).map(drop)
    }

    pub fn restore(&self, path: &Path, deadline: Deadline) -> Result<(), LibvirtError> {
        self.virsh(&["restore", &path.to_string_lossy()], deadline).map(drop)
    }

    /// The persistent-form definition, with secrets, as virsh dumps it.
    pub fn inactive_xml(&self, name: &str, deadline: Deadline) -> Result<String, LibvirtError> {
        self.virsh(&["dumpxml", "--inactive", "--security-info", name], deadline).map(|o| o.stdout)
    }

    /// Starts a storage pool unless it is active, then refreshes it.
    pub fn ensure_pool(&self, pool: &str, deadline: Deadline) -> Result<(), LibvirtError> {
        match self.virsh(&["pool-start", pool], deadline) {
            Err(LibvirtError::Failed(m)) if m.contains("already active") => {}
            other => other.map(drop)?,
        }
        self.virsh(&["pool-refresh", pool], deadline).map(drop)
    }

    /// Starts a virtual network unless it is active.
    pub fn ensure_network(&self, net: &str, deadline: Deadline) -> Result<(), LibvirtError> {
        match self.virsh(&["net-start", net], deadline) {
            Err(LibvirtError::Failed(m)) if m.contains("already active") => Ok(()),
            other => other.map(drop),
        }
    }
}

fn rpc_error(e: rpc::RpcError) -> LibvirtError {
    match e {
        rpc::RpcError::Remote { code: rpc::ERR_NO_DOMAIN, .. } => LibvirtError::NoDomain,
        rpc::RpcError::Remote { message, .. } => LibvirtError::Failed(message),
        rpc::RpcError::Transport(m) => LibvirtError::Unreachable(m),
        rpc::RpcError::TimedOut(m) => LibvirtError::TimedOut(m),
        rpc::RpcError::Protocol(m) => LibvirtError::Failed(format!("libvirt protocol: {m}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::recording::RecordingRunner;
    use std::time::Duration;

    #[test]
    fn local_qemu_uris_map_to_sockets_and_others_do_not() {
        let run = Path::new("/nonexistent-run");
        assert_eq!(local_socket("qemu:///system", run).unwrap().path, run.join("libvirt-sock"));
        let explicit = local_socket("qemu+unix:///system?socket=/tmp/n1/libvirt-sock", run).unwrap();
        assert_eq!(explicit.path, PathBuf::from("/tmp/n1/libvirt-sock"));
        assert_eq!(explicit.open_uri, "qemu:///system");
        assert_eq!(local_socket("qemu+ssh://nodeb/system", run), None);
        assert_eq!(local_socket("qemu+tcp://127.0.0.1:1/system", run), None);
        assert_eq!(local_socket("qemu:///session", run), None);
        assert_eq!(local_socket("xen:///system", run), None);
        assert_eq!(local_socket("nonsense", run), None);
    }

    #[test]
    fn the_default_uri_comes_from_libvirt_conf_when_set() {
        if std::env::var("LIBVIRT_DEFAULT_URI").is_ok() {
            return; // the environment decides, as it does for virsh
        }
        assert_eq!(default_uri(None), "qemu:///system");
        assert_eq!(default_uri(Some("#uri_default = \"x\"\nuri_default = \"qemu+tcp://h/system\"\n")), "qemu+tcp://h/system");
    }

    #[test]
    fn virsh_failures_are_sorted_into_unreachable_missing_and_refused() {
        let out = |e: &str| Output { code: Some(1), stdout: String::new(), stderr: e.into() };
        assert!(matches!(
            classify_virsh_failure(&out("error: failed to connect to the hypervisor\nerror: Failed to connect socket")),
            LibvirtError::Unreachable(_)
        ));
        assert_eq!(classify_virsh_failure(&out("error: failed to get domain 'x'")), LibvirtError::NoDomain);
        assert!(matches!(classify_virsh_failure(&out("error: internal error: boom")), LibvirtError::Failed(m) if m.contains("boom")));
    }

    #[test]
    fn remote_uris_ask_virsh_and_map_its_answers() {
        let runner = RecordingRunner::new()
            .reply(&["virsh", "--quiet", "--connect", "qemu+ssh://b/system", "domstate", "up"], 0, "paused\n", "")
            .reply(&["virsh", "--quiet", "--connect", "qemu+ssh://b/system", "domstate", "gone"], 1, "", "error: failed to get domain 'gone'\n")
            .fail(&["virsh", "--quiet", "--connect", "qemu+ssh://b/system", "domstate", "slow"], RunError::TimedOut { program: "virsh".into(), after: Duration::from_secs(3) });
        let lv = Libvirt::new("qemu+ssh://b/system", &runner);
        let d = Deadline::after(Duration::from_secs(5));
        assert_eq!(lv.state("up", d), Ok(Some(DomainState::Paused)));
        assert_eq!(lv.state("gone", d), Ok(None));
        assert!(matches!(lv.state("slow", d), Err(LibvirtError::TimedOut(_))));
    }

    #[test]
    fn an_already_active_pool_or_network_is_fine() {
        let uri = "qemu+ssh://b/system";
        let runner = RecordingRunner::new()
            .reply(&["virsh", "--quiet", "--connect", uri, "pool-start", "p"], 1, "", "error: Failed to start pool p\nerror: Requested operation is not valid: storage pool 'p' is already active\n")
            .reply(&["virsh", "--quiet", "--connect", uri, "pool-refresh", "p"], 0, "", "")
            .reply(&["virsh", "--quiet", "--connect", uri, "net-start", "n"], 1, "", "error: network is already active\n");
        let lv = Libvirt::new(uri, &runner);
        let d = Deadline::after(Duration::from_secs(5));
        assert_eq!(lv.ensure_pool("p", d), Ok(()));
        assert!(runner.called(&["virsh", "--quiet", "--connect", uri, "pool-refresh", "p"]));
        assert_eq!(lv.ensure_network("n", d), Ok(()));
    }

    #[test]
    fn destroying_what_is_already_gone_succeeds() {
        let uri = "qemu+ssh://b/system";
        let runner = RecordingRunner::new()
            .reply(&["virsh", "--quiet", "--connect", uri, "destroy", "off"], 1, "", "error: Failed to destroy domain 'off'\nerror: Requested operation is not valid: domain is not running\n")
            .reply(&["virsh", "--quiet", "--connect", uri, "destroy", "gone"], 1, "", "error: failed to get domain 'gone'\n")
            .reply(&["virsh", "--quiet", "--connect", uri, "destroy", "stuck"], 1, "", "error: Failed to terminate process 7 with SIGKILL: Device or resource busy\n");
        let lv = Libvirt::new(uri, &runner);
        let d = Deadline::after(Duration::from_secs(5));
        assert_eq!(lv.destroy("off", d), Ok(()));
        assert_eq!(lv.destroy("gone", d), Ok(()));
        assert!(matches!(lv.destroy("stuck", d), Err(LibvirtError::Failed(m)) if m.contains("busy")));
    }

    #[test]
    fn an_unreachable_socket_is_unreachable() {
        let runner = RecordingRunner::new();
        let lv = Libvirt::new("qemu+unix:///system?socket=/nonexistent/ferry-sock", &runner);
        assert!(matches!(lv.state("x", Deadline::after(Duration::from_secs(1))), Err(LibvirtError::Unreachable(_))));
        assert!(runner.calls.borrow().is_empty(), "no virsh for a local socket");
    }
}
