//! Fault injection against a real running guest on a real libvirtd: the
//! promises ferry makes are tested by breaking what they depend on.
//! - one socket error at any point of ferry's conversation with libvirtd
//!   (strace's `-e inject=`) never makes monitor say 7 or stop say 0 while
//!   the guest runs;
//! - a hung libvirtd (SIGSTOP) neither hangs an action nor fakes an answer;
//! - children that daemonize or ignore SIGTERM cannot stretch an action or
//!   outlive it;
//! - input that is not UTF-8 or is out of range gets an OCF code and a
//!   reason, never an abort.
//!
//! It stops libvirtd, so it runs only against a private one that
//! tests/lab/with-libvirtd.sh started for this run (make test-faults), one
//! test at a time.

#[path = "../support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use support::*;

fn require_own_libvirtd() {
    if std::env::var("FERRY_TEST_OWNS_LIBVIRTD").as_deref() != Ok("1") {
        panic!("this suite stops libvirtd: run it through tests/lab/with-libvirtd.sh (make test-faults)");
    }
}

/// The PID of the QEMU process running guest `name`, if any (zombies excluded).
fn qemu_pid(name: &str) -> Option<u32> {
    let needle = format!("guest={name},");
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_string_lossy().parse().ok()?;
        let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
        let text = String::from_utf8_lossy(&cmdline);
        (text.contains("qemu") && text.contains(&needle)).then_some(pid)
    })
}

fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('Z')),
        Err(_) => false,
    }
}

/// Runs ferry under strace, with `inject` as strace's fault, or just
/// counting the system calls in `calls` when `inject` is None.
fn traced(action: &str, env: &[(String, String)], calls: &str, inject: Option<&str>, log: &Path) -> Run {
    let mut args = vec!["-qq".to_string(), "-o".into(), log.display().to_string(), "-e".into(), format!("trace={calls}")];
    if let Some(fault) = inject {
        args.extend(["-e".into(), format!("inject={fault}")]);
    }
    args.extend([ferry().display().to_string(), "VirtualDomain".into(), action.into()]);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    run_program(Path::new("strace"), &argv, env)
}

/// How many times ferry makes each of `calls` in one `action`.
fn positions(action: &str, env: &[(String, String)], calls: &[&str], log: &Path) -> BTreeMap<String, usize> {
    let run = traced(action, env, &calls.join(","), None, log);
    assert!(run.code == 0 || run.code == 7 || run.code == 190, "the baseline {action} failed: {}", run.stderr);
    let text = std::fs::read_to_string(log).unwrap();
    calls.iter().map(|c| (c.to_string(), text.lines().filter(|l| l.starts_with(&format!("{c}("))).count())).collect()
}

#[derive(Default, Debug)]
struct Matrix {
    injected: usize,
    false_not_running: usize,
    false_stopped: usize,
    notes: Vec<String>,
}

/// The socket calls of ferry's libvirt conversation and the error each gets.
const FAULTS: [(&str, &str); 3] = [("connect", "ECONNREFUSED"), ("sendto", "EPIPE"), ("recvfrom", "ECONNRESET")];

#[test]
fn one_socket_error_anywhere_never_makes_a_running_guest_look_stopped() {
    require_own_libvirtd();
    let g = Guest::new("sockfault");
    assert_eq!(g.run("start", &[]).code, 0);
    let scratch = TempDir::new("sockfault");
    let log = scratch.join("strace.log");
    let away = g.dir.join("away.xml");
    let mut total = Matrix::default();
    for readable in [true, false] {
        if !readable {
            std::fs::rename(&g.config, &away).unwrap();
        }
        let env = g.env(&[("OCF_RESKEY_CRM_meta_interval", "10000"), ("OCF_RESKEY_CRM_meta_timeout", "20000")]);
        // monitor: every position of every socket call.
        let counts = positions("monitor", &env, &FAULTS.map(|(c, _)| c), &log);
        assert!(counts["recvfrom"] >= 6, "ferry must be talking to libvirtd over its socket: {counts:?}");
        for (call, errno) in FAULTS {
            for n in 1..=counts[call] {
                let run = traced("monitor", &env, call, Some(&format!("{call}:error={errno}:when={n}")), &log);
                total.injected += 1;
                if run.code == 7 {
                    total.false_not_running += 1;
                    total.notes.push(format!("monitor, config readable={readable}, {call}#{n}: 7 ({})", run.stderr.trim()));
                }
                assert!(matches!(run.code, 0 | 1 | 190), "monitor {call}#{n}: {} {}", run.code, run.stderr);
            }
        }
        // stop: force_stop keeps each round short (destroy, no shutdown).
        let stop_env = g.env(&[("OCF_RESKEY_force_stop", "true"), ("OCF_RESKEY_CRM_meta_timeout", "20000")]);
        let stop_counts = positions("stop", &stop_env, &FAULTS.map(|(c, _)| c), &log);
        for (call, errno) in FAULTS {
            for n in 1..=stop_counts[call] {
                if g.libvirt_state().as_deref() != Some("running") {
                    std::fs::rename(&away, &g.config).ok();
                    assert_eq!(g.run("start", &[]).code, 0, "restart between rounds");
                    if !readable {
                        std::fs::rename(&g.config, &away).unwrap();
                    }
                }
                let run = traced("stop", &stop_env, call, Some(&format!("{call}:error={errno}:when={n}")), &log);
                total.injected += 1;
                let state = g.libvirt_state();
                let runs = qemu_pid(&g.name).is_some_and(alive) || state.as_deref() == Some("running");
                if run.code == 0 && runs {
                    total.false_stopped += 1;
                    total.notes.push(format!("stop, config readable={readable}, {call}#{n}: 0 while {state:?}"));
                }
            }
        }
        if !readable {
            std::fs::rename(&away, &g.config).unwrap();
        }
        if g.libvirt_state().as_deref() != Some("running") {
            assert_eq!(g.run("start", &[]).code, 0);
        }
    }
    let _ = g.run("stop", &[("OCF_RESKEY_force_stop", "true")]);
    println!(
        "fault matrix (sockets): {} positions injected, {} false 7s, {} false stop-0s",
        total.injected, total.false_not_running, total.false_stopped
    );
    assert!(total.injected >= 40, "too few positions to mean anything: {total:?}");
    assert!(total.notes.is_empty(), "false answers:\n{}", total.notes.join("\n"));
}

fn libvirtd_pid() -> i32 {
    std::fs::read_to_string("/run/libvirtd.pid").expect("the node's libvirtd pid file").trim().parse().unwrap()
}

fn signal(pid: i32, sig: &str) {
    assert!(Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status().unwrap().success());
}

#[test]
fn a_hung_libvirtd_neither_hangs_an_action_nor_fakes_an_answer() {
    require_own_libvirtd();
    let g = Guest::new("hung");
    assert_eq!(g.run("start", &[]).code, 0);
    let qemu = qemu_pid(&g.name).expect("the guest's QEMU process");
    let daemon = libvirtd_pid();
    signal(daemon, "STOP");
    let _resume = Defer(move || signal(daemon, "CONT"));

    let timeout = |s: u64| (s * 1000).to_string();
    let monitor = g.run("monitor", &[("OCF_RESKEY_CRM_meta_timeout", &timeout(10))]);
    assert!(monitor.took < Duration::from_secs(10), "monitor took {:?}", monitor.took);
    assert_eq!(monitor.code, 190, "running guest, hung libvirtd: {}", monitor.stderr);
    let away = g.dir.join("away.xml");
    std::fs::rename(&g.config, &away).unwrap();
    let by_mark = g.run("monitor", &[("OCF_RESKEY_CRM_meta_timeout", &timeout(10))]);
    std::fs::rename(&away, &g.config).unwrap();
    assert!(by_mark.took < Duration::from_secs(10), "monitor took {:?}", by_mark.took);
    assert_eq!(by_mark.code, 190, "config unreadable, hung libvirtd: {}", by_mark.stderr);

    let stop = g.run("stop", &[("OCF_RESKEY_CRM_meta_timeout", &timeout(20))]);
    assert!(stop.took < Duration::from_secs(20), "stop took {:?}", stop.took);
    assert_eq!(stop.code, 0, "stop must end the guest by its process: {}", stop.stderr);
    assert!(!alive(qemu), "stop said 0, but QEMU {qemu} still runs");

    signal(daemon, "CONT");
    assert!(wait_for(Duration::from_secs(20), || g.libvirt_state().as_deref() != Some("running")));
    assert_eq!(g.run("monitor", &[]).code, 7, "libvirt agrees once it answers again");
}

/// Writes an executable script into `dir`.
fn script(dir: &TempDir, name: &str, body: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.display().to_string()
}

fn pid_in(file: &Path) -> Option<u32> {
    std::fs::read_to_string(file).ok()?.trim().parse().ok()
}

#[test]
fn runaway_children_cannot_stretch_an_action_or_outlive_it() {
    let g = Guest::new("runaway");
    assert_eq!(g.run("start", &[]).code, 0);
    let dir = TempDir::new("runaway");
    let daemon_pid = dir.join("daemon.pid");
    let daemonizing = script(&dir, "daemonizing.sh", &format!("setsid sleep 120 & echo $! > {}\nexit 0", daemon_pid.display()));
    let stubborn_pid = dir.join("stubborn.pid");
    let stubborn = script(&dir, "stubborn.sh", &format!("trap '' TERM\nsleep 120 &\necho $! > {}\nwait", stubborn_pid.display()));

    // A script that leaves a daemon holding its stdout: the monitor answers
    // at once, and the daemon does not outlive ferry.
    let monitor = g.run("monitor", &[("OCF_RESKEY_monitor_scripts", &daemonizing), ("OCF_RESKEY_CRM_meta_timeout", "20000")]);
    assert_eq!(monitor.code, 0, "{}", monitor.stderr);
    assert!(monitor.took < Duration::from_secs(3), "the daemon's pipe held the monitor for {:?}", monitor.took);
    let daemon = pid_in(&daemon_pid).expect("the script recorded its daemon");
    assert!(wait_for(Duration::from_secs(2), || !alive(daemon)), "the daemon {daemon} outlived ferry");

    // A script that ignores SIGTERM and never ends: the monitor fails inside
    // its timeout, and neither the script nor its child survives.
    let monitor = g.run("monitor", &[("OCF_RESKEY_monitor_scripts", &stubborn), ("OCF_RESKEY_CRM_meta_timeout", "5000")]);
    assert_eq!(monitor.code, 1, "{}", monitor.stderr);
    assert!(monitor.took < Duration::from_secs(5), "took {:?} of a 5 s timeout", monitor.took);
    let child = pid_in(&stubborn_pid).expect("the script recorded its child");
    assert!(wait_for(Duration::from_secs(2), || !alive(child)), "the script's child {child} outlived ferry");

    // ferry SIGKILLed alone (not its group) mid-script: its child dies with it.
    let started = dir.join("started");
    let slow = script(&dir, "slow.sh", &format!("echo $$ > {}\nexec sleep 120", started.display()));
    let mut cmd = Command::new(ferry());
    cmd.args(["VirtualDomain", "monitor"]).process_group(0);
    for (k, v) in g.env(&[("OCF_RESKEY_monitor_scripts", &slow), ("OCF_RESKEY_CRM_meta_timeout", "60000"), ("OCF_RESKEY_CRM_meta_interval", "10000")]) {
        cmd.env(k, v);
    }
    let mut ferry_process = cmd.spawn().unwrap();
    assert!(wait_for(Duration::from_secs(10), || pid_in(&started).is_some()), "the script never started");
    let script_pid = pid_in(&started).unwrap();
    signal(ferry_process.id() as i32, "KILL");
    ferry_process.wait().unwrap();
    assert!(wait_for(Duration::from_secs(2), || !alive(script_pid)), "the monitor script {script_pid} outlived a killed ferry");
    assert_eq!(g.run("stop", &[("OCF_RESKEY_force_stop", "true")]).code, 0);
}

#[test]
fn input_that_is_not_utf8_or_out_of_range_is_refused_never_aborts() {
    use std::os::unix::ffi::OsStrExt;
    let g = Guest::new("input");
    let config = g.config.display().to_string();
    let run_raw = |agent: &str, action: &str, vars: &[(&[u8], &[u8])]| {
        let mut cmd = Command::new(ferry());
        cmd.args([agent, action]).env("OCF_RESOURCE_INSTANCE", "input");
        for (k, v) in vars {
            cmd.env(std::ffi::OsStr::from_bytes(k), std::ffi::OsStr::from_bytes(v));
        }
        let out = cmd.output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let cfg = config.as_bytes();
    let cases: Vec<(&str, &str, Vec<(&[u8], &[u8])>, i32, &str)> = vec![
        ("a parameter that is not UTF-8", "validate-all", vec![(b"OCF_RESKEY_config", b"/etc/\xff\xfe.xml")], 6, "OCF_RESKEY_config is not valid UTF-8"),
        // stop goes on without a value it cannot read (issue 24): a failed stop fences.
        ("a parameter that is not UTF-8, on stop", "stop", vec![(b"OCF_RESKEY_config", cfg), (b"OCF_RESKEY_migrate_options", b"\xc3\x28")], 0, ""),
        ("a parameter that is not UTF-8, on start", "start", vec![(b"OCF_RESKEY_config", cfg), (b"OCF_RESKEY_migrate_options", b"\xc3\x28")], 6, "not valid UTF-8"),
        ("someone else's variable that is not UTF-8", "monitor", vec![(b"OCF_RESKEY_config", cfg), (b"LANG", b"\xff")], 7, ""),
        ("a huge stall", "validate-all", vec![(b"OCF_RESKEY_config", cfg), (b"OCF_RESKEY_migration_stall", b"9999999999999999")], 6, "migration_stall"),
        ("an integer past i64", "validate-all", vec![(b"OCF_RESKEY_config", cfg), (b"OCF_RESKEY_migration_speed", b"99999999999999999999999")], 6, "migration_speed"),
        ("a negative downtime", "validate-all", vec![(b"OCF_RESKEY_config", cfg), (b"OCF_RESKEY_migration_downtime", b"-5")], 6, "must not be negative"),
        ("a huge timeout", "monitor", vec![(b"OCF_RESKEY_config", cfg), (b"OCF_RESKEY_CRM_meta_timeout", b"18446744073709551615")], 7, ""),
        ("a huge Xen shutdown timeout", "validate-all", vec![(b"OCF_RESKEY_xmfile", b"/etc/xen/vm1"), (b"OCF_RESKEY_shutdown_timeout", b"99999999999999999999")], 6, "shutdown_timeout"),
    ];
    let mut failures = Vec::new();
    for (what, action, vars, want, reason) in &cases {
        let agent = if vars.iter().any(|(k, _)| k.starts_with(b"OCF_RESKEY_xmfile")) { "Xen" } else { "VirtualDomain" };
        let (code, stderr) = run_raw(agent, action, vars);
        let ok = code == Some(*want) && (reason.is_empty() || stderr.lines().any(|l| l.starts_with("ocf-exit-reason:") && l.contains(reason)));
        if !ok || stderr.contains("panicked") {
            failures.push(format!("{what}: {action} -> {code:?}, want {want} with {reason:?}:\n{stderr}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn an_edited_name_never_hides_the_running_guest() {
    // The config's <name> is edited while the old guest runs: it is still
    // found by its mark, so stop ends it and start refuses a second copy.
    let g = Guest::new("rename");
    assert_eq!(g.run("start", &[]).code, 0);
    let original = std::fs::read_to_string(&g.config).unwrap();
    let renamed = original.replace(&format!("<name>{}</name>", g.name), &format!("<name>{}-new</name>", g.name));
    assert_ne!(original, renamed);
    std::fs::write(&g.config, &renamed).unwrap();
    let _cleanup = Defer(|| {
        let _ = virsh(&["destroy", &format!("{}-new", g.name)]);
    });
    let monitor = g.run("monitor", &[]);
    assert_eq!(monitor.code, 190, "{}", monitor.stderr);
    let start = g.run("start", &[]);
    assert_eq!(start.code, 1, "a second copy under the new name: {}", start.stderr);
    assert!(!virsh(&["domstate", &format!("{}-new", g.name)]).status.success(), "no domain of the new name may exist");
    let started = Instant::now();
    let stop = g.run("stop", &[("OCF_RESKEY_force_stop", "true")]);
    assert_eq!(stop.code, 0, "{}", stop.stderr);
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_ne!(g.libvirt_state().as_deref(), Some("running"), "stop said 0 but the old guest runs on");
    assert_eq!(g.run("monitor", &[]).code, 7);
}

/// A proxy in front of libvirtd's socket that hangs up on the first virsh
/// client (one that registered a close callback, which ferry's own RPC
/// client never does) as it asks to look a domain up by name: libvirtd
/// dying after virsh connected, as virsh sees it. Everything else passes.
struct LookupCutter {
    path: std::path::PathBuf,
    cuts: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

const PROC_DOMAIN_LOOKUP_BY_NAME: u32 = 23;
const PROC_CONNECT_REGISTER_CLOSE_CALLBACK: u32 = 360;

impl LookupCutter {
    fn start(dir: &TempDir, upstream: &'static str) -> LookupCutter {
        use std::os::unix::net::{UnixListener, UnixStream};
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;
        let path = dir.join("cutter.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let cuts = Arc::new(AtomicUsize::new(0));
        let counted = cuts.clone();
        // The threads end with the test process; each ends sooner when its
        // peer closes.
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(daemon) = UnixStream::connect(upstream) else { continue };
                let (mut from_daemon, mut to_client) = (daemon.try_clone().unwrap(), client.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from_daemon, &mut to_client);
                    let _ = to_client.shutdown(std::net::Shutdown::Both);
                });
                let counted = counted.clone();
                std::thread::spawn(move || {
                    use std::io::{Read, Write};
                    let (mut client, mut daemon) = (client, daemon);
                    let mut virsh = false;
                    loop {
                        let mut len = [0u8; 4];
                        if client.read_exact(&mut len).is_err() {
                            break;
                        }
                        let mut body = vec![0u8; (u32::from_be_bytes(len) as usize).saturating_sub(4)];
                        if client.read_exact(&mut body).is_err() || body.len() < 12 {
                            break;
                        }
                        let procedure = u32::from_be_bytes(body[8..12].try_into().unwrap());
                        virsh |= procedure == PROC_CONNECT_REGISTER_CLOSE_CALLBACK;
                        if virsh && procedure == PROC_DOMAIN_LOOKUP_BY_NAME && counted.fetch_add(1, Ordering::SeqCst) == 0 {
                            break;
                        }
                        if daemon.write_all(&len).and_then(|()| daemon.write_all(&body)).is_err() {
                            break;
                        }
                    }
                    let _ = client.shutdown(std::net::Shutdown::Both);
                    let _ = daemon.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        LookupCutter { path, cuts }
    }

    fn uri(&self) -> String {
        format!("qemu+unix:///system?socket={}", self.path.display())
    }

    fn cut(&self) -> usize {
        self.cuts.load(std::sync::atomic::Ordering::SeqCst).min(1)
    }
}

#[test]
fn a_lookup_libvirtd_never_answered_is_not_taken_for_a_gone_guest() {
    // virsh prints "failed to get domain 'NAME'" alone both for a missing
    // domain and for a lookup the daemon never answered: before ferry
    // confirmed it with the daemon's list, stop's shutdown request took it
    // for "already gone" and stop answered 0 while QEMU ran on.
    require_own_libvirtd();
    let g = Guest::new("lookupcut");
    assert_eq!(g.run("start", &[]).code, 0);
    assert!(g.wait_console("ferry-guest: up", Duration::from_secs(90)), "the guest did not boot:\n{}", g.console_text());
    let scratch = TempDir::new("lookupcut");
    let cutter = LookupCutter::start(&scratch, "/run/libvirt/libvirt-sock");
    let uri = cutter.uri();
    let stop = g.run("stop", &[("OCF_RESKEY_hypervisor", uri.as_str()), ("OCF_RESKEY_CRM_meta_timeout", "60000")]);
    assert_eq!(cutter.cut(), 1, "the proxy must have cut virsh's lookup once: {}", stop.stderr);
    eprintln!("stop through a cut lookup: exit {} in {:.1?}\n{}", stop.code, stop.took, stop.stderr);
    if stop.code == 0 {
        assert_eq!(g.libvirt_state(), None, "stop answered 0 while the guest runs on:\n{}", stop.stderr);
        assert!(g.console_text().contains("reboot: Power down"), "the guest was not shut down:\n{}", g.console_text());
    } else {
        assert_eq!(g.libvirt_state().as_deref(), Some("running"), "a failed stop must mean the guest may still run");
    }
    assert_eq!(stop.code, 0, "the next shutdown request should have worked: {}", stop.stderr);
}

/// A proxy in front of libvirtd's socket that answers every
/// virDomainGetMetadata itself, with an error that is not "no such
/// metadata" (libvirt failing to read that domain), and passes everything
/// else through. Replies are forwarded whole frames at a time, so its own
/// answers never land inside one of the daemon's.
struct MetadataRefuser {
    path: std::path::PathBuf,
    refused: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

const PROC_DOMAIN_GET_METADATA: u32 = 265;

impl MetadataRefuser {
    fn start(dir: &TempDir, upstream: &'static str) -> MetadataRefuser {
        use std::io::{Read, Write};
        use std::os::unix::net::{UnixListener, UnixStream};
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::{Arc, Mutex};
        fn frame(stream: &mut UnixStream) -> Option<Vec<u8>> {
            let mut len = [0u8; 4];
            stream.read_exact(&mut len).ok()?;
            let mut whole = len.to_vec();
            whole.resize((u32::from_be_bytes(len) as usize).max(4), 0);
            stream.read_exact(&mut whole[4..]).ok()?;
            Some(whole)
        }
        let path = dir.join("refuser.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let refused = Arc::new(AtomicUsize::new(0));
        let counted = refused.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(daemon) = UnixStream::connect(upstream) else { continue };
                let to_client = Arc::new(Mutex::new(client.try_clone().unwrap()));
                let (mut from_daemon, replies) = (daemon.try_clone().unwrap(), to_client.clone());
                std::thread::spawn(move || {
                    while let Some(f) = frame(&mut from_daemon) {
                        if replies.lock().unwrap().write_all(&f).is_err() {
                            break;
                        }
                    }
                    let _ = replies.lock().unwrap().shutdown(std::net::Shutdown::Both);
                });
                let counted = counted.clone();
                std::thread::spawn(move || {
                    let (mut client, mut daemon) = (client, daemon);
                    while let Some(f) = frame(&mut client) {
                        if f.len() < 28 {
                            break;
                        }
                        if u32::from_be_bytes(f[12..16].try_into().unwrap()) != PROC_DOMAIN_GET_METADATA {
                            if daemon.write_all(&f).is_err() {
                                break;
                            }
                            continue;
                        }
                        counted.fetch_add(1, Ordering::SeqCst);
                        // The call's header, turned into an error reply:
                        // type REPLY, status ERROR, then a virError
                        // (code 1 "internal error", domain 10, a message,
                        // level 2 and no further fields).
                        let mut reply = f[4..24].to_vec();
                        reply[12..16].copy_from_slice(&1u32.to_be_bytes());
                        reply.extend_from_slice(&1u32.to_be_bytes());
                        for word in [1i32, 10, 1] {
                            reply.extend_from_slice(&word.to_be_bytes());
                        }
                        let message = b"injected: cannot read the domain";
                        reply.extend_from_slice(&(message.len() as u32).to_be_bytes());
                        reply.extend_from_slice(message);
                        reply.resize(reply.len() + (4 - message.len() % 4) % 4, 0);
                        for word in [2i32, 0, 0, 0, 0, 0, 0, 0] {
                            reply.extend_from_slice(&word.to_be_bytes());
                        }
                        let mut whole = ((reply.len() + 4) as u32).to_be_bytes().to_vec();
                        whole.extend_from_slice(&reply);
                        if to_client.lock().unwrap().write_all(&whole).is_err() {
                            break;
                        }
                    }
                    let _ = daemon.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        MetadataRefuser { path, refused }
    }

    fn uri(&self) -> String {
        format!("qemu+unix:///system?socket={}", self.path.display())
    }
}

/// A search by mark reads each running domain's mark. One libvirt cannot
/// read leaves the search undecided: with the config gone, a probe of the
/// running guest answers 1, never 7 (issue 26 reads marks in batches and
/// from an index; neither may skip a domain it could not read).
#[test]
fn a_mark_libvirt_cannot_read_leaves_the_search_undecided_never_not_running() {
    require_own_libvirtd();
    let g = Guest::new("markrefused");
    assert_eq!(g.run("start", &[]).code, 0);
    std::fs::rename(&g.config, g.dir.join("away.xml")).unwrap();
    let scratch = TempDir::new("markrefused");
    let refuser = MetadataRefuser::start(&scratch, "/run/libvirt/libvirt-sock");
    let uri = refuser.uri();
    let through = [("OCF_RESKEY_hypervisor", uri.as_str()), ("OCF_RESKEY_CRM_meta_interval", "0"), ("OCF_RESKEY_CRM_meta_timeout", "20000")];
    // Through the proxy untouched the guest is found (the proxy is sound).
    let direct = g.run("monitor", &[("OCF_RESKEY_CRM_meta_interval", "0")]);
    assert_eq!(direct.code, 190, "{}", direct.stderr);
    let probe = g.run("monitor", &through);
    let refused = refuser.refused.load(std::sync::atomic::Ordering::SeqCst);
    assert!(refused >= 1, "the probe must have asked for the guest's mark: {}", probe.stderr);
    assert_eq!(probe.code, 1, "a mark that could not be read must leave the probe undecided: {}", probe.stderr);
    assert!(probe.stderr.contains("injected"), "the reason must carry libvirt's error: {}", probe.stderr);
    std::fs::rename(g.dir.join("away.xml"), &g.config).unwrap();
    assert_eq!(g.run("stop", &[("OCF_RESKEY_force_stop", "true")]).code, 0);
}

// ferry's conversations with libvirtd end the way libvirt's own clients end
// them, with the close procedure: a client that just hangs up makes
// libvirtd log "End of file while reading data" at error level, and a
// cluster's monitors would fill the daemon's log with it (issue 27).

/// The private libvirtd logs warnings and errors here
/// (log_outputs in the config tests/lab/two-nodes.sh writes, which
/// tests/lab/with-libvirtd.sh uses for its node too).
const LIBVIRTD_LOG: &str = "/var/log/libvirt/libvirtd.log";
const HANG_UP: &str = "End of file while reading data";

fn hang_ups_logged() -> usize {
    std::fs::read_to_string(LIBVIRTD_LOG).unwrap_or_else(|e| panic!("{LIBVIRTD_LOG}: {e}")).lines().filter(|l| l.contains(HANG_UP)).count()
}

#[test]
fn monitors_and_probes_leave_no_hang_up_in_libvirtd_s_log() {
    let g = Guest::new("goodbye");
    let absent = Guest::new("goodbye-absent");
    assert_eq!(g.run("start", &[]).code, 0);
    // The log shows a client that hangs up: without that, no count below
    // would mean anything.
    let before = hang_ups_logged();
    drop(std::os::unix::net::UnixStream::connect("/run/libvirt/libvirt-sock").expect("libvirtd's socket"));
    assert!(wait_for(Duration::from_secs(5), || hang_ups_logged() > before), "libvirtd logged no hang-up of a bare client in {LIBVIRTD_LOG}");

    // This suite runs one test at a time, so every line logged during the
    // burst is ferry's. (In the integration suite, which runs two at once,
    // other tests kill ferry mid-action, and a killed client cannot say
    // goodbye.) Without the close procedure the burst logged one line per
    // action: 60.
    let before = hang_ups_logged();
    for _ in 0..20 {
        let monitor = g.run("monitor", &[]);
        assert_eq!(monitor.code, 0, "{}", monitor.stderr);
        let probe = g.probe();
        assert_eq!(probe.code, 0, "{}", probe.stderr);
        // A guest not here: "no such domain", then the search by mark.
        let probe = absent.probe();
        assert_eq!(probe.code, 7, "{}", probe.stderr);
    }
    // libvirtd logs from its event loop: give it a moment.
    std::thread::sleep(Duration::from_secs(1));
    let logged = hang_ups_logged() - before;
    assert_eq!(logged, 0, "60 ferry monitors and probes made libvirtd log {logged} \"{HANG_UP}\" lines");
    assert_eq!(g.run("stop", &[]).code, 0);
}
