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
        }
    }

    fn with<T>(&self, runner: RecordingRunner, act: impl FnOnce(&VirtualDomain, &Context) -> T) -> (T, Rc<RecordingRunner>) {
        let runner = Rc::new(runner);
        let params = Metadata::parse(METADATA).unwrap().resolve(&self.env.params).unwrap();
        let ctx = Context { env: &self.env, params: &params, deadline: Deadline::after(Duration::from_secs(30)) };
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
    let f = Fixture::new(&format!("state-{}", state.trim().replace(' ', "-")));
    let runner = RecordingRunner::new().reply(&virsh(&["domstate", "vm"]), 0, state, "");
    f.with(runner, |vd, ctx| vd.monitor(ctx)).0
}

#[test]
fn monitor_maps_every_libvirt_state() {
    assert_eq!(monitor_with_state("running\n"), Ok(Health::Running));
    assert_eq!(monitor_with_state("paused\n"), Ok(Health::Running));
    assert_eq!(monitor_with_state("idle\n"), Ok(Health::Running));
    assert_eq!(monitor_with_state("in shutdown\n"), Ok(Health::Running));
    assert_eq!(monitor_with_state("shut off\n"), Ok(Health::NotRunning));
    assert!(matches!(monitor_with_state("pmsuspended\n"), Ok(Health::Degraded(_))));
    let crashed = monitor_with_state("crashed\n").unwrap_err();
    assert_eq!((crashed.code, crashed.reason.as_str()), (OcfCode::ErrGeneric, "vm has crashed"));
    assert!(monitor_with_state("no state\n").unwrap_err().reason.contains("no state"));
}

#[test]
fn a_remote_daemon_that_hangs_fails_the_monitor_instead_of_answering_stopped() {
    let f = Fixture::new("hang");
    let runner = RecordingRunner::new().fail(&virsh(&["domstate", "vm"]), RunError::TimedOut { program: "virsh".into(), after: Duration::from_secs(9) });
    let err = f.with(runner, |vd, ctx| vd.monitor(ctx)).0.unwrap_err();
    assert_eq!(err.code, OcfCode::ErrGeneric);
    assert!(err.reason.contains("cannot tell whether the guest runs here"), "{}", err.reason);
}

#[test]
fn a_destroy_that_fails_fails_the_stop_with_libvirts_reason() {
    let mut f = Fixture::new("destroy");
    f.env.params.insert("force_stop".into(), "true".into());
    let runner = RecordingRunner::new()
        .reply(&virsh(&["domstate", "vm"]), 0, "running\n", "")
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
    let runner = RecordingRunner::new().reply(&virsh(&["domstate", "vm"]), 0, "running\n", "");
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
        .reply(&virsh(&["domstate", "vm"]), 0, "crashed\n", "")
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
