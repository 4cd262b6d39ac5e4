//! The rolling upgrade from Debian 12 to Debian 13 (issue 27), in one real
//! corosync + Pacemaker cluster: nodea runs Debian 12 (Pacemaker 2.1.5,
//! libvirt 9.0, QEMU 7.2), nodeb Debian 13 (Pacemaker 3.0.0, libvirt 11.3,
//! QEMU 10.0), as during the days an operator upgrades node by node; then
//! nodea is upgraded in place and the guests come back to it.
//!
//! What must hold on the way, for every guest, at every step: it runs on one
//! node only, a live move never reboots it (its console counter goes on and
//! it booted once), and a move the two QEMUs cannot make is refused before
//! anything is sent, with a reason that says why, and ends with the guest
//! running on one node.
//!
//! One test, in phases that build on each other, each timed. Run through
//! `FERRY_LAB_TRIXIE=nodeb tests/lab/with-two-nodes.sh --cluster` (make
//! test-upgrade).

#[path = "../support/mod.rs"]
mod support;

use std::time::{Duration, Instant};
use support::lab::*;
use support::*;

const SETTLE: Duration = Duration::from_secs(180);
const OLD: &str = "nodea";
const NEW: &str = "nodeb";

/// A guest of the test image plus its cluster resource, migration allowed,
/// started on `home` (where it then stays: the tests decide every move).
fn vm<'l>(lab: &'l Lab, tag: &str, home: &str) -> (LabGuest<'l>, ClusterResource<'l>) {
    let g = LabGuest::new(lab, tag, None);
    let config = g.g.config.display().to_string();
    let params = [("config", config.as_str()), ("migration_transport", "tcp"), ("migration_encryption", "none")];
    let ops = [("monitor", "5s", "30s"), ("start", "0", "90s"), ("stop", "0", "90s"), ("migrate_to", "0", "120s"), ("migrate_from", "0", "60s")];
    // Created stopped, pinned, then started: started anywhere first, it
    // would keep the machine type of that node's QEMU.
    let r = ClusterResource::create(lab, &g.g.instance, &params, &[("allow-migrate", "true"), ("target-role", "Stopped")], &ops, false);
    let pin = format!("<rsc_location id=\"{}-home\" rsc=\"{}\" node=\"{home}\" score=\"INFINITY\"/>", r.id, r.id);
    lab.crm(NEW, &["cibadmin", "--create", "-o", "constraints", "--xml-text", &pin]);
    lab.crm(NEW, &["crm_resource", "-r", &r.id, "--meta", "-p", "target-role", "-v", "Started"]);
    assert_eq!(r.wait_active(SETTLE).as_deref(), Some(home), "{} did not start on {home}", r.id);
    assert!(g.ticks_on(BOOT), "the guest does not run:\n{}", g.diagnosis());
    lab.crm(NEW, &["cibadmin", "--delete", "-o", "constraints", "--xml-text", &pin]);
    (g, r)
}

fn dc(lab: &Lab, node: &str) -> (String, String) {
    lab.dc(node).expect("the cluster has no DC")
}

/// Each node's libvirtd and QEMU, as `virsh version --daemon` says (the
/// client library is this host's, whatever the node runs).
fn versions(lab: &Lab, node: &str) -> String {
    let out = String::from_utf8_lossy(&lab.virsh(node, &["version", "--daemon"]).stdout).into_owned();
    out.lines()
        .filter(|l| l.starts_with("Running against daemon") || l.starts_with("Running hypervisor"))
        .map(|l| l.split(": ").nth(1).unwrap_or(l).trim().to_string())
        .map(|v| if v.chars().next().is_some_and(|c| c.is_ascii_digit()) { format!("libvirtd {v}") } else { v })
        .collect::<Vec<_>>()
        .join(", ")
}

fn pacemaker_version(lab: &Lab, node: &str) -> String {
    lab.crm(node, &["pacemakerd", "--version"]).lines().next().unwrap_or("").to_string()
}

/// The machine type libvirt gave the running guest on `node`.
fn machine(lab: &Lab, node: &str, name: &str) -> String {
    let xml = String::from_utf8_lossy(&lab.virsh(node, &["dumpxml", name]).stdout).into_owned();
    xml.split("machine='").nth(1).or_else(|| xml.split("machine=\"").nth(1)).and_then(|m| m.split(['\'', '"']).next()).unwrap_or("?").to_string()
}

/// Watches that a guest never runs on both nodes while `f` runs; returns
/// what `f` returned.
fn never_twice<T>(g: &LabGuest, f: impl FnOnce() -> T) -> T {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (lab_dir, name) = (g.lab.dir.clone(), g.name().to_string());
    let watched = name.clone();
    let watch = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let lab = Lab { dir: lab_dir };
            let mut twice = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // Both nodes running it (not merely a paused incoming copy
                // during a hand-over): two running copies.
                let running: Vec<_> = NODES.into_iter().filter(|n| lab.state(n, &watched).as_deref() == Some("running")).collect();
                if running.len() > 1 {
                    twice.push(format!("{:?}", running));
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            twice
        })
    };
    let result = f();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let twice = watch.join().unwrap();
    assert!(twice.is_empty(), "{name} ran on both nodes at once: {twice:?}");
    result
}

/// Moves the resource with `crm_resource --move` and checks it went live:
/// migrate_to and migrate_from in the CIB, no start on the target, the
/// guest on the target only, counting on, booted once. Prints the times.
fn move_live(lab: &Lab, g: &LabGuest, r: &ClusterResource, from: &str, to: &str, label: &str) {
    let before = g.last_tick();
    let booted = boots(g);
    let started = Instant::now();
    never_twice(g, || {
        lab.crm(NEW, &["crm_resource", "--move", "-r", &r.id, "-N", to]);
        assert!(wait_for(SETTLE, || lab.located(&r.id) == vec![to.to_string()] && lab.state(to, g.name()).as_deref() == Some("running")), "{label}: not on {to}: {:?}", lab.ops(&r.id));
    });
    let took = started.elapsed();
    let ops = lab.ops(&r.id);
    let op = |node: &str, name: &str| ops.iter().filter(|o| o.node == node && o.operation == name).max_by_key(|o| o.last_rc_change).cloned();
    let (to_op, from_op) = (op(from, "migrate_to"), op(to, "migrate_from"));
    assert!(to_op.as_ref().is_some_and(|o| o.rc == 0) && from_op.as_ref().is_some_and(|o| o.rc == 0), "{label}: no successful migrate_to/migrate_from: {ops:?}");
    assert!(!ops.iter().any(|o| o.node == to && o.operation == "start"), "{label}: the target ran a start: {ops:?}");
    assert_only_on(g, to, label);
    assert!(g.last_tick() > before, "{label}: the counter did not go on");
    assert_eq!(boots(g), booted, "{label}: the guest rebooted");
    let downtime = lab.downtime(to, g.name());
    println!(
        "upgrade: {label}: live {from} -> {to}: migrate_to {} ms, migrate_from {} ms, downtime {downtime}, cluster {:.1} s (machine {})",
        to_op.unwrap().exec_ms,
        from_op.unwrap().exec_ms,
        took.as_secs_f64(),
        machine(lab, to, g.name())
    );
    lab.crm(NEW, &["crm_resource", "--clear", "-r", &r.id]);
}

fn phase(name: &str, since: Instant) {
    println!("upgrade: phase {name} took {:.1} s", since.elapsed().as_secs_f64());
}

#[test]
fn a_rolling_upgrade_moves_guests_live_old_to_new_refuses_what_the_old_qemu_cannot_run_and_ends_on_debian_13() {
    let lab = Lab::from_env();
    for node in NODES {
        println!("upgrade: {node}: {}; {}", pacemaker_version(&lab, node), versions(&lab, node));
    }
    assert!(pacemaker_version(&lab, OLD).contains("2.1"), "{OLD} must run Debian 12's Pacemaker");
    assert!(pacemaker_version(&lab, NEW).contains("3.0"), "{NEW} must run Debian 13's Pacemaker");
    let (dc_node, dc_version) = dc(&lab, NEW);
    println!("upgrade: DC of the mixed cluster: {dc_node} ({dc_version})");

    // 1. A guest started on the old node moves live to the new one, by
    //    --move, and back: its machine type (pc-i440fx-7.2, what "pc" means
    //    to QEMU 7.2) exists on both.
    let t = Instant::now();
    let (old_guest, old_rsc) = vm(&lab, "upg-old", OLD);
    let old_machine = machine(&lab, OLD, old_guest.name());
    assert!(old_machine.contains("7.2"), "started on QEMU 7.2 as {old_machine}");
    move_live(&lab, &old_guest, &old_rsc, OLD, NEW, "old -> new by --move");
    move_live(&lab, &old_guest, &old_rsc, NEW, OLD, "new -> old, a machine type both have");
    phase("1 (old -> new and back by --move)", t);

    // 2. Standby of the old node moves it live to the new one.
    let t = Instant::now();
    never_twice(&old_guest, || {
        lab.crm(NEW, &["crm_attribute", "-N", OLD, "-n", "standby", "-v", "on"]);
        assert!(wait_for(SETTLE, || lab.located(&old_rsc.id) == vec![NEW.to_string()] && lab.state(NEW, old_guest.name()).as_deref() == Some("running")), "standby did not move it");
    });
    assert_only_on(&old_guest, NEW, "after the standby of the old node");
    assert_eq!(boots(&old_guest), 1, "standby rebooted the guest");
    assert!(lab.ops(&old_rsc.id).iter().any(|o| o.node == NEW && o.operation == "migrate_from" && o.rc == 0), "standby did not migrate: {:?}", lab.ops(&old_rsc.id));
    lab.crm(NEW, &["crm_attribute", "-N", OLD, "-n", "standby", "-v", "off"]);
    phase("2 (standby of the old node)", t);

    // 3. A guest started on the new node runs with a machine type QEMU 7.2
    //    lacks. Moving it to the old node: ferry's migrate_to is refused in
    //    the target's Prepare phase, before any memory is sent, and says
    //    why; Pacemaker's recovery then stops it and starts it afresh on
    //    the old node (its config says "pc", which QEMU 7.2 resolves to its
    //    own). Never on both, and in the end on exactly one.
    let t = Instant::now();
    let (new_guest, new_rsc) = vm(&lab, "upg-new", NEW);
    let new_machine = machine(&lab, NEW, new_guest.name());
    assert!(new_machine.contains("10.0"), "started on QEMU 10.0 as {new_machine}");
    never_twice(&new_guest, || {
        lab.crm(NEW, &["crm_resource", "--move", "-r", &new_rsc.id, "-N", OLD]);
        assert!(
            wait_for(SETTLE, || lab.ops(&new_rsc.id).iter().any(|o| o.node == NEW && o.operation == "migrate_to" && o.rc != 0)),
            "no failed migrate_to: {:?}",
            lab.ops(&new_rsc.id)
        );
        // The recovery is over when the cluster has nothing left to do
        // (nodea's tools are Pacemaker 2.1.5's, whose --wait is sound).
        assert!(lab.settle(SETTLE), "the recovery did not settle");
    });
    let ops = lab.ops(&new_rsc.id);
    let refused = ops.iter().find(|o| o.node == NEW && o.operation == "migrate_to" && o.rc != 0).unwrap();
    // In this mixed cluster (a 2.1.5 DC, the operation run by a 3.0 node)
    // the CIB kept no exit-reason for the failed migrate_to and no
    // _last_failure entry; the executing node's controller logged it.
    let logged = pacemaker_log(&lab, NEW)
        .lines()
        .filter(|l| l.contains(&format!("Result of migrate_to operation for {} on {NEW}", new_rsc.id)))
        .last()
        .map(String::from)
        .unwrap_or_default();
    let reason = if refused.exit_reason.is_empty() { logged.as_str() } else { refused.exit_reason.as_str() };
    println!("upgrade: new -> old refused in {} ms (reason in the CIB: {:?}): {reason}", refused.exec_ms, refused.exit_reason);
    assert!(reason.contains(&format!("lacks machine type {new_machine}")) && reason.contains("nothing was sent"), "{reason:?}\n{ops:?}");
    assert!(!ops.iter().any(|o| o.node == OLD && o.operation == "migrate_from"), "a migrate_from ran on {OLD}: {ops:?}");
    let home = lab.located(&new_rsc.id)[0].clone();
    assert_only_on(&new_guest, &home, "after the refused move");
    println!("upgrade: the refused guest ended on {home} ({}), booted {} times", machine(&lab, &home, new_guest.name()), boots(&new_guest));
    lab.crm(NEW, &["crm_resource", "--clear", "-r", &new_rsc.id]);
    phase("3 (new -> old with a machine type only QEMU 10.0 has)", t);

    // 4. The old node is upgraded in place: everything moves to the new
    //    node (standby), Pacemaker stops there, the node reboots into
    //    Debian 13 and rejoins. The DC is then the node that stayed.
    let t = Instant::now();
    let guests = [(&old_guest, &old_rsc), (&new_guest, &new_rsc)];
    lab.crm(NEW, &["crm_attribute", "-N", OLD, "-n", "standby", "-v", "on"]);
    for (g, r) in guests {
        assert!(wait_for(SETTLE, || lab.located(&r.id) == vec![NEW.to_string()] && lab.active_on(g.name()) == vec![NEW]), "{} did not leave {OLD}", g.name());
    }
    let boots_before: Vec<usize> = guests.iter().map(|(g, _)| boots(g)).collect();
    lab.pacemaker(OLD, false);
    let status = std::process::Command::new(repo().join("tests/lab/two-nodes.sh")).arg("upgrade").arg(&lab.dir).arg(OLD).status().unwrap();
    assert!(status.success(), "two-nodes.sh upgrade {OLD}");
    assert!(pacemaker_version(&lab, OLD).contains("3.0"), "{OLD} did not come back on Debian 13");
    // Asked on the upgraded node itself (nodea): its tools answer once its
    // own Pacemaker is up.
    assert!(wait_for(SETTLE, || lab.online(OLD) && lab.online(NEW)), "{OLD} did not rejoin");
    let (dc_node, dc_version) = dc(&lab, OLD);
    println!("upgrade: {OLD} upgraded: {}; DC {dc_node} ({dc_version})", versions(&lab, OLD));
    assert!(dc_version.starts_with("3.0"), "the DC runs {dc_version}");
    lab.crm(NEW, &["crm_attribute", "-N", OLD, "-n", "standby", "-v", "off"]);
    for ((g, _), before) in guests.iter().zip(boots_before) {
        assert_only_on(g, NEW, "while the old node was upgraded");
        assert_eq!(boots(g), before, "{} rebooted while {OLD} was upgraded", g.name());
    }
    phase("4 (the old node upgraded in place)", t);

    // 5. Both nodes on Debian 13: the guests move live to the upgraded
    //    node, and so does one started on Debian 13 with the machine type
    //    the old QEMU lacked.
    let t = Instant::now();
    move_live(&lab, &old_guest, &old_rsc, NEW, OLD, "new -> upgraded");
    move_live(&lab, &new_guest, &new_rsc, NEW, OLD, "new -> upgraded (the guest refused in phase 3)");
    let (late_guest, late_rsc) = vm(&lab, "upg-late", NEW);
    let late_machine = machine(&lab, NEW, late_guest.name());
    assert!(late_machine.contains("10.0"), "started on QEMU 10.0 as {late_machine}");
    move_live(&lab, &late_guest, &late_rsc, NEW, OLD, "new -> upgraded, a machine type only QEMU 10.0 has");
    phase("5 (both on Debian 13)", t);
}
