//! Unit tests of the Xen agent's decisions, with xl's answers scripted
//! through the recording runner. The real hypervisor carries the Xen lab
//! test (tests/xen).

use super::*;
use crate::ocf::env::OcfEnv;
use crate::ocf::metadata::Metadata;
use crate::ocf::OcfCode;
use crate::backend::xl::printed::{xl_row, HEADER};
use crate::process::recording::RecordingRunner;
use crate::process::RunError;
use std::path::PathBuf;
use std::rc::Rc;

/// `xl list` with dom0 and `rows`, each given as its six columns
/// (name, ID, MiB, VCPUs, state, seconds) and printed as xl prints them.
fn listing(rows: &str) -> String {
    let printed: String = rows
        .lines()
        .map(|row| match row.split_whitespace().collect::<Vec<_>>()[..] {
            [name, id, mib, vcpus, flags, seconds] => xl_row(name, id.parse().unwrap(), mib.parse().unwrap(), vcpus.parse().unwrap(), flags, seconds.parse().unwrap()),
            _ => panic!("not six columns: {row}"),
        })
        .collect();
    format!("{HEADER}{}{printed}", xl_row("Domain-0", 0, 1024, 2, "r-----", 12.3))
}

struct Fixture {
    dir: PathBuf,
}

impl Fixture {
    fn new(tag: &str) -> Fixture {
        let dir = std::env::temp_dir().join(format!("ferry-xen-unit-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("vm.cfg"), "name = \"vm1\"\nmemory = 256\nkernel = \"/k\"\n").unwrap();
        Fixture { dir }
    }

    fn env(&self, extra: &[(&str, &str)]) -> OcfEnv {
        let mut vars = vec![
            ("OCF_RESOURCE_INSTANCE".to_string(), "r1".to_string()),
            ("OCF_RESKEY_xmfile".to_string(), self.dir.join("vm.cfg").display().to_string()),
        ];
        vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        OcfEnv::from_vars(vars)
    }

    fn run(&self, runner: &Rc<RecordingRunner>, action: &str, extra: &[(&str, &str)]) -> Result<Health, OcfError> {
        self.run_within(Duration::from_secs(3), runner, action, extra)
    }

    fn run_within(&self, budget: Duration, runner: &Rc<RecordingRunner>, action: &str, extra: &[(&str, &str)]) -> Result<Health, OcfError> {
        run_env(budget, runner, action, self.env(extra))
    }
}

/// One action with exactly this environment, as ocf::agent::run reads it.
fn run_env(budget: Duration, runner: &Rc<RecordingRunner>, action: &str, env: OcfEnv) -> Result<Health, OcfError> {
    let md = Metadata::parse(METADATA).unwrap();
    // As ocf::agent::run reads them: stop and monitor go on without a
    // value they cannot use, every other action refuses it.
    let mut params = md.resolve_all(&env.params);
    if matches!(action, "stop" | "monitor") {
        params.lenient = true;
    } else if let Some((_, why)) = params.invalid.first() {
        return Err(OcfError::configured(why.clone()));
    }
    let ctx = Context { env: &env, params: &params, deadline: Deadline::after(budget) };
    let agent = Xen { runner: Box::new(runner.clone()) };
    let as_health = |r: Result<(), OcfError>| r.map(|()| Health::Running);
    match action {
        "monitor" => agent.monitor(&ctx),
        "stop" => as_health(agent.stop(&ctx)),
        "migrate_to" => as_health(agent.migrate_to(&ctx)),
        "migrate_from" => as_health(agent.migrate_from(&ctx)),
        "validate-all" => as_health(agent.validate(&ctx)),
        "reload-agent" => as_health(agent.reload(&ctx)),
        other => panic!("{other}"),
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn every_declared_parameter_is_read_and_malformed_ones_are_err_configured() {
    let md = Metadata::parse(METADATA).unwrap();
    let given = [("xmfile".to_string(), "/etc/xen/vm1.cfg".to_string())].into_iter().collect();
    let params = md.resolve(&given).unwrap();
    Settings::from_params(&params).unwrap();
    assert_eq!(params.unread(), Vec::<String>::new());
    let cases: &[(&str, &str, &str)] = &[
        ("xmfile", "vm1.cfg", "absolute path"),
        ("shutdown_timeout", "soon", "shutdown_timeout 'soon'"),
        ("reserved_Dom0_memory", "lots", "reserved_Dom0_memory 'lots'"),
        ("name", "my vm", "not a usable domain name"),
        ("migration_mode", "teleport", "migration_mode 'teleport'"),
        ("migration_mode", "save", "needs migration_state_dir"),
        ("migration_state_dir", "shared", "must be an absolute path"),
    ];
    for (key, value, expected) in cases {
        let mut given: std::collections::BTreeMap<String, String> = [("xmfile".to_string(), "/etc/xen/vm1.cfg".to_string())].into_iter().collect();
        given.insert(key.to_string(), value.to_string());
        let e = Settings::from_params(&md.resolve(&given).unwrap()).unwrap_err();
        assert_eq!(e.code, OcfCode::ErrConfigured, "{key}");
        assert!(e.reason.contains(expected), "{key}: {}", e.reason);
    }
}

#[test]
fn monitor_maps_xl_list_and_never_calls_a_broken_toolstack_stopped() {
    let f = Fixture::new("monitor");
    let probe = [("OCF_RESKEY_CRM_meta_interval", "0")];
    let running = Rc::new(RecordingRunner::new().reply(&["xl", "list"], 0, &listing("vm1  3  256  1  -b----  0.9\n"), ""));
    assert_eq!(f.run(&running, "monitor", &probe), Ok(Health::Running));
    let absent = Rc::new(RecordingRunner::new().reply(&["xl", "list"], 0, &listing(""), ""));
    assert_eq!(f.run(&absent, "monitor", &probe), Ok(Health::NotRunning));
    let crashed = Rc::new(RecordingRunner::new().reply(&["xl", "list"], 0, &listing("vm1  3  256  1  ----c-  0.9\n"), ""));
    assert_eq!(f.run(&crashed, "monitor", &probe).unwrap_err().code, OcfCode::ErrGeneric);
    let paused = Rc::new(RecordingRunner::new().reply(&["xl", "list"], 0, &listing("vm1  3  256  1  --p---  0.9\n"), ""));
    assert!(matches!(f.run(&paused, "monitor", &probe), Ok(Health::Degraded(w)) if w.contains("xl pause")));
    for flags in ["---s--", "---s-d"] {
        let left = Rc::new(RecordingRunner::new().reply(&["xl", "list"], 0, &listing(&format!("vm1  3  256  1  {flags}  0.9\n")), ""));
        let e = f.run(&left, "monitor", &probe).unwrap_err();
        assert!(e.reason.contains("still lists it"), "{flags}: a listed domain is never 'not running': {}", e.reason);
    }
    let incoming = Rc::new(RecordingRunner::new().reply(&["xl", "list"], 0, &listing("vm1--incoming  4  256  1  --p---  0.0\n"), ""));
    assert!(matches!(f.run(&incoming, "monitor", &probe), Ok(Health::Degraded(_))));
    let broken = Rc::new(RecordingRunner::new().reply(&["xl", "list"], 1, "", "libxl: error: cannot connect to xenstored\n"));
    let e = f.run(&broken, "monitor", &probe).unwrap_err();
    assert_eq!(e.code, OcfCode::ErrGeneric);
    assert!(e.reason.contains("xenstored"), "{}", e.reason);
}

#[test]
fn a_recurring_monitor_rides_out_a_reboot_gap() {
    let f = Fixture::new("reboot");
    let runner = Rc::new(
        RecordingRunner::new()
            .reply_once(&["xl", "list"], 0, &listing(""), "")
            .reply(&["xl", "list"], 0, &listing("vm1  5  256  1  r-----  0.1\n"), ""),
    );
    assert_eq!(f.run(&runner, "monitor", &[("OCF_RESKEY_CRM_meta_interval", "10000")]), Ok(Health::Running));
}

#[test]
fn a_recurring_monitor_rides_out_a_reboot_s_shutdown_and_fails_one_that_stays() {
    let f = Fixture::new("reboot-shutdown");
    let recurring = [("OCF_RESKEY_CRM_meta_interval", "10000")];
    // xl lists a rebooting guest shut down for reboot ('r'), then not at all.
    let rebooting = Rc::new(
        RecordingRunner::new()
            .reply_once(&["xl", "list"], 0, &listing("vm1  5  256  1  ---sr-  3.0\n"), "")
            .reply_once(&["xl", "list"], 0, &listing(""), "")
            .reply(&["xl", "list"], 0, &listing("vm1  6  256  1  r-----  0.1\n"), ""),
    );
    assert_eq!(f.run(&rebooting, "monitor", &recurring), Ok(Health::Running));
    // on_reboot="preserve" keeps it so.
    let kept = Rc::new(RecordingRunner::new().reply(&["xl", "list"], 0, &listing("vm1  5  256  1  ---sr-  3.0\n"), ""));
    let e = f.run(&kept, "monitor", &recurring).unwrap_err();
    assert!(e.reason.contains("rebooting (---sr-) but xl still lists it"), "{}", e.reason);
}

#[test]
fn a_guest_absent_through_the_whole_gap_is_not_running() {
    // The gap's last look comes when the gap has run out: it must still be
    // asked with the action's time, or it fails instead of answering.
    let f = Fixture::new("gone");
    let runner = Rc::new(RecordingRunner::new().reply(&["xl", "list"], 0, &listing(""), ""));
    let monitor = f.run_within(Duration::from_secs(8), &runner, "monitor", &[("OCF_RESKEY_CRM_meta_interval", "10000")]);
    assert_eq!(monitor, Ok(Health::NotRunning));
}

#[test]
fn an_unreadable_xmfile_without_a_name_is_not_running_only_where_no_guest_runs() {
    // The NFS share with the xmfiles unmounted: the name cannot be known.
    // A probe's 5 would read as "not running" and start a second copy.
    let f = Fixture::new("unreadable");
    std::fs::remove_file(f.dir.join("vm.cfg")).unwrap();
    let probe = [("OCF_RESKEY_CRM_meta_interval", "0")];
    let only_dom0 = Rc::new(RecordingRunner::new().reply(&["xl", "list"], 0, &listing(""), ""));
    assert_eq!(f.run(&only_dom0, "monitor", &probe), Ok(Health::NotRunning));
    assert_eq!(f.run(&only_dom0, "stop", &[]), Ok(Health::Running));
    assert!(!only_dom0.called(&["xl", "destroy"]));
    let guests = Rc::new(RecordingRunner::new().reply(&["xl", "list"], 0, &listing("vm1  3  256  1  -b----  0.9\nvm7  4  256  1  -b----  0.9\n"), ""));
    for (action, env) in [("monitor", &probe[..]), ("monitor", &[][..]), ("stop", &[][..])] {
        let e = f.run(&guests, action, env).unwrap_err();
        assert_eq!(e.code, OcfCode::ErrGeneric, "{action}: {}", e.reason);
        assert!(e.reason.contains("not readable") && e.reason.contains("2 guest domain(s) run here"), "{action}: {}", e.reason);
    }
    assert!(!guests.called(&["xl", "destroy"]), "stop destroys nothing it cannot name");
    // A domain being torn down runs no guest; one xl prints unreadably could be any.
    let dying = Rc::new(RecordingRunner::new().reply(&["xl", "list"], 0, &listing("vm1  3  256  1  ---s-d  0.9\n"), ""));
    assert_eq!(f.run(&dying, "monitor", &probe), Ok(Health::NotRunning));
    let odd = Rc::new(RecordingRunner::new().reply(&["xl", "list"], 0, &format!("{}vm1 3 256 1 ---sx- 0.9\n", listing("")), ""));
    assert_eq!(f.run(&odd, "monitor", &probe).unwrap_err().code, OcfCode::ErrGeneric);
    // Start and validate need the file here: for them this node lacks it.
    assert_eq!(f.run(&only_dom0, "validate-all", &[("OCF_CHECK_LEVEL", "10")]).unwrap_err().code, OcfCode::ErrInstalled);
    // With the name given, the answer comes from Xen itself.
    assert_eq!(f.run(&guests, "monitor", &[("OCF_RESKEY_CRM_meta_interval", "0"), ("OCF_RESKEY_name", "vm9")]), Ok(Health::NotRunning));
}

#[test]
fn xl_that_cannot_be_run_leaves_monitor_and_stop_unknown_not_uninstalled() {
    // fork failing (EAGAIN, ENOMEM) in a small dom0, or xl gone: whether
    // the guest runs is unknown, and this node is not proven to lack it.
    let f = Fixture::new("noxl");
    let spawn = RunError::Spawn { program: "xl".into(), error: "Resource temporarily unavailable (os error 11)".into() };
    let runner = Rc::new(RecordingRunner::new().fail(&["xl"], spawn));
    for (action, env) in [("monitor", &[("OCF_RESKEY_CRM_meta_interval", "0")][..]), ("monitor", &[][..]), ("stop", &[][..])] {
        let e = f.run(&runner, action, env).unwrap_err();
        assert_eq!(e.code, OcfCode::ErrGeneric, "{action}: {}", e.reason);
        assert!(e.reason.contains("cannot run xl"), "{action}: {}", e.reason);
    }
    // The same with the name unknowable.
    std::fs::remove_file(f.dir.join("vm.cfg")).unwrap();
    for action in ["monitor", "stop"] {
        assert_eq!(f.run(&runner, action, &[]).unwrap_err().code, OcfCode::ErrGeneric, "{action}");
    }
}

#[test]
fn stop_never_answers_not_installed_when_destroy_cannot_run_xl() {
    let f = Fixture::new("destroynoxl");
    let spawn = RunError::Spawn { program: "xl".into(), error: "Cannot allocate memory (os error 12)".into() };
    let runner = Rc::new(
        RecordingRunner::new()
            .reply_once(&["xl", "list"], 0, &listing("vm1  3  256  1  ---sc-  0.9\n"), "")
            .fail(&["xl"], spawn),
    );
    let e = f.run(&runner, "stop", &[]).unwrap_err();
    assert_eq!(e.code, OcfCode::ErrGeneric, "{}", e.reason);
}

#[test]
fn domains_suspended_rebooting_or_watchdogged_beside_ours_fail_nothing() {
    // Rows real xl prints while another guest is saved or migrated (s),
    // reboots (r), or was stopped by its watchdog (w): one used to fail
    // the whole list, and every monitor and stop on the node with it.
    let f = Fixture::new("beside");
    let others = "saving  4  256  1  ---ss-  2.0\nmoving--migratedaway  5  256  1  --pss-  2.0\nrebooting  6  256  1  ---sr-  1.0\nbarking  7  128  1  ---sw-  1.0\nreset  8  128  1  ---sS-  1.0\n";
    let ours = format!("vm1  3  256  1  -b----  0.9\n{others}");
    let runner = Rc::new(RecordingRunner::new().reply(&["xl", "list"], 0, &listing(&ours), ""));
    assert_eq!(f.run(&runner, "monitor", &[("OCF_RESKEY_CRM_meta_interval", "0")]), Ok(Health::Running));
    assert_eq!(f.run(&runner, "monitor", &[]), Ok(Health::Running));
    let absent = Rc::new(RecordingRunner::new().reply(&["xl", "list"], 0, &listing(others), ""));
    assert_eq!(f.run(&absent, "monitor", &[("OCF_RESKEY_CRM_meta_interval", "0")]), Ok(Health::NotRunning));
    assert_eq!(f.run(&absent, "stop", &[]), Ok(Health::Running));
    let stopping = Rc::new(
        RecordingRunner::new()
            .reply_once(&["xl", "list"], 0, &listing(&ours), "")
            .reply(&["xl", "list"], 0, &listing(others), "")
            .reply(&["xl", "destroy"], 0, "", ""),
    );
    assert_eq!(f.run(&stopping, "stop", &[("OCF_RESKEY_shutdown_timeout", "0")]), Ok(Health::Running));
    assert!(stopping.called(&["xl", "destroy", "vm1"]));
    for other in ["saving", "moving--migratedaway", "rebooting", "barking", "reset"] {
        assert!(!stopping.called(&["xl", "destroy", other]), "{other} is not ours");
    }
}

#[test]
fn a_row_ferry_cannot_read_is_unknown_only_if_it_could_be_ours() {
    let f = Fixture::new("oddrow");
    let probe = [("OCF_RESKEY_CRM_meta_interval", "0")];
    let other = format!("{}other  ?  256  1  -b----  0.9\n", listing(""));
    let runner = Rc::new(RecordingRunner::new().reply(&["xl", "list"], 0, &other, ""));
    assert_eq!(f.run(&runner, "monitor", &probe), Ok(Health::NotRunning));
    let ours = format!("{}vm1  ?  256  1  -b----  0.9\n", listing(""));
    let runner = Rc::new(RecordingRunner::new().reply(&["xl", "list"], 0, &ours, ""));
    for (action, env) in [("monitor", &probe[..]), ("stop", &[][..])] {
        let e = f.run(&runner, action, env).unwrap_err();
        assert_eq!(e.code, OcfCode::ErrGeneric, "{action}");
        assert!(e.reason.contains("could be vm1"), "{action}: {}", e.reason);
    }
}

#[test]
fn a_source_left_renamed_away_holds_the_guest_and_stop_destroys_it() {
    // xl renames the source NAME--migratedaway before it tells the target
    // to start, and leaves it so, suspended, if the hand-shake breaks.
    let f = Fixture::new("away");
    let away = listing("vm1--migratedaway  3  256  1  ---ss-  4.2\n");
    let runner = Rc::new(RecordingRunner::new().reply(&["xl", "list"], 0, &away, ""));
    for env in [&[("OCF_RESKEY_CRM_meta_interval", "0")][..], &[][..]] {
        let e = f.run(&runner, "monitor", env).unwrap_err();
        assert_eq!(e.code, OcfCode::ErrGeneric);
        assert!(e.reason.contains("memory is here as vm1--migratedaway"), "{}", e.reason);
    }
    let stopping = Rc::new(
        RecordingRunner::new()
            .reply_once(&["xl", "list"], 0, &away, "")
            .reply(&["xl", "list"], 0, &listing(""), "")
            .reply(&["xl", "destroy"], 0, "", ""),
    );
    assert_eq!(f.run(&stopping, "stop", &[]), Ok(Health::Running));
    assert!(stopping.called(&["xl", "destroy", "vm1--migratedaway"]));
    // One that survives destroy is a failed stop.
    let stuck = Rc::new(RecordingRunner::new().reply(&["xl", "list"], 0, &away, "").reply(&["xl", "destroy"], 0, "", ""));
    assert!(f.run(&stuck, "stop", &[]).unwrap_err().reason.contains("still present after destroy"));
}

#[test]
fn a_migration_cut_after_the_go_says_the_copy_here_is_renamed_away() {
    let f = Fixture::new("migaway");
    let runner = Rc::new(
        RecordingRunner::new()
            .reply_once(&["xl", "list"], 0, &listing("vm1  3  256  1  -b----  0.9\n"), "")
            .reply(&["xl", "list"], 0, &listing("vm1--migratedaway  3  256  1  ---ss-  1.2\n"), "")
            .reply(&["xl", "migrate"], 1, "", "** Migration failed during final handshake **\n"),
    );
    let e = f.run(&runner, "migrate_to", &[("OCF_RESKEY_CRM_meta_migrate_target", "nodeb")]).unwrap_err();
    assert!(e.reason.contains("as vm1--migratedaway") && e.reason.contains("stop destroys it"), "{}", e.reason);
    assert!(!runner.called(&["xl", "destroy"]));
}

#[test]
fn stop_with_a_zero_shutdown_timeout_destroys_and_fails_if_the_guest_survives() {
    let f = Fixture::new("stop");
    let runner = Rc::new(
        RecordingRunner::new()
            .reply(&["xl", "list"], 0, &listing("vm1  3  256  1  -b----  0.9\n"), "")
            .reply(&["xl", "destroy"], 0, "", ""),
    );
    let e = f.run(&runner, "stop", &[("OCF_RESKEY_shutdown_timeout", "0")]).unwrap_err();
    assert!(e.reason.contains("still present after destroy"), "{}", e.reason);
    assert!(runner.called(&["xl", "destroy", "vm1"]));
    assert!(!runner.called(&["xl", "shutdown"]), "shutdown_timeout=0 means destroy at once");
}

#[test]
fn migrate_to_uses_the_node_ip_attribute_and_the_named_transport() {
    let f = Fixture::new("migrate");
    let runner = Rc::new(
        RecordingRunner::new()
            .reply_once(&["xl", "list"], 0, &listing("vm1  3  256  1  -b----  0.9\n"), "")
            .reply(&["xl", "list"], 0, &listing(""), "")
            .reply(&["crm_attribute"], 0, "10.9.9.2\n", "")
            .reply_after(2, &["xl", "migrate"], 0, "", ""),
    );
    let r = f.run(
        &runner,
        "migrate_to",
        &[("OCF_RESKEY_CRM_meta_migrate_target", "nodeb"), ("OCF_RESKEY_node_ip_attribute", "mig_ip"), ("OCF_RESKEY_migration_transport", "/usr/lib/lab-transport")],
    );
    assert_eq!(r, Ok(Health::Running));
    assert!(runner.called(&["crm_attribute", "--type", "nodes", "--node", "nodeb", "-n", "mig_ip", "-G", "-q"]));
    assert!(runner.called(&["xl", "migrate", "-s", "/usr/lib/lab-transport", "vm1", "10.9.9.2"]));
}

#[test]
fn a_source_still_dying_when_xl_migrate_ends_is_gone() {
    let f = Fixture::new("migdying");
    let runner = Rc::new(
        RecordingRunner::new()
            .reply_once(&["xl", "list"], 0, &listing("vm1  3  256  1  -b----  0.9\n"), "")
            .reply(&["xl", "list"], 0, &listing("vm1  3  256  1  ---s-d  1.0\n"), "")
            .reply(&["xl", "migrate"], 0, "", ""),
    );
    assert_eq!(f.run(&runner, "migrate_to", &[("OCF_RESKEY_CRM_meta_migrate_target", "nodeb")]), Ok(Health::Running));
}

#[test]
fn a_failed_migration_says_the_guest_keeps_running_here() {
    let f = Fixture::new("migfail");
    let runner = Rc::new(
        RecordingRunner::new()
            .reply(&["xl", "list"], 0, &listing("vm1  3  256  1  -b----  0.9\n"), "")
            .reply(&["xl", "migrate"], 1, "", "migration sender: Target reported failure\n"),
    );
    let e = f.run(&runner, "migrate_to", &[("OCF_RESKEY_CRM_meta_migrate_target", "nodeb")]).unwrap_err();
    assert!(e.reason.contains("keeps running here") && e.reason.contains("Target reported failure"), "{}", e.reason);
    assert!(runner.called(&["xl", "migrate", "vm1", "nodeb"]), "ssh (xl's default) unless a transport is named");
}

#[test]
fn migrate_from_is_bounded_and_needs_its_source() {
    let f = Fixture::new("migfrom");
    let runner = Rc::new(RecordingRunner::new().reply(&["xl", "list"], 0, &listing(""), ""));
    let e = f.run(&runner, "migrate_from", &[]).unwrap_err();
    assert_eq!(e.code, OcfCode::ErrConfigured);
    let started = std::time::Instant::now();
    let e = f.run(&runner, "migrate_from", &[("OCF_RESKEY_CRM_meta_migrate_source", "nodea")]).unwrap_err();
    assert!(e.reason.contains("never arrived from nodea"), "{}", e.reason);
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[test]
fn a_save_migration_saves_atomically_and_the_target_restores() {
    let f = Fixture::new("save");
    let dir = f.dir.join("shared");
    std::fs::create_dir_all(&dir).unwrap();
    let d = dir.display().to_string();
    let mode = [("OCF_RESKEY_migration_mode", "save"), ("OCF_RESKEY_migration_state_dir", d.as_str())];
    let part = dir.join("vm1.migrating.part").display().to_string();
    let runner = Rc::new(
        RecordingRunner::new()
            .reply(&["xl", "list"], 0, &listing("vm1  3  256  1  -b----  0.9\n"), "")
            .reply(&["xl", "save", "vm1", &part], 0, "", ""),
    );
    // The scripted xl writes nothing: the save "succeeded" without an image,
    // and nothing may appear under the final name.
    let mut env = mode.to_vec();
    env.push(("OCF_RESKEY_CRM_meta_migrate_target", "nodeb"));
    let e = f.run(&runner, "migrate_to", &env).unwrap_err();
    assert!(runner.called(&["xl", "save", "vm1", &part]), "saved under the temporary name");
    assert!(e.reason.contains("cannot be published"), "{}", e.reason);
    assert!(!dir.join("vm1.migrating").exists());
    std::fs::write(dir.join("vm1.migrating"), "image").unwrap();
    // Restored from the name no start restores (lifecycle::take_image).
    let image = dir.join("vm1.migrating.restoring").display().to_string();
    let target = Rc::new(RecordingRunner::new().reply(&["xl", "restore", &image], 0, "", ""));
    let mut env = mode.to_vec();
    env.push(("OCF_RESKEY_CRM_meta_migrate_source", "nodea"));
    assert_eq!(f.run(&target, "migrate_from", &env), Ok(Health::Running));
    assert!(!dir.join("vm1.migrating").exists() && !dir.join("vm1.migrating.restoring").exists(), "the image is deleted once restored");
}

#[test]
fn a_migration_cut_after_the_suspend_leaves_the_source_suspended_and_says_so() {
    let f = Fixture::new("migsusp");
    let runner = Rc::new(
        RecordingRunner::new()
            .reply_once(&["xl", "list"], 0, &listing("vm1  3  256  1  -b----  0.9\n"), "")
            .reply(&["xl", "list"], 0, &listing("vm1  3  256  1  ---ss-  1.2\n"), "")
            .reply(&["xl", "migrate"], 1, "", "xc: error: Failed to write page data to stream\n"),
    );
    let e = f.run(&runner, "migrate_to", &[("OCF_RESKEY_CRM_meta_migrate_target", "nodeb")]).unwrap_err();
    assert!(e.reason.contains("suspended") && e.reason.contains("cannot resume"), "{}", e.reason);
    // Nothing may wake it: the target could hold the complete copy.
    assert!(!runner.called(&["xl", "unpause"]) && !runner.called(&["xl", "destroy"]));
}

#[test]
fn stop_gives_xl_a_moment_then_destroys_what_it_left_shut_down() {
    let f = Fixture::new("stopsusp");
    // A suspended source that a cut migration left (or a preserved
    // power-off): nothing will change it, so destroy; one that survives
    // destroy is a failed stop, not a stopped guest.
    for flags in ["---ss-", "---s--"] {
        let stuck = Rc::new(
            RecordingRunner::new()
                .reply(&["xl", "list"], 0, &listing(&format!("vm1  3  256  1  {flags}  1.2\n")), "")
                .reply(&["xl", "destroy"], 0, "", ""),
        );
        let e = f.run_within(Duration::from_secs(4), &stuck, "stop", &[]).unwrap_err();
        assert!(e.reason.contains("still present after destroy"), "{flags}: {}", e.reason);
        assert!(stuck.called(&["xl", "destroy", "vm1"]), "{flags}");
    }
    // One that xl finishes with (a save or migration ends, a powered-off
    // domain is cleaned up) is gone without a destroy.
    let finished = Rc::new(
        RecordingRunner::new()
            .reply_once(&["xl", "list"], 0, &listing("vm1  3  256  1  ---ss-  1.2\n"), "")
            .reply(&["xl", "list"], 0, &listing(""), ""),
    );
    assert_eq!(f.run(&finished, "stop", &[]), Ok(Health::Running));
    assert!(!finished.called(&["xl", "destroy"]));
    // A crashed one: nothing to wait for.
    let crashed = Rc::new(
        RecordingRunner::new()
            .reply_once(&["xl", "list"], 0, &listing("vm1  3  256  1  ---sc-  1.2\n"), "")
            .reply(&["xl", "list"], 0, &listing(""), "")
            .reply(&["xl", "destroy"], 0, "", ""),
    );
    assert_eq!(f.run(&crashed, "stop", &[]), Ok(Health::Running));
    assert!(crashed.called(&["xl", "destroy", "vm1"]));
    // Dying: Xen is already destroying it; there is nothing left to do.
    let dying = Rc::new(RecordingRunner::new().reply(&["xl", "list"], 0, &listing("vm1  3  256  1  ---s-d  1.2\n"), ""));
    assert_eq!(f.run(&dying, "stop", &[]), Ok(Health::Running));
    assert!(!dying.called(&["xl", "destroy"]));
}

/// Pacemaker stops a resource deleted from the CIB with no parameters at
/// all once `crm_resource --cleanup` has dropped the node's history of it
/// (seen in the Xen lab's cluster: xmfile fell back to its default, and the
/// stop failed, which fences the node). With neither xmfile nor name given,
/// the resource's name is the domain's, as heartbeat takes it.
#[test]
fn the_stop_of_a_deleted_resource_without_parameters_stops_the_domain_named_like_it() {
    let bare = || OcfEnv::from_vars(vec![("OCF_RESOURCE_INSTANCE".to_string(), "vm1".to_string())]);
    let runner = Rc::new(
        RecordingRunner::new()
            .reply_once(&["xl", "list"], 0, &listing("vm1  3  128  1  -b----  9.0\nother  4  128  1  -b----  9.0\n"), "")
            .reply(&["xl", "list"], 0, &listing("other  4  128  1  -b----  9.0\n"), "")
            .reply(&["xl", "shutdown"], 0, "", ""),
    );
    assert_eq!(run_env(Duration::from_secs(3), &runner, "stop", bare()), Ok(Health::Running));
    assert!(runner.called(&["xl", "shutdown", "vm1"]), "{:?}", runner.calls.borrow());
    assert!(!runner.called(&["xl", "shutdown", "other"]) && !runner.called(&["xl", "destroy", "other"]));
    // Its monitor reads the same name: another guest is not this one.
    let others = Rc::new(RecordingRunner::new().reply(&["xl", "list"], 0, &listing("other  4  128  1  -b----  9.0\n"), ""));
    assert_eq!(run_env(Duration::from_secs(3), &others, "monitor", bare()), Ok(Health::NotRunning));
    // A given xmfile that cannot be read is another matter: the guest may
    // run under the name inside it, so stop still refuses to guess.
    let f = Fixture::new("orphan");
    let unreadable = [("OCF_RESKEY_xmfile", "/nonexistent/vm1.cfg")];
    assert_eq!(f.run(&others, "stop", &unreadable).unwrap_err().code, OcfCode::ErrGeneric);
}

#[test]
fn stop_lets_a_rebooting_guest_come_back_and_shuts_it_down_instead_of_racing_xl() {
    // Destroying it while xl restarts it could leave a new domain behind.
    let f = Fixture::new("stopreboot");
    let runner = Rc::new(
        RecordingRunner::new()
            .reply_once(&["xl", "list"], 0, &listing("vm1  3  256  1  ---sr-  1.2\n"), "")
            .reply_once(&["xl", "list"], 0, &listing("vm1  4  256  1  r-----  0.1\n"), "")
            .reply(&["xl", "list"], 0, &listing(""), "")
            .reply(&["xl", "shutdown"], 0, "", ""),
    );
    assert_eq!(f.run(&runner, "stop", &[]), Ok(Health::Running));
    assert!(runner.called(&["xl", "shutdown", "vm1"]));
    assert!(!runner.called(&["xl", "destroy"]));
}

#[test]
fn validate_all_at_depth_0_needs_no_xmfile_and_depth_10_does() {
    let f = Fixture::new("depth");
    std::fs::remove_file(f.dir.join("vm.cfg")).unwrap();
    let runner = Rc::new(RecordingRunner::new());
    assert_eq!(f.run(&runner, "validate-all", &[]), Ok(Health::Running));
    assert!(runner.calls.borrow().is_empty(), "depth 0 asked xl: {:?}", runner.calls.borrow());
    let deep = f.run(&runner, "validate-all", &[("OCF_CHECK_LEVEL", "10")]).unwrap_err();
    assert_eq!(deep.code, OcfCode::ErrInstalled, "{}", deep.reason);
    assert_eq!(f.run(&runner, "validate-all", &[("OCF_RESKEY_shutdown_timeout", "soon")]).unwrap_err().code, OcfCode::ErrConfigured);
}

#[test]
fn reload_agent_checks_the_values_and_never_asks_xl() {
    let f = Fixture::new("reload");
    let runner = Rc::new(RecordingRunner::new());
    assert_eq!(f.run(&runner, "reload-agent", &[("OCF_RESKEY_migration_mode", "live")]), Ok(Health::Running));
    assert!(runner.calls.borrow().is_empty(), "reload asked xl: {:?}", runner.calls.borrow());
    assert_eq!(f.run(&runner, "reload-agent", &[("OCF_RESKEY_migration_mode", "teleport")]).unwrap_err().code, OcfCode::ErrConfigured);
    let md = Metadata::parse(METADATA).unwrap();
    let restart: Vec<&str> = md.params.iter().filter(|p| !p.reloadable).map(|p| p.name.as_str()).collect();
    assert_eq!(restart, ["xmfile", "name"], "only the guest's identity needs a restart");
}

/// With autoset_utilization_* on, reload-agent sets the running guest's
/// vCPUs and memory as its utilization (as a start does), so the change
/// applies now; a guest that is not here changes nothing.
#[test]
fn reload_agent_refreshes_utilization_from_the_running_domain() {
    let f = Fixture::new("reload-util");
    let on = [("OCF_RESKEY_crm_feature_set", "3.16.2"), ("OCF_RESKEY_autoset_utilization_cpu", "true"), ("OCF_RESKEY_autoset_utilization_hv_memory", "true")];
    let runner = Rc::new(RecordingRunner::new().reply(&["xl", "list"], 0, &listing("vm1  3  256  2  -b----  0.9\n"), "").reply(&["crm_resource"], 0, "", ""));
    assert_eq!(f.run(&runner, "reload-agent", &on), Ok(Health::Running));
    assert!(runner.called(&["crm_resource", "-Q", "-r", "r1", "-z", "-p", "cpu", "-v", "2"]), "{:?}", runner.calls.borrow());
    assert!(runner.called(&["crm_resource", "-Q", "-r", "r1", "-z", "-p", "hv_memory", "-v", "256"]), "{:?}", runner.calls.borrow());
    assert!(!runner.called(&["xl", "create"]) && !runner.called(&["xl", "shutdown"]), "reload touched the guest: {:?}", runner.calls.borrow());
    let absent = Rc::new(RecordingRunner::new().reply(&["xl", "list"], 0, &listing(""), "").reply(&["crm_resource"], 0, "", ""));
    assert_eq!(f.run(&absent, "reload-agent", &on), Ok(Health::Running));
    assert!(!absent.called(&["crm_resource"]), "utilization set for a guest that is not here: {:?}", absent.calls.borrow());
}

/// Issue 24 for the Xen agent: every value validate-all refuses, for every
/// parameter but the guest's identity (xmfile, name), leaves the monitor of
/// a running guest saying it runs and its stop stopping it.
#[test]
fn a_mistyped_parameter_never_fails_monitor_or_stop() {
    use crate::ocf::metadata::ParamType;
    let f = Fixture::new("typos");
    let md = Metadata::parse(METADATA).unwrap();
    let running = listing("vm1  3  256  1  -b----  0.9\n");
    let (mut refused, mut failures) = (0, Vec::new());
    for spec in md.params.iter().filter(|p| p.name != "xmfile" && p.name != "name") {
        let values: &[&str] = match spec.kind {
            ParamType::Integer => &["abc", "-7", "99999999999"],
            ParamType::Boolean => &["perhaps"],
            ParamType::String => &["bogus", "-1", "/"],
        };
        for value in values {
            let key = format!("OCF_RESKEY_{}", spec.name);
            let quiet = Rc::new(RecordingRunner::new());
            if f.run(&quiet, "validate-all", &[(key.as_str(), value)]).map_err(|e| e.code) != Err(OcfCode::ErrConfigured) {
                continue;
            }
            refused += 1;
            let watching = Rc::new(RecordingRunner::new().reply(&["xl", "list"], 0, &running, ""));
            match f.run(&watching, "monitor", &[(key.as_str(), value), ("OCF_RESKEY_CRM_meta_interval", "10000")]) {
                Ok(Health::Running | Health::Degraded(_)) => {}
                other => failures.push(format!("monitor with {}={value}: {other:?}", spec.name)),
            }
            let stopping = Rc::new(
                RecordingRunner::new()
                    .reply_once(&["xl", "list"], 0, &running, "")
                    .reply(&["xl", "shutdown"], 0, "", "")
                    .reply(&["xl", "destroy"], 0, "", "")
                    .reply(&["xl", "list"], 0, &listing(""), ""),
            );
            if let Err(e) = f.run(&stopping, "stop", &[(key.as_str(), value)]) {
                failures.push(format!("stop with {}={value}: {e:?}", spec.name));
            }
        }
    }
    eprintln!("Xen typos: {refused} refused values");
    assert!(refused >= 5, "the matrix must exercise refused values");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
