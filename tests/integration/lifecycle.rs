//! A real guest through its life: start, monitor, graceful and forced stop,
//! idempotence, no state on the node, and the cases where the anchor agent
//! reports "stopped" for a guest that runs.

use crate::support::*;
use std::time::Duration;

#[test]
fn probe_start_monitor_stop_are_idempotent_and_shutdown_is_graceful() {
    let g = Guest::new("life");
    assert_eq!(g.probe().code, 7, "probe before start");
    let start = g.run("start", &[]);
    assert_eq!(start.code, 0, "{}", start.stderr);
    assert_eq!(g.libvirt_state().as_deref(), Some("running"));
    assert_eq!(g.run("monitor", &[]).code, 0);
    assert_eq!(g.run("status", &[]).code, 0);
    assert_eq!(g.probe().code, 0);
    assert_eq!(g.run("start", &[]).code, 0, "second start");
    assert!(g.wait_console("ferry-guest: up", BOOT), "guest did not boot:\n{}", g.console_text());
    let stop = g.run("stop", &[]);
    assert_eq!(stop.code, 0, "{}", stop.stderr);
    assert!(g.console_text().contains("reboot: Power down"), "stop was not graceful:\n{}", g.console_text());
    assert_eq!(g.libvirt_state(), None, "the transient domain is gone");
    assert_eq!(g.run("stop", &[]).code, 0, "second stop");
    assert_eq!(g.run("monitor", &[]).code, 7);
    assert_eq!(g.probe().code, 7);
}

#[test]
fn the_guest_carries_its_owner_mark_and_nothing_is_defined_on_the_node() {
    let g = Guest::new("mark");
    assert_eq!(g.run("start", &[]).code, 0);
    let xml = String::from_utf8_lossy(&virsh(&["dumpxml", &g.name]).stdout).into_owned();
    assert!(xml.contains("urn:x-ferry:owner:1") && xml.contains(&format!("resource=\"{}\"", g.instance)), "{xml}");
    let persistent = String::from_utf8_lossy(&virsh(&["list", "--all", "--persistent", "--name"]).stdout).into_owned();
    assert!(!persistent.lines().any(|l| l.trim() == g.name), "start must not define the domain");
    assert_eq!(std::fs::read_to_string(&g.config).unwrap(), g.xml(), "the operator's file is untouched");
    assert_eq!(g.run("stop", &[("OCF_RESKEY_force_stop", "true")]).code, 0);
}

#[test]
fn force_stop_destroys_without_asking_the_guest() {
    let g = Guest::new("force");
    assert_eq!(g.run("start", &[]).code, 0);
    assert!(g.wait_console("ferry-guest: up", BOOT));
    let stop = g.run("stop", &[("OCF_RESKEY_force_stop", "1")]);
    assert_eq!(stop.code, 0, "{}", stop.stderr);
    assert!(!g.console_text().contains("Power down"), "force_stop must not shut down gracefully");
    assert_eq!(g.libvirt_state(), None);
}

#[test]
fn shutdown_mode_takes_effect_and_destroy_still_fits_the_budget() {
    let g = Guest::new("mode");
    assert_eq!(g.run("start", &[]).code, 0);
    assert!(g.wait_console("ferry-guest: up", BOOT));
    // The test guest has no guest agent: mode "agent" cannot work, so the
    // guest must end by destroy, inside a 20 s operation timeout.
    let stop = g.run("stop", &[("OCF_RESKEY_shutdown_mode", "agent"), ("OCF_RESKEY_CRM_meta_timeout", "20000")]);
    assert_eq!(stop.code, 0, "{}", stop.stderr);
    assert!(stop.took < Duration::from_secs(20), "stop took {:?}", stop.took);
    assert!(stop.stderr.contains("destroying"), "{}", stop.stderr);
    assert!(!g.console_text().contains("Power down"));
    assert_eq!(g.libvirt_state(), None);
    // Mode "acpi" is what the guest answers.
    assert_eq!(g.run("start", &[]).code, 0);
    assert!(g.wait_console("ferry-tick 1", BOOT));
    let stop = g.run("stop", &[("OCF_RESKEY_shutdown_mode", "acpi")]);
    assert_eq!(stop.code, 0, "{}", stop.stderr);
    assert!(g.console_text().contains("Power down"));
}

#[test]
fn an_unreadable_config_never_hides_a_running_guest() {
    let g = Guest::new("noconf");
    assert_eq!(g.run("start", &[]).code, 0);
    let hidden = g.dir.join("moved-away.xml");
    std::fs::rename(&g.config, &hidden).unwrap();
    // Running, found through the mark: never 7.
    let monitor = g.run("monitor", &[]);
    assert_eq!(monitor.code, 190, "{}", monitor.stderr);
    assert!(monitor.stderr.contains("owner mark"), "{}", monitor.stderr);
    assert_eq!(g.probe().code, 190);
    // Another resource with the same missing file is provably not running here.
    let other = agent("monitor", &pairs(&[("OCF_RESOURCE_INSTANCE", "someone-else"), ("OCF_RESKEY_config", &g.config.display().to_string())]));
    assert_eq!(other.code, 7);
    // start needs the file; stop finds the guest without it.
    let start = g.run("start", &[]);
    assert_eq!(start.code, 5);
    assert!(start.reason().unwrap().contains("not readable"));
    assert_eq!(g.run("stop", &[]).code, 0);
    assert_eq!(g.libvirt_state(), None, "stop without the config must still stop the guest");
    assert_eq!(g.probe().code, 7);
}

#[test]
fn monitor_scripts_gate_monitor_with_their_output_as_reason() {
    let g = Guest::new("scripts");
    let script = g.dir.join("check.sh");
    std::fs::write(&script, "#!/bin/sh\n[ -e \"$(dirname \"$0\")/healthy\" ] && exit 0\necho 'service inside is down' >&2\nexit 1\n").unwrap();
    std::process::Command::new("chmod").arg("+x").arg(&script).status().unwrap();
    std::fs::write(g.dir.join("healthy"), "").unwrap();
    let with_script = [("OCF_RESKEY_monitor_scripts", script.to_str().unwrap())];
    assert_eq!(g.run("start", &with_script).code, 0);
    assert_eq!(g.run("monitor", &with_script).code, 0);
    std::fs::remove_file(g.dir.join("healthy")).unwrap();
    let failed = g.run("monitor", &with_script);
    assert_eq!(failed.code, 1);
    assert!(failed.reason().unwrap().contains("service inside is down"), "{:?}", failed.reason());
    assert_eq!(g.run("stop", &[("OCF_RESKEY_force_stop", "1")]).code, 0);
}

#[test]
fn odd_characters_in_domain_and_resource_names_are_handled() {
    let mut g = Guest::named(&format!("ferry it 'odd' & x,y {}", std::process::id()), "odd");
    g.instance = "res/odd name;$(true)".into();
    assert_eq!(g.run("start", &[]).code, 0);
    assert_eq!(g.run("monitor", &[]).code, 0);
    assert_eq!(g.run("stop", &[("OCF_RESKEY_force_stop", "yes")]).code, 0);
    assert_eq!(g.run("monitor", &[]).code, 7);
}

#[test]
fn save_config_on_stop_writes_the_definition_back_without_the_mark() {
    let g = Guest::new("saveconf");
    assert_eq!(g.run("start", &[]).code, 0);
    let stop = g.run("stop", &[("OCF_RESKEY_save_config_on_stop", "true"), ("OCF_RESKEY_force_stop", "true")]);
    assert_eq!(stop.code, 0, "{}", stop.stderr);
    // force_stop skips the graceful path, and so the write-back; do it properly:
    assert_eq!(g.run("start", &[]).code, 0);
    assert!(g.wait_console("ferry-guest: up", BOOT));
    let stop = g.run("stop", &[("OCF_RESKEY_save_config_on_stop", "true")]);
    assert_eq!(stop.code, 0, "{}", stop.stderr);
    let saved = std::fs::read_to_string(&g.config).unwrap();
    assert!(saved.contains("<uuid>"), "libvirt's dump was written back: {saved}");
    assert!(!saved.contains("ferry:owner"), "the mark stays out of the operator's file");
    assert_eq!(g.run("start", &[]).code, 0, "the written-back file starts the guest");
    assert_eq!(g.run("stop", &[("OCF_RESKEY_force_stop", "true")]).code, 0);
}

#[test]
fn snapshot_saves_memory_on_stop_and_start_resumes_it() {
    let g = Guest::new("snap");
    let dir = g.dir.join("saved");
    std::fs::create_dir(&dir).unwrap();
    let snap = [("OCF_RESKEY_snapshot", dir.to_str().unwrap())];
    assert_eq!(g.run("start", &snap).code, 0);
    assert!(g.wait_console("ferry-tick 3", BOOT));
    assert_eq!(g.run("stop", &snap).code, 0);
    let state = dir.join(format!("{}.state", g.name));
    assert!(state.exists(), "stop saved the guest's memory");
    let before = g.ticks().into_iter().max().unwrap();
    let boots_before = g.console_text().matches("ferry-guest: up").count();
    assert_eq!(g.run("start", &snap).code, 0);
    assert!(!state.exists(), "a restored image is not restored twice");
    assert!(wait_for(BOOT, || g.ticks().into_iter().max().unwrap_or(0) > before + 1));
    assert_eq!(g.console_text().matches("ferry-guest: up").count(), boots_before, "resumed, not rebooted");
    assert_eq!(g.run("stop", &[("OCF_RESKEY_force_stop", "1")]).code, 0);
}

#[test]
fn a_second_domain_with_the_same_uuid_is_refused_with_libvirts_reason() {
    let a = Guest::new("uuid-a");
    let b = Guest::new("uuid-b");
    let uuid = "6a4ae0f5-5b0e-4d7e-9c1f-3f1e2e1d0c0b";
    for g in [&a, &b] {
        std::fs::write(&g.config, g.xml().replace("<vcpu>", &format!("<uuid>{uuid}</uuid><vcpu>"))).unwrap();
    }
    assert_eq!(a.run("start", &[]).code, 0);
    let clash = b.run("start", &[]);
    assert_eq!(clash.code, 1, "{}", clash.stderr);
    assert!(clash.reason().unwrap().contains(&format!("cannot start {}", b.name)), "{:?}", clash.reason());
    assert_eq!(a.run("monitor", &[]).code, 0, "the running guest is untouched");
    assert_eq!(a.run("stop", &[("OCF_RESKEY_force_stop", "1")]).code, 0);
}
