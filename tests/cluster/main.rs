//! ocf:ferry:VirtualDomain under a real two-node corosync + Pacemaker cluster
//! (tests/lab/two-nodes.sh cluster): Pacemaker finds the installed agent,
//! starts and monitors a guest, moves it by live migration on request and on
//! standby, recovers it when it is destroyed behind its back and when a
//! migration fails, refuses a clone, and never starts a second copy because
//! one node cannot read the config file. Every test asserts what the CIB and
//! the nodes show.
//!
//! Run through `tests/lab/with-two-nodes.sh --cluster` (make test), one test
//! at a time: they share the cluster.

#[path = "../support/mod.rs"]
mod support;

use std::time::Duration;
use support::lab::*;
use support::*;

mod readme;

const SETTLE: Duration = Duration::from_secs(120);

fn other(node: &str) -> &'static str {
    if node == "nodea" {
        "nodeb"
    } else {
        "nodea"
    }
}

/// A guest plus its cluster resource, with migration allowed.
fn vm<'l>(lab: &'l Lab, tag: &str, dirty: Option<u32>, extra: &[(&str, &str)], ops: &[(&str, &str, &str)]) -> (LabGuest<'l>, ClusterResource<'l>) {
    let g = LabGuest::new(lab, tag, dirty);
    let config = g.g.config.display().to_string();
    let mut params = vec![("config", config.as_str()), ("migration_transport", "tcp")];
    // Clear text unless asked: see LabGuest::new.
    if !extra.iter().any(|(k, _)| *k == "migration_encryption") {
        params.push(("migration_encryption", "none"));
    }
    params.extend_from_slice(extra);
    let mut all_ops = vec![("monitor", "5s", "30s"), ("start", "0", "90s"), ("stop", "0", "90s"), ("migrate_to", "0", "120s"), ("migrate_from", "0", "60s")];
    for op in ops {
        all_ops.retain(|o| o.0 != op.0);
        all_ops.push(*op);
    }
    let r = ClusterResource::create(lab, &g.g.instance, &params, &[("allow-migrate", "true")], &all_ops, false);
    (g, r)
}

/// The last operation of `name` recorded for the resource on `node`.
fn last_op(lab: &Lab, rsc: &str, node: &str) -> Option<Op> {
    lab.ops(rsc).into_iter().find(|o| o.node == node && o.id == format!("{rsc}_last_0"))
}

/// The CIB shows a live migration from `from` to `to`: migrate_to and
/// migrate_from succeeded, and the target never ran a start.
fn assert_live_move(lab: &Lab, rsc: &str, from: &str, to: &str) {
    let ops = lab.ops(rsc);
    let has = |node: &str, op: &str| ops.iter().any(|o| o.node == node && o.operation == op && o.rc == 0);
    assert!(has(from, "migrate_to") && has(to, "migrate_from"), "no successful migrate_to/migrate_from: {ops:?}");
    assert!(!ops.iter().any(|o| o.node == to && o.operation == "start"), "the target ran a start: {ops:?}");
}

#[test]
fn pacemaker_sees_the_installed_agent_and_validates_through_it() {
    let lab = Lab::from_env();
    let md = lab.crm("nodea", &["crm_resource", "--show-metadata", "ocf:ferry:VirtualDomain"]);
    assert!(md.contains("<action name=\"migrate_to\"") && md.contains("name=\"migration_mode\""), "{md}");
    let shared = TempDir::new("cluster-validate");
    let config = shared.join("vm.xml");
    std::fs::write(&config, "<domain type='qemu'><name>v</name></domain>").unwrap();
    let option = format!("config={}", config.display());
    let ok = lab.on("nodea", &["crm_resource", "--validate", "--class", "ocf", "--provider", "ferry", "--agent", "VirtualDomain", "--option", &option]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stdout));
    let bad = lab.on("nodea", &["crm_resource", "--validate", "--class", "ocf", "--provider", "ferry", "--agent", "VirtualDomain", "--option", &option, "--option", "migration_mode=teleport"]);
    assert!(!bad.status.success());
    let said = format!("{}{}", String::from_utf8_lossy(&bad.stdout), String::from_utf8_lossy(&bad.stderr));
    assert!(said.contains("teleport"), "{said}");
    // Depth 0 is the parameters alone, as pcs runs it at create time on a
    // node that may lack the file; depth 10 checks the node.
    let absent = "config=/nonexistent/ferry/vm.xml";
    let validate = |level: &str| lab.on("nodea", &["crm_resource", level, "--class", "ocf", "--provider", "ferry", "--agent", "VirtualDomain", "--option", absent]);
    let shallow = validate("--validate");
    assert!(shallow.status.success(), "depth 0 looked at the node: {}", String::from_utf8_lossy(&shallow.stdout));
    let deep = validate("--validate=10");
    assert!(!deep.status.success(), "depth 10 did not check the config file");
    let said = format!("{}{}", String::from_utf8_lossy(&deep.stdout), String::from_utf8_lossy(&deep.stderr));
    assert!(said.contains("not readable"), "{said}");
}

#[test]
fn a_guest_starts_is_monitored_and_moves_by_live_migration() {
    let lab = Lab::from_env();
    let (g, r) = vm(&lab, "move", None, &[], &[]);
    let home = r.wait_active(SETTLE).expect("the resource did not start");
    assert!(g.ticks_on(crate::support::BOOT), "the guest does not run");
    assert_only_on(&g, &home, "after start");
    // The recurring monitor runs, and succeeds.
    assert!(
        wait_for(Duration::from_secs(30), || lab.ops(&r.id).iter().any(|o| o.node == home && o.operation == "monitor" && o.interval_ms == 5000 && o.rc == 0)),
        "no recurring monitor in the CIB: {:?}",
        lab.ops(&r.id)
    );
    let mut at = home;
    for _ in 0..2 {
        let to = other(&at);
        let before = g.last_tick();
        lab.crm("nodea", &["crm_resource", "--move", "-r", &r.id, "-N", to]);
        assert!(r.settle(SETTLE), "the move did not settle");
        assert_eq!(lab.located(&r.id), vec![to.to_string()]);
        assert_live_move(&lab, &r.id, &at, to);
        // Beside the upgrade suite's figures across generations.
        let ops = lab.ops(&r.id);
        let took = |node: &str, op: &str| ops.iter().filter(|o| o.node == node && o.operation == op).map(|o| o.exec_ms).max().unwrap_or(0);
        println!(
            "move {at} -> {to} ({}): migrate_to {} ms, migrate_from {} ms, downtime {}",
            lab.crm(to, &["pacemakerd", "--version"]).lines().next().unwrap_or(""),
            took(&at, "migrate_to"),
            took(to, "migrate_from"),
            lab.downtime(to, g.name())
        );
        assert_only_on(&g, to, "after the move");
        assert!(g.last_tick() > before);
        assert_eq!(boots(&g), 1, "the guest must not have rebooted");
        lab.crm("nodea", &["crm_resource", "--clear", "-r", &r.id]);
        assert!(r.settle(SETTLE));
        at = to.to_string();
    }
}

#[test]
fn standby_of_the_active_node_migrates_the_guest_off() {
    let lab = Lab::from_env();
    let (g, r) = vm(&lab, "standby", None, &[], &[]);
    let home = r.wait_active(SETTLE).expect("the resource did not start");
    assert!(g.ticks_on(crate::support::BOOT));
    let _unstandby = Defer(|| drop(lab.on("nodea", &["crm_attribute", "-N", &home, "-n", "standby", "-v", "off"])));
    lab.crm("nodea", &["crm_attribute", "-N", &home, "-n", "standby", "-v", "on"]);
    assert!(r.settle(SETTLE));
    let to = other(&home);
    assert_eq!(lab.located(&r.id), vec![to.to_string()]);
    assert_live_move(&lab, &r.id, &home, to);
    assert_only_on(&g, to, "after standby");
    assert_eq!(boots(&g), 1);
}

#[test]
fn a_guest_destroyed_behind_the_cluster_s_back_is_recovered() {
    let lab = Lab::from_env();
    let (g, r) = vm(&lab, "recover", None, &[], &[]);
    let home = r.wait_active(SETTLE).expect("the resource did not start");
    assert!(g.ticks_on(crate::support::BOOT));
    assert!(lab.virsh(&home, &["destroy", g.name()]).status.success());
    // The monitor notices (7), and Pacemaker starts the guest again.
    assert!(
        wait_for(SETTLE, || lab.ops(&r.id).iter().any(|o| o.operation == "monitor" && o.rc == 7 && o.id.contains("last_failure"))),
        "the monitor did not report the guest gone: {:?}",
        lab.ops(&r.id)
    );
    assert!(wait_for(SETTLE, || boots(&g) == 2), "Pacemaker did not start the guest again");
    assert!(r.settle(SETTLE));
    let now = r.wait_active(SETTLE).expect("active again");
    assert_only_on(&g, &now, "after recovery");
}

/// Waits for a failed monitor of `rsc` whose exit reason contains `words`,
/// and returns the node it failed on.
fn wait_failed_monitor(lab: &Lab, rsc: &str, words: &str) -> String {
    let mut node = None;
    let seen = wait_for(SETTLE, || {
        node = lab.ops(rsc).into_iter().find(|o| o.operation == "monitor" && o.rc == 1 && o.exit_reason.contains(words)).map(|o| o.node);
        node.is_some()
    });
    assert!(seen, "no failed monitor saying '{words}': {:?}", lab.ops(rsc));
    node.unwrap()
}

#[test]
fn a_panicked_guest_is_recovered_and_a_depth_ten_monitor_runs_in_the_cluster() {
    let lab = Lab::from_env();
    let g = LabGuest::new(&lab, "panic", None);
    g.g.with_devices("<panic model='isa'/><channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>", "unknown_nmi_panic=1");
    g.g.edit_config(|xml| xml.replace("<on_crash>destroy</on_crash>", "<on_crash>preserve</on_crash>"));
    let config = g.g.config.display().to_string();
    let ops = [("monitor", "5s", "30s"), ("monitor@10", "7s", "30s"), ("start", "0", "90s"), ("stop", "0", "90s")];
    let r = ClusterResource::create(&lab, &g.g.instance, &[("config", &config), ("guest_agent_timeout", "3")], &[], &ops, false);
    let home = r.wait_active(SETTLE).expect("the resource did not start");
    assert!(g.g.wait_console("ferry-guest: up", BOOT), "{}", g.g.console_text());
    // Pacemaker's depth-10 monitor reaches the guest agent inside the guest.
    assert!(g.g.wait_console("guest-ping answered", SETTLE), "the depth-10 monitor never asked the guest:\n{}", g.g.console_text());
    assert!(
        lab.ops(&r.id).iter().any(|o| o.operation == "monitor" && o.interval_ms == 7000 && o.rc == 0),
        "the depth-10 monitor did not succeed: {:?}",
        lab.ops(&r.id)
    );
    assert!(lab.virsh(&home, &["inject-nmi", g.name()]).status.success());
    let failed_on = wait_failed_monitor(&lab, &r.id, "guest panicked");
    assert_eq!(failed_on, home);
    let crm_mon = lab.crm("nodea", &["crm_mon", "-1"]);
    assert!(crm_mon.contains("guest panicked"), "crm_mon shows the reason:\n{crm_mon}");
    assert!(wait_for(SETTLE, || boots(&g) == 2), "Pacemaker did not start the guest again:\n{}", g.g.console_text());
    assert!(r.settle(SETTLE));
    let now = r.wait_active(SETTLE).expect("active again");
    assert_only_on(&g, &now, "after recovery from the panic");
    assert_eq!(lab.state(&now, g.name()).as_deref(), Some("running"));
}

/// A small tmpfs inside a node (the nodes' mounts are their own), holding
/// the guest's disk so the test can fill it; unmounted when the test ends.
struct NodeFs<'l> {
    lab: &'l Lab,
    node: &'static str,
    dir: String,
}

impl Drop for NodeFs<'_> {
    fn drop(&mut self) {
        let _ = self.lab.on(self.node, &["umount", &self.dir]);
    }
}

#[test]
fn a_guest_paused_on_a_disk_error_is_recovered_by_pacemaker() {
    let lab = Lab::from_env();
    let g = LabGuest::new(&lab, "ioerror", None);
    let dir = g.g.dir.join("small").display().to_string();
    std::fs::create_dir_all(&dir).unwrap();
    // The disk exists on nodea only: Pacemaker starts the guest there.
    let fs = NodeFs { lab: &lab, node: "nodea", dir: dir.clone() };
    lab.crm("nodea", &["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", &dir]);
    lab.crm("nodea", &["truncate", "-s", "64M", &format!("{dir}/disk.raw")]);
    g.g.with_devices(
        &format!("<disk type='file' device='disk'><driver name='qemu' type='raw' error_policy='stop'/><source file='{dir}/disk.raw'/><target dev='vda' bus='virtio'/></disk>"),
        "ferry.disk=1",
    );
    let config = g.g.config.display().to_string();
    let ops = [("monitor", "5s", "30s"), ("start", "0", "90s"), ("stop", "0", "90s")];
    let r = ClusterResource::create(&lab, &g.g.instance, &[("config", &config)], &[("target-role", "Stopped")], &ops, false);
    // Placed before it starts (the preference goes with the resource's --clear).
    lab.crm("nodea", &["crm_resource", "--move", "-r", &r.id, "-N", "nodea"]);
    lab.crm("nodea", &["crm_resource", "-r", &r.id, "--meta", "-p", "target-role", "-v", "Started"]);
    assert_eq!(r.wait_active(SETTLE).as_deref(), Some("nodea"));
    let failed_on = wait_failed_monitor(&lab, &r.id, "paused on a disk I/O error");
    assert_eq!(failed_on, "nodea");
    // Room for the restarted guest. If it fills the old limit first, it is
    // recovered once more; either way it ends up running.
    lab.crm("nodea", &["mount", "-o", "remount,size=128m", &dir]);
    let crm_mon = lab.crm("nodea", &["crm_mon", "-1"]);
    assert!(crm_mon.contains("I/O error"), "crm_mon shows the reason:\n{crm_mon}");
    assert!(wait_for(SETTLE, || boots(&g) >= 2), "Pacemaker did not start the guest again:\n{}", g.g.console_text());
    assert!(r.settle(SETTLE));
    assert!(wait_for(SETTLE, || lab.state("nodea", g.name()).as_deref() == Some("running")), "{:?}", lab.state("nodea", g.name()));
    let writes = g.g.console_text().matches("ferry-disk wrote").count();
    assert!(wait_for(SETTLE, || g.g.console_text().matches("ferry-disk wrote").count() > writes + 2), "the recovered guest writes to its disk");
    assert_eq!(lab.state("nodea", g.name()).as_deref(), Some("running"));
    drop(r);
    drop(g);
    drop(fs);
}

#[test]
fn a_migration_that_cannot_finish_fails_in_its_timeout_and_pacemaker_recovers() {
    let lab = Lab::from_env();
    // A dirtying guest behind a slow link, no ladder, a 20 s migrate_to.
    let (g, r) = vm(
        &lab,
        "failmig",
        Some(48),
        &[("migration_speed", "30"), ("migration_downtime_max", "0"), ("migration_auto_converge", "false"), ("migration_stall", "600")],
        &[("migrate_to", "0", "20s")],
    );
    let home = r.wait_active(SETTLE).expect("the resource did not start");
    assert!(g.ticks_on(crate::support::BOOT));
    lab.crm("nodea", &["crm_resource", "--move", "-r", &r.id, "-N", other(&home)]);
    assert!(
        wait_for(SETTLE, || lab.ops(&r.id).iter().any(|o| o.operation == "migrate_to" && o.rc == 1)),
        "migrate_to did not fail: {:?}",
        lab.ops(&r.id)
    );
    let failed = lab.ops(&r.id).into_iter().find(|o| o.operation == "migrate_to" && o.rc == 1).unwrap();
    assert!(failed.exec_ms < 20_000, "migrate_to must end inside its 20 s timeout: {failed:?}");
    let left = migration_progress(&lab, &r.id);
    assert!(left.is_empty(), "the failed migration left its progress behind: {left:?}");
    // Recovery: Pacemaker stops what may be left and starts the guest again.
    assert!(r.settle(SETTLE));
    let now = r.wait_active(SETTLE).expect("recovered");
    assert_only_on(&g, &now, "after recovery");
    lab.crm("nodea", &["crm_resource", "--clear", "-r", &r.id]);
}

/// A guest started by the cluster and booted: its node and QEMU PID.
fn running_vm<'l>(lab: &'l Lab, tag: &str) -> (LabGuest<'l>, ClusterResource<'l>, String, u32) {
    let (g, r) = vm(lab, tag, None, &[], &[]);
    let home = r.wait_active(SETTLE).expect("the resource did not start");
    assert!(g.ticks_on(crate::support::BOOT), "the guest does not run");
    let pid = lab.qemu_pid(&home, g.name()).expect("no QEMU process");
    (g, r, home, pid)
}

/// The values of resource `rsc`'s private progress attribute that attrd
/// holds, one per node that has a non-empty one.
fn migration_progress(lab: &Lab, rsc: &str) -> Vec<String> {
    let out = lab.on("nodea", &["attrd_updater", "-Q", "-A", "-n", &format!("ferry-migration-{rsc}")]);
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().filter_map(|l| l.split(" value=\"").nth(1)).map(|v| v.trim_end().trim_end_matches('"').to_string()).filter(|v| !v.is_empty()).collect()
}

#[test]
fn a_slow_move_shows_its_progress_in_attrd_while_it_runs_and_clears_it_without_touching_the_cib() {
    let lab = Lab::from_env();
    // An idle guest (about 70 MiB to send) behind a 5 MiB/s limit: a
    // migration of many seconds. Clear text: the progress does not depend
    // on the stream, and once (CI of fe2641a) an idle guest sent this way
    // over TLS arrived and never counted again, a loss the lab's TCG guests
    // suffer over TLS (see LabGuest::new) that no soak of this kind has
    // reproduced since (make soak, FERRY_SOAK_KINDS=throttled: 0 of 30).
    // The TLS move under Pacemaker is the reload test's.
    let (g, r) = vm(&lab, "slowmove", None, &[("migration_speed", "5")], &[]);
    let home = r.wait_active(SETTLE).expect("the resource did not start");
    assert!(g.ticks_on(crate::support::BOOT));
    let attribute = format!("ferry-migration-{}", r.id);
    let to = other(&home);
    lab.crm("nodea", &["crm_resource", "--move", "-r", &r.id, "-N", to]);
    let log_from = pacemaker_log(&lab, &home).len();
    let mut progress = String::new();
    let (mut in_cib, mut status) = (false, String::new());
    let seen = wait_for(Duration::from_secs(60), || match migration_progress(&lab, &r.id).pop() {
        Some(value) => {
            progress = value;
            in_cib = lab.crm("nodea", &["crm_mon", "-1", "-A"]).contains(&attribute);
            status = String::from_utf8_lossy(&lab.on(&home, &["/usr/lib/ocf/lib/ferry/ferry", "status"]).stdout).into_owned();
            true
        }
        None => false,
    });
    assert!(seen, "attrd never held {attribute} during the migration");
    assert!(progress.contains("% sent") && progress.contains("MiB left") && progress.contains("pass"), "{progress}");
    // Private: in the CIB, each change would abort Pacemaker's transition
    // (see ProgressAttribute), which serialised drains.
    assert!(!in_cib, "{attribute} reached the CIB (crm_mon -A)");
    assert!(status.lines().any(|l| l.starts_with(&r.id) && l.contains("migrating: ")), "ferry status on {home} shows no progress:\n{status}");
    assert!(r.settle(SETTLE), "the move did not settle");
    assert_eq!(lab.located(&r.id), vec![to.to_string()]);
    assert_live_move(&lab, &r.id, &home, to);
    assert_only_on(&g, to, "after the slow move");
    assert_eq!(boots(&g), 1, "the guest must not have rebooted");
    let left = migration_progress(&lab, &r.id);
    assert!(left.is_empty(), "the progress outlived the migration: {left:?}");
    let log = pacemaker_log(&lab, &home);
    let aborts: Vec<_> = log[log_from..].lines().filter(|l| l.contains("aborted by") && l.contains(&attribute)).collect();
    assert!(aborts.is_empty(), "the progress aborted transitions:\n{}", aborts.join("\n"));
    lab.crm("nodea", &["crm_resource", "--clear", "-r", &r.id]);
}

#[test]
fn a_reloadable_change_runs_reload_agent_leaves_qemu_alone_and_applies_at_the_next_migration() {
    let lab = Lab::from_env();
    // Idle: the move below is TLS (see LabGuest::new).
    let (g, r, home, pid) = running_vm(&lab, "reload");
    // migration_encryption is reloadable: none -> tls.
    let (changed, tick) = (std::time::Instant::now(), g.last_tick());
    lab.crm("nodea", &["crm_resource", "-r", &r.id, "--set-parameter", "migration_encryption", "--parameter-value", "tls"]);
    assert!(r.settle(SETTLE), "the change did not settle");
    eprintln!("reload: settled {:.1} s after the change; counter {tick:?} -> {:?}, QEMU PID {pid} kept", changed.elapsed().as_secs_f64(), g.last_tick());
    assert_reloaded_in_place(&g, &r, &home, pid);
    assert_only_on(&g, &home, "after the reload");
    assert!(!pacemaker_log(&lab, &home).lines().any(|l| l.contains(&r.id) && l.contains("(TLS)")), "a TLS migration before any move");
    // The next migration goes with the new value.
    let to = other(&home);
    lab.crm("nodea", &["crm_resource", "--move", "-r", &r.id, "-N", to]);
    assert!(r.settle(SETTLE), "the move did not settle");
    assert_live_move(&lab, &r.id, &home, to);
    assert_only_on(&g, to, "after the move");
    assert!(pacemaker_log(&lab, &home).lines().any(|l| l.contains(&r.id) && l.contains("(TLS)")), "the move after the reload was not TLS");
    lab.crm("nodea", &["crm_resource", "--clear", "-r", &r.id]);
}

#[test]
fn pcs_resource_update_of_a_reloadable_parameter_draws_no_warning_and_reloads_in_place() {
    // pcs checks the names against the meta-data (0.12 also runs
    // validate-all): the README's own example of a reloadable change.
    let lab = Lab::from_env();
    let (g, r, home, pid) = running_vm(&lab, "pcsupdate");
    let out = lab.on("nodea", &["pcs", "resource", "update", &r.id, "migration_speed=200"]);
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "pcs resource update failed: {said}");
    let warnings: Vec<&str> = said.lines().filter(|l| l.to_lowercase().contains("warning")).collect();
    assert!(warnings.is_empty(), "pcs resource update drew warnings:\n{}", warnings.join("\n"));
    assert!(r.settle(SETTLE), "the update did not settle");
    let value = lab.crm("nodea", &["crm_resource", "-r", &r.id, "--get-parameter", "migration_speed"]);
    assert_eq!(value.trim(), "200", "the CIB holds {value:?}");
    assert_reloaded_in_place(&g, &r, &home, pid);
}

/// Pacemaker ran reload-agent (ferry's word on it is in the node's log), and
/// no stop: a restart would have ended the guest's QEMU process `pid`.
fn assert_reloaded_in_place(g: &LabGuest, r: &ClusterResource, home: &str, pid: u32) {
    let lab = g.lab;
    assert!(
        wait_for(Duration::from_secs(30), || pacemaker_log(lab, home).lines().any(|l| l.contains(&r.id) && l.contains("reloaded: the new parameters apply"))),
        "no reload-agent in {home}'s pacemaker.log; operations: {:?}",
        lab.ops(&r.id)
    );
    assert_eq!(lab.qemu_pid(home, g.name()), Some(pid), "the guest's QEMU process changed");
    assert_eq!(boots(g), 1, "the guest rebooted");
}

#[test]
fn a_change_of_config_restarts_the_guest() {
    let lab = Lab::from_env();
    let (g, r, home, pid) = running_vm(&lab, "newconfig");
    // The same guest under another file name: config is not reloadable, so
    // Pacemaker must stop and start it, as heartbeat's agent would.
    let moved = g.g.config.with_file_name(format!("{}-v2.xml", g.name()));
    std::fs::copy(&g.g.config, &moved).unwrap();
    let _remove = Defer(|| drop(std::fs::remove_file(&moved)));
    let changed = std::time::Instant::now();
    lab.crm("nodea", &["crm_resource", "-r", &r.id, "--set-parameter", "config", "--parameter-value", &moved.display().to_string()]);
    assert!(r.settle(SETTLE), "the change did not settle");
    assert!(!pacemaker_log(&lab, &home).lines().any(|l| l.contains(&r.id) && l.contains("reloaded:")), "a config change was reloaded");
    let now = r.wait_active(SETTLE).expect("the resource is not active after the change");
    assert!(wait_for(crate::support::BOOT, || boots(&g) == 2), "the guest did not boot again: {} boots", boots(&g));
    eprintln!("config change: the guest booted again {:.1} s after the change", changed.elapsed().as_secs_f64());
    let new_pid = lab.qemu_pid(&now, g.name()).expect("no QEMU process after the restart");
    assert!(now != home || new_pid != pid, "the same QEMU process still runs");
    assert_only_on(&g, &now, "after the restart");
}

#[test]
fn a_clone_is_refused_with_err_configured() {
    let lab = Lab::from_env();
    let g = LabGuest::new(&lab, "clone", None);
    let config = g.g.config.display().to_string();
    // validate-all, as Pacemaker runs it for a clone.
    let v = g.run("nodea", "validate-all", 10, &[("OCF_RESKEY_CRM_meta_clone_max", "2"), ("OCF_RESKEY_CRM_meta_clone", "0")]);
    assert_eq!(v.code, 6, "{}", v.stderr);
    let r = ClusterResource::create(&lab, "vm-clone", &[("config", &config), ("migration_transport", "tcp")], &[], &[("monitor", "5s", "30s")], true);
    assert!(
        wait_for(SETTLE, || lab.ops(&r.id).iter().any(|o| o.operation == "start" && o.rc == 6)),
        "the clone's start was not refused with 6: {:?}",
        lab.ops(&r.id)
    );
    assert!(r.settle(SETTLE));
    assert!(lab.active_on(g.name()).is_empty(), "no copy of a cloned guest may run");
}

#[test]
fn a_node_that_cannot_read_the_config_does_not_cause_a_second_copy() {
    let lab = Lab::from_env();
    let (g, r) = vm(&lab, "noconf", None, &[], &[]);
    let home = r.wait_active(SETTLE).expect("the resource did not start");
    assert!(g.ticks_on(crate::support::BOOT));
    hide_the_config_and_probe_again(&lab, &g, &r, &home);
}

/// Hides the guest's config directory on `home`, the node running it (shared
/// storage gone there), makes Pacemaker probe again, and asserts that the
/// guest still runs on `home` alone: no restart, no second copy.
fn hide_the_config_and_probe_again(lab: &Lab, g: &LabGuest, r: &ClusterResource, home: &str) {
    let dir = g.g.dir.display().to_string();
    let empty = TempDir::new(&format!("{}-empty", r.id));
    assert!(lab.on(home, &["mount", "--bind", &empty.0.display().to_string(), &dir]).status.success());
    let unhide = Defer(|| drop(lab.on(home, &["umount", &dir])));
    lab.crm("nodea", &["crm_resource", "--refresh", "-r", &r.id]);
    // With the guest degraded (190) for good, the cluster is idle by the
    // README's check: what the lab's settle uses on both generations.
    assert!(r.settle(SETTLE), "the cluster did not settle after the refresh: {:?}", lab.ops(&r.id));
    std::thread::sleep(Duration::from_secs(10)); // the probes, then a few monitor intervals
    // `crm_resource --wait` here, for the README: on Pacemaker 2.1.7 to
    // 3.0.1 it waits for the degraded monitor's pending entry, for ever.
    let version = lab.crm("nodea", &["pacemakerd", "--version"]).lines().next().unwrap_or("").to_string();
    let waited = lab.on("nodea", &["crm_resource", "--wait", "--timeout", "15s"]).status.success();
    println!("{version}: crm_resource --wait with {} degraded {}", r.id, if waited { "returned" } else { "did not return in 15 s" });
    assert_eq!(lab.active_on(g.name()), vec![home], "a second copy: {:?}", lab.ops(&r.id));
    assert_eq!(lab.located(&r.id), vec![home.to_string()], "{:?}", lab.ops(&r.id));
    assert_only_on(g, home, "with the config unreadable there");
    assert_eq!(boots(g), 1, "no restart, no second copy");
    let probe = last_op(lab, &r.id, home).expect("probe result");
    assert!(probe.rc == 0 || probe.rc == 190, "the probe must find the guest running: {probe:?}");
    drop(unhide);
}

#[test]
fn a_guest_switched_from_heartbeat_in_maintenance_mode_is_never_started_twice_when_its_config_goes() {
    // The README's way from heartbeat:VirtualDomain: maintenance mode, the
    // provider changed, a refresh so that ferry probes, maintenance off.
    // heartbeat's guest carries no owner mark; ferry's probe marks it, so
    // when the config later becomes unreadable on its node, the probe
    // still finds it there and Pacemaker starts no second copy.
    let lab = Lab::from_env();
    let g = LabGuest::new(&lab, "switch", None);
    let config = g.g.config.display().to_string();
    let ops = [("monitor", "5s", "30s"), ("start", "0", "90s"), ("stop", "0", "90s")];
    let r = ClusterResource::create_of(&lab, "heartbeat", &g.g.instance, &[("config", &config)], &[], &ops);
    let home = r.wait_active(SETTLE).expect("heartbeat's resource did not start");
    assert!(g.ticks_on(crate::support::BOOT));
    let maintenance = |on: &str| lab.crm("nodea", &["crm_attribute", "-t", "crm_config", "-n", "maintenance-mode", "-v", on]);
    maintenance("true");
    let _maintenance_off = Defer(|| drop(lab.on("nodea", &["crm_attribute", "-t", "crm_config", "-n", "maintenance-mode", "-v", "false"])));
    lab.crm("nodea", &["cibadmin", "--modify", "-o", "resources", "--xml-text", &format!("<primitive id=\"{}\" provider=\"ferry\"/>", r.id)]);
    lab.crm("nodea", &["crm_resource", "--refresh", "-r", &r.id]);
    assert!(r.settle(SETTLE));
    let marked = || String::from_utf8_lossy(&lab.virsh(&home, &["dumpxml", g.name()]).stdout).contains("urn:x-ferry:owner:1");
    assert!(wait_for(SETTLE, marked), "ferry's probe did not mark heartbeat's guest: {:?}", lab.ops(&r.id));
    maintenance("false");
    assert!(r.settle(SETTLE));
    assert_only_on(&g, &home, "after the switch");

    hide_the_config_and_probe_again(&lab, &g, &r, &home);
}

#[test]
fn a_bad_value_set_on_a_running_guest_never_fails_a_stop_nor_makes_a_second_copy() {
    // Issue 24: an operator's typo in the CIB. A reloadable parameter runs
    // reload-agent, which refuses (6); a non-reloadable one restarts the
    // resource. Either way Pacemaker's next step is a stop with the new
    // values, which must work: a failed stop fences the node. The guest
    // ends running on one node or cleanly stopped, never on two.
    let lab = Lab::from_env();
    let cases: [(&str, &str, &str, &str); 3] = [
        ("reloadable, by crm_resource", "crm_resource", "migration_encryption", "bogus"),
        ("restarting, by crm_resource", "crm_resource", "stateless", "perhaps"),
        ("reloadable, by pcs resource update", "pcs", "shutdown_mode", "halt"),
    ];
    for (i, (what, tool, param, value)) in cases.into_iter().enumerate() {
        let (g, r) = vm(&lab, &format!("typo{i}"), None, &[], &[]);
        let home = r.wait_active(SETTLE).expect("the resource did not start");
        assert!(g.ticks_on(crate::support::BOOT));
        let set = match tool {
            "pcs" => lab.on("nodea", &["pcs", "resource", "update", &r.id, &format!("{param}={value}")]),
            _ => lab.on("nodea", &["crm_resource", "-r", &r.id, "--set-parameter", param, "--parameter-value", value]),
        };
        eprintln!("{what}: {tool} set {param}={value}: exit {:?} {}", set.status.code(), String::from_utf8_lossy(&set.stderr).trim());
        r.settle(Duration::from_secs(90));
        std::thread::sleep(Duration::from_secs(5));
        let ops = lab.ops(&r.id);
        let done: Vec<String> = ops.iter().map(|o| format!("{}:{}={}", o.node, o.operation, o.rc)).collect();
        eprintln!("{what}: Pacemaker did {}; the guest runs on {:?}", done.join(" "), lab.active_on(g.name()));
        assert!(!ops.iter().any(|o| o.operation == "stop" && o.rc != 0), "{what}: a stop failed: {ops:?}\n{}", pacemaker_log(&lab, &home).lines().rev().take(40).collect::<Vec<_>>().join("\n"));
        let running = lab.active_on(g.name());
        assert!(running.len() <= 1, "{what}: the guest runs on {running:?}");
        if running.is_empty() {
            assert!(lab.located(&r.id).is_empty(), "{what}: Pacemaker thinks it runs on {:?}, but no node runs it", lab.located(&r.id));
        } else {
            assert_eq!(lab.located(&r.id), vec![running[0].to_string()], "{what}: Pacemaker and the nodes disagree");
        }
    }
}
