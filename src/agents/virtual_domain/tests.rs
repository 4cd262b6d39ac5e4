//! Unit tests of the agent's decisions, with libvirt's answers scripted through
//! the recording runner: the states and failures a real daemon will not
//! produce on demand. The real daemon carries the integration tests.

use super::*;
use crate::agents::common::on_path;
use crate::ocf::env::OcfEnv;
use crate::ocf::metadata::Metadata;
use crate::ocf::OcfCode;
use crate::process::recording::RecordingRunner;
use crate::process::RunError;
use std::rc::Rc;
use std::time::Duration;

const URI: &str = "qemu+ssh://nodeb/system";

struct Fixture {
    dir: PathBuf,
    env: OcfEnv,
}

impl Fixture {
    fn new(tag: &str) -> Fixture {
        let dir = std::env::temp_dir().join(format!("ferry-vd-unit-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("vm.xml"), "<domain type='kvm'><name>vm</name><vcpu>2</vcpu></domain>").unwrap();
        let vars = [
            ("OCF_RESOURCE_INSTANCE", "r1".to_string()),
            ("OCF_RESKEY_config", dir.join("vm.xml").display().to_string()),
            ("OCF_RESKEY_hypervisor", URI.to_string()),
        ];
        let env = OcfEnv::from_vars(vars.iter().map(|(k, v)| (k.to_string(), v.clone())));
        Fixture { dir, env }
    }

    fn agent(&self, runner: &Rc<RecordingRunner>) -> VirtualDomain {
        VirtualDomain {
            runner: Box::new(runner.clone()),
            proc_root: self.dir.join("proc"),
            libvirt_run_dir: self.dir.join("run"),
            libvirt_conf: self.dir.join("libvirt.conf"),
            slot_dir: self.dir.join("slots"),
        }
    }

    fn with<T>(&self, runner: RecordingRunner, act: impl FnOnce(&VirtualDomain, &Context) -> T) -> (T, Rc<RecordingRunner>) {
        self.with_deadline(runner, Deadline::after(Duration::from_secs(30)), act)
    }

    fn with_deadline<T>(&self, runner: RecordingRunner, deadline: Deadline, act: impl FnOnce(&VirtualDomain, &Context) -> T) -> (T, Rc<RecordingRunner>) {
        let runner = Rc::new(runner);
        let params = Metadata::parse(METADATA).unwrap().resolve(&self.env.params).unwrap();
        let ctx = Context { env: &self.env, params: &params, deadline };
        let out = act(&self.agent(&runner), &ctx);
        (out, runner)
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn virsh(args: &[&'static str]) -> Vec<&'static str> {
    let mut v = vec!["virsh", "--quiet", "--connect", URI];
    v.extend_from_slice(args);
    v
}

fn monitor_with_state(state: &str) -> Result<Health, OcfError> {
    let f = Fixture::new(&format!("state-{}", state.trim().replace([' ', '(', ')', '/'], "-")));
    let runner = RecordingRunner::new()
        .reply(&virsh(&["domstate", "--reason", "vm"]), 0, state, "")
        .reply(&virsh(&["domblkerror", "vm"]), 0, "vda: no space\n\n", "")
        // A shut-off "vm" sends locate to the marked guests: there are none.
        .reply(&virsh(&["list", "--all", "--name"]), 0, "\n", "");
    f.with(runner, |vd, ctx| vd.monitor(ctx)).0
}

/// monitor through virsh's words, for the answers that need no action
/// (the whole table is unit-tested in `health`).
#[test]
fn monitor_maps_libvirt_states_and_reasons() {
    assert_eq!(monitor_with_state("running (booted)\n"), Ok(Health::Running));
    assert_eq!(monitor_with_state("paused (migrating)\n"), Ok(Health::Running));
    assert_eq!(monitor_with_state("idle (unknown)\n"), Ok(Health::Running));
    assert_eq!(monitor_with_state("shut off (destroyed)\n"), Ok(Health::NotRunning));
    assert!(matches!(monitor_with_state("paused (user)\n"), Ok(Health::Degraded(w)) if w.contains("by an operator")));
    assert!(matches!(monitor_with_state("pmsuspended (unknown)\n"), Ok(Health::Degraded(_))));
    for (state, words) in [
        ("paused (I/O error)\n", "paused on a disk I/O error (vda: no space)"),
        ("paused (watchdog)\n", "watchdog"),
        ("paused (unknown)\n", "does not explain"),
        ("crashed (panicked)\n", "guest panicked"),
        ("crashed (unknown)\n", "vm has crashed"),
        ("no state\n", "no state"),
    ] {
        let e = monitor_with_state(state).unwrap_err();
        assert_eq!(e.code, OcfCode::ErrGeneric, "{state}");
        assert!(e.reason.contains(words), "{state}: {}", e.reason);
    }
}

#[test]
fn a_shutdown_that_outlasts_the_monitor_fails_it_and_one_that_ends_is_judged_after() {
    let f = Fixture::new("in-shutdown");
    let runner = RecordingRunner::new()
        .reply_once(&virsh(&["domstate", "--reason", "vm"]), 0, "in shutdown (user)\n", "")
        .reply(&virsh(&["domstate", "--reason", "vm"]), 0, "shut off (shutdown)\n", "");
    assert_eq!(f.with(runner, |vd, ctx| vd.monitor(ctx)).0, Ok(Health::NotRunning));
    let mut f = Fixture::new("stuck-in-shutdown");
    f.env.meta.insert("timeout".into(), "3000".into());
    let runner = RecordingRunner::new().reply(&virsh(&["domstate", "--reason", "vm"]), 0, "in shutdown (user)\n", "");
    let ctx_deadline = Deadline::after(Duration::from_secs(3));
    let e = f.with_deadline(runner, ctx_deadline, |vd, ctx| vd.monitor(ctx)).0.unwrap_err();
    assert!(e.reason.contains("shutting down for"), "{}", e.reason);
}

#[test]
fn io_error_policy_resume_resumes_and_reports_storage_that_still_fails() {
    let mut f = Fixture::new("io-resume");
    f.env.params.insert("io_error_policy".into(), "resume".into());
    let held = RecordingRunner::new()
        .reply_once(&virsh(&["domstate", "--reason", "vm"]), 0, "paused (I/O error)\n", "")
        .reply(&virsh(&["resume", "vm"]), 0, "", "")
        .reply(&virsh(&["domstate", "--reason", "vm"]), 0, "running (unpaused)\n", "")
        .reply(&virsh(&["domblkerror", "vm"]), 0, "No errors found\n", "");
    let (result, runner) = f.with(held, |vd, ctx| vd.monitor(ctx));
    assert_eq!(result, Ok(Health::Running));
    assert!(runner.called(&virsh(&["resume", "vm"])));
    let failing = RecordingRunner::new()
        .reply(&virsh(&["domstate", "--reason", "vm"]), 0, "paused (I/O error)\n", "")
        .reply(&virsh(&["resume", "vm"]), 0, "", "")
        .reply(&virsh(&["domblkerror", "vm"]), 1, "", "error: failed to get domain 'vm'\n")
        .reply(&virsh(&["list", "--all", "--name"]), 0, "vm\n", "");
    let result = f.with(failing, |vd, ctx| vd.monitor(ctx)).0;
    assert!(matches!(&result, Ok(Health::Degraded(w)) if w.contains("again after a resume")), "{result:?}");
}

#[test]
fn depth_ten_asks_the_guest_agent_and_silence_means_what_the_operator_said() {
    let agent = virsh(&["qemu-agent-command", "vm", "--timeout", "5"]);
    let running = || RecordingRunner::new().reply(&virsh(&["domstate", "--reason", "vm"]), 0, "running (booted)\n", "");
    let mut f = Fixture::new("deep");
    let (result, runner) = f.with(running(), |vd, ctx| vd.monitor(ctx));
    assert_eq!(result, Ok(Health::Running));
    assert!(!runner.called(&agent), "depth 0 never asks the guest");
    f.env.check_level = 10;
    assert_eq!(f.with(running().reply(&agent, 0, "{\"return\":{}}\n", ""), |vd, ctx| vd.monitor(ctx)).0, Ok(Health::Running));
    let silent = || {
        running()
            .reply(&agent, 1, "", "error: Guest agent is not responding: Guest agent not available for now\n")
            .reply(&virsh(&["dumpxml", "vm"]), 0, WITH_AGENT_CHANNEL, "")
    };
    let e = f.with(silent(), |vd, ctx| vd.monitor(ctx)).0.unwrap_err();
    assert!(e.reason.contains("guest agent did not answer") && e.reason.contains("not available"), "{}", e.reason);
    f.env.params.insert("guest_agent_silence".into(), "degraded".into());
    assert!(matches!(f.with(silent(), |vd, ctx| vd.monitor(ctx)).0, Ok(Health::Degraded(_))));
    let paused = RecordingRunner::new().reply(&virsh(&["domstate", "--reason", "vm"]), 0, "paused (user)\n", "");
    let (_, runner) = f.with(paused, |vd, ctx| vd.monitor(ctx));
    assert!(!runner.called(&agent), "a paused guest cannot answer; it is judged by its state");
}

const WITH_AGENT_CHANNEL: &str = "<domain type='kvm'><name>vm</name><devices><channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0' state='connected'/></channel></devices></domain>";

/// A guest whose definition has no agent channel cannot be asked: libvirt
/// says so at once, and so does the monitor, whatever guest_agent_silence
/// says. Only a failed ping costs the read of the live definition.
#[test]
fn depth_ten_of_a_guest_without_an_agent_channel_says_so_and_leaves_it_running() {
    let agent = virsh(&["qemu-agent-command", "vm", "--timeout", "5"]);
    let dumpxml = virsh(&["dumpxml", "vm"]);
    let running = || RecordingRunner::new().reply(&virsh(&["domstate", "--reason", "vm"]), 0, "running (booted)\n", "");
    let unconfigured = || running().reply(&agent, 1, "", "error: argument unsupported: QEMU guest agent is not configured\n");
    let mut f = Fixture::new("no-channel");
    f.env.check_level = 10;
    for silence in ["fail", "degraded"] {
        f.env.params.insert("guest_agent_silence".into(), silence.into());
        let (result, runner) = f.with(unconfigured().reply(&dumpxml, 0, "<domain type='kvm'><name>vm</name><devices><channel type='spicevmc'><target type='virtio' name='com.redhat.spice.0'/></channel></devices></domain>", ""), |vd, ctx| vd.monitor(ctx));
        assert!(matches!(&result, Ok(Health::Degraded(why)) if why.contains("vm runs, but has no guest agent channel")), "{silence}: {result:?}");
        assert!(runner.called(&dumpxml));
    }
    // A definition that cannot be read: the silence is judged as silence.
    f.env.params.insert("guest_agent_silence".into(), "fail".into());
    let unread = f.with(unconfigured().reply(&dumpxml, 1, "", "error: failed to get domain 'vm'\n").reply(&virsh(&["list", "--all", "--name"]), 0, "vm\n", ""), |vd, ctx| vd.monitor(ctx)).0;
    assert!(matches!(&unread, Err(e) if e.reason.contains("did not answer")), "{unread:?}");
    // An agent that answers costs no read of the definition.
    let (result, runner) = f.with(running().reply(&agent, 0, "{\"return\":{}}\n", ""), |vd, ctx| vd.monitor(ctx));
    assert_eq!(result, Ok(Health::Running));
    assert!(!runner.called(&dumpxml));
}

#[test]
fn a_remote_daemon_that_hangs_fails_the_monitor_instead_of_answering_stopped() {
    let f = Fixture::new("hang");
    let runner = RecordingRunner::new().fail(&virsh(&["domstate", "--reason", "vm"]), RunError::TimedOut { program: "virsh".into(), after: Duration::from_secs(9) });
    let err = f.with(runner, |vd, ctx| vd.monitor(ctx)).0.unwrap_err();
    assert_eq!(err.code, OcfCode::ErrGeneric);
    assert!(err.reason.contains("cannot tell whether the guest runs here"), "{}", err.reason);
}

#[test]
fn a_destroy_that_fails_fails_the_stop_with_libvirts_reason() {
    let mut f = Fixture::new("destroy");
    f.env.params.insert("force_stop".into(), "true".into());
    let runner = RecordingRunner::new()
        .reply(&virsh(&["domstate", "--reason", "vm"]), 0, "running (booted)\n", "")
        .reply(&virsh(&["destroy", "vm"]), 1, "", "error: Failed to terminate process 4242 with SIGKILL: Device or resource busy\n");
    let (result, runner) = f.with(runner, |vd, ctx| vd.stop(ctx));
    let err = result.unwrap_err();
    assert_eq!(err.code, OcfCode::ErrGeneric);
    assert!(err.reason.contains("cannot destroy vm") && err.reason.contains("Device or resource busy"), "{}", err.reason);
    assert!(!runner.called(&virsh(&["shutdown"])), "force_stop never asks the guest");
}

#[test]
fn start_of_a_running_guest_changes_nothing() {
    let f = Fixture::new("running");
    let runner = RecordingRunner::new().reply(&virsh(&["domstate", "--reason", "vm"]), 0, "running (booted)\n", "");
    let (result, runner) = f.with(runner, |vd, ctx| vd.start(ctx));
    if on_path("virsh") {
        assert_eq!(result, Ok(()));
        assert_eq!(runner.calls.borrow().len(), 1, "only the state question");
    } else {
        assert_eq!(result.unwrap_err().code, OcfCode::ErrInstalled);
    }
}

#[test]
fn a_crashed_guest_is_destroyed_before_a_fresh_start_and_created_with_its_mark() {
    if !on_path("virsh") {
        return; // start checks for virsh before anything else; covered by integration tests
    }
    let f = Fixture::new("crashed");
    let runner = RecordingRunner::new()
        .reply_once(&virsh(&["domstate", "--reason", "vm"]), 0, "crashed (panicked)\n", "")
        .reply(&virsh(&["destroy", "vm"]), 0, "", "")
        .reply(&virsh(&["domstate", "--reason", "vm"]), 0, "shut off (destroyed)\n", "")
        .reply(&virsh(&["create", "/dev/stdin"]), 1, "", "error: Failed to create domain from /dev/stdin\nerror: unsupported configuration: no emulator\n");
    let (result, runner) = f.with(runner, |vd, ctx| vd.start(ctx));
    let err = result.unwrap_err();
    assert!(err.reason.contains("cannot start vm") && err.reason.contains("no emulator"), "{}", err.reason);
    let calls = runner.calls.borrow();
    let create = calls.iter().find(|c| c.argv.contains(&"create".to_string())).unwrap();
    let xml = String::from_utf8(create.stdin.clone().unwrap()).unwrap();
    assert_eq!(domxml::read_mark(&xml), Some(OwnerMark { agent: "VirtualDomain".into(), resource: "r1".into() }));
    assert!(calls.iter().position(|c| c.argv.contains(&"destroy".to_string())) < calls.iter().position(|c| c.argv.contains(&"create".to_string())));
}

#[test]
fn a_disk_lease_held_elsewhere_fails_the_start_with_1_and_names_the_disk() {
    let disks = vec!["/srv/vm/a.raw".to_string()];
    let refusal = "error: Failed to create domain from /dev/stdin\nerror: resource busy: Lockspace resource '/srv/vm/a.raw' is locked\n";
    let err = VirtualDomain::start_refused("vm", &disks, BackendError::Failed(refusal.into()));
    // 1, not 5 or 6: the node and the config are fine, another copy is not.
    assert_eq!(err.code, OcfCode::ErrGeneric);
    assert!(err.reason.contains("disk /srv/vm/a.raw is in use by another host"), "{}", err.reason);
    // Anything else libvirt refuses is said as libvirt said it.
    let err = VirtualDomain::start_refused("vm", &disks, BackendError::Failed("unsupported configuration: no emulator".into()));
    assert_eq!((err.code, err.reason.as_str()), (OcfCode::ErrGeneric, "cannot start vm: unsupported configuration: no emulator"));
}

#[test]
fn a_machine_type_this_node_s_qemu_lacks_fails_the_start_with_5_so_only_this_node_is_banned() {
    // A config dumped on a Debian 13 node, started on a Debian 12 one.
    let refusal = "error: Failed to create domain from /dev/stdin\nerror: unsupported configuration: Emulator '/usr/bin/qemu-system-x86_64' does not support machine type 'pc-i440fx-10.0'\n";
    let err = VirtualDomain::start_refused("vm", &[], BackendError::Failed(refusal.into()));
    // 5, not 6: the config runs on a node whose QEMU has the type, and 6
    // would stop the guest everywhere.
    assert_eq!(err.code, OcfCode::ErrInstalled);
    assert!(err.reason.contains("no machine type pc-i440fx-10.0") && err.reason.len() <= 128, "{}", err.reason);
}

/// The fixture's parameters plus `extra`, as Pacemaker would pass them.
fn env_with(f: &Fixture, extra: &[(&str, &str)]) -> OcfEnv {
    let mut vars: Vec<(String, String)> = f.env.params.iter().map(|(k, v)| (format!("OCF_RESKEY_{k}"), v.clone())).collect();
    vars.push(("OCF_RESOURCE_INSTANCE".into(), "r1".into()));
    vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    OcfEnv::from_vars(vars)
}

#[test]
fn validate_all_at_depth_0_reads_only_the_parameters_and_depth_10_reads_the_node() {
    let f = Fixture::new("depth");
    std::fs::remove_file(f.dir.join("vm.xml")).unwrap();
    for (level, want) in [("0", None), ("10", Some(OcfCode::ErrInstalled))] {
        let env = env_with(&f, &[("OCF_CHECK_LEVEL", level)]);
        let params = Metadata::parse(METADATA).unwrap().resolve(&env.params).unwrap();
        let runner = Rc::new(RecordingRunner::new());
        let ctx = Context { env: &env, params: &params, deadline: Deadline::after(Duration::from_secs(5)) };
        let result = f.agent(&runner).validate(&ctx);
        assert_eq!(result.err().map(|e| e.code), want, "depth {level}");
        if level == "0" {
            assert!(runner.calls.borrow().is_empty(), "depth 0 ran {:?}", runner.calls.borrow());
        }
    }
    // Depth 0 still refuses bad values: they are wrong on every node.
    let env = env_with(&f, &[("OCF_RESKEY_migration_mode", "teleport")]);
    let e = Metadata::parse(METADATA).unwrap().resolve(&env.params).and_then(|p| {
        let ctx = Context { env: &env, params: &p, deadline: Deadline::after(Duration::from_secs(5)) };
        f.agent(&Rc::new(RecordingRunner::new())).validate(&ctx)
    });
    assert_eq!(e.unwrap_err().code, OcfCode::ErrConfigured);
}

#[test]
fn reload_agent_checks_the_new_values_sets_utilization_and_never_asks_libvirt() {
    let f = Fixture::new("reload");
    let env = env_with(&f, &[("OCF_RESKEY_crm_feature_set", "3.16.2"), ("OCF_RESKEY_migration_speed", "50")]);
    assert!(env.under_cluster());
    let params = Metadata::parse(METADATA).unwrap().resolve(&env.params).unwrap();
    let runner = Rc::new(RecordingRunner::new().reply(&["crm_resource"], 0, "", ""));
    let ctx = Context { env: &env, params: &params, deadline: Deadline::after(Duration::from_secs(5)) };
    assert_eq!(f.agent(&runner).reload(&ctx), Ok(()));
    assert!(!runner.called(&["virsh"]), "reload-agent asked libvirt: {:?}", runner.calls.borrow());
    assert!(runner.called(&["crm_resource", "-Q", "-r", "r1", "-z", "-p", "cpu", "-v", "2"]), "{:?}", runner.calls.borrow());
    let bad = env_with(&f, &[("OCF_RESKEY_migration_mode", "teleport")]);
    let params = Metadata::parse(METADATA).unwrap().resolve(&bad.params).unwrap();
    let ctx = Context { env: &bad, params: &params, deadline: Deadline::after(Duration::from_secs(5)) };
    assert_eq!(f.agent(&Rc::new(RecordingRunner::new())).reload(&ctx).unwrap_err().code, OcfCode::ErrConfigured);
}

#[test]
fn only_what_shapes_the_running_guest_needs_a_restart() {
    let md = Metadata::parse(METADATA).unwrap();
    let restart: Vec<&str> = md.params.iter().filter(|p| !p.reloadable).map(|p| p.name.as_str()).collect();
    // The guest's identity and what its disks were made from at start: a
    // change to any of these means another guest, so Pacemaker restarts it.
    assert_eq!(restart, ["config", "hypervisor", "backingfile", "stateless", "copyindirs"]);
    assert!(md.action("reload-agent").is_some(), "reloadable parameters need the action");
    assert_eq!(md.param("migration_network_suffix").unwrap().replaced_with, ["migrateuri", "remoteuri"]);
}

/// What is true on the node in a walk scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Truth {
    Runs,
    Absent,
    /// Nothing the agent can read settles it.
    Unknowable,
}

/// Every probe path, walked: the config readable, missing, unreadable or
/// not a domain; libvirt answering, refusing, unreachable, timing out or
/// missing; QEMU processes and libvirt's status files. A probe's 2, 5 and
/// 7 read as "not running here" to Pacemaker, so each may come only from a
/// scenario where the guest provably does not run here; a running guest
/// must be 0 or 190, and an unknowable one 1.
#[test]
fn every_probe_path_answers_not_running_only_after_proving_it() {
    use crate::ocf::answers::{guard, Asked};
    const MARKED: &str = "<domain><name>other</name><metadata><ferry:owner xmlns:ferry=\"urn:x-ferry:owner:1\" agent=\"VirtualDomain\" resource=\"r1\"/></metadata></domain>";
    const UNMARKED: &str = "<domain><name>other</name></domain>";
    const QEMU: &str = "/usr/bin/qemu-system-x86_64\0-name\0guest=vm,debug-threads=on\0-S\0";
    let timed_out = || RunError::TimedOut { program: "virsh".into(), after: Duration::from_secs(3) };
    let missing = || RunError::Spawn { program: "virsh".into(), error: "No such file or directory (os error 2)".into() };
    #[derive(Clone, Copy)]
    enum Config {
        Readable,
        Missing,
        Unreadable,
        NotADomain,
    }
    struct Scenario {
        what: &'static str,
        config: Config,
        /// None: the remote URI, answered by `runner`; Some: the local URI
        /// with its socket gone, and these QEMU command lines in /proc
        /// and marked status files.
        local: Option<(&'static [&'static str], &'static [&'static str])>,
        runner: RecordingRunner,
        truth: Truth,
    }
    let lookup_vm = virsh(&["domstate", "--reason", "vm"]);
    let list = virsh(&["list", "--all", "--name"]);
    let with_other = |xml: &str, state: &str| {
        RecordingRunner::new()
            .reply(&list, 0, "other\n\n", "")
            .reply(&virsh(&["domstate", "--reason", "other"]), 0, state, "")
            .reply(&virsh(&["dumpxml", "--security-info", "other"]), 0, xml, "")
    };
    let mut scenarios = vec![
        Scenario { what: "config names a running domain", config: Config::Readable, local: None, runner: RecordingRunner::new().reply(&lookup_vm, 0, "running (booted)\n", ""), truth: Truth::Runs },
        Scenario { what: "libvirt confirms no such domain, none marked", config: Config::Readable, local: None, runner: with_other(UNMARKED, "running (booted)\n").reply(&lookup_vm, 1, "", "error: failed to get domain 'vm'\nerror: Domain not found: no domain with matching name 'vm'\n"), truth: Truth::Absent },
        Scenario { what: "virsh's bare lookup failure, list confirms", config: Config::Readable, local: None, runner: RecordingRunner::new().reply(&lookup_vm, 1, "", "error: failed to get domain 'vm'\n").reply(&list, 0, "\n", ""), truth: Truth::Absent },
        Scenario { what: "virsh's bare lookup failure, the daemon then gone", config: Config::Readable, local: None, runner: RecordingRunner::new().reply(&lookup_vm, 1, "", "error: failed to get domain 'vm'\n").reply(&list, 1, "", "error: failed to connect to the hypervisor\n"), truth: Truth::Unknowable },
        Scenario { what: "virsh not installed", config: Config::Readable, local: None, runner: RecordingRunner::new().fail(&["virsh"], missing()), truth: Truth::Unknowable },
        Scenario { what: "virsh not installed, config missing", config: Config::Missing, local: None, runner: RecordingRunner::new().fail(&["virsh"], missing()), truth: Truth::Unknowable },
        Scenario { what: "libvirt times out", config: Config::Readable, local: None, runner: RecordingRunner::new().fail(&["virsh"], timed_out()), truth: Truth::Unknowable },
        Scenario { what: "libvirt refuses the lookup", config: Config::Readable, local: None, runner: RecordingRunner::new().reply(&lookup_vm, 1, "", "error: internal error: cannot acquire state change lock\n"), truth: Truth::Unknowable },
        Scenario { what: "config missing, marked guest runs", config: Config::Missing, local: None, runner: with_other(MARKED, "running (booted)\n"), truth: Truth::Runs },
        Scenario { what: "config unreadable, marked guest runs", config: Config::Unreadable, local: None, runner: with_other(MARKED, "running (booted)\n"), truth: Truth::Runs },
        Scenario { what: "config not a domain, marked guest runs", config: Config::NotADomain, local: None, runner: with_other(MARKED, "paused (user)\n"), truth: Truth::Runs },
        Scenario { what: "config missing, no marked guest", config: Config::Missing, local: None, runner: with_other(UNMARKED, "running (booted)\n"), truth: Truth::Absent },
        Scenario { what: "config not a domain, marked guest shut off", config: Config::NotADomain, local: None, runner: with_other(MARKED, "shut off (destroyed)\n"), truth: Truth::Absent },
        Scenario { what: "config missing, list broken", config: Config::Missing, local: None, runner: RecordingRunner::new().reply(&list, 1, "", "error: failed to connect to the hypervisor\n"), truth: Truth::Unknowable },
        Scenario { what: "config missing, a listed domain unreadable", config: Config::Missing, local: None, runner: RecordingRunner::new().reply(&list, 0, "other\n", "").reply(&virsh(&["domstate", "--reason", "other"]), 1, "", "error: internal error: boom\n"), truth: Truth::Unknowable },
        Scenario { what: "a shut-off definition under the config's name, the marked guest runs", config: Config::Readable, local: None, runner: with_other(MARKED, "running (booted)\n").reply(&lookup_vm, 0, "shut off (unknown)\n", ""), truth: Truth::Runs },
        Scenario { what: "a shut-off definition under the config's name, the list broken", config: Config::Readable, local: None, runner: RecordingRunner::new().reply(&lookup_vm, 0, "shut off (unknown)\n", "").reply(&list, 1, "", "error: failed to connect to the hypervisor\n"), truth: Truth::Unknowable },
        Scenario { what: "a shut-off definition under the config's name, nothing marked", config: Config::Readable, local: None, runner: with_other(UNMARKED, "running (booted)\n").reply(&lookup_vm, 0, "shut off (unknown)\n", ""), truth: Truth::Absent },
        Scenario { what: "libvirtd down, QEMU runs", config: Config::Readable, local: Some((&[QEMU], &[])), runner: RecordingRunner::new(), truth: Truth::Runs },
        Scenario { what: "libvirtd down, no QEMU", config: Config::Readable, local: Some((&["/usr/sbin/sshd\0-D\0"], &[])), runner: RecordingRunner::new(), truth: Truth::Absent },
        Scenario { what: "libvirtd down, config missing, status file marks vm, QEMU runs", config: Config::Missing, local: Some((&[QEMU], &["vm"])), runner: RecordingRunner::new(), truth: Truth::Runs },
        Scenario { what: "libvirtd down, config missing, no status file marks it", config: Config::Missing, local: Some((&[QEMU], &[])), runner: RecordingRunner::new(), truth: Truth::Absent },
    ];
    let mut failures = Vec::new();
    let mut counts = [0usize; 3];
    for (i, s) in scenarios.drain(..).enumerate() {
        let mut f = Fixture::new(&format!("walk-{i}"));
        let config = f.dir.join("vm.xml");
        match s.config {
            Config::Readable => {}
            Config::Missing => std::fs::remove_file(&config).unwrap(),
            Config::Unreadable => {
                std::fs::remove_file(&config).unwrap();
                std::fs::create_dir(&config).unwrap();
            }
            Config::NotADomain => std::fs::write(&config, "this is not XML <").unwrap(),
        }
        f.env.meta.insert("interval".into(), "0".into());
        if let Some((processes, marked)) = s.local {
            f.env.params.insert("hypervisor".into(), "qemu:///system".into());
            for (pid, cmdline) in processes.iter().enumerate() {
                let dir = f.dir.join("proc").join((100 + pid).to_string());
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(dir.join("cmdline"), cmdline).unwrap();
            }
            std::fs::create_dir_all(f.dir.join("proc")).unwrap();
            let status = f.dir.join("run/qemu");
            std::fs::create_dir_all(&status).unwrap();
            for name in marked.iter() {
                std::fs::write(status.join(format!("{name}.xml")), format!("<domstatus><domain><name>{name}</name><metadata><ferry:owner xmlns:ferry=\"urn:x-ferry:owner:1\" agent=\"VirtualDomain\" resource=\"r1\"/></metadata></domain></domstatus>")).unwrap();
            }
        }
        assert!(f.env.is_probe());
        let result = f.with(s.runner, |vd, ctx| guard(Asked::Probe, vd.monitor(ctx))).0;
        let code = crate::ocf::agent::settle(result.clone()).value();
        let ok = match s.truth {
            Truth::Runs => matches!(code, 0 | 190),
            Truth::Absent => code == 7,
            Truth::Unknowable => code == 1,
        };
        counts[s.truth as usize] += 1;
        if !ok {
            failures.push(format!("{}: {:?} answered {code} ({result:?})", s.what, s.truth));
        }
    }
    eprintln!("probe walk: {} running, {} absent, {} unknowable scenarios", counts[0], counts[1], counts[2]);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn stop_on_a_post_copy_source_waits_for_the_job_and_never_destroys() {
    let f = Fixture::new("postcopy-stop");
    let source = || {
        RecordingRunner::new()
            .reply(&virsh(&["shutdown"]), 0, "", "")
            .reply(&virsh(&["destroy"]), 0, "", "")
    };
    // The target gets the last of the memory: libvirt ends the job and the
    // domain goes from here.
    let finishing = source()
        .reply_once(&virsh(&["domstate", "--reason", "vm"]), 0, "paused (post-copy)\n", "")
        .reply_once(&virsh(&["domstate", "--reason", "vm"]), 0, "paused (post-copy)\n", "")
        .reply(&virsh(&["domstate", "--reason", "vm"]), 1, "", "error: failed to get domain 'vm'\n")
        .reply(&virsh(&["list", "--all", "--name"]), 0, "\n", "");
    let (result, runner) = f.with(finishing, |vd, ctx| vd.stop(ctx));
    assert_eq!(result, Ok(()));
    assert!(!runner.called(&virsh(&["destroy"])) && !runner.called(&virsh(&["shutdown"])), "{:?}", runner.calls.borrow());
    // The target still pulls memory when the budget ends: fail, never destroy.
    let stuck = source().reply(&virsh(&["domstate", "--reason", "vm"]), 0, "paused (post-copy)\n", "");
    let (result, runner) = f.with_deadline(stuck, Deadline::after(Duration::from_secs(3)), |vd, ctx| vd.stop(ctx));
    let err = result.unwrap_err();
    assert!(err.reason.contains("post-copy") && err.reason.contains("would lose the guest"), "{}", err.reason);
    assert!(!runner.called(&virsh(&["destroy"])) && !runner.called(&virsh(&["shutdown"])), "{:?}", runner.calls.borrow());
}

#[test]
fn migrate_from_finds_the_arriving_guest_by_its_mark_without_the_config() {
    let mut f = Fixture::new("from-no-config");
    std::fs::remove_file(f.dir.join("vm.xml")).unwrap();
    f.env.meta.insert("migrate_source".into(), "nodea".into());
    let marked = domxml::with_mark("<domain type='kvm'><name>vm-old</name></domain>", &OwnerMark { agent: "VirtualDomain".into(), resource: "r1".into() }).unwrap();
    let runner = RecordingRunner::new()
        .reply(&virsh(&["list", "--all", "--name"]), 0, "other\nvm-old\n", "")
        .reply(&virsh(&["domstate", "--reason", "other"]), 0, "running (booted)\n", "")
        .reply(&virsh(&["dumpxml", "--security-info", "other"]), 0, "<domain type='kvm'><name>other</name></domain>", "")
        .reply(&virsh(&["domstate", "--reason", "vm-old"]), 0, "running (migrated)\n", "")
        .reply(&virsh(&["dumpxml", "--security-info", "vm-old"]), 0, &marked, "")
        .reply(&virsh(&["domjobinfo", "--completed"]), 0, "Job type: 3\n\ntime_elapsed: 5711\ndowntime: 97\n", "");
    let (result, runner) = f.with(runner, |vd, ctx| vd.migrate_from(ctx));
    assert_eq!(result, Ok(()));
    assert!(runner.called(&virsh(&["domjobinfo", "--completed", "--keep-completed", "--rawstats", "vm-old"])), "{:?}", runner.calls.borrow());
}

#[test]
fn a_status_file_that_is_a_fifo_leaves_the_answer_unknown_without_hanging() {
    // libvirtd is down (no socket), the config is gone: only libvirt's
    // status files can name the guest, and one of them never gives data.
    let f = Fixture::new("status-fifo");
    let status_dir = f.dir.join("run/qemu");
    std::fs::create_dir_all(&status_dir).unwrap();
    nix::unistd::mkfifo(&status_dir.join("vm.xml"), nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let vars = [
        ("OCF_RESOURCE_INSTANCE", "r1".to_string()),
        ("OCF_RESKEY_config", f.dir.join("missing.xml").display().to_string()),
        ("OCF_RESKEY_hypervisor", "qemu:///system".to_string()),
    ];
    let env = OcfEnv::from_vars(vars.iter().map(|(k, v)| (k.to_string(), v.clone())));
    let params = Metadata::parse(METADATA).unwrap().resolve(&env.params).unwrap();
    let runner = Rc::new(RecordingRunner::new());
    let started = std::time::Instant::now();
    let ctx = Context { env: &env, params: &params, deadline: Deadline::after(Duration::from_secs(20)) };
    let e = f.agent(&runner).monitor(&ctx).unwrap_err();
    assert!(e.reason.contains("vm.xml: not a regular file"), "{}", e.reason);
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
}
