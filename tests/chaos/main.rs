//! Chaos in the cluster lab (issue 25): a seeded, reproducible schedule of
//! faults against a few test guests under Pacemaker, and a judge that
//! trusts nothing ferry or Pacemaker says.
//!
//! Faults (see `Fault`): a move, a standby, a refresh, libvirtd stopped
//! or killed, the config hidden on the guest's node, the agent killed
//! mid-action, a guest kernel panic, Pacemaker restarted on a node, the
//! migration link slowed or cut during a move, a guest's QEMU hung, a
//! parameter's typo set and undone, the guest's disk failing under it, and
//! its watchdog firing.
//!
//! The judge (tests/support/judge.rs) reads the guests' own output. Each
//! guest's serial console goes to a file under /var/log/libvirt, which each
//! lab node has of its own, so every copy of a guest writes to its node's
//! file; the judge flags a guest whose files on both nodes keep growing
//! (a **double run**) and keeps each guest's longest time without a tick
//! (**unavailability**). Failed stops (a fence in a production cluster;
//! fencing is off in the lab) come from Pacemaker's logs, which a refresh
//! does not wipe as it wipes the CIB's history.
//!
//! From the environment:
//!   CHAOS_SEED     (1)      the schedule's seed; the same seed, the same
//!                           events in the same order with the same holds
//!   CHAOS_MINUTES  (3)      how long events are applied
//!   CHAOS_AGENT    (ferry)  heartbeat runs the same schedule against
//!                           resource-agents' VirtualDomain
//!   CHAOS_GUESTS   (3)      test guests
//!   CHAOS_FAULTS   (all)    only these faults, comma-separated as `Fault`
//!                           names them (DiskFailed,WatchdogFired): a
//!                           schedule of its own, to study a few
//!
//! Which node an event hits, where it depends on where a guest runs at that
//! moment (the config hidden on the guest's node, the agent killed there), is
//! decided when it is applied; the schedule itself is the seed's alone.
//!
//! Run through `tests/lab/with-two-nodes.sh --cluster` (make chaos).

#[path = "../support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};
use support::judge::Judge;
use support::lab::*;
use support::*;

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// splitmix64: a seed gives one sequence on every machine and build, with
/// no crate for it.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in lo..=hi.
    fn within(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    /// `crm_resource --move` away from where it runs; undone by --clear.
    Move,
    /// A node in standby (a drain); undone by standby off.
    Standby,
    /// `crm_resource --refresh` of one resource: probes on both nodes.
    Refresh,
    /// libvirtd SIGSTOPped on a node; undone by SIGCONT.
    LibvirtdHung,
    /// libvirtd killed on a node; undone by starting it again.
    LibvirtdKilled,
    /// The guest's config directory hidden on the node running it (an
    /// unmounted share looks so), with a refresh so that it is probed.
    ConfigHidden,
    /// The agent SIGKILLed mid-action on a node: the first agent process
    /// seen there during the hold.
    AgentKilled,
    /// The guest's kernel panics (an NMI; on_crash destroys it).
    GuestPanic,
    /// Pacemaker shut down cleanly on a node (its guests move away; corosync
    /// stays), then started again: the node rejoins and probes everything.
    PacemakerRestarted,
    /// The migration link slowed to 20 Mbit/s on a node's side (tc tbf)
    /// during a move, so that the migration takes many times longer.
    LinkSlowed,
    /// The guest's QEMU process SIGSTOPped on its node (a wedged guest: its
    /// vCPUs stop, libvirt still calls it running, and QEMU answers no
    /// monitor command); undone by SIGCONT.
    GuestHung,
    /// An operator's typo: migration_transport set to a value neither agent
    /// knows, then set back and the resource's failures cleaned up, as the
    /// operator would once the typo is seen.
    ParameterTypo,
    /// The guest's disk fails on the node running it: the storage under it
    /// is full and the blocks it wrote are gone, so its next write fails
    /// and QEMU pauses it (error_policy='stop'); undone by making room.
    DiskFailed,
    /// The guest's watchdog fires (the guest arms it when the host asks
    /// over its agent channel, and never feeds it). What QEMU does then is
    /// the guest's own: one pauses, one powers off, one resets.
    WatchdogFired,
    /// A move, and once the source runs its migrate_to, the migration link
    /// cut (the veth unplugged) for the hold. Corosync and libvirt's own
    /// connections use the other link, so no node looks dead.
    MigrationLinkCut,
    /// Pacemaker's executor SIGKILLed on a node (pacemakerd starts it
    /// again). Not in the default schedule: its controller exits with it,
    /// and without fencing, which the lab lacks, the DC then takes the node
    /// for unclean, ignores its history and starts its guests on the other
    /// node while they still run (Pacemaker 2.1.5's unpack.c and
    /// controld_callbacks.c). That second copy is Pacemaker's, whatever
    /// the agent; only CHAOS_FAULTS names it, to show a disk lease
    /// refusing it.
    ExecutorKilled,
}

const FAULTS: [Fault; 15] = [
    Fault::Move,
    Fault::Standby,
    Fault::Refresh,
    Fault::LibvirtdHung,
    Fault::LibvirtdKilled,
    Fault::ConfigHidden,
    Fault::AgentKilled,
    Fault::GuestPanic,
    Fault::PacemakerRestarted,
    Fault::LinkSlowed,
    Fault::GuestHung,
    Fault::ParameterTypo,
    Fault::DiskFailed,
    Fault::WatchdogFired,
    Fault::MigrationLinkCut,
];

/// Faults only a run that names them gets (see each).
const NAMED_ONLY: [Fault; 1] = [Fault::ExecutorKilled];

/// The faults a run draws from: CHAOS_FAULTS (names as `Fault` spells
/// them, comma-separated) narrows the schedule to a few, to study one, or
/// adds one of NAMED_ONLY; unset, every fault of FAULTS.
fn faults_chosen() -> Vec<Fault> {
    let Ok(names) = std::env::var("CHAOS_FAULTS") else { return FAULTS.to_vec() };
    let chosen: Vec<Fault> = FAULTS.into_iter().chain(NAMED_ONLY).filter(|f| names.split(',').any(|n| n.trim() == format!("{f:?}"))).collect();
    assert!(!chosen.is_empty(), "CHAOS_FAULTS={names} names none of {FAULTS:?} {NAMED_ONLY:?}");
    chosen
}

#[derive(Clone, Debug)]
struct Event {
    fault: Fault,
    guest: usize,
    node: &'static str,
    hold: u64,
    pause: u64,
}

/// The seed's schedule over `faults`: as many events as any run can apply.
fn schedule(seed: u64, faults: &[Fault], guests: usize, count: usize) -> Vec<Event> {
    let mut rng = Rng(seed);
    (0..count)
        .map(|_| Event {
            fault: faults[rng.within(0, faults.len() as u64 - 1) as usize],
            guest: rng.within(0, guests as u64 - 1) as usize,
            node: NODES[rng.within(0, 1) as usize],
            hold: rng.within(5, 25),
            pause: rng.within(3, 15),
        })
        .collect()
}

/// One guest of the run: its config on storage both nodes see, its
/// console in each node's own /var/log/libvirt (a directory the lab gives
/// each node; libvirt does not create its qemu/ below it here).
struct ChaosGuest {
    g: Guest,
    id: String,
    /// What QEMU does when the guest's watchdog fires.
    watchdog: &'static str,
}

/// The guests' watchdog actions, one each in turn: a guest paused (the
/// agent must see it), powered off (gone), or reset (it reboots in place).
const WATCHDOG_ACTIONS: [&str; 3] = ["pause", "poweroff", "reset"];

/// Each guest's disk: an 8 MiB raw file on a 16 MiB tmpfs of its own, at
/// one path on both nodes, each node's own (as two hosts see one LUN under
/// one name). The guest writes it through, a MiB a second, over and over.
const DISK_MIB: u64 = 8;

impl ChaosGuest {
    /// The directory of the guest's disk, inside each node.
    fn disk_dir(&self) -> String {
        format!("/var/lib/libvirt/images/{}", self.g.name)
    }

    fn disk(&self) -> String {
        format!("{}/disk.raw", self.disk_dir())
    }

    /// Mounts the disk's tmpfs on every node, with an empty disk in it.
    fn make_disks(&self, lab: &Lab) {
        for node in NODES {
            std::fs::create_dir_all(lab.dir.join(node).join("lib/libvirt/images").join(&self.g.name)).unwrap();
            let mounted = lab.on(node, &["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", &self.disk_dir()]);
            assert!(mounted.status.success(), "tmpfs for {} on {node}: {}", self.g.name, String::from_utf8_lossy(&mounted.stderr));
            let made = lab.on(node, &["truncate", "-s", &format!("{DISK_MIB}M"), &self.disk()]);
            assert!(made.status.success(), "disk of {} on {node}", self.g.name);
        }
    }

    fn remove_disks(&self, lab: &Lab) {
        for node in NODES {
            let _ = lab.on(node, &["umount", &self.disk_dir()]);
        }
    }

    fn console_inside(&self) -> String {
        format!("/var/log/libvirt/{}.console", self.g.name)
    }

    /// The console file `node` writes, from the host.
    fn console_on(&self, lab: &Lab, node: &str) -> PathBuf {
        lab.dir.join(node).join("log/libvirt").join(format!("{}.console", self.g.name))
    }
}

fn libvirtd_pid(lab: &Lab, node: &str) -> Option<i32> {
    std::fs::read_to_string(lab.dir.join(node).join("run/libvirtd.pid")).ok()?.trim().parse().ok()
}

/// Whether the signal was delivered (the process may have ended first).
fn signal(pid: i32, sig: &str) -> bool {
    std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The agent processes running in `node`'s network namespace: the lab made
/// that namespace, and only Pacemaker's executor runs agents there.
fn agent_pids(lab: &Lab, node: &str) -> Vec<i32> {
    pids_in(lab, node, "VirtualDomain")
}

/// The processes named `comm` in `node`'s network namespace, which the lab
/// made: nothing outside the lab is ever found.
fn pids_in(lab: &Lab, node: &str, comm: &str) -> Vec<i32> {
    let Ok(anchor) = std::fs::read_to_string(lab.dir.join(node).join("run/virtlogd.pid")) else { return Vec::new() };
    let Ok(net) = std::fs::read_link(format!("/proc/{}/ns/net", anchor.trim())) else { return Vec::new() };
    std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
                .filter(|pid| {
                    std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == comm)
                        && std::fs::read_link(format!("/proc/{pid}/ns/net")).ok().as_ref() == Some(&net)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The action agent `pid` runs and its resource, or empty strings once it
/// has gone. Pacemaker passes the action as the agent's last argument (a
/// shell agent's first is its script) and the resource in its environment.
fn agent_action(pid: i32) -> (String, String) {
    let action = std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| String::from_utf8_lossy(&c).split('\0').filter(|a| !a.is_empty()).last().unwrap_or("").to_string())
        .unwrap_or_default();
    let resource = std::fs::read(format!("/proc/{pid}/environ"))
        .map(|env| String::from_utf8_lossy(&env).split('\0').find_map(|v| v.strip_prefix("OCF_RESOURCE_INSTANCE=").map(String::from)).unwrap_or_default())
        .unwrap_or_default();
    (action, resource)
}

/// The nodes whose libvirtd lists `name` as running.
fn running_on(lab: &Lab, name: &str) -> Vec<&'static str> {
    NODES.into_iter().filter(|n| lab.state(n, name).as_deref() == Some("running")).collect()
}

/// Where each node's Pacemaker log ends now: a run reads only what comes
/// after, since runs in one lab (make bench's) reuse the resource names.
fn log_ends(lab: &Lab) -> Vec<usize> {
    NODES.iter().map(|n| pacemaker_log(lab, n).len()).collect()
}

/// Pacemaker's results of one operation on both nodes since `since`
/// (`log_ends`), from its logs: how many ended "ok" and every other
/// result's line.
fn results(lab: &Lab, operation: &str, ids: &[String], since: &[usize]) -> (usize, Vec<String>) {
    let needle = format!("Result of {operation} operation for ");
    let (mut ok, mut bad) = (0, Vec::new());
    for (node, from) in NODES.iter().zip(since) {
        let log = pacemaker_log(lab, node);
        for line in log.get(*from..).unwrap_or("").lines().filter(|l| l.contains(&needle)) {
            if !ids.iter().any(|id| line.contains(&format!("for {id} on"))) {
                continue;
            }
            // "…: ok | CIB update 12, graph action confirmed; …"
            if line.contains(": ok |") {
                ok += 1;
            } else {
                bad.push(line.to_string());
            }
        }
    }
    (ok, bad)
}

/// Every result Pacemaker logged for the run's resources since `since`,
/// but the recurring monitors that passed and the cancellations: the story
/// of a run, for its log, since the lab and its logs go with the run.
fn story(lab: &Lab, ids: &[String], since: &[usize]) -> Vec<String> {
    let mut lines = Vec::new();
    for (node, from) in NODES.iter().zip(since) {
        let log = pacemaker_log(lab, node);
        for line in log.get(*from..).unwrap_or("").lines().filter(|l| l.contains("Result of ") && ids.iter().any(|id| l.contains(&format!("for {id} on")))) {
            let routine = line.contains(": Cancelled") || (line.contains("Result of monitor operation") && line.contains(": ok |") && !line.contains("_monitor_0"));
            if !routine {
                // "Dec 05 02:53:01.611 nodea pacemaker-controld [...] (...) notice: Result of …"
                let time = line.get(7..19).unwrap_or("");
                let what = line.split("Result of ").nth(1).unwrap_or(line);
                lines.push(format!("{time} {}", what.split(" | ").next().unwrap_or(what)));
            }
        }
    }
    lines.sort();
    lines
}

/// What a harness command said when it failed, for an event's line: the
/// event still counts, but its line says it was not all applied.
fn complaint(out: &std::process::Output, tool: &str) -> String {
    if out.status.success() {
        return String::new();
    }
    format!(" ({tool}: {})", String::from_utf8_lossy(&out.stderr).trim())
}

/// Applies one event and undoes it after its hold. Returns what it did.
fn apply(lab: &Lab, e: &Event, guest: &ChaosGuest) -> String {
    let id = guest.id.as_str();
    let hold = Duration::from_secs(e.hold);
    let home = running_on(lab, &guest.g.name).first().copied();
    match e.fault {
        Fault::Move => {
            let _ = lab.on("nodea", &["crm_resource", "--move", "-r", id]);
            std::thread::sleep(hold);
            let _ = lab.on("nodea", &["crm_resource", "--clear", "-r", id]);
            format!("move {id} away from {home:?}")
        }
        Fault::Standby => {
            let _ = lab.on("nodea", &["crm_attribute", "-N", e.node, "-n", "standby", "-v", "on"]);
            std::thread::sleep(hold);
            let _ = lab.on("nodea", &["crm_attribute", "-N", e.node, "-n", "standby", "-v", "off"]);
            format!("standby {}", e.node)
        }
        Fault::Refresh => {
            let _ = lab.on("nodea", &["crm_resource", "--refresh", "-r", id]);
            format!("refresh {id}")
        }
        Fault::LibvirtdHung => {
            let Some(pid) = libvirtd_pid(lab, e.node) else { return format!("libvirtd on {} not running: skipped", e.node) };
            signal(pid, "STOP");
            let resume = Defer(|| {
                signal(pid, "CONT");
            });
            std::thread::sleep(hold);
            drop(resume);
            format!("libvirtd on {} stopped for {} s", e.node, e.hold)
        }
        Fault::LibvirtdKilled => {
            lab.libvirtd(e.node, false);
            std::thread::sleep(hold);
            lab.libvirtd(e.node, true);
            format!("libvirtd on {} killed for {} s", e.node, e.hold)
        }
        Fault::ConfigHidden => {
            let Some(node) = home else { return format!("{id} runs nowhere: config not hidden") };
            let dir = guest.g.dir.display().to_string();
            let empty = TempDir::new(&format!("chaos-empty-{id}"));
            if !lab.on(node, &["mount", "--bind", &empty.0.display().to_string(), &dir]).status.success() {
                return format!("{id}: could not hide the config on {node}");
            }
            let unhide = Defer(|| drop(lab.on(node, &["umount", &dir])));
            let _ = lab.on("nodea", &["crm_resource", "--refresh", "-r", id]);
            std::thread::sleep(hold);
            drop(unhide);
            format!("config of {id} hidden on {node} for {} s", e.hold)
        }
        Fault::AgentKilled => {
            let began = Instant::now();
            while began.elapsed() < hold {
                if let Some(pid) = agent_pids(lab, e.node).first() {
                    let (action, resource) = agent_action(*pid);
                    if !signal(*pid, "KILL") {
                        // Its /proc entry may have gone before it was read.
                        let what = if action.is_empty() { "an action not read in time".to_string() } else { format!("{action} of {resource}") };
                        return format!("agent {pid} on {} ended before the kill, in {what}", e.node);
                    }
                    return format!("agent {pid} on {} killed in {action} of {resource}", e.node);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            format!("no agent ran on {} in {} s", e.node, e.hold)
        }
        Fault::GuestPanic => {
            let Some(node) = home else { return format!("{id} runs nowhere: no panic") };
            let _ = lab.virsh(node, &["inject-nmi", &guest.g.name]);
            format!("{id} panicked on {node}")
        }
        Fault::PacemakerRestarted => {
            let began = Instant::now();
            lab.pacemaker(e.node, false);
            let stopped_in = began.elapsed().as_secs();
            std::thread::sleep(hold);
            lab.pacemaker(e.node, true);
            format!("Pacemaker on {} shut down (in {stopped_in} s) for {} s and started again", e.node, e.hold)
        }
        Fault::LinkSlowed => {
            let device = lab.migration_link_device(e.node);
            let slowed = lab.on(e.node, &["tc", "qdisc", "replace", "dev", &device, "root", "tbf", "rate", "20mbit", "burst", "256kb", "latency", "400ms"]);
            if !slowed.status.success() {
                return format!("link on {} not slowed: {}", e.node, String::from_utf8_lossy(&slowed.stderr).trim());
            }
            let restore = Defer(|| drop(lab.on(e.node, &["tc", "qdisc", "del", "dev", &device, "root"])));
            // A migration, so that the slow link has one to slow.
            let _ = lab.on("nodea", &["crm_resource", "--move", "-r", id]);
            std::thread::sleep(hold);
            let _ = lab.on("nodea", &["crm_resource", "--clear", "-r", id]);
            drop(restore);
            format!("migration link slowed to 20 Mbit/s on {} for {} s while {id} moved away from {home:?}", e.node, e.hold)
        }
        Fault::GuestHung => {
            let Some(node) = home else { return format!("{id} runs nowhere: no hang") };
            let Some(pid) = lab.qemu_pid(node, &guest.g.name) else { return format!("{id}: no QEMU process on {node}: no hang") };
            signal(pid as i32, "STOP");
            let resume = Defer(|| {
                signal(pid as i32, "CONT");
            });
            std::thread::sleep(hold);
            drop(resume);
            format!("QEMU of {id} on {node} stopped for {} s", e.hold)
        }
        Fault::ParameterTypo => {
            let set = |value: &str| lab.on("nodea", &["crm_resource", "-r", id, "--set-parameter", "migration_transport", "--parameter-value", value]);
            let typo = set("pigeon");
            let back = Defer(|| {
                let _ = set("tcp");
                let _ = lab.on("nodea", &["crm_resource", "--cleanup", "-r", id]);
            });
            std::thread::sleep(hold);
            drop(back);
            format!("{id}: migration_transport=pigeon for {} s, then tcp and a cleanup{}", e.hold, complaint(&typo, "crm_resource"))
        }
        Fault::DiskFailed => {
            let Some(node) = home else { return format!("{id} runs nowhere: no disk to fail") };
            // The guest's blocks freed, then the room filled: its next
            // write needs a block and gets none (ENOSPC).
            let filler = format!("{}/filler", guest.disk_dir());
            let punched = lab.on(node, &["fallocate", "--punch-hole", "--offset", "0", "--length", &format!("{DISK_MIB}MiB"), &guest.disk()]);
            let _ = lab.on(node, &["dd", "if=/dev/zero", &format!("of={filler}"), "bs=64k"]);
            let room = Defer(|| drop(lab.on(node, &["rm", "-f", &filler])));
            std::thread::sleep(hold);
            drop(room);
            format!("disk of {id} full on {node} for {} s{}", e.hold, complaint(&punched, "fallocate"))
        }
        Fault::WatchdogFired => {
            let Some(node) = home else { return format!("{id} runs nowhere: no watchdog") };
            let asked = lab.virsh(node, &["qemu-agent-command", &guest.g.name, "--timeout", "5", r#"{"execute":"ferry-watchdog"}"#]);
            std::thread::sleep(hold);
            if !asked.status.success() {
                return format!("{id}: its agent on {node} did not arm the watchdog: {}", String::from_utf8_lossy(&asked.stderr).trim());
            }
            format!("watchdog of {id} fired on {node} ({})", guest.watchdog)
        }
        Fault::MigrationLinkCut => {
            let device = lab.migration_link_device(e.node);
            let _ = lab.on("nodea", &["crm_resource", "--move", "-r", id]);
            // The cut lands mid-migration when the move is one: once the
            // source runs its migrate_to (at most 10 s).
            let began = Instant::now();
            let mut migrating = false;
            while let Some(source) = home.filter(|_| began.elapsed() < Duration::from_secs(10)) {
                migrating = agent_pids(lab, source).into_iter().any(|pid| agent_action(pid) == ("migrate_to".to_string(), id.to_string()));
                if migrating {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            // Then 0 to 0.9 s more, the seed's choice: a migrate_to that has
            // not yet connected its stream, or one that is sending.
            if migrating {
                std::thread::sleep(Duration::from_millis(100 * (e.hold % 10)));
            }
            let cut = lab.on(e.node, &["ip", "link", "set", &device, "down"]);
            let plug = Defer(|| drop(lab.on(e.node, &["ip", "link", "set", &device, "up"])));
            std::thread::sleep(hold);
            drop(plug);
            let _ = lab.on("nodea", &["crm_resource", "--clear", "-r", id]);
            if !cut.status.success() {
                return format!("migration link on {} not cut: {}", e.node, String::from_utf8_lossy(&cut.stderr).trim());
            }
            let when = if migrating { "during its migrate_to" } else { "with no migrate_to seen" };
            format!("migration link cut on {} for {} s while {id} moved away from {home:?}, {when}", e.node, e.hold)
        }
        Fault::ExecutorKilled => {
            let Some(pid) = pids_in(lab, e.node, "pacemaker-execd").first().copied() else { return format!("no pacemaker-execd on {}: skipped", e.node) };
            let killed = signal(pid, "KILL");
            std::thread::sleep(hold);
            format!("pacemaker-execd {pid} on {} {}", e.node, if killed { "killed" } else { "ended before the kill" })
        }
    }
}

#[test]
fn no_guest_ever_runs_twice_under_a_seeded_schedule_of_faults() {
    let lab = Lab::from_env();
    let seed = knob("CHAOS_SEED", 1);
    let minutes = knob("CHAOS_MINUTES", 3);
    let count = knob("CHAOS_GUESTS", 3) as usize;
    let agent = match std::env::var("CHAOS_AGENT").as_deref() {
        Ok("heartbeat") => "heartbeat",
        _ => "ferry",
    };
    // In the lab's lease mode (FERRY_LAB_LEASES=1) each guest has a disk,
    // and its lease is the second line: a second copy cannot start.
    let leases = std::fs::read_to_string(lab.dir.join("lab.env")).unwrap_or_default().contains("FERRY_LAB_LEASES=1");
    eprintln!("chaos: seed {seed}, {minutes} minutes, {count} guests, agent {agent}, disk leases {}", if leases { "on" } else { "off" });

    let guests: Vec<ChaosGuest> = (0..count)
        .map(|i| {
            let g = Guest::new(&format!("chaos{i}"));
            let c = ChaosGuest { id: format!("chaos-{i}"), g, watchdog: WATCHDOG_ACTIONS[i % WATCHDOG_ACTIONS.len()] };
            // unknown_nmi_panic: an NMI panics the guest's kernel
            // (GuestPanic), and the pvpanic device tells QEMU, so that
            // on_crash destroys it rather than leaving a dead kernel that
            // libvirt calls running. The disk pauses the guest when it
            // fails (DiskFailed); with disk leases on, it is leased. The
            // agent channel is how the host has the guest arm its watchdog
            // (WatchdogFired).
            c.g.edit_config(|xml| {
                xml.replace(&c.g.console.display().to_string(), &c.console_inside())
                    .replace("</cmdline>", " unknown_nmi_panic=1 ferry.disk=1</cmdline>")
                    .replace(
                        "</devices>",
                        &format!(
                            "<panic model='isa'/><watchdog model='i6300esb' action='{}'/>\
                             <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>\
                             <disk type='file' device='disk'><driver name='qemu' type='raw' error_policy='stop'/><source file='{}'/><target dev='vda' bus='virtio'/></disk></devices>",
                            c.watchdog,
                            c.disk()
                        ),
                    )
            });
            c
        })
        .collect();
    let _disks = Defer(|| guests.iter().for_each(|c| c.remove_disks(&lab)));
    for c in &guests {
        c.make_disks(&lab);
    }
    let _destroy = Defer(|| {
        for c in &guests {
            for node in NODES {
                let _ = lab.virsh(node, &["destroy", &c.g.name]);
            }
        }
    });
    let ops = [("monitor", "5s", "30s"), ("start", "0", "120s"), ("stop", "0", "120s"), ("migrate_to", "0", "120s"), ("migrate_from", "0", "60s")];
    let since = log_ends(&lab);
    let resources: Vec<ClusterResource> = guests
        .iter()
        .map(|c| {
            let config = c.g.config.display().to_string();
            // The memory stream goes over the migration link; libvirt will
            // not migrate a disk on a local file system without --unsafe,
            // which both agents pass to virsh migrate.
            let mut params = vec![("config", config.as_str()), ("migration_transport", "tcp"), ("migrateuri", "tcp://%n-mig"), ("migrate_options", "--unsafe")];
            if agent == "ferry" {
                params.push(("migration_encryption", "none"));
            }
            ClusterResource::create_of(&lab, agent, &c.id, &params, &[("allow-migrate", "true")], &ops)
        })
        .collect();
    let ids: Vec<String> = guests.iter().map(|c| c.id.clone()).collect();
    for (c, r) in guests.iter().zip(&resources) {
        let node = r.wait_active(Duration::from_secs(180)).unwrap_or_else(|| panic!("{} did not start", r.id));
        assert!(wait_for(BOOT, || std::fs::read_to_string(c.console_on(&lab, &node)).is_ok_and(|t| t.contains("ferry-tick"))), "{} did not boot on {node}", c.g.name);
    }
    assert!(lab.settle(Duration::from_secs(120)), "the cluster did not settle after the starts");
    let starts_before = results(&lab, "start", &ids, &since).0;

    let files: Vec<(String, [PathBuf; 2])> = guests.iter().map(|c| (c.g.name.clone(), [c.console_on(&lab, NODES[0]), c.console_on(&lab, NODES[1])])).collect();
    let judge = Judge::start(&files);
    let faults = faults_chosen();
    let events = schedule(seed, &faults, count, 1000);
    let until = Instant::now() + Duration::from_secs(minutes * 60);
    let mut applied = Vec::new();
    for e in events.iter() {
        if Instant::now() >= until {
            break;
        }
        let at = judge.now();
        let what = apply(&lab, e, &guests[e.guest]);
        eprintln!("chaos-event +{at}s {:?} hold {} s: {what}", e.fault, e.hold);
        applied.push(format!("+{at}s {what}"));
        std::thread::sleep(Duration::from_secs(e.pause));
    }

    // Recovery: every fault is undone; the cluster must bring every guest
    // back to one running copy.
    let settled = lab.settle(Duration::from_secs(300));
    let mut placed = Vec::new();
    let all_placed = wait_for(Duration::from_secs(180), || {
        placed = guests.iter().map(|c| (c.id.clone(), running_on(&lab, &c.g.name))).collect::<Vec<_>>();
        placed.iter().all(|(_, nodes)| nodes.len() == 1)
    });
    // A few seconds of the end state under the judge.
    std::thread::sleep(Duration::from_secs(10));
    let findings = judge.finish();

    let (migrations, _) = results(&lab, "migrate_from", &ids, &since);
    let (starts, failed_starts) = results(&lab, "start", &ids, &since);
    // A stop the harness itself SIGKILLed fails whatever the agent does:
    // those are counted apart, the rest are the agent's.
    // Each is "+Ts agent PID on NODE killed in stop of RESOURCE".
    let (_, mut failed_stops) = results(&lab, "stop", &ids, &since);
    for killed in applied.iter().filter(|a| a.contains(" killed in stop of ")) {
        let words: Vec<&str> = killed.split_whitespace().collect();
        let (node, resource) = (words[4], words[words.len() - 1]);
        if let Some(i) = failed_stops.iter().position(|l| l.contains(&format!("for {resource} on {node}:"))) {
            eprintln!("chaos report: a stop the harness killed: {}", failed_stops.remove(i));
        }
    }
    let (_, failed_migrations) = results(&lab, "migrate_to", &ids, &since);
    for line in story(&lab, &ids, &since) {
        eprintln!("chaos log: {line}");
    }
    eprintln!("chaos report: seed {seed}, agent {agent}, {} events in {} s", applied.len(), findings.seconds);
    for (c, ((gap, from), ticks)) in guests.iter().zip(findings.longest_gap.iter().zip(&findings.ticks)) {
        eprintln!("chaos report: {}: longest without a tick {gap} s (from +{from}s), ticks on nodea {} and nodeb {}", c.id, ticks[0], ticks[1]);
    }
    for line in failed_starts.iter().chain(&failed_migrations) {
        eprintln!("chaos report: {line}");
    }
    // Where each guest is at the end, as libvirt says it on each node: a
    // guest left paused (a watchdog's or a failed disk's) shows here.
    for c in &guests {
        let states: Vec<String> = NODES
            .iter()
            .filter_map(|n| {
                let out = lab.virsh(n, &["domstate", "--reason", &c.g.name]);
                out.status.success().then(|| format!("{n} {}", String::from_utf8_lossy(&out.stdout).trim()))
            })
            .collect();
        eprintln!("chaos report: {} at the end: {}", c.id, if states.is_empty() { "defined nowhere".to_string() } else { states.join(", ") });
    }
    let longest = findings.longest_gap.iter().map(|g| g.0).max().unwrap_or(0);
    eprintln!(
        "chaos-result seed={seed} agent={agent} leases={leases} events={} migrations={migrations} restarts={} double_runs={} failed_stops={} longest_unavailable={longest}s settled={settled}",
        applied.len(),
        starts.saturating_sub(starts_before),
        findings.double_runs.len(),
        failed_stops.len()
    );
    let narrowed = std::env::var("CHAOS_FAULTS").map(|f| format!(" CHAOS_FAULTS={f}")).unwrap_or_default();
    let violation = |what: &str| format!("{what}\nreproduce with CHAOS_SEED={seed} CHAOS_MINUTES={minutes} CHAOS_AGENT={agent}{narrowed}\nevents:\n{}", applied.join("\n"));
    assert!(findings.double_runs.is_empty(), "{}", violation(&format!("double runs (guest, second): {:?}", findings.double_runs)));
    assert!(failed_stops.is_empty(), "{}", violation(&format!("failed stops (each a fence in production):\n{}", failed_stops.join("\n"))));
    assert!(all_placed, "{}", violation(&format!("not every guest ends running on one node: {placed:?}")));
    drop(resources);
}

/// The judge must see what it is there to see: a second copy of a running
/// guest, started by hand on the other node with `virsh create`, as an
/// operator's mistake would start it.
#[test]
fn the_judge_catches_a_second_copy_started_by_hand() {
    let lab = Lab::from_env();
    let g = Guest::new("chaosjudge");
    let c = ChaosGuest { id: "chaos-judge".into(), g, watchdog: "none" };
    c.g.edit_config(|xml| xml.replace(&c.g.console.display().to_string(), &c.console_inside()));
    let _destroy = Defer(|| {
        for node in NODES {
            let _ = lab.virsh(node, &["destroy", &c.g.name]);
        }
    });
    let config = c.g.config.display().to_string();
    let r = ClusterResource::create(&lab, &c.id, &[("config", config.as_str()), ("migration_transport", "tcp")], &[], &[("monitor", "5s", "30s")], false);
    let home = r.wait_active(Duration::from_secs(180)).expect("the guest did not start");
    assert!(wait_for(BOOT, || std::fs::read_to_string(c.console_on(&lab, &home)).is_ok_and(|t| t.contains("ferry-tick"))), "the guest did not boot");
    let judge = Judge::start(&[(c.g.name.clone(), [c.console_on(&lab, NODES[0]), c.console_on(&lab, NODES[1])])]);
    std::thread::sleep(Duration::from_secs(8));
    assert!(judge.double_runs().is_empty(), "one copy taken for two: {:?}", judge.double_runs());
    let other = NODES.into_iter().find(|n| *n != home).unwrap();
    let created = lab.virsh(other, &["create", &config]);
    assert!(created.status.success(), "virsh create on {other}: {}", String::from_utf8_lossy(&created.stderr));
    let caught = wait_for(Duration::from_secs(BOOT.as_secs() + 30), || !judge.double_runs().is_empty());
    let _ = lab.virsh(other, &["destroy", &c.g.name]);
    let findings = judge.finish();
    eprintln!("judge: the second copy seen at {:?}", findings.double_runs.first());
    assert!(caught, "the judge did not see two copies running (ticks per node: {:?})", findings.ticks);
    drop(r);
}

#[test]
fn the_same_seed_gives_the_same_schedule() {
    let text = |seed| format!("{:?}", schedule(seed, &FAULTS, 3, 50));
    assert_eq!(text(7), text(7));
    assert_ne!(text(7), text(8));
    // Every fault comes up in a schedule of this length.
    let events = schedule(7, &FAULTS, 3, 200);
    for fault in FAULTS {
        assert!(events.iter().any(|e| e.fault == fault), "{fault:?} never scheduled");
    }
}
