//! Bad input: each case gets the right OCF code and a clear exit reason, and
//! nothing on the node changes.

use crate::support::*;

struct Case {
    what: &'static str,
    action: &'static str,
    env: Vec<(String, String)>,
    code: i32,
    reason: &'static str,
}

fn case(what: &'static str, action: &'static str, env: &[(&str, &str)], code: i32, reason: &'static str) -> Case {
    let mut full = pairs(&[("OCF_RESOURCE_INSTANCE", "bad-input")]);
    full.extend(pairs(env));
    Case { what, action, env: full, code, reason }
}

#[test]
fn bad_input_gets_the_right_code_and_a_clear_reason() {
    let dir = TempDir::new("bad");
    let g = Guest::new("bad");
    let good = g.config.display().to_string();
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let malformed = write("malformed.xml", "<domain type='qemu'><name>x</name>");
    let network = write("network.xml", "<network><name>default</name></network>");
    let nameless = write("nameless.xml", "<domain type='qemu'><memory>1</memory></domain>");
    let empty = write("empty.xml", "");
    let a_dir = dir.0.display().to_string();
    let failing_script = write("not-executable.sh", "#!/bin/sh\nexit 0\n");
    let c = &good;
    let cases = vec![
        case("config unset", "start", &[], 6, "required parameter 'config' is not set"),
        case("config empty", "validate-all", &[("OCF_RESKEY_config", "")], 6, "required parameter 'config'"),
        case("config missing", "start", &[("OCF_RESKEY_config", "/nonexistent/vm.xml")], 5, "not readable"),
        case("config missing, validate", "validate-all", &[("OCF_RESKEY_config", "/nonexistent/vm.xml"), ("OCF_CHECK_LEVEL", "10")], 5, "not readable"),
        // Depth 0 checks the parameters alone: pcs validates on create, on a node that may lack the file.
        case("config missing, validate at depth 0", "validate-all", &[("OCF_RESKEY_config", "/nonexistent/vm.xml")], 0, ""),
        case("hypervisor down, validate at depth 10", "validate-all", &[("OCF_RESKEY_config", c), ("OCF_RESKEY_hypervisor", "qemu+unix:///system?socket=/nonexistent/libvirt-sock"), ("OCF_CHECK_LEVEL", "10")], 1, "the hypervisor does not answer"),
        case("config is a directory", "start", &[("OCF_RESKEY_config", &a_dir)], 5, "not readable"),
        case("config relative", "start", &[("OCF_RESKEY_config", "vm.xml")], 6, "must be an absolute path"),
        case("config not well-formed", "start", &[("OCF_RESKEY_config", &malformed)], 5, "not a domain definition"),
        case("config empty file", "validate-all", &[("OCF_RESKEY_config", &empty), ("OCF_CHECK_LEVEL", "10")], 5, "not a domain definition"),
        case("config is a network", "start", &[("OCF_RESKEY_config", &network)], 5, "<network>, not <domain>"),
        case("config without a name", "validate-all", &[("OCF_RESKEY_config", &nameless), ("OCF_CHECK_LEVEL", "10")], 5, "no <name>"),
        case("boolean not a boolean", "start", &[("OCF_RESKEY_config", c), ("OCF_RESKEY_force_stop", "maybe")], 6, "'force_stop' must be a boolean"),
        case("integer not an integer", "validate-all", &[("OCF_RESKEY_config", c), ("OCF_RESKEY_migration_downtime", "fast")], 6, "'migration_downtime' must be an integer"),
        // A value monitor or stop cannot use costs them nothing (issue 24): a
        // monitor's 6 would stop the guest everywhere, a stop's would fence.
        case("integer not an integer, monitor", "monitor", &[("OCF_RESKEY_config", c), ("OCF_RESKEY_migration_downtime", "fast")], 7, ""),
        case("too many migration slots", "migrate_to", &[("OCF_RESKEY_config", c), ("OCF_RESKEY_migration_slots", "65"), ("OCF_RESKEY_CRM_meta_migrate_target", "nowhere")], 6, "migration_slots 65 is more than 64"),
        case("negative migration slots", "validate-all", &[("OCF_RESKEY_config", c), ("OCF_RESKEY_migration_slots", "-1")], 6, "migration_slots must not be negative"),
        case("port out of range", "validate-all", &[("OCF_RESKEY_config", c), ("OCF_RESKEY_migrateport", "0")], 6, "migrateport 0"),
        case("hypervisor not a URI", "validate-all", &[("OCF_RESKEY_config", c), ("OCF_RESKEY_hypervisor", "qemu")], 6, "not a libvirt URI"),
        case("unknown shutdown mode", "validate-all", &[("OCF_RESKEY_config", c), ("OCF_RESKEY_shutdown_mode", "acpi,halt")], 6, "shutdown_mode 'halt'"),
        case("unknown shutdown mode, stop", "stop", &[("OCF_RESKEY_config", c), ("OCF_RESKEY_shutdown_mode", "acpi,halt")], 0, ""),
        case("snapshot with force_stop", "validate-all", &[("OCF_RESKEY_config", c), ("OCF_RESKEY_snapshot", &a_dir), ("OCF_RESKEY_force_stop", "1")], 6, "exclude each other"),
        case("stateless without backingfile", "start", &[("OCF_RESKEY_config", c), ("OCF_RESKEY_stateless", "true")], 6, "needs a backingfile"),
        case("copyindirs without stateless", "validate-all", &[("OCF_RESKEY_config", c), ("OCF_RESKEY_copyindirs", "/etc")], 6, "only to stateless"),
        case("migration_user with a space", "validate-all", &[("OCF_RESKEY_config", c), ("OCF_RESKEY_migration_user", "root x")], 6, "not a valid user name"),
        case("migration_transport injection", "validate-all", &[("OCF_RESKEY_config", c), ("OCF_RESKEY_migration_transport", "ssh;reboot")], 6, "not a URI transport"),
        // A typo libvirt would refuse only at the next migration (found by
        // the chaos harness's ParameterTypo): refused now, and no cost to
        // stop, which never migrates.
        case("migration_transport typo", "validate-all", &[("OCF_RESKEY_config", c), ("OCF_RESKEY_migration_transport", "pigeon")], 6, "'pigeon' is not a URI transport libvirt can reach"),
        case("migration_transport typo, reload-agent", "reload-agent", &[("OCF_RESKEY_config", c), ("OCF_RESKEY_migration_transport", "pigeon")], 6, "'pigeon'"),
        case("migration_transport typo, stop", "stop", &[("OCF_RESKEY_config", c), ("OCF_RESKEY_migration_transport", "pigeon")], 0, ""),
        case("as a clone", "validate-all", &[("OCF_RESKEY_config", c), ("OCF_RESKEY_CRM_meta_clone", "0"), ("OCF_RESKEY_CRM_meta_clone_max", "2")], 6, "must not be a clone"),
        case("start as a clone", "start", &[("OCF_RESKEY_config", c), ("OCF_RESKEY_CRM_meta_clone_max", "2")], 6, "must not be a clone"),
        case("snapshot directory missing", "validate-all", &[("OCF_RESKEY_config", c), ("OCF_RESKEY_snapshot", "/nonexistent/saves"), ("OCF_CHECK_LEVEL", "10")], 5, "snapshot directory /nonexistent/saves"),
        case("backing file missing", "validate-all", &[("OCF_RESKEY_config", c), ("OCF_RESKEY_backingfile", "/nonexistent/base.qcow2"), ("OCF_CHECK_LEVEL", "10")], 5, "backingfile /nonexistent/base.qcow2"),
        case("monitor script not executable", "validate-all", &[("OCF_RESKEY_config", c), ("OCF_RESKEY_monitor_scripts", &failing_script), ("OCF_CHECK_LEVEL", "10")], 5, "not an executable file"),
        case("unreachable local socket", "start", &[("OCF_RESKEY_config", c), ("OCF_RESKEY_hypervisor", "qemu+unix:///system?socket=/nonexistent/libvirt-sock")], 1, "libvirt unreachable"),
        case("unreachable remote URI", "monitor", &[("OCF_RESKEY_config", c), ("OCF_RESKEY_hypervisor", "qemu+tcp://127.0.0.1:1/system"), ("OCF_RESKEY_CRM_meta_timeout", "10000")], 1, "cannot tell whether the guest runs here"),
        case("unknown action", "reload", &[("OCF_RESKEY_config", c)], 3, "'reload' is not implemented"),
    ];
    assert!(cases.len() >= 20);
    let mut failures = Vec::new();
    for case in &cases {
        let run = agent(case.action, &case.env);
        let reason = run.reason().unwrap_or_default();
        if run.code != case.code || !reason.contains(case.reason) {
            failures.push(format!("{}: {} -> {} ({reason:?}), want {} ({:?})\n{}", case.what, case.action, run.code, case.code, case.reason, run.stderr));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
    assert_eq!(g.libvirt_state(), None, "no bad input may start the guest");
}

#[test]
fn an_unreachable_local_libvirt_with_no_guest_process_is_provably_stopped() {
    // A local socket that does not answer: the /proc scan decides, and no QEMU
    // process of this name exists.
    let g = Guest::new("nosock");
    let env = g.env(&[("OCF_RESKEY_hypervisor", "qemu+unix:///system?socket=/nonexistent/libvirt-sock")]);
    assert_eq!(agent("monitor", &env).code, 7);
    assert_eq!(agent("stop", &env).code, 0);
}

/// Settings that work today but will not once a Debian 13 node or a second
/// copy is in play: validate-all says so and still answers 0, since the
/// guest runs fine with them now.
#[test]
fn validate_all_warns_of_what_debian_13_refuses_and_of_disks_without_leases() {
    let g = Guest::new("warnings");
    let v = g.run("validate-all", &[("OCF_RESKEY_migrate_options", "--compressed"), ("OCF_RESKEY_migration_parallel", "2")]);
    assert_eq!(v.code, 0, "{}", v.stderr);
    assert!(v.stderr.contains("WARNING") && v.stderr.contains("compression over parallel connections"), "{}", v.stderr);
    let v = g.run("validate-all", &[("OCF_RESKEY_migrate_options", "--compressed")]);
    assert!(!v.stderr.contains("compression over parallel"), "compression alone works on both: {}", v.stderr);
    // This node's libvirt (with-libvirtd.sh's) has no lock manager.
    let v = g.run("validate-all", &[("OCF_CHECK_LEVEL", "10")]);
    assert!(!v.stderr.contains("disk leases"), "a guest without disks needs no lease: {}", v.stderr);
    let disk = g.dir.join("disk.raw");
    std::fs::write(&disk, vec![0u8; 1 << 20]).unwrap();
    g.with_devices(&format!("<disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='{}'/><target dev='vda' bus='virtio'/></disk>", disk.display()), "");
    let v = g.run("validate-all", &[("OCF_CHECK_LEVEL", "10")]);
    assert_eq!(v.code, 0, "{}", v.stderr);
    assert!(v.stderr.contains("WARNING") && v.stderr.contains("takes no disk leases"), "{}", v.stderr);
}
