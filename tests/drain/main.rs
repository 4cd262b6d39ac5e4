//! Draining a node (issue 12): several guests on nodea of the two-node
//! cluster, some rewriting memory, the link between the nodes capped with
//! `tc tbf`, and nodea put in standby. Pacemaker then migrates every guest
//! at once. Pass: every guest arrives on nodeb by live migration (migrate_to
//! and migrate_from succeeded, no start on nodeb), booted once, and its
//! serial counter goes on.
//!
//! The load comes from the environment, so the bench can raise it:
//!   FERRY_DRAIN_GUESTS  (6)    guests
//!   FERRY_DRAIN_DIRTY   (3)    of which rewrite memory
//!   FERRY_DRAIN_FILL    (64)   MiB of random data each guest holds
//!   FERRY_DRAIN_RATE    (4)    MiB/s each dirtying guest rewrites
//!   FERRY_DRAIN_LINK    (20)   MiB/s on the link (tc tbf, nodea's egress)
//!   FERRY_DRAIN_MIGRATE_TO (120)  migrate_to timeout, s
//!   FERRY_DRAIN_AGENT   (ferry) ferry, or heartbeat for the anchor
//!   FERRY_DRAIN_SLOTS   (unset) ferry's migration_slots; unset keeps its default (0, off)
//!   FERRY_DRAIN_ACTION_LIMIT (unset) Pacemaker's node-action-limit for the
//!                       drain, with its load throttle off (load-threshold
//!                       10000%), so it runs exactly that many at once
//!   FERRY_DRAIN_MIGRATION_LIMIT (unset) Pacemaker's migration-limit
//!
//! Run through `tests/lab/with-two-nodes.sh --cluster` (make test-drain).

#[path = "../support/mod.rs"]
mod support;

use std::time::{Duration, Instant};
use support::lab::*;
use support::*;

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Caps nodea's egress on the link; removed when dropped.
struct CappedLink<'l> {
    lab: &'l Lab,
    device: String,
}

impl<'l> CappedLink<'l> {
    fn new(lab: &'l Lab, mib_per_s: u64) -> CappedLink<'l> {
        let device = lab.link_device("nodea");
        let rate = format!("{}mbit", mib_per_s * 8 * 1024 * 1024 / 1_000_000);
        let out = lab.on("nodea", &["tc", "qdisc", "replace", "dev", &device, "root", "tbf", "rate", &rate, "burst", "256kb", "latency", "400ms"]);
        assert!(out.status.success(), "tc: {}", String::from_utf8_lossy(&out.stderr));
        CappedLink { lab, device }
    }
}

impl Drop for CappedLink<'_> {
    fn drop(&mut self) {
        let _ = self.lab.on("nodea", &["tc", "qdisc", "del", "dev", &self.device, "root"]);
    }
}

#[test]
fn a_standby_drains_every_guest_by_live_migration() {
    let lab = Lab::from_env();
    let (count, dirty, fill, rate, link, migrate_to) = (
        knob("FERRY_DRAIN_GUESTS", 6) as usize,
        knob("FERRY_DRAIN_DIRTY", 3) as usize,
        knob("FERRY_DRAIN_FILL", 64),
        knob("FERRY_DRAIN_RATE", 4),
        knob("FERRY_DRAIN_LINK", 20),
        knob("FERRY_DRAIN_MIGRATE_TO", 120),
    );
    let heartbeat = std::env::var("FERRY_DRAIN_AGENT").as_deref() == Ok("heartbeat");
    let slots = std::env::var("FERRY_DRAIN_SLOTS").ok().filter(|s| !s.is_empty());
    let mut guests = Vec::new();
    let mut resources = Vec::new();
    for i in 0..count {
        let g = LabGuest::new(&lab, &format!("drain{i}"), None);
        let load = if i < dirty { format!(" ferry.fill={fill} ferry.rate={rate}") } else { format!(" ferry.fill={fill}") };
        std::fs::write(&g.g.config, g.g.xml().replace("</cmdline>", &format!("{load}</cmdline>"))).unwrap();
        let config = g.g.config.display().to_string();
        let mut params = vec![("config", config.as_str()), ("migration_transport", "tcp")];
        if !heartbeat {
            params.push(("migration_encryption", "none"));
            if let Some(slots) = slots.as_deref() {
                params.push(("migration_slots", slots));
            }
        }
        let to = format!("{migrate_to}s");
        let ops = [("monitor", "10s", "30s"), ("start", "0", "120s"), ("stop", "0", "120s"), ("migrate_to", "0", to.as_str()), ("migrate_from", "0", "60s")];
        let r = ClusterResource::create_of(&lab, if heartbeat { "heartbeat" } else { "ferry" }, &g.g.instance, &params, &[("allow-migrate", "true"), ("target-role", "Stopped")], &ops);
        lab.crm("nodea", &["crm_resource", "--move", "-r", &r.id, "-N", "nodea"]);
        lab.crm("nodea", &["crm_resource", "-r", &r.id, "--meta", "-p", "target-role", "-v", "Started"]);
        guests.push(g);
        resources.push(r);
    }
    let _unstandby = Defer(|| drop(lab.on("nodea", &["crm_attribute", "-N", "nodea", "-n", "standby", "-v", "off"])));
    for (g, r) in guests.iter().zip(&resources) {
        assert_eq!(r.wait_active(Duration::from_secs(300)).as_deref(), Some("nodea"), "{} did not start on nodea", r.id);
        assert!(g.g.wait_console("ferry-guest: up", Duration::from_secs(180)), "{} did not boot", g.name());
    }
    for r in &resources {
        // The preference is gone before the drain: standby alone moves them.
        lab.crm("nodea", &["crm_resource", "--clear", "-r", &r.id]);
    }
    assert!(resources[0].settle(Duration::from_secs(120)));
    let before: Vec<_> = guests.iter().map(|g| g.last_tick()).collect();

    // Pacemaker's own limit on actions per node: twice the cores by default,
    // halved or less while its load throttle finds the node busy.
    let action_limit = std::env::var("FERRY_DRAIN_ACTION_LIMIT").ok().filter(|v| !v.is_empty());
    let _limit = action_limit.as_ref().map(|n| {
        lab.crm("nodea", &["crm_attribute", "-t", "crm_config", "-n", "node-action-limit", "-v", n]);
        lab.crm("nodea", &["crm_attribute", "-t", "crm_config", "-n", "load-threshold", "-v", "10000%"]);
        Defer(|| {
            for option in ["node-action-limit", "load-threshold"] {
                drop(lab.on("nodea", &["crm_attribute", "-t", "crm_config", "-n", option, "-D"]));
            }
        })
    });
    let migration_limit = std::env::var("FERRY_DRAIN_MIGRATION_LIMIT").ok().filter(|v| !v.is_empty());
    let _migration_limit = migration_limit.as_ref().map(|n| {
        lab.crm("nodea", &["crm_attribute", "-t", "crm_config", "-n", "migration-limit", "-v", n]);
        Defer(|| drop(lab.on("nodea", &["crm_attribute", "-t", "crm_config", "-n", "migration-limit", "-D"])))
    });
    let _cap = CappedLink::new(&lab, link);
    let cpu = CpuSampler::start();
    let log_before: Vec<usize> = ["nodea", "nodeb"].iter().map(|n| pacemaker_log(&lab, n).len()).collect();
    let started = Instant::now();
    let epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    lab.crm("nodea", &["crm_attribute", "-N", "nodea", "-n", "standby", "-v", "on"]);
    // The link's bytes over time, to tell an idle link from a full one.
    let mut trace = vec![(0.0, 0u64)];
    // How many migrations ran at once: an incoming guest is paused on nodeb
    // until its switch-over.
    let mut parallel = 0;
    let all_there = wait_for(Duration::from_secs(900), || {
        trace.push((started.elapsed().as_secs_f64(), link_bytes_sent(&lab)));
        let arriving = String::from_utf8_lossy(&lab.virsh("nodeb", &["list", "--state-paused", "--name"]).stdout).lines().filter(|l| !l.trim().is_empty()).count();
        parallel = parallel.max(arriving);
        resources.iter().all(|r| lab.located(&r.id) == vec!["nodeb".to_string()])
    });
    let drained = started.elapsed();
    let (cpu_busy, cpu_saturated) = cpu.stop();
    let sent = link_bytes_sent(&lab);
    let settled = resources[0].settle(Duration::from_secs(300));

    let mut restarts = 0;
    let mut failed_migrate_to = 0;
    let mut downtimes = Vec::new();
    let mut failures = Vec::new();
    let mut timeline = Vec::new();
    let mut held = Vec::new();
    let mut spans = Vec::new();
    for (i, ((g, r), tick)) in guests.iter().zip(&resources).zip(&before).enumerate() {
        let ops = lab.ops(&r.id);
        let ok = |node: &str, op: &str| ops.iter().any(|o| o.node == node && o.operation == op && o.rc == 0);
        if ops.iter().any(|o| o.node == "nodeb" && o.operation == "start") || boots(g) != 1 {
            restarts += 1;
        }
        failed_migrate_to += ops.iter().filter(|o| o.operation == "migrate_to" && o.rc != 0).count();
        if let Some(o) = ops.iter().find(|o| o.node == "nodea" && o.operation == "migrate_to") {
            spans.push((o.last_rc_change * 1000, o.last_rc_change * 1000 + o.exec_ms));
            timeline.push(format!("{}: migrate_to at +{} s, queued {} ms, ran {:.1} s, rc {}", r.id, o.last_rc_change.saturating_sub(epoch), o.queue_ms, o.exec_ms as f64 / 1000.0, o.rc));
        }
        let (downtime, memory) = completed_job(&lab, g.name());
        downtimes.extend(downtime);
        if let Some(mib) = memory {
            timeline.push(format!("{}: {mib:.0} MiB of memory crossed", r.id));
            // What the guest holds: an idle guest's pages cross once.
            if i >= dirty {
                held.push(mib);
            }
        }
        if !(ok("nodea", "migrate_to") && ok("nodeb", "migrate_from")) {
            failures.push(format!("{}: no live migration: {ops:?}", r.id));
        }
        if !g.ticks_on(Duration::from_secs(20)) || g.last_tick() <= *tick {
            failures.push(format!("{}: the counter did not go on from {tick:?}", r.id));
        }
        if boots(g) != 1 {
            failures.push(format!("{}: booted {} times", r.id, boots(g)));
        }
    }
    downtimes.sort();
    // The most migrate_to Pacemaker had running at once. Starts are known to
    // the second, so one that ended within a second of another's start is
    // not counted as overlapping it.
    let overlap = spans.iter().map(|(start, _)| spans.iter().filter(|(s, e)| s <= start && start + 1000 < *e).count()).max().unwrap_or(0);
    // Seconds in which the link carried less than half its rate.
    let cap = link as f64 * 1048576.0;
    let link_idle: f64 = trace.windows(2).filter(|w| (w[1].1 - w[0].1) as f64 / (w[1].0 - w[0].0) < cap / 2.0).map(|w| w[1].0 - w[0].0).sum();
    // The floor: all the guests' memory over the link once, at full speed.
    // What a guest holds is what an idle one sent (its fill, kernel and
    // root file system); without an idle guest, the fill plus 16 MiB.
    held.sort_by(f64::total_cmp);
    let per_guest = held.get(held.len() / 2).copied().unwrap_or((fill + 16) as f64);
    let floor = count as f64 * per_guest / link as f64;
    // What the controllers did meanwhile: throttling by load, and (with
    // FERRY_DRAIN_VERBOSE) when they started what.
    let (mut throttled, mut slot_waits) = (0, 0);
    for (node, from) in ["nodea", "nodeb"].iter().zip(&log_before) {
        let log = pacemaker_log(&lab, node);
        for line in log.get(*from..).unwrap_or("").lines() {
            throttled += (line.contains("throttle") && !line.contains("debug")) as usize;
            slot_waits += line.contains("took migration slot") as usize;
            if std::env::var_os("FERRY_DRAIN_VERBOSE").is_some() && ["Initiating", "throttle", "Transition", "limit", "Result of"].iter().any(|w| line.contains(w)) && !line.contains("monitor") {
                eprintln!("  {node}| {line}");
            }
        }
    }
    for line in &timeline {
        eprintln!("  {line}");
    }
    // One line for the bench (tests/bench-drain.sh) to read.
    eprintln!(
        "drain-result agent={}{}{}{} guests={count} dirty={dirty} fill={fill} rate={rate} link={link} migrate_to={migrate_to} time={:.1} floor={floor:.1} ratio={:.2} held_mib={per_guest:.0} restarts={restarts} failed_migrate_to={failed_migrate_to} downtime_p50={} downtime_max={} cpu_busy={cpu_busy:.0}% cpu_saturated={cpu_saturated:.0}% link_used={:.0}% link_idle={link_idle:.0}s sent_mib={:.0} throttle_lines={throttled} max_parallel={parallel} max_migrate_to={overlap} slot_waits={slot_waits} live={}",
        if heartbeat { "heartbeat" } else { "ferry" },
        slots.as_deref().filter(|_| !heartbeat).map_or(String::new(), |s| format!("/slots={s}")),
        action_limit.as_deref().map_or(String::new(), |n| format!("/node-action-limit={n}")),
        migration_limit.as_deref().map_or(String::new(), |n| format!("/migration-limit={n}")),
        drained.as_secs_f64(),
        drained.as_secs_f64() / floor,
        downtimes.get(downtimes.len() / 2).map_or("-".into(), |d| format!("{d}ms")),
        downtimes.last().map_or("-".into(), |d| format!("{d}ms")),
        100.0 * sent as f64 / (link as f64 * 1048576.0 * drained.as_secs_f64()),
        sent as f64 / 1048576.0,
        count - failures.iter().filter(|f| f.contains("no live migration")).count(),
    );
    assert!(all_there, "not every resource reached nodeb");
    // ferry's migration_slots is off unless FERRY_DRAIN_SLOTS sets it.
    let limit: usize = if heartbeat { 0 } else { slots.as_deref().map_or(0, |s| s.parse().unwrap_or(0)) };
    if limit > 0 {
        assert!(parallel <= limit, "{parallel} migrations ran at once, more than the {limit} migration slots");
        // More migrate_to at once than slots: some of them must have waited.
        assert!(overlap <= limit || slot_waits > 0, "Pacemaker ran {overlap} migrate_to at once, and none waited for one of {limit} slots");
    }
    assert!(settled, "the drain did not settle");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Bytes nodea's capped egress sent since the cap was set.
fn link_bytes_sent(lab: &Lab) -> u64 {
    let out = lab.on("nodea", &["tc", "-s", "qdisc", "show", "dev", &lab.link_device("nodea")]);
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace().skip_while(|w| *w != "Sent").nth(1).and_then(|n| n.parse().ok()).unwrap_or(0)
}

/// What libvirt on nodeb says of the guest's incoming migration: how long
/// the guest was paused (ms), and how much memory crossed (MiB).
fn completed_job(lab: &Lab, name: &str) -> (Option<u64>, Option<f64>) {
    let out = lab.virsh("nodeb", &["domjobinfo", "--completed", name]);
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |label: &str| text.lines().find(|l| l.starts_with(label)).and_then(|l| l.split_whitespace().rev().nth(1)).map(String::from);
    let downtime = field("Total downtime:").and_then(|v| v.parse().ok());
    let memory = text.lines().find(|l| l.starts_with("Memory processed:")).and_then(|l| {
        let mut words = l.split_whitespace().skip(2);
        let value: f64 = words.next()?.parse().ok()?;
        Some(match words.next()? {
            "GiB" => value * 1024.0,
            "KiB" => value / 1024.0,
            _ => value,
        })
    });
    (downtime, memory)
}
