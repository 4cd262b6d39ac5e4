//! An honest "running": real guests that stop serving while QEMU lives on,
//! each made to fail the way it fails in production. A disk that fills
//! under the guest (error_policy='stop'), a kernel panic reported through
//! pvpanic, a watchdog the guest stops feeding, an operator's pause, and a
//! guest agent that stops answering. monitor must tell each one apart from
//! a guest that serves.

use crate::support::*;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// A small tmpfs the test can fill and grow: the guest's disk lives on it.
/// Unmounted when the test ends; declared before the guest, so the guest
/// (dropped first) has released the file by then.
struct SmallFs(PathBuf);

impl SmallFs {
    fn new(dir: PathBuf, mib: u32) -> SmallFs {
        std::fs::create_dir_all(&dir).unwrap();
        let ok = Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"]).arg(&dir).status().unwrap().success();
        assert!(ok, "cannot mount a tmpfs on {}", dir.display());
        SmallFs(dir)
    }
    fn grow(&self, mib: u32) {
        let ok = Command::new("mount").args(["-o", &format!("remount,size={mib}m")]).arg(&self.0).status().unwrap().success();
        assert!(ok, "cannot grow {}", self.0.display());
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn wait_status(g: &Guest, prefix: &str, within: Duration) -> bool {
    wait_for(within, || g.libvirt_status().is_some_and(|s| s.starts_with(prefix)))
}

fn monitor(g: &Guest, extra: &[(&str, &str)]) -> Run {
    g.run("monitor", extra)
}

#[test]
fn an_operator_pause_is_degraded_until_resumed() {
    let g = Guest::new("paused");
    assert_eq!(g.run("start", &[]).code, 0);
    assert!(virsh(&["suspend", &g.name]).status.success());
    let paused = monitor(&g, &[]);
    assert_eq!(paused.code, 190, "running but not serving: {}", paused.stderr);
    assert!(paused.reason().unwrap_or_default().contains("paused by an operator"), "{}", paused.stderr);
    assert!(virsh(&["resume", &g.name]).status.success());
    assert_eq!(monitor(&g, &[]).code, 0);
    assert!(virsh(&["destroy", &g.name]).status.success());
    assert_eq!(monitor(&g, &[]).code, 7, "destroyed behind the cluster's back");
}

#[test]
fn a_guest_paused_on_a_disk_error_fails_or_degrades_or_is_resumed_as_the_policy_says() {
    let small = SmallFs::new(std::env::temp_dir().join(format!("ferry-it-small-{}", std::process::id())), 3);
    let disk = small.0.join("disk.raw");
    std::fs::File::create(&disk).unwrap().set_len(64 << 20).unwrap();
    let g = Guest::new("ioerror");
    g.with_devices(
        &format!("<disk type='file' device='disk'><driver name='qemu' type='raw' error_policy='stop'/><source file='{}'/><target dev='vda' bus='virtio'/></disk>", disk.display()),
        "ferry.disk=1",
    );
    assert_eq!(g.run("start", &[]).code, 0);
    assert!(wait_status(&g, "paused (I/O error)", BOOT), "the disk never filled: {:?}\n{}", g.libvirt_status(), g.console_text());
    let failed = monitor(&g, &[]);
    assert_eq!(failed.code, 1, "io_error_policy=fail (the default): {}", failed.stderr);
    assert!(failed.reason().unwrap_or_default().contains("paused on a disk I/O error (vda: no space)"), "the disk and its error: {}", failed.stderr);
    assert_eq!(g.probe().code, 1, "a probe says the same: the guest is here, and broken");
    let degraded = monitor(&g, &[("OCF_RESKEY_io_error_policy", "degraded")]);
    assert_eq!(degraded.code, 190, "{}", degraded.stderr);
    let still_full = monitor(&g, &[("OCF_RESKEY_io_error_policy", "resume")]);
    assert_eq!(still_full.code, 190, "resumed, and paused again by the full disk: {}", still_full.stderr);
    assert!(still_full.reason().unwrap_or_default().contains("again after a resume"), "{}", still_full.stderr);
    assert_eq!(g.libvirt_status().as_deref(), Some("paused (I/O error)"));
    small.grow(128);
    let written = g.console_text().matches("ferry-disk wrote").count();
    let resumed = monitor(&g, &[("OCF_RESKEY_io_error_policy", "resume")]);
    assert_eq!(resumed.code, 0, "the storage answers again: {}", resumed.stderr);
    assert!(resumed.stderr.contains("has been resumed"), "the resume is logged: {}", resumed.stderr);
    assert!(wait_for(BOOT, || g.console_text().matches("ferry-disk wrote").count() > written + 1), "the guest writes again:\n{}", g.console_text());
    let stop = g.run("stop", &[]);
    assert_eq!(stop.code, 0, "{}", stop.stderr);
    assert_eq!(g.libvirt_state(), None);
}

#[test]
fn a_panicked_guest_fails_the_monitor_and_stop_clears_it() {
    let g = Guest::new("panic");
    g.with_devices("<panic model='isa'/>", "unknown_nmi_panic=1");
    g.edit_config(|xml| xml.replace("<on_crash>destroy</on_crash>", "<on_crash>preserve</on_crash>"));
    assert_eq!(g.run("start", &[]).code, 0);
    assert!(g.wait_console("ferry-guest: up", BOOT), "{}", g.console_text());
    assert_eq!(monitor(&g, &[]).code, 0);
    assert!(virsh(&["inject-nmi", &g.name]).status.success());
    assert!(wait_status(&g, "crashed (panicked)", Duration::from_secs(30)), "{:?}\n{}", g.libvirt_status(), g.console_text());
    let failed = monitor(&g, &[]);
    assert_eq!(failed.code, 1, "{}", failed.stderr);
    assert!(failed.reason().unwrap_or_default().contains("guest panicked"), "{}", failed.stderr);
    let stop = g.run("stop", &[]);
    assert_eq!(stop.code, 0, "{}", stop.stderr);
    assert!(!stop.stderr.contains("did not shut down in time"), "a crashed guest is destroyed at once: {}", stop.stderr);
    assert_eq!(g.libvirt_state(), None);
    assert_eq!(monitor(&g, &[]).code, 7);
}

#[test]
fn a_watchdog_that_fires_fails_the_monitor() {
    let g = Guest::new("watchdog");
    g.with_devices("<watchdog model='i6300esb' action='pause'/>", "ferry.watchdog=2");
    assert_eq!(g.run("start", &[]).code, 0);
    assert!(g.wait_console("watchdog armed", BOOT), "{}", g.console_text());
    assert!(wait_status(&g, "paused (watchdog)", Duration::from_secs(60)), "{:?}", g.libvirt_status());
    let failed = monitor(&g, &[]);
    assert_eq!(failed.code, 1, "{}", failed.stderr);
    assert!(failed.reason().unwrap_or_default().contains("watchdog"), "{}", failed.stderr);
    let stop = g.run("stop", &[]);
    assert_eq!(stop.code, 0, "{}", stop.stderr);
    assert!(stop.stderr.contains("cannot shut down by itself"), "{}", stop.stderr);
    assert_eq!(g.libvirt_state(), None);
}

#[test]
fn depth_ten_asks_the_guest_agent_and_a_silent_agent_fails_only_there() {
    let g = Guest::new("deep");
    g.with_devices("<channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>", "");
    assert_eq!(g.run("start", &[]).code, 0);
    assert!(g.wait_console("guest agent on", BOOT), "{}", g.console_text());
    let deep = [("OCF_CHECK_LEVEL", "10"), ("OCF_RESKEY_guest_agent_timeout", "2")];
    // Until the guest opens its end of the channel, the boot grace answers;
    // wait until the guest itself has answered a depth-10 monitor.
    assert!(
        wait_for(BOOT, || monitor(&g, &deep).code == 0 && g.console_text().contains("guest-ping answered")),
        "the guest agent never answered: {}",
        monitor(&g, &deep).stderr
    );
    let frozen = virsh(&["qemu-agent-command", &g.name, "--timeout", "5", r#"{"execute":"ferry-freeze"}"#]);
    assert!(frozen.status.success(), "{}", String::from_utf8_lossy(&frozen.stderr));
    assert_eq!(monitor(&g, &[]).code, 0, "depth 0 sees only QEMU, which runs");
    let silent = monitor(&g, &deep);
    assert_eq!(silent.code, 1, "{}", silent.stderr);
    assert!(silent.reason().unwrap_or_default().contains("guest agent did not answer"), "{}", silent.stderr);
    let mut degraded = deep.to_vec();
    degraded.push(("OCF_RESKEY_guest_agent_silence", "degraded"));
    assert_eq!(monitor(&g, &degraded).code, 190);
    assert_eq!(g.run("stop", &[]).code, 0);
}

#[test]
fn an_agent_that_never_connects_is_allowed_the_boot_grace_and_no_more() {
    let g = Guest::new("noagent");
    g.with_devices("<channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>", "ferry.agent=off");
    assert_eq!(g.run("start", &[]).code, 0);
    assert!(g.wait_console("ferry-guest: up", BOOT), "{}", g.console_text());
    let young = monitor(&g, &[("OCF_CHECK_LEVEL", "10")]);
    assert_eq!(young.code, 0, "within guest_agent_boot_grace (180 s): {}", young.stderr);
    assert!(young.stderr.contains("has not connected yet"), "{}", young.stderr);
    let late = monitor(&g, &[("OCF_CHECK_LEVEL", "10"), ("OCF_RESKEY_guest_agent_boot_grace", "0")]);
    assert_eq!(late.code, 1, "{}", late.stderr);
    assert!(late.reason().unwrap_or_default().contains("not connected"), "{}", late.stderr);
    assert_eq!(g.run("stop", &[]).code, 0);
}

#[test]
fn a_guest_without_an_agent_channel_is_a_configuration_fact_at_depth_ten_not_silence() {
    // The test guest's definition has no org.qemu.guest_agent.0 channel.
    let g = Guest::new("nochannel");
    assert!(!g.xml().contains("org.qemu.guest_agent.0"));
    let validate = g.run("validate-all", &[("OCF_CHECK_LEVEL", "10")]);
    assert_eq!(validate.code, 0, "a guest needs no agent unless a deep monitor asks it: {}", validate.stderr);
    assert!(validate.stderr.contains("WARNING") && validate.stderr.contains("has no guest agent channel"), "{}", validate.stderr);
    assert_eq!(g.run("start", &[]).code, 0);
    let deep = monitor(&g, &[("OCF_CHECK_LEVEL", "10")]);
    assert_eq!(deep.code, 190, "the guest runs; its definition cannot be monitored at depth 10: {}", deep.stderr);
    let reason = deep.reason().unwrap_or_default();
    assert!(reason.contains("has no guest agent channel") && !reason.contains("did not answer"), "{}", deep.stderr);
    assert!(deep.took < Duration::from_secs(5), "libvirt says so at once; took {:?}", deep.took);
    assert_eq!(g.libvirt_state().as_deref(), Some("running"));
    assert_eq!(g.run("stop", &[]).code, 0);
}
