//! The libvirt backend: domains on any hypervisor libvirt drives (KVM/QEMU here).
//!
//! Reads on a local daemon (domain state, definitions, the list of domains) go
//! straight over libvirt's UNIX socket (`rpc`), because a monitor asks them every
//! few seconds for every guest. Orders (create, shutdown, destroy, save,
//! restore, pools, networks) go through `virsh`, which speaks every transport
//! libvirt has; they are rare, and virsh's own error text is what an operator
//! wants to read. Both are bounded by the caller's deadline.

pub mod domxml;
mod errors;
pub use errors::unsupported_machine_type;
pub mod lease;
mod markindex;
pub mod migration;
pub mod procscan;
pub mod rpc;
mod state;
pub mod tls;
mod uri;
pub mod xdr;

pub use errors::classify_virsh_failure;
use errors::rpc_error;
pub use state::{DomainState, Pause, Status};
pub use uri::{default_uri, local_socket, LocalSocket};

use std::path::Path;

use markindex::{Known, MarkIndex};

use super::{BackendError, GuestState, Hypervisor};
use crate::deadline::Deadline;
use crate::process::{Cmd, Output, Runner};

/// Whether a domain carries an owner mark in ferry's namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MarkSeen {
    Carries(domxml::OwnerMark),
    /// libvirt answered that the domain has no element in ferry's namespace.
    None,
    /// Not asked, or not answered.
    Unread,
}

/// A domain that carries an owner mark, with its state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MarkedDomain {
    pub name: String,
    pub status: Status,
    pub mark: domxml::OwnerMark,
}

pub struct Libvirt<'r> {
    pub uri: String,
    local: Option<LocalSocket>,
    /// Where the index of marks lives (`markindex`): /run/ferry beside
    /// /run/libvirt.
    index_dir: std::path::PathBuf,
    /// The connection to the local daemon, kept for the action's next
    /// question: a handshake is two round trips, and a probe asks twice.
    connection: std::cell::RefCell<Option<rpc::Client>>,
    runner: &'r dyn Runner,
    /// virsh's `--mode` list for graceful shutdown (acpi,agent,…).
    shutdown_mode: Option<String>,
}

impl<'r> Libvirt<'r> {
    #[cfg(test)]
    pub fn new(uri: &str, runner: &'r dyn Runner) -> Libvirt<'r> {
        Self::with_run_dir(uri, runner, Path::new("/run/libvirt"))
    }

    pub fn with_run_dir(uri: &str, runner: &'r dyn Runner, run_dir: &Path) -> Libvirt<'r> {
        let index_dir = run_dir.parent().unwrap_or(run_dir).join("ferry");
        Libvirt { uri: uri.to_string(), local: local_socket(uri, run_dir), index_dir, connection: Default::default(), runner, shutdown_mode: None }
    }

    pub fn shutting_down_by(mut self, mode: Option<&str>) -> Libvirt<'r> {
        self.shutdown_mode = mode.map(String::from);
        self
    }

    /// Whether domains of this connection run as processes of this node.
    pub fn is_local(&self) -> bool {
        self.local.is_some()
    }

    /// Asks `ask` over the local daemon's socket; `None` when the URI is not
    /// local (virsh is the way). The connection is kept only after a clean
    /// answer: after a broken or timed-out conversation a late reply may
    /// still be on its way, so the next question gets a fresh connection.
    fn rpc<T>(&self, deadline: Deadline, ask: impl FnOnce(&mut rpc::Client) -> Result<T, BackendError>) -> Option<Result<T, BackendError>> {
        let local = self.local.as_ref()?;
        let kept = self.connection.borrow_mut().take();
        let mut client = match kept {
            Some(mut client) => {
                client.set_deadline(deadline);
                client
            }
            None => match rpc::Client::open(&local.path, &local.open_uri, deadline) {
                Ok(client) => client,
                Err(e) => return Some(Err(rpc_error(e))),
            },
        };
        let answer = ask(&mut client);
        if matches!(answer, Ok(_) | Err(BackendError::NoSuchGuest)) {
            *self.connection.borrow_mut() = Some(client);
        }
        Some(answer)
    }

    /// `virsh` on this connection with `args`.
    fn virsh_cmd(&self, args: &[&str]) -> Cmd {
        args.iter().fold(Cmd::new(&["virsh", "--quiet", "--connect", &self.uri]), |cmd, a| cmd.arg(*a))
    }

    fn virsh(&self, args: &[&str], deadline: Deadline) -> Result<Output, BackendError> {
        self.run_virsh(self.virsh_cmd(args), deadline)
    }

    fn run_virsh(&self, cmd: Cmd, deadline: Deadline) -> Result<Output, BackendError> {
        let out = self.runner.run(&cmd, deadline)?;
        if out.success() {
            return Ok(out);
        }
        match errors::unexplained_lookup_failure(&out) {
            Some(name) => Err(self.confirm_absent(&name, &out, deadline)),
            None => Err(classify_virsh_failure(&out)),
        }
    }

    /// virsh failed to look `name` up and gave no reason (see
    /// `classify_virsh_failure`): absent only if the daemon, asked again,
    /// lists its domains in full without it.
    fn confirm_absent(&self, name: &str, lookup: &Output, deadline: Deadline) -> BackendError {
        let failed = lookup.complaint();
        match self.runner.run(&self.virsh_cmd(&["list", "--all", "--name"]), deadline) {
            Ok(list) if list.success() => {
                if list.stdout.lines().any(|l| l.trim() == name) {
                    BackendError::Failed(format!("{failed} (libvirt still lists {name}, so the lookup failed for another reason)"))
                } else {
                    BackendError::NoSuchGuest
                }
            }
            Ok(list) => match classify_virsh_failure(&list) {
                BackendError::Unreachable(why) => BackendError::Unreachable(format!("{failed}; then {why}")),
                other => BackendError::Failed(format!("{failed}; listing the domains to confirm failed: {other}")),
            },
            Err(e) => BackendError::Failed(format!("{failed}; listing the domains to confirm failed: {e}")),
        }
    }

    /// Runs `ask` once, and once more on a fresh connection if the first
    /// broke: one reset socket must not decide what a monitor answers. A
    /// timeout is not retried (the deadline is spent), nor is any answer.
    fn asking_twice<T>(&self, deadline: Deadline, mut ask: impl FnMut() -> Result<T, BackendError>) -> Result<T, BackendError> {
        match ask() {
            Err(BackendError::Unreachable(first)) if !deadline.expired() => ask().map_err(|e| match e {
                BackendError::Unreachable(second) if second != first => {
                    BackendError::Unreachable(format!("{first}; then {}", second.trim_start_matches("libvirt unreachable: ")))
                }
                other => other,
            }),
            other => other,
        }
    }

    /// The domain's state; `Ok(None)` only when the daemon answered that it
    /// knows no such domain.
    pub fn state(&self, name: &str, deadline: Deadline) -> Result<Option<DomainState>, BackendError> {
        self.status(name, deadline).map(|found| found.map(|s| s.state))
    }

    /// The domain's state with libvirt's reason for it; `Ok(None)` only
    /// when the daemon answered that it knows no such domain.
    pub fn status(&self, name: &str, deadline: Deadline) -> Result<Option<Status>, BackendError> {
        Ok(self.look_up(name, false, deadline)?.map(|(status, _)| status))
    }

    /// `status`, and whether the domain carries an owner mark, read on the
    /// same connection (one more small round trip). Over virsh (a remote
    /// URI) the mark is not read: it would cost a process per monitor.
    pub fn status_and_mark(&self, name: &str, deadline: Deadline) -> Result<Option<(Status, MarkSeen)>, BackendError> {
        self.look_up(name, true, deadline)
    }

    /// The one lookup behind `status` and `status_and_mark`: asked again on
    /// a fresh connection once, and `Ok(None)` only for libvirt's "no such
    /// domain".
    fn look_up(&self, name: &str, with_mark: bool, deadline: Deadline) -> Result<Option<(Status, MarkSeen)>, BackendError> {
        let found = self.asking_twice(deadline, || {
            let asked = self.rpc(deadline, |c| {
                let dom = c.lookup_by_name(name).map_err(rpc_error)?;
                let ((state, reason), mark) = if with_mark {
                    let (state, mark) = c.state_and_metadata(&dom, domxml::MARK_NAMESPACE).map_err(rpc_error)?;
                    (state, Some(mark))
                } else {
                    (c.state(&dom).map_err(rpc_error)?, None)
                };
                let mark = match mark {
                    None => MarkSeen::Unread,
                    Some(Ok(Some(element))) => domxml::mark_in_element(&element).map_or(MarkSeen::Unread, MarkSeen::Carries),
                    Some(Ok(None)) => MarkSeen::None,
                    // The state is known; the mark only decides an adoption.
                    Some(Err(_)) => MarkSeen::Unread,
                };
                Ok((Status::new(DomainState::from_code(state), reason), mark))
            });
            asked.unwrap_or_else(|| self.virsh(&["domstate", "--reason", name], deadline).map(|o| (Status::from_virsh(&o.stdout), MarkSeen::Unread)))
        });
        match found {
            Ok(found) => Ok(Some(found)),
            Err(BackendError::NoSuchGuest) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Adds `mark` to the running domain's live definition (`virsh
    /// metadata --live`): a guest this resource's agent did not start
    /// (heartbeat:VirtualDomain, before a switch of provider) can then be
    /// found by its mark too. Its persistent definition, if any, is left
    /// as the operator wrote it.
    pub fn add_owner_mark(&self, name: &str, mark: &domxml::OwnerMark, deadline: Deadline) -> Result<(), BackendError> {
        let element = domxml::mark_for_metadata_set(mark);
        self.virsh(&["metadata", name, domxml::MARK_NAMESPACE, "--key", "ferry", "--set", &element, "--live"], deadline)?;
        // The index of marks may say this domain has none (see markindex).
        MarkIndex::forget(&self.index_dir).map_err(|e| {
            BackendError::Failed(format!("{name} is marked, but the index of marks in {} could not be cleared, so a search by mark may miss it: {e}", self.index_dir.display()))
        })
    }

    /// The running domain that carries `wanted`, with its state; `Ok(None)`
    /// only when every running domain was read and none carries it. All or
    /// nothing: a domain that could not be read fails the search, which
    /// must not miss the guest. Only a domain the daemon says is gone (it
    /// ended between the list and the question) is left out.
    ///
    /// Over the local socket only the mark is asked of a domain, all the
    /// questions on one connection at once, and only of domains this node's
    /// index of marks does not know yet (`markindex`): a node with hundreds
    /// of guests costs the list and a small file, not hundreds of questions
    /// (issue 26). Over virsh (a remote URI) each definition is dumped.
    pub fn find_marked(&self, wanted: &domxml::OwnerMark, deadline: Deadline) -> Result<Option<MarkedDomain>, BackendError> {
        self.asking_twice(deadline, || {
            self.rpc(deadline, |c| self.find_marked_over(c, wanted))
                .unwrap_or_else(|| Ok(self.marked_over_virsh(deadline)?.into_iter().find(|d| &d.mark == wanted && d.status.state.is_active())))
        })
    }

    fn find_marked_over(&self, c: &mut rpc::Client, wanted: &domxml::OwnerMark) -> Result<Option<MarkedDomain>, BackendError> {
        // Opened before the list is read: see markindex's comment.
        let daemon = c.peer_pid().and_then(|pid| markindex::daemon_key(pid, Path::new("/proc")));
        let mut index = MarkIndex::open(&self.index_dir, daemon.as_deref());
        let domains = c.list_all_domains(true).map_err(rpc_error)?;
        // A mark the index gives another resource is trusted (marks never
        // pass between resources); one it gives this resource is confirmed.
        let ask: Vec<rpc::RemoteDomain> = domains
            .iter()
            .filter(|d| match index.get(&(d.id, d.uuid)) {
                None => true,
                Some(Known::Marked(m)) => m == wanted,
                Some(Known::Unmarked) => false,
            })
            .cloned()
            .collect();
        let marks = c.metadata_elements(&ask, domxml::MARK_NAMESPACE).map_err(rpc_error)?;
        let (mut read, mut found) = (Vec::new(), None);
        for (dom, mark) in ask.into_iter().zip(marks) {
            let known = match mark.map_err(rpc_error) {
                Ok(Some(element)) => match domxml::mark_in_element(&element) {
                    Some(mark) => Known::Marked(mark),
                    // Not a mark ferry wrote: asked again next time.
                    None => continue,
                },
                Ok(None) => Known::Unmarked,
                Err(BackendError::NoSuchGuest) => continue,
                Err(e) => return Err(e),
            };
            if found.is_none() && known == Known::Marked(wanted.clone()) {
                found = Some(dom.clone());
            }
            read.push(((dom.id, dom.uuid), known));
        }
        index.record(&read, domains.len());
        let Some(dom) = found else { return Ok(None) };
        match c.state(&dom).map_err(rpc_error) {
            Ok((state, reason)) => Ok(Some(MarkedDomain { name: dom.name, status: Status::new(DomainState::from_code(state), reason), mark: wanted.clone() })),
            Err(BackendError::NoSuchGuest) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every domain that carries an owner mark, running or not, with its
    /// state (`ferry status`). All or nothing, as `find_marked`; every
    /// domain is asked (a defined domain's mark can be edited at will).
    pub fn marked_domains(&self, deadline: Deadline) -> Result<Vec<MarkedDomain>, BackendError> {
        self.asking_twice(deadline, || self.rpc(deadline, |c| self.all_marked_over(c)).unwrap_or_else(|| self.marked_over_virsh(deadline)))
    }

    fn all_marked_over(&self, c: &mut rpc::Client) -> Result<Vec<MarkedDomain>, BackendError> {
        let domains = c.list_all_domains(false).map_err(rpc_error)?;
        let marks = c.metadata_elements(&domains, domxml::MARK_NAMESPACE).map_err(rpc_error)?;
        let mut marked = Vec::new();
        for (dom, mark) in domains.into_iter().zip(marks) {
            let mark = match mark.map_err(rpc_error) {
                Ok(Some(element)) => domxml::mark_in_element(&element),
                Ok(None) | Err(BackendError::NoSuchGuest) => None,
                Err(e) => return Err(e),
            };
            let Some(mark) = mark else { continue };
            match c.state(&dom).map_err(rpc_error) {
                Ok((state, reason)) => marked.push(MarkedDomain { name: dom.name, status: Status::new(DomainState::from_code(state), reason), mark }),
                Err(BackendError::NoSuchGuest) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(marked)
    }

    /// Every domain's mark over virsh: each definition dumped.
    fn marked_over_virsh(&self, deadline: Deadline) -> Result<Vec<MarkedDomain>, BackendError> {
        let mut marked = Vec::new();
        let names = self.virsh(&["list", "--all", "--name"], deadline)?;
        for name in names.stdout.lines().map(str::trim).filter(|n| !n.is_empty()) {
            let read = self.virsh(&["domstate", "--reason", name], deadline).and_then(|state| {
                let xml = self.virsh(&["dumpxml", "--security-info", name], deadline)?;
                Ok((Status::from_virsh(&state.stdout), xml.stdout))
            });
            match read {
                Ok((status, xml)) => {
                    if let Some(mark) = domxml::read_mark(&xml) {
                        marked.push(MarkedDomain { name: name.to_string(), status, mark });
                    }
                }
                Err(BackendError::NoSuchGuest) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(marked)
    }

    /// Starts a transient domain from `xml` (nothing is left defined on the node).
    pub fn create(&self, xml: &str, deadline: Deadline) -> Result<(), BackendError> {
        let cmd = self.virsh_cmd(&["create", "/dev/stdin"]).stdin(xml.as_bytes().to_vec());
        self.run_virsh(cmd, deadline).map(drop)
    }

    /// The persistent-form definition, with secrets, as virsh dumps it.
    pub fn inactive_xml(&self, name: &str, deadline: Deadline) -> Result<String, BackendError> {
        self.virsh(&["dumpxml", "--inactive", "--security-info", name], deadline).map(|o| o.stdout)
    }

    /// Starts a storage pool unless it is active, then refreshes it.
    pub fn ensure_pool(&self, pool: &str, deadline: Deadline) -> Result<(), BackendError> {
        match self.virsh(&["pool-start", pool], deadline) {
            Err(BackendError::Failed(m)) if m.contains("already active") => {}
            other => other.map(drop)?,
        }
        self.virsh(&["pool-refresh", pool], deadline).map(drop)
    }

    /// Which disks report an error and what it is ("vda: no space"), as
    /// `virsh domblkerror` lists them; empty when none does.
    pub fn disk_errors(&self, name: &str, deadline: Deadline) -> Result<String, BackendError> {
        let out = self.virsh(&["domblkerror", name], deadline)?;
        let errors: Vec<&str> = out.stdout.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with("No errors")).collect();
        Ok(errors.join("; "))
    }

    /// The running domain's live definition, as libvirt holds it now (it
    /// may differ from the config file, which can be edited at any time).
    pub fn live_xml(&self, name: &str, deadline: Deadline) -> Result<String, BackendError> {
        self.virsh(&["dumpxml", name], deadline).map(|o| o.stdout)
    }

    /// Asks the guest itself, through its QEMU guest agent, whether it is
    /// alive (guest-ping). libvirt waits up to `timeout` for the agent; the
    /// caller's deadline bounds virsh as a whole.
    pub fn ping_guest_agent(&self, name: &str, timeout: std::time::Duration, deadline: Deadline) -> Result<(), BackendError> {
        let secs = timeout.as_secs().max(1).to_string();
        let bound = deadline.within(timeout + std::time::Duration::from_secs(2));
        self.virsh(&["qemu-agent-command", name, "--timeout", &secs, r#"{"execute":"guest-ping"}"#], bound).map(drop)
    }

    /// Starts a virtual network unless it is active.
    pub fn ensure_network(&self, net: &str, deadline: Deadline) -> Result<(), BackendError> {
        match self.virsh(&["net-start", net], deadline) {
            Err(BackendError::Failed(m)) if m.contains("already active") => Ok(()),
            other => other.map(drop),
        }
    }
}

impl Hypervisor for Libvirt<'_> {
    fn guest_state(&self, name: &str, deadline: Deadline) -> Result<Option<GuestState>, BackendError> {
        // `status` already asks again on a fresh connection once.
        let Some(status) = self.status(name, deadline)? else { return Ok(None) };
        let (state, handover) = (status.state, status.mid_handover());
        Ok(Some(match state {
            DomainState::Running | DomainState::Blocked if handover => GuestState::RunningMidHandover,
            DomainState::Running | DomainState::Blocked => GuestState::Running,
            DomainState::Paused => GuestState::Paused { handover },
            DomainState::ShuttingDown => GuestState::ShuttingDown,
            DomainState::ShutOff => GuestState::Off,
            DomainState::Crashed => GuestState::Crashed,
            other => GuestState::Other(other.to_string()),
        }))
    }

    fn request_shutdown(&self, name: &str, deadline: Deadline) -> Result<(), BackendError> {
        match &self.shutdown_mode {
            Some(m) => self.virsh(&["shutdown", name, "--mode", m], deadline),
            None => self.virsh(&["shutdown", name], deadline),
        }
        .map(drop)
    }

    /// A domain that is already gone or not running is what destroy asks
    /// for, not a failure.
    fn destroy(&self, name: &str, deadline: Deadline) -> Result<(), BackendError> {
        match self.virsh(&["destroy", name], deadline) {
            Ok(_) | Err(BackendError::NoSuchGuest) => Ok(()),
            Err(BackendError::Failed(m)) if m.contains("domain is not running") => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn save(&self, name: &str, image: &Path, deadline: Deadline) -> Result<(), BackendError> {
        self.virsh(&["save", name, &image.to_string_lossy()], deadline).map(drop)
    }

    fn restore(&self, image: &Path, deadline: Deadline) -> Result<(), BackendError> {
        self.virsh(&["restore", &image.to_string_lossy()], deadline).map(drop)
    }
}


#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::recording::RecordingRunner;
    use crate::process::RunError;
    use std::time::Duration;

    #[test]
    fn remote_uris_ask_virsh_and_map_its_answers() {
        let runner = RecordingRunner::new()
            .reply(&["virsh", "--quiet", "--connect", "qemu+ssh://b/system", "domstate", "--reason", "up"], 0, "paused (I/O error)\n", "")
            .reply(&["virsh", "--quiet", "--connect", "qemu+ssh://b/system", "domstate", "--reason", "gone"], 1, "", "error: failed to get domain 'gone'\n")
            .reply(&["virsh", "--quiet", "--connect", "qemu+ssh://b/system", "list", "--all", "--name"], 0, "up\nslow\n\n", "")
            .fail(&["virsh", "--quiet", "--connect", "qemu+ssh://b/system", "domstate", "--reason", "slow"], RunError::TimedOut { program: "virsh".into(), after: Duration::from_secs(3) });
        let libvirt = Libvirt::new("qemu+ssh://b/system", &runner);
        let d = Deadline::after(Duration::from_secs(5));
        assert_eq!(libvirt.state("up", d), Ok(Some(DomainState::Paused)));
        assert_eq!(libvirt.status("up", d).unwrap().unwrap().pause(), Some(Pause::OnIoError));
        assert_eq!(libvirt.state("gone", d), Ok(None));
        assert!(matches!(libvirt.state("slow", d), Err(BackendError::TimedOut(_))));
    }

    /// virsh prints "failed to get domain" alone both for a missing domain
    /// and for a lookup the daemon never answered (it died after virsh
    /// connected): only the daemon's full list tells them apart.
    #[test]
    fn virsh_s_bare_lookup_failure_is_an_absence_only_when_the_list_confirms_it() {
        let uri = "qemu+ssh://b/system";
        let lookup = |name: &'static str| vec!["virsh", "--quiet", "--connect", uri, "domstate", "--reason", name];
        let list = ["virsh", "--quiet", "--connect", uri, "list", "--all", "--name"];
        let d = Deadline::after(Duration::from_secs(5));
        let listed = RecordingRunner::new()
            .reply(&lookup("vm"), 1, "", "error: failed to get domain 'vm'\n")
            .reply(&list, 0, "other\nvm\n", "");
        assert!(matches!(Libvirt::new(uri, &listed).state("vm", d), Err(BackendError::Failed(m)) if m.contains("still lists vm")));
        let died = RecordingRunner::new()
            .reply(&lookup("vm"), 1, "", "error: failed to get domain 'vm'\n")
            .reply(&list, 1, "", "error: failed to connect to the hypervisor\nerror: Failed to connect socket to '/run/libvirt/libvirt-sock': Connection refused\n");
        assert!(matches!(Libvirt::new(uri, &died).state("vm", d), Err(BackendError::Unreachable(_))));
        let absent = RecordingRunner::new()
            .reply(&lookup("vm"), 1, "", "error: failed to get domain 'vm'\n")
            .reply(&list, 0, "other\n\n", "");
        assert_eq!(Libvirt::new(uri, &absent).state("vm", d), Ok(None));
        // destroy of a domain the daemon could not look up is not "already gone".
        let destroy = RecordingRunner::new()
            .reply(&["virsh", "--quiet", "--connect", uri, "destroy", "vm"], 1, "", "error: failed to get domain 'vm'\n")
            .reply(&list, 0, "vm\n", "");
        assert!(Libvirt::new(uri, &destroy).destroy("vm", d).is_err());
    }

    #[test]
    fn an_already_active_pool_or_network_is_fine() {
        let uri = "qemu+ssh://b/system";
        let runner = RecordingRunner::new()
            .reply(&["virsh", "--quiet", "--connect", uri, "pool-start", "p"], 1, "", "error: Failed to start pool p\nerror: Requested operation is not valid: storage pool 'p' is already active\n")
            .reply(&["virsh", "--quiet", "--connect", uri, "pool-refresh", "p"], 0, "", "")
            .reply(&["virsh", "--quiet", "--connect", uri, "net-start", "n"], 1, "", "error: network is already active\n");
        let libvirt = Libvirt::new(uri, &runner);
        let d = Deadline::after(Duration::from_secs(5));
        assert_eq!(libvirt.ensure_pool("p", d), Ok(()));
        assert!(runner.called(&["virsh", "--quiet", "--connect", uri, "pool-refresh", "p"]));
        assert_eq!(libvirt.ensure_network("n", d), Ok(()));
    }

    #[test]
    fn destroying_what_is_already_gone_succeeds() {
        let uri = "qemu+ssh://b/system";
        let runner = RecordingRunner::new()
            .reply(&["virsh", "--quiet", "--connect", uri, "destroy", "off"], 1, "", "error: Failed to destroy domain 'off'\nerror: Requested operation is not valid: domain is not running\n")
            .reply(&["virsh", "--quiet", "--connect", uri, "destroy", "gone"], 1, "", "error: failed to get domain 'gone'\n")
            .reply(&["virsh", "--quiet", "--connect", uri, "list", "--all", "--name"], 0, "off\nstuck\n", "")
            .reply(&["virsh", "--quiet", "--connect", uri, "destroy", "stuck"], 1, "", "error: Failed to terminate process 7 with SIGKILL: Device or resource busy\n");
        let libvirt = Libvirt::new(uri, &runner);
        let d = Deadline::after(Duration::from_secs(5));
        assert_eq!(libvirt.destroy("off", d), Ok(()));
        assert_eq!(libvirt.destroy("gone", d), Ok(()));
        assert!(matches!(libvirt.destroy("stuck", d), Err(BackendError::Failed(m)) if m.contains("busy")));
    }

    #[test]
    fn an_unreachable_socket_is_unreachable() {
        let runner = RecordingRunner::new();
        let libvirt = Libvirt::new("qemu+unix:///system?socket=/nonexistent/ferry-sock", &runner);
        assert!(matches!(libvirt.state("x", Deadline::after(Duration::from_secs(1))), Err(BackendError::Unreachable(_))));
        assert!(runner.calls.borrow().is_empty(), "no virsh for a local socket");
    }
}
