//! Disk leases as a second line against two copies (issue 25), in the
//! two-node cluster lab with libvirt's lock manager on
//! (`FERRY_LAB_LEASES=1 tests/lab/with-two-nodes.sh --cluster`): each node's
//! virtlockd leases every disk a guest opens, in a lockspace directory both
//! nodes see.
//!
//! The seeds' scenario: an operator moves a guest by hand with `virsh
//! migrate`, behind the cluster's back. Pacemaker's next monitor on the old
//! node finds it gone and recovers it there with a start. Without a lease
//! that start is a second copy of a guest whose disk is open elsewhere.
//! With one, the start fails before QEMU opens anything, ferry says which
//! disk is in use and answers 1 (not 5 or 6, which would ban the resource),
//! and Pacemaker places the resource where the guest already runs.
//!
//! On one kernel QEMU's own image locks would refuse a second open of one
//! file before the lease is asked for (libvirt takes leases when the vCPUs
//! first run, after QEMU has opened its disks). So the disk is a different
//! file on each node under one path, as a SAN's LUN is one device under
//! one name on two hosts whose kernels share no locks: only the lease,
//! named by the path in the lockspace both nodes share, can refuse.

#[path = "../support/mod.rs"]
mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::lab::*;
use support::*;

/// Every second, the nodes whose libvirt runs `name`: a list of the
/// seconds in which both did.
fn watch_both(lab: &Lab, name: &str) -> (Arc<AtomicBool>, Arc<Mutex<Vec<u64>>>, std::thread::JoinHandle<()>) {
    let stop = Arc::new(AtomicBool::new(false));
    let both = Arc::new(Mutex::new(Vec::new()));
    let (flag, seen, lab, name) = (stop.clone(), both.clone(), Lab { dir: lab.dir.clone() }, name.to_string());
    let thread = std::thread::spawn(move || {
        let mut second = 0;
        while !flag.load(Ordering::Relaxed) {
            let running: Vec<_> = NODES.into_iter().filter(|n| lab.state(n, &name).as_deref() == Some("running")).collect();
            if running.len() == 2 {
                seen.lock().unwrap().push(second);
            }
            second += 1;
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    (stop, both, thread)
}

#[test]
fn a_guest_moved_behind_the_cluster_s_back_is_not_started_twice_its_lease_refuses() {
    let lab = Lab::from_env();
    let leases = std::fs::read_to_string(lab.dir.join("lab.env")).unwrap_or_default();
    assert!(leases.contains("FERRY_LAB_LEASES=1"), "this suite needs the lab's disk leases: FERRY_LAB_LEASES=1 tests/lab/with-two-nodes.sh --cluster");

    let g = Guest::new("lease");
    // The disk the lease is for: one path, a file of each node's own (see
    // the module's comment).
    let disk = lab.disk_on_both_nodes(&g);
    let _destroy = Defer(|| {
        for node in NODES {
            let _ = lab.virsh(node, &["destroy", &g.name]);
        }
    });
    let config = g.config.display().to_string();
    let r = ClusterResource::create(
        &lab,
        "lease-vm",
        &[("config", config.as_str()), ("migration_transport", "tcp"), ("migration_encryption", "none")],
        &[("allow-migrate", "true")],
        &[("monitor", "5s", "30s"), ("start", "0", "60s"), ("stop", "0", "60s")],
        false,
    );
    let home = r.wait_active(Duration::from_secs(120)).expect("the guest did not start");
    assert!(g.wait_console("ferry-tick", BOOT), "the guest did not boot on {home}");
    assert!(lab.settle(Duration::from_secs(60)), "the cluster did not settle after the start");
    let other = NODES.into_iter().find(|n| *n != home).unwrap();
    let lockspace: Vec<_> = std::fs::read_dir(lab.dir.join("lockspace")).unwrap().flatten().collect();
    assert!(!lockspace.is_empty(), "virtlockd holds no lease in the lab's lockspace while the guest runs");

    let (stop, both, watcher) = watch_both(&lab, &g.name);
    let _stop_watch = Defer(|| stop.store(true, Ordering::Relaxed));
    // The operator's move, which the cluster does not know of.
    // From the node, as an operator logged in there would: the other
    // node's name resolves there. --unsafe: libvirt will not migrate a
    // guest whose disk is a file on a local file system without it.
    let moved = lab.on(&home, &["virsh", "migrate", "--live", "--unsafe", &g.name, &format!("qemu+tcp://{other}/system")]);
    assert!(moved.status.success(), "virsh migrate to {other}: {}", String::from_utf8_lossy(&moved.stderr));
    eprintln!("leases: {} moved by hand from {home} to {other}", g.name);

    // Pacemaker's monitor on the old node finds the guest gone and starts
    // it there: the start must fail on the lease.
    let mut refused = None;
    wait_for(Duration::from_secs(90), || {
        refused = lab.ops(&r.id).into_iter().find(|o| o.node == home && o.operation == "start" && o.rc != 0 && o.op_status != -1);
        refused.is_some() || !both.lock().unwrap().is_empty()
    });
    let Some(refused) = refused else {
        panic!(
            "no start on {home} failed after the move; the guest ran on both nodes in seconds {:?}; history: {:?}",
            both.lock().unwrap(),
            lab.ops(&r.id)
        )
    };
    eprintln!("leases: the start on {home} answered {}: {}", refused.rc, refused.exit_reason);
    assert_eq!(refused.rc, 1, "the refused start must answer 1 (a soft error), not ban the resource: {refused:?}");
    assert!(
        refused.exit_reason.contains(&format!("disk {disk} is in use by another host")),
        "the reason names the disk whose lease is held: {:?}",
        refused.exit_reason
    );

    // The cluster ends with the guest where it runs, once.
    let placed = wait_for(Duration::from_secs(120), || r.wait_active(Duration::from_secs(1)).as_deref() == Some(other) && lab.active_on(&g.name) == [other]);
    std::thread::sleep(Duration::from_secs(5));
    stop.store(true, Ordering::Relaxed);
    watcher.join().unwrap();
    let twice = both.lock().unwrap().clone();
    assert!(twice.is_empty(), "the guest ran on both nodes in seconds {twice:?}");
    assert!(placed, "the resource did not end active on {other}, where the guest runs: {:?}, libvirt: {:?}", lab.located(&r.id), lab.active_on(&g.name));
    // Booted once: its counter went on through the move and the refusal.
    let ticks = g.ticks();
    assert!(ticks.windows(2).all(|w| w[1] > w[0]), "the guest's counter restarted: it was booted again");
    drop(r);
}
