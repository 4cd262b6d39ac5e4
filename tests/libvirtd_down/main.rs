//! libvirtd stopped while a guest runs. The guest keeps running, so ferry must
//! keep saying so, and stop must still end it. This stops and restarts the
//! daemon, so it runs alone (its own test binary, after the others), and only
//! against a libvirtd that tests/lab/with-libvirtd.sh started for this run.

#[path = "../support/mod.rs"]
mod support;

use std::process::Command;
use std::time::Duration;
use support::*;

const PIDFILE: &str = "/var/run/libvirtd.pid";

fn libvirtd_pid() -> Option<i32> {
    std::fs::read_to_string(PIDFILE).ok()?.trim().parse().ok()
}

fn stop_libvirtd() {
    let pid = libvirtd_pid().expect("libvirtd pid file");
    unsafe_kill(pid, "TERM");
    assert!(wait_for(Duration::from_secs(15), || !std::path::Path::new(&format!("/proc/{pid}")).exists()), "libvirtd {pid} did not exit");
}

fn unsafe_kill(pid: i32, signal: &str) {
    Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string()).status().unwrap();
}

fn start_libvirtd() {
    let status = Command::new("libvirtd").args(["-d", "-p", PIDFILE]).status().unwrap();
    assert!(status.success());
    assert!(wait_for(Duration::from_secs(20), || virsh(&["uri"]).status.success()), "libvirtd did not come back");
}

/// Restarts libvirtd when the test ends, whatever happened.
struct RestartOnDrop;
impl Drop for RestartOnDrop {
    fn drop(&mut self) {
        if !virsh(&["uri"]).status.success() {
            start_libvirtd();
        }
    }
}

#[test]
fn with_libvirtd_down_a_running_guest_is_never_reported_stopped() {
    if std::env::var("FERRY_TEST_OWNS_LIBVIRTD").as_deref() != Ok("1") {
        panic!("this test stops libvirtd: run it through tests/lab/with-libvirtd.sh on a machine where no other libvirtd runs (make test does)");
    }
    let running = Guest::new("down-run");
    let stopped = Guest::new("down-off");
    assert_eq!(running.run("start", &[]).code, 0);
    assert!(running.wait_console("ferry-guest: up", BOOT));
    let _restart = RestartOnDrop;
    stop_libvirtd();
    assert!(!virsh(&["uri"]).status.success(), "libvirtd is down");

    let monitor = running.run("monitor", &[]);
    assert_eq!(monitor.code, 190, "running guest, libvirtd down: {}", monitor.stderr);
    assert!(monitor.stderr.contains("QEMU process"), "{}", monitor.stderr);
    assert_eq!(running.probe().code, 190);
    // Config unreadable too: the mark in libvirt's status file names the guest.
    std::fs::rename(&running.config, running.dir.join("away.xml")).unwrap();
    assert_eq!(running.run("monitor", &[]).code, 190);
    std::fs::rename(running.dir.join("away.xml"), &running.config).unwrap();
    // A guest that is not running has no QEMU process: provably stopped.
    assert_eq!(stopped.probe().code, 7);
    assert_eq!(stopped.run("stop", &[]).code, 0);

    // stop ends the guest by its QEMU process, the only handle left.
    let ticks = running.ticks().len();
    let stop = running.run("stop", &[]);
    assert_eq!(stop.code, 0, "{}", stop.stderr);
    assert_eq!(running.run("monitor", &[]).code, 7);
    std::thread::sleep(Duration::from_secs(2));
    assert!(running.ticks().len() <= ticks + 1, "the guest kept running after stop");

    start_libvirtd();
    assert!(wait_for(Duration::from_secs(20), || running.libvirt_state().is_none() || running.libvirt_state().as_deref() == Some("shut off")));
    assert_eq!(running.run("monitor", &[]).code, 7, "libvirt agrees once it is back");
}
