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

/// The tests of this file stop the one libvirtd: one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn with_libvirtd_down_a_running_guest_is_never_reported_stopped() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
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

#[test]
fn libvirtd_gone_as_stop_destroys_leaves_stop_to_end_qemu_by_its_pid() {
    // libvirtd dies just as stop runs `virsh destroy`: destroy cannot be
    // sent, and the state cannot be asked. A failed stop fences the node,
    // so stop looks again, finds the guest's QEMU process and ends it.
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if std::env::var("FERRY_TEST_OWNS_LIBVIRTD").as_deref() != Ok("1") {
        panic!("this test stops libvirtd: run it through tests/lab/with-libvirtd.sh (make test does)");
    }
    let g = Guest::new("down-destroy");
    assert_eq!(g.run("start", &[]).code, 0);
    assert!(g.wait_console("ferry-guest: up", BOOT));
    let _restart = RestartOnDrop;
    // virsh as ferry finds it on PATH: the real one, but a destroy first
    // stops the node's libvirtd (the daemon this run started, by its pid file).
    let wrappers = TempDir::new("down-destroy");
    let virsh_path = wrappers.join("virsh");
    std::fs::write(
        &virsh_path,
        format!(
            "#!/bin/sh\ncase \" $* \" in *\" destroy \"*) pid=$(cat {PIDFILE}); kill -TERM \"$pid\"; while kill -0 \"$pid\" 2>/dev/null; do sleep 0.1; done;; esac\nexec /usr/bin/virsh \"$@\"\n"
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&virsh_path, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", wrappers.0.display(), std::env::var("PATH").unwrap_or_default());
    let ticks = g.ticks().len();
    let stop = g.run("stop", &[("OCF_RESKEY_force_stop", "true"), ("PATH", path.as_str())]);
    assert!(libvirtd_pid().is_none_or(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists()), "the wrapper must have stopped libvirtd");
    assert_eq!(stop.code, 0, "stop must end the guest by its QEMU process: {}", stop.stderr);
    std::thread::sleep(Duration::from_secs(2));
    assert!(g.ticks().len() <= ticks + 2, "stop answered 0 but the guest runs on");
    assert_eq!(g.run("monitor", &[]).code, 7);
    start_libvirtd();
    assert!(wait_for(Duration::from_secs(20), || g.libvirt_state().is_none() || g.libvirt_state().as_deref() == Some("shut off")));
}
