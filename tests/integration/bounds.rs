//! What ferry does when the file system will not let go: a config that is
//! a FIFO or whose reads stall, and a saved image that cannot be set aside
//! before it is restored (issue 23). Each test makes and removes its own
//! mounts; the lab's mount namespace keeps them from the host.

use super::stall_fs::StallFs;
use crate::support::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Runs `ferry VirtualDomain ACTION` as a recurring operation with a
/// `timeout_s` timeout, and waits for it at most `limit`: past that it is
/// killed by its PID and `Err` says so, where `support::agent` would wait
/// for ever on an agent that hangs.
fn run_within(g: &Guest, action: &str, timeout_s: u64, limit: Duration, extra: &[(&str, &str)]) -> Result<Run, String> {
    let timeout = (timeout_s * 1000).to_string();
    let mut env = g.env(&[("OCF_RESKEY_CRM_meta_interval", "10000"), ("OCF_RESKEY_CRM_meta_timeout", &timeout)]);
    env.extend(pairs(extra));
    let out_dir = std::env::temp_dir().join(format!("ferry-it-out-{}-{action}-{}", g.instance, std::process::id()));
    std::fs::create_dir_all(&out_dir).unwrap();
    let (out, err) = (out_dir.join("stdout"), out_dir.join("stderr"));
    let mut cmd = Command::new(ferry());
    cmd.args(["VirtualDomain", action]).stdin(Stdio::null());
    cmd.stdout(std::fs::File::create(&out).unwrap()).stderr(std::fs::File::create(&err).unwrap());
    for (k, _) in std::env::vars() {
        if k.starts_with("OCF_") || k.starts_with("HA_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("OCF_ROOT", "/usr/lib/ocf").envs(env);
    let started = Instant::now();
    let mut child = cmd.spawn().expect("run ferry");
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let took = started.elapsed();
    let stderr = std::fs::read_to_string(&err).unwrap_or_default();
    let stdout = std::fs::read_to_string(&out).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&out_dir);
    match status {
        Some(s) => Ok(Run { code: s.code().unwrap_or(-1), stdout, stderr, took }),
        None => Err(format!("{action} still ran after {limit:?} and was killed; it said:\n{stderr}")),
    }
}

#[test]
fn a_config_that_is_a_fifo_holds_neither_monitor_nor_stop() {
    let g = Guest::new("fifo");
    assert_eq!(g.run("start", &[]).code, 0);
    // The config replaced by a FIFO nobody writes: a plain open waits for
    // a writer for ever.
    std::fs::remove_file(&g.config).unwrap();
    nix::unistd::mkfifo(&g.config, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    let monitor = run_within(&g, "monitor", 10, Duration::from_secs(20), &[]).unwrap();
    assert_eq!(monitor.code, 190, "running, found through its mark: {}", monitor.stderr);
    assert!(monitor.took < Duration::from_secs(10), "{:?}", monitor.took);
    let reason = monitor.reason().unwrap_or_default();
    assert!(reason.contains("not a regular file") && reason.contains("owner mark"), "{reason}");
    let stop = run_within(&g, "stop", 30, Duration::from_secs(40), &[]).unwrap();
    assert_eq!(stop.code, 0, "{}", stop.stderr);
    assert_eq!(g.libvirt_state(), None, "stop found the guest by its mark and stopped it");
}

#[test]
fn a_config_whose_reads_stall_falls_back_to_the_owner_mark_in_time() {
    let g = Guest::new("stall");
    assert_eq!(g.run("start", &[]).code, 0);
    let mnt = g.dir.join("stalled");
    std::fs::create_dir(&mnt).unwrap();
    // Dropped before `g`, which removes the directory.
    let fs = StallFs::mount(&mnt, "guest.xml");
    let config = mnt.join("guest.xml");
    let on_stalled = [("OCF_RESKEY_config", config.to_str().unwrap())];
    assert!(config.is_file(), "the stalled file can be looked up and stat'ed");
    let monitor = run_within(&g, "monitor", 15, Duration::from_secs(25), &on_stalled).unwrap();
    assert!(fs.reads.load(Ordering::SeqCst) >= 1, "the read reached the stalled file system");
    assert_eq!(monitor.code, 190, "{}", monitor.stderr);
    assert!(monitor.took < Duration::from_secs(15), "answered within the timeout: {:?}", monitor.took);
    let reason = monitor.reason().unwrap_or_default();
    assert!(reason.contains("no answer within") && reason.contains("owner mark"), "{reason}");
    let stop = run_within(&g, "stop", 30, Duration::from_secs(40), &on_stalled).unwrap();
    assert_eq!(stop.code, 0, "{}", stop.stderr);
    assert_eq!(g.libvirt_state(), None);
    drop(fs);
}

/// A tmpfs of the test's own, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount").args(["-t", "tmpfs", "-o", "size=512m", "ferry-test"]).arg(at).status().unwrap().success();
        assert!(ok, "mount tmpfs on {}", at.display());
        Tmpfs(at.to_path_buf())
    }
    fn remount(&self, mode: &str) {
        let ok = Command::new("mount").args(["-o", &format!("remount,{mode}")]).arg(&self.0).status().unwrap().success();
        assert!(ok, "remount {} {mode}", self.0.display());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_saved_image_that_cannot_be_set_aside_is_not_restored() {
    let g = Guest::new("rosnap");
    let dir = g.dir.join("saved");
    let saved = Tmpfs::mount(&dir);
    let snap = [("OCF_RESKEY_snapshot", dir.to_str().unwrap())];
    assert_eq!(g.run("start", &snap).code, 0);
    assert!(g.wait_console("ferry-tick 3", BOOT));
    assert_eq!(g.run("stop", &snap).code, 0);
    let state = dir.join(format!("{}.state", g.name));
    assert!(state.exists(), "stop saved the guest's memory");
    // Readable, but nothing in it can be renamed or deleted (EROFS).
    saved.remount("ro");
    let start = g.run("start", &snap);
    assert_eq!(start.code, 1, "a start that restored an image it cannot set aside leaves it for the next start: {}", start.stderr);
    assert!(start.reason().unwrap_or_default().contains("so it was not restored"), "{:?}", start.reason());
    assert_eq!(g.libvirt_state(), None, "nothing restored, nothing booted");
    assert!(state.exists(), "the image waits for a start that can take it");
    // Writable again: the same image is restored once, and is gone.
    saved.remount("rw");
    let before = g.ticks().into_iter().max().unwrap();
    assert_eq!(g.run("start", &snap).code, 0);
    assert!(wait_for(BOOT, || g.ticks().into_iter().max().unwrap_or(0) > before + 1));
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(left.is_empty(), "nothing a start could restore again: {left:?}");
    assert_eq!(g.run("stop", &[("OCF_RESKEY_force_stop", "1")]).code, 0);
}
