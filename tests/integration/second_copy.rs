//! Paths to a second copy that a real libvirtd can show: a definition
//! under the config's name that hides the running guest, and a guest that
//! another agent started, found again once its config is gone (issue 23,
//! findings 4 and 5). Each asserts the answer Pacemaker would act on.

use crate::support::*;

/// The config's `<name>` is edited from N to N-new while N runs, and a
/// persistent N-new, shut off, is defined on the node: libvirt's answer for
/// the config's name is "shut off", which must not stand for the guest.
#[test]
fn a_shut_off_definition_under_the_config_s_name_never_hides_the_running_guest() {
    let g = Guest::new("shadow");
    assert_eq!(g.run("start", &[]).code, 0);
    let new_name = format!("{}-new", g.name);
    g.edit_config(|xml| xml.replace(&format!("<name>{}</name>", g.name), &format!("<name>{new_name}</name>")));
    let defined = virsh(&["define", &g.config.display().to_string()]);
    assert!(defined.status.success(), "{}", String::from_utf8_lossy(&defined.stderr));
    let _undefine = Defer(|| {
        let _ = virsh(&["undefine", &new_name]);
    });
    assert_eq!(virsh(&["domstate", &new_name]).stdout, b"shut off\n\n");

    let probe = g.probe();
    assert_eq!(probe.code, 190, "the probe must find the marked guest running as the old name: {}", probe.stderr);
    assert!(probe.reason().unwrap_or_default().contains(&format!("runs as {}", g.name)), "{}", probe.stderr);
    let monitor = g.run("monitor", &[]);
    assert_eq!(monitor.code, 190, "{}", monitor.stderr);
    let stop = g.run("stop", &[("OCF_RESKEY_force_stop", "true")]);
    assert_eq!(stop.code, 0, "{}", stop.stderr);
    assert_eq!(g.libvirt_state(), None, "stop answered 0 while the marked guest runs on");
    assert_eq!(virsh(&["domstate", &new_name]).stdout, b"shut off\n\n", "the operator's definition is untouched");
    assert_eq!(g.probe().code, 7);
}

/// Switching a running guest from heartbeat:VirtualDomain to ferry: the
/// heartbeat agent started it (a transient domain, no owner mark). ferry's
/// first probe finds it by the config's name and marks it, so a later
/// monitor with the config unreadable still finds it.
#[test]
fn a_guest_started_by_heartbeat_is_adopted_and_still_found_with_its_config_gone() {
    let g = Guest::new("adopt");
    let heartbeat = std::path::Path::new("/usr/lib/ocf/resource.d/heartbeat/VirtualDomain");
    let start = run_program(heartbeat, &["start"], &g.env(&[("OCF_RESKEY_CRM_meta_timeout", "60000")]));
    assert_eq!(start.code, 0, "heartbeat:VirtualDomain start: {}", start.stderr);
    let xml = String::from_utf8_lossy(&virsh(&["dumpxml", &g.name]).stdout).into_owned();
    assert!(!xml.contains("urn:x-ferry:owner:1"), "heartbeat's guest must start unmarked");

    // The provider is switched in maintenance mode; Pacemaker probes.
    let probe = g.probe();
    assert_eq!(probe.code, 0, "{}", probe.stderr);
    let xml = String::from_utf8_lossy(&virsh(&["dumpxml", &g.name]).stdout).into_owned();
    assert!(xml.contains("urn:x-ferry:owner:1") && xml.contains(&format!("resource=\"{}\"", g.instance)), "the probe must mark the guest: {xml}");
    let persistent = String::from_utf8_lossy(&virsh(&["list", "--all", "--persistent", "--name"]).stdout).into_owned();
    assert!(!persistent.lines().any(|l| l.trim() == g.name), "marking must not define the domain");

    // The shared storage with the config goes away.
    std::fs::rename(&g.config, g.dir.join("away.xml")).unwrap();
    let probe = g.probe();
    assert_eq!(probe.code, 190, "with its config gone the running guest must still be found: {}", probe.stderr);
    let stop = g.run("stop", &[("OCF_RESKEY_force_stop", "true")]);
    assert_eq!(stop.code, 0, "{}", stop.stderr);
    assert_eq!(g.libvirt_state(), None, "stop answered 0 while the guest runs on");
}
