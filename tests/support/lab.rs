//! The two-node lab from the tests' side: run ferry inside a node, ask each
//! node's libvirtd directly, cut the link, stop a daemon. The lab itself is
//! brought up and torn down by tests/lab/with-two-nodes.sh, which names it
//! in FERRY_LAB_DIR.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::*;

pub const NODES: [&str; 2] = ["nodea", "nodeb"];

pub struct Lab {
    pub dir: PathBuf,
}

fn script() -> PathBuf {
    repo().join("tests/lab/two-nodes.sh")
}

impl Lab {
    pub fn from_env() -> Lab {
        let dir = std::env::var("FERRY_LAB_DIR").expect("FERRY_LAB_DIR: run through tests/lab/with-two-nodes.sh (make test)");
        Lab { dir: PathBuf::from(dir) }
    }

    pub fn uri(&self, node: &str) -> String {
        format!("qemu+unix:///system?socket={}/{node}/run/libvirt/libvirt-sock", self.dir.display())
    }

    /// Runs `ferry VirtualDomain ACTION` inside `node`, as its cluster would.
    pub fn agent(&self, node: &str, action: &str, env: &[(String, String)]) -> Run {
        let dir = self.dir.display().to_string();
        let ferry = ferry().display().to_string();
        run_program(&script(), &["on", &dir, node, &ferry, "VirtualDomain", action], env)
    }

    /// Runs a program inside `node`.
    pub fn on(&self, node: &str, argv: &[&str]) -> Output {
        Command::new(script()).arg("on").arg(&self.dir).arg(node).args(argv).output().expect("two-nodes.sh on")
    }

    pub fn virsh(&self, node: &str, args: &[&str]) -> Output {
        Command::new("virsh").arg("--connect").arg(self.uri(node)).args(args).output().expect("run virsh")
    }

    /// libvirt's state of `name` on `node`; None when it has no such domain.
    pub fn state(&self, node: &str, name: &str) -> Option<String> {
        let out = self.virsh(node, &["domstate", name]);
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// The nodes where `name` is active (anything but absent or shut off).
    pub fn active_on(&self, name: &str) -> Vec<&'static str> {
        NODES.into_iter().filter(|n| matches!(self.state(n, name).as_deref(), Some(s) if s != "shut off")).collect()
    }

    /// Whether a QEMU process of guest `name` runs in `node` (its network
    /// namespace), whatever its libvirtd says.
    pub fn qemu_on(&self, node: &str, name: &str) -> bool {
        self.qemu_pid(node, name).is_some()
    }

    /// The PID of guest `name`'s QEMU process in `node`, if one runs.
    pub fn qemu_pid(&self, node: &str, name: &str) -> Option<u32> {
        let pid = std::fs::read_to_string(self.dir.join(node).join("run/virtlogd.pid")).expect("node virtlogd pid");
        let node_net = std::fs::read_link(format!("/proc/{}/ns/net", pid.trim())).expect("node netns");
        let needle = format!("guest={name},");
        std::fs::read_dir("/proc").unwrap().flatten().find_map(|e| {
            let p = e.path();
            let ours = std::fs::read_link(p.join("ns/net")).ok().as_ref() == Some(&node_net)
                && std::fs::read(p.join("cmdline")).map(|c| String::from_utf8_lossy(&c).contains(&needle)).unwrap_or(false);
            ours.then(|| e.file_name().to_string_lossy().parse().ok()).flatten()
        })
    }

    /// The node's end of the wire between the nodes (its veth device).
    pub fn link_device(&self, node: &str) -> String {
        self.device("fv", node)
    }

    /// The node's end of the migration link (NODE-mig; only a guest whose
    /// migrateuri names %n-mig sends its stream over it).
    pub fn migration_link_device(&self, node: &str) -> String {
        self.device("fm", node)
    }

    fn device(&self, prefix: &str, node: &str) -> String {
        let env = std::fs::read_to_string(self.dir.join("lab.env")).expect("lab.env");
        let id = env.lines().find_map(|l| l.strip_prefix("FERRY_LAB_ID=")).expect("FERRY_LAB_ID in lab.env");
        format!("{prefix}{id}{}", &node[node.len() - 1..])
    }

    pub fn link(&self, up: bool) {
        let status = Command::new(script()).arg("link").arg(&self.dir).arg(if up { "up" } else { "down" }).status().unwrap();
        assert!(status.success(), "two-nodes.sh link");
    }

    /// Gives `guest` a raw disk at one path on both nodes that is a file of
    /// each node's own (its private /var/lib/libvirt), as two hosts see one
    /// SAN LUN under one name: QEMU's image locks, which work per file on
    /// one kernel, cannot see the other node's copy, so only a disk lease
    /// can refuse a second open. Returns the path.
    pub fn disk_on_both_nodes(&self, guest: &crate::support::Guest) -> String {
        let file = format!("{}.raw", guest.name);
        for node in NODES {
            std::fs::write(self.dir.join(node).join("lib/libvirt/images").join(&file), vec![0u8; 1 << 20]).unwrap();
        }
        let disk = format!("/var/lib/libvirt/images/{file}");
        guest.with_devices(&format!("<disk type='file' device='disk'><driver name='qemu' type='raw' cache='none'/><source file='{disk}'/><target dev='vda' bus='virtio'/></disk>"), "");
        disk
    }

    pub fn libvirtd(&self, node: &str, start: bool) {
        let status = Command::new(script()).arg("libvirtd").arg(&self.dir).arg(node).arg(if start { "start" } else { "stop" }).status().unwrap();
        assert!(status.success(), "two-nodes.sh libvirtd {node}");
    }
}

/// One entry of the CIB's operation history (`lrm_rsc_op`).
#[derive(Clone, Debug)]
pub struct Op {
    pub node: String,
    pub id: String,
    pub operation: String,
    pub rc: i32,
    pub interval_ms: u64,
    pub exec_ms: u64,
    /// How long the executor held it before running it.
    pub queue_ms: u64,
    /// When its result last changed (Unix seconds): for a one-shot
    /// operation, when it ran.
    pub last_rc_change: u64,
    /// What the agent gave as `ocf-exit-reason:`, as Pacemaker recorded it.
    pub exit_reason: String,
    /// The executor's verdict beside the agent's rc (`op-status`): 0 done,
    /// -1 pending, 2 timed out, 4 and up an error of the executor's own.
    /// A timeout shows here, with rc 1, not in rc.
    pub op_status: i32,
}

/// The value of `name="…"` inside one XML start tag.
fn attr(tag: &str, name: &str) -> Option<String> {
    let key = format!(" {name}=\"");
    let start = tag.find(&key)? + key.len();
    Some(tag[start..].split('"').next()?.to_string())
}

impl Lab {
    /// Runs a Pacemaker tool inside `node`; stdout, panicking on failure.
    pub fn crm(&self, node: &str, argv: &[&str]) -> String {
        let out = self.on(node, argv);
        assert!(out.status.success(), "{argv:?} on {node}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The operation history of resource `rsc` on every node, from the CIB.
    pub fn ops(&self, rsc: &str) -> Vec<Op> {
        self.history().remove(rsc).unwrap_or_default()
    }

    /// The operation history of every resource on every node, from one
    /// query of the CIB: asking once per resource costs a second or more
    /// per hundred resources.
    pub fn history(&self) -> HashMap<String, Vec<Op>> {
        let cib = self.crm("nodea", &["cibadmin", "-Q", "-o", "status"]);
        let mut history: HashMap<String, Vec<Op>> = HashMap::new();
        for state in cib.split("<node_state ").skip(1) {
            let node = attr(&format!(" {state}"), "uname").unwrap_or_default();
            for resource in state.split("<lrm_resource ").skip(1) {
                let Some(rsc) = attr(&format!(" {resource}"), "id") else { continue };
                let resource = resource.split("</lrm_resource>").next().unwrap_or("");
                let ops = history.entry(rsc).or_default();
                for op in resource.split("<lrm_rsc_op ").skip(1) {
                    let tag = format!(" {}", op.split('>').next().unwrap_or(""));
                    ops.push(Op {
                        node: node.clone(),
                        id: attr(&tag, "id").unwrap_or_default(),
                        operation: attr(&tag, "operation").unwrap_or_default(),
                        rc: attr(&tag, "rc-code").and_then(|v| v.parse().ok()).unwrap_or(-1),
                        interval_ms: attr(&tag, "interval").and_then(|v| v.parse().ok()).unwrap_or(0),
                        exec_ms: attr(&tag, "exec-time").and_then(|v| v.parse().ok()).unwrap_or(0),
                        queue_ms: attr(&tag, "queue-time").and_then(|v| v.parse().ok()).unwrap_or(0),
                        last_rc_change: attr(&tag, "last-rc-change").and_then(|v| v.parse().ok()).unwrap_or(0),
                        exit_reason: attr(&tag, "exit-reason").unwrap_or_default(),
                        op_status: attr(&tag, "op-status").and_then(|v| v.parse().ok()).unwrap_or(0),
                    });
                }
            }
        }
        history
    }

    /// Where Pacemaker says `rsc` is active.
    pub fn located(&self, rsc: &str) -> Vec<String> {
        let out = self.on("nodea", &["crm_resource", "--locate", "-r", rsc, "-Q"]);
        String::from_utf8_lossy(&out.stdout).split_whitespace().map(String::from).collect()
    }

    /// Every resource as crm_mon sees it, from one call: its role
    /// ("Started", "Starting", "Migrating", "Stopped", …) and the nodes it
    /// is active on. The same answer as `located` for each, without a
    /// process per resource.
    pub fn placement(&self) -> HashMap<String, (String, Vec<String>)> {
        let xml = self.crm("nodea", &["crm_mon", "-1", "--output-as=xml"]);
        let resources = xml.split("<resources>").nth(1).and_then(|r| r.split("</resources>").next()).unwrap_or("");
        resources
            .split("<resource ")
            .skip(1)
            .filter_map(|r| {
                let tag = format!(" {}", r.split('>').next().unwrap_or(""));
                let nodes = r.split("</resource>").next().unwrap_or("").split("<node ").skip(1).filter_map(|n| attr(&format!(" {n}"), "name")).collect();
                Some((attr(&tag, "id")?, (attr(&tag, "role").unwrap_or_default(), nodes)))
            })
            .collect()
    }

    /// Whether crm_mon shows `node` online in the cluster.
    /// Not online, rather than a panic, while nodea's own Pacemaker is
    /// not up to answer.
    pub fn online(&self, node: &str) -> bool {
        let xml = self.status_xml("nodea");
        xml.split("<node ").skip(1).any(|n| {
            let tag = format!(" {}", n.split('>').next().unwrap_or(""));
            attr(&tag, "name").as_deref() == Some(node) && attr(&tag, "online").as_deref() == Some("true")
        })
    }

    /// crm_mon's XML on `node`; empty while its Pacemaker does not answer.
    fn status_xml(&self, node: &str) -> String {
        String::from_utf8_lossy(&self.on(node, &["crm_mon", "-1", "--output-as=xml"]).stdout).into_owned()
    }

    /// The downtime of the last migration `name` made into `node`, as its
    /// libvirt recorded it ("175 ms"), or "?".
    pub fn downtime(&self, node: &str, name: &str) -> String {
        let job = String::from_utf8_lossy(&self.virsh(node, &["domjobinfo", "--completed", name]).stdout).into_owned();
        job.lines().find(|l| l.starts_with("Total downtime")).and_then(|l| l.split(':').nth(1)).map(|v| v.split_whitespace().collect::<Vec<_>>().join(" ")).unwrap_or("?".into())
    }

    /// The DC and its Pacemaker version, as crm_mon on `node` reports them.
    pub fn dc(&self, node: &str) -> Option<(String, String)> {
        let xml = self.status_xml(node);
        let tag = format!(" {}", xml.split("<current_dc ").nth(1)?.split('>').next()?);
        (attr(&tag, "present").as_deref() == Some("true")).then(|| (attr(&tag, "name").unwrap_or_default(), attr(&tag, "version").unwrap_or_default()))
    }

    /// Whether the cluster has nothing left to do: the DC's controller is
    /// idle (no transition runs) and the scheduler, run on the live CIB,
    /// plans no action.
    ///
    /// Not `crm_resource --wait`: from Pacemaker 2.1.7 to 3.0.1 (Debian 13
    /// ships 3.0.0) it also waits until no history entry is pending, and a
    /// recurring monitor whose first answer was not 0 (a degraded guest's
    /// 190) leaves one for good, so it never returns (README, "190 and
    /// crm_resource --wait"). This is the workaround the README gives
    /// operators, tested here on both generations.
    pub fn idle(&self) -> bool {
        let Some((dc, _)) = self.dc("nodea") else { return false };
        let state = self.on("nodea", &["crmadmin", "-S", &dc]);
        let said = format!("{}{}", String::from_utf8_lossy(&state.stdout), String::from_utf8_lossy(&state.stderr));
        if !said.contains("S_IDLE") {
            return false;
        }
        let plan = self.on("nodea", &["crm_simulate", "--live-check", "--run"]);
        let plan = String::from_utf8_lossy(&plan.stdout);
        plan.split("Transition Summary:").nth(1).is_some_and(|actions| !actions.lines().any(|l| l.trim_start().starts_with("* ")))
    }

    /// Waits until the cluster has nothing left to do (see `idle`).
    pub fn settle(&self, within: Duration) -> bool {
        wait_for(within, || self.idle())
    }

    /// Shuts Pacemaker down cleanly on `node` (it stops or moves away what
    /// runs there first; corosync stays up), or starts it again.
    pub fn pacemaker(&self, node: &str, start: bool) {
        let status = Command::new(script()).arg("pacemaker").arg(&self.dir).arg(node).arg(if start { "start" } else { "stop" }).status().unwrap();
        assert!(status.success(), "two-nodes.sh pacemaker {node}");
    }
}

/// A primitive of `provider`'s VirtualDomain as CIB XML, with these instance
/// attributes, meta attributes and operations. An operation named
/// `monitor@10` is a monitor at OCF_CHECK_LEVEL 10.
pub fn primitive_xml(provider: &str, id: &str, params: &[(&str, &str)], meta: &[(&str, &str)], ops: &[(&str, &str, &str)]) -> String {
    let nv = |set: &str, pairs: &[(&str, &str)]| -> String {
        pairs.iter().map(|(k, v)| format!("<nvpair id=\"{id}-{set}-{k}\" name=\"{k}\" value=\"{}\"/>", xml_escape(v))).collect()
    };
    let op_xml: String = ops
        .iter()
        .map(|(name, interval, timeout)| match name.split_once('@') {
            Some((name, depth)) => format!(
                "<op id=\"{id}-{name}-{interval}\" name=\"{name}\" interval=\"{interval}\" timeout=\"{timeout}\">\
                 <instance_attributes id=\"{id}-{name}-{interval}-depth\"><nvpair id=\"{id}-{name}-{interval}-level\" name=\"OCF_CHECK_LEVEL\" value=\"{depth}\"/></instance_attributes></op>"
            ),
            None => format!("<op id=\"{id}-{name}-{interval}\" name=\"{name}\" interval=\"{interval}\" timeout=\"{timeout}\"/>"),
        })
        .collect();
    format!(
        "<primitive id=\"{id}\" class=\"ocf\" provider=\"{provider}\" type=\"VirtualDomain\">\
         <instance_attributes id=\"{id}-params\">{}</instance_attributes>\
         <meta_attributes id=\"{id}-meta\">{}</meta_attributes>\
         <operations>{op_xml}</operations></primitive>",
        nv("p", params),
        nv("m", meta)
    )
}

/// What Pacemaker logged on `node` of the cluster lab, ferry's own lines
/// included.
pub fn pacemaker_log(lab: &Lab, node: &str) -> String {
    std::fs::read_to_string(lab.dir.join(node).join("cluster/log-pacemaker/pacemaker.log")).unwrap_or_default()
}

/// A resource in the lab cluster; stopped and removed when the test ends.
pub struct ClusterResource<'l> {
    pub lab: &'l Lab,
    pub id: String,
}

impl<'l> ClusterResource<'l> {
    /// Creates a primitive ocf:ferry:VirtualDomain (or a clone of one) with
    /// these instance attributes, meta attributes and operations. An
    /// operation named `monitor@10` is a monitor at OCF_CHECK_LEVEL 10.
    pub fn create(lab: &'l Lab, id: &str, params: &[(&str, &str)], meta: &[(&str, &str)], ops: &[(&str, &str, &str)], clone: bool) -> ClusterResource<'l> {
        Self::create_with("ferry", lab, id, params, meta, ops, clone)
    }

    /// A primitive of another provider's VirtualDomain (heartbeat, for the
    /// anchor in benches), otherwise as `create`.
    pub fn create_of(lab: &'l Lab, provider: &str, id: &str, params: &[(&str, &str)], meta: &[(&str, &str)], ops: &[(&str, &str, &str)]) -> ClusterResource<'l> {
        Self::create_with(provider, lab, id, params, meta, ops, false)
    }

    fn create_with(provider: &str, lab: &'l Lab, id: &str, params: &[(&str, &str)], meta: &[(&str, &str)], ops: &[(&str, &str, &str)], clone: bool) -> ClusterResource<'l> {
        let primitive = primitive_xml(provider, id, params, meta, ops);
        let xml = if clone { format!("<clone id=\"{id}-clone\">{primitive}</clone>") } else { primitive };
        lab.crm("nodea", &["cibadmin", "--create", "-o", "resources", "--xml-text", &xml]);
        ClusterResource { lab, id: id.to_string() }
    }

    /// Waits until Pacemaker reports the resource active on exactly one node.
    pub fn wait_active(&self, within: Duration) -> Option<String> {
        let mut found = None;
        wait_for(within, || {
            let nodes = self.lab.located(&self.id);
            found = (nodes.len() == 1).then(|| nodes[0].clone());
            found.is_some()
        });
        found
    }

    /// Waits until the cluster has nothing left to do (the transition is over).
    pub fn settle(&self, within: Duration) -> bool {
        self.lab.settle(within)
    }
}

impl Drop for ClusterResource<'_> {
    fn drop(&mut self) {
        let lab = self.lab;
        let _ = lab.on("nodea", &["crm_resource", "-r", &self.id, "--meta", "-p", "target-role", "-v", "Stopped"]);
        wait_for(Duration::from_secs(90), || lab.located(&self.id).is_empty());
        // A move's location constraint would keep the CIB from deleting it.
        let _ = lab.on("nodea", &["crm_resource", "--clear", "-r", &self.id]);
        let _ = lab.on("nodea", &["cibadmin", "--delete", "-o", "resources", "--xml-text", &format!("<clone id=\"{}-clone\"/>", self.id)]);
        let _ = lab.on("nodea", &["cibadmin", "--delete", "-o", "resources", "--xml-text", &format!("<primitive id=\"{}\"/>", self.id)]);
        let _ = lab.on("nodea", &["crm_resource", "--cleanup", "-r", &self.id]);
    }
}

/// A test guest for the lab, destroyed on both nodes when the test ends.
pub struct LabGuest<'l> {
    pub lab: &'l Lab,
    pub g: Guest,
}

impl<'l> LabGuest<'l> {
    /// `dirty_mib`: have the guest rewrite that much memory continuously.
    pub fn new(lab: &'l Lab, tag: &str, dirty_mib: Option<u32>) -> LabGuest<'l> {
        let mut g = Guest::new(tag);
        g.params.push(("OCF_RESKEY_migration_transport".into(), "tcp".into()));
        // Clear text unless a test asks for another stream (its parameters
        // come later and win). On this 2-core TCG lab an encrypted stream
        // corrupts a guest that rewrites memory in about one migration in
        // five, through raw virsh as through ferry (make soak,
        // FERRY_SOAK_STREAM=tls); tests of the agent's own promises must
        // not inherit that.
        g.params.push(("OCF_RESKEY_migration_encryption".into(), "none".into()));
        if let Some(mib) = dirty_mib {
            let xml = g.xml().replace("</cmdline>", &format!(" ferry.dirty={mib}</cmdline>"));
            std::fs::write(&g.config, xml).unwrap();
        }
        LabGuest { lab, g }
    }

    pub fn run(&self, node: &str, action: &str, timeout_s: u64, extra: &[(&str, &str)]) -> Run {
        let timeout = (timeout_s * 1000).to_string();
        let mut env = self.g.env(&[("OCF_RESKEY_CRM_meta_timeout", &timeout), ("OCF_RESKEY_CRM_meta_interval", "0")]);
        env.extend(pairs(extra));
        self.lab.agent(node, action, &env)
    }

    pub fn migrate_to(&self, from: &str, to: &str, timeout_s: u64, extra: &[(&str, &str)]) -> Run {
        let mut e = vec![("OCF_RESKEY_CRM_meta_migrate_source", from), ("OCF_RESKEY_CRM_meta_migrate_target", to)];
        e.extend_from_slice(extra);
        self.run(from, "migrate_to", timeout_s, &e)
    }

    pub fn migrate_from(&self, from: &str, to: &str, timeout_s: u64, extra: &[(&str, &str)]) -> Run {
        let mut e = vec![("OCF_RESKEY_CRM_meta_migrate_source", from), ("OCF_RESKEY_CRM_meta_migrate_target", to)];
        e.extend_from_slice(extra);
        self.run(to, "migrate_from", timeout_s, &e)
    }

    pub fn name(&self) -> &str {
        &self.g.name
    }

    /// What a failed test should keep about this guest: the end of its
    /// console, libvirt's state and reason and QEMU's own view on each node,
    /// and the end of each node's QEMU log.
    pub fn diagnosis(&self) -> String {
        let console = self.g.console_text();
        let tail: Vec<&str> = console.lines().rev().take(15).collect();
        let mut text = format!("console (last lines):\n{}\n", tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
        for node in ["nodea", "nodeb"] {
            let out = |args: &[&str]| String::from_utf8_lossy(&self.lab.virsh(node, args).stdout).trim().to_string();
            text.push_str(&format!("{node}: domstate {:?}\n", out(&["domstate", "--reason", self.name()])));
            for hmp in ["info status", "info cpus"] {
                text.push_str(&format!("{node}: {hmp}: {:?}\n", out(&["qemu-monitor-command", "--hmp", self.name(), hmp])));
            }
            let log = std::fs::read_to_string(self.lab.dir.join(node).join("log/libvirt/qemu").join(format!("{}.log", self.name()))).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(8).collect();
            text.push_str(&format!("{node}: qemu log (last lines):\n{}\n", tail.into_iter().rev().collect::<Vec<_>>().join("\n")));
        }
        text
    }

    pub fn last_tick(&self) -> Option<u64> {
        self.g.ticks().into_iter().max()
    }

    /// The guest prints another tick within `within` (a restarted guest
    /// counts from 0 again, so this counts lines, not values).
    pub fn ticks_on(&self, within: Duration) -> bool {
        let now = self.g.ticks().len();
        wait_for(within, || self.g.ticks().len() > now)
    }

    /// Starts the guest on `node` and waits until it counts.
    pub fn start_on(&self, node: &str) {
        let r = self.run(node, "start", 90, &[]);
        assert_eq!(r.code, 0, "start on {node}: {}", r.stderr);
        assert!(wait_for(BOOT, || self.last_tick().unwrap_or(0) >= 1), "guest did not boot:\n{}", self.g.console_text());
    }
}

impl Drop for LabGuest<'_> {
    fn drop(&mut self) {
        for node in NODES {
            let _ = self.lab.virsh(node, &["destroy", &self.g.name]);
        }
    }
}

/// How many times the guest booted, by its console.
pub fn boots(g: &LabGuest) -> usize {
    g.g.console_text().matches("ferry-guest: up").count()
}

/// The guest runs on `node` alone, and counts.
pub fn assert_only_on(g: &LabGuest, node: &str, step: &str) {
    assert_eq!(g.lab.active_on(g.name()), vec![node], "{step}: the guest must run on exactly {node}");
    // On failure, what each node says of it: a paused domain and a dead
    // kernel look alike to the list above.
    assert!(g.ticks_on(Duration::from_secs(15)), "{step}: the serial counter stopped at {:?}\n{}", g.last_tick(), g.diagnosis());
}

/// The whole machine's CPU (both lab nodes share it), sampled each second:
/// the busy share over the sampled time, and the share of seconds above 95 %.
pub struct CpuSampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<(u64, u64, usize, usize)>,
}

fn cpu_times() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<u64> = stat.lines().next().unwrap_or("").split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect();
    let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
    (fields.iter().take(8).sum(), idle)
}

impl CpuSampler {
    pub fn start() -> CpuSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let first = cpu_times();
            let (mut last, mut seconds, mut saturated) = (first, 0, 0);
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_secs(1));
                let now = cpu_times();
                let (total, idle) = (now.0 - last.0, now.1 - last.1);
                seconds += 1;
                if total > 0 && (total - idle) * 100 >= total * 95 {
                    saturated += 1;
                }
                last = now;
            }
            (last.0 - first.0, last.1 - first.1, seconds, saturated)
        });
        CpuSampler { stop, thread }
    }

    /// The busy share and the saturated share, in percent.
    pub fn stop(self) -> (f64, f64) {
        self.stop.store(true, Ordering::Relaxed);
        let (total, idle, seconds, saturated) = self.thread.join().unwrap();
        (100.0 * (total - idle) as f64 / total.max(1) as f64, 100.0 * saturated as f64 / seconds.max(1) as f64)
    }
}

/// One process's CPU ticks from /proc/PID/stat: its own (utime + stime) and
/// those of the children it waited for (cutime + cstime).
fn process_ticks(pid: u32) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: the fields that
    // follow it start after the last ')'. They begin at field 3 (state).
    let fields: Vec<u64> = stat.rsplit_once(')')?.1.split_whitespace().skip(1).map(|f| f.parse().unwrap_or(0)).collect();
    Some((fields.get(10)? + fields.get(11)?, fields.get(12)? + fields.get(13)?))
}

/// The process that `node`'s pacemakerd runs as pacemaker-execd.
fn execd_of(lab: &Lab, node: &str) -> Option<u32> {
    let parent = std::fs::read_to_string(lab.dir.join(node).join("run/ferry-lab-pacemakerd.pid")).ok()?.trim().to_string();
    std::fs::read_dir("/proc").ok()?.flatten().filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok()).find(|pid| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        stat.contains("(pacemaker-execd)") && stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)) == Some(parent.as_str())
    })
}

fn libvirtd_of(lab: &Lab, node: &str) -> Option<u32> {
    std::fs::read_to_string(lab.dir.join(node).join("run/libvirtd.pid")).ok()?.trim().parse().ok()
}

/// Ticks counted for one process across a phase, through a restart of it.
struct Counted {
    pid: Option<u32>,
    base: u64,
    carried: u64,
}

impl Counted {
    fn start(pid: Option<u32>, ticks: impl Fn(u32) -> Option<u64>) -> Counted {
        Counted { pid, base: pid.and_then(&ticks).unwrap_or(0), carried: 0 }
    }

    /// What it counted so far; `now` is the process that runs now. A new
    /// process (a restarted daemon) counts from zero.
    fn total(&self, now: Option<u32>, ticks: impl Fn(u32) -> Option<u64>) -> u64 {
        let current = now.and_then(&ticks).unwrap_or(0);
        self.carried + if now == self.pid { current.saturating_sub(self.base) } else { current }
    }
}

/// The CPU time the resource agents of both lab nodes used over a phase, and
/// libvirtd's beside it, each as seconds and as a share of the whole
/// machine's CPU time. pacemaker-execd starts every agent action and waits
/// for it; the kernel adds a waited-for child's CPU time, with that of every
/// descendant it waited for in turn (virsh, and the sed, grep and awk of a
/// shell agent), to its parent's cutime and cstime. So execd's children's
/// time is all the agents did on the node, whichever agent it is, and
/// nothing else. What libvirtd does on their behalf is its own time.
pub struct AgentCpu<'l> {
    lab: &'l Lab,
    execd: Vec<Counted>,
    libvirtd: Vec<Counted>,
    machine: u64,
}

impl<'l> AgentCpu<'l> {
    pub fn start(lab: &'l Lab) -> AgentCpu<'l> {
        AgentCpu {
            lab,
            execd: NODES.iter().map(|n| Counted::start(execd_of(lab, n), |p| process_ticks(p).map(|t| t.1))).collect(),
            libvirtd: NODES.iter().map(|n| Counted::start(libvirtd_of(lab, n), |p| process_ticks(p).map(|t| t.0))).collect(),
            machine: cpu_times().0,
        }
    }

    /// Call before Pacemaker stops on `node`: what its execd counted so far
    /// is kept, and its successor counts from zero.
    pub fn before_pacemaker_stops(&mut self, node: &str) {
        let i = NODES.iter().position(|n| *n == node).unwrap();
        let c = &mut self.execd[i];
        c.carried = c.total(c.pid, |p| process_ticks(p).map(|t| t.1));
        c.pid = None;
        c.base = 0;
    }

    /// (agents' seconds, their share of the machine in percent, libvirtd's
    /// seconds, its share). Both in the kernel's clock ticks (USER_HZ,
    /// /proc/stat's unit too), turned to seconds at its usual 100 a second.
    pub fn stop(self) -> (f64, f64, f64, f64) {
        let machine = cpu_times().0.saturating_sub(self.machine).max(1) as f64;
        let sum = |counted: &[Counted], now: &dyn Fn(&str) -> Option<u32>, pick: fn((u64, u64)) -> u64| -> f64 {
            NODES.iter().zip(counted).map(|(n, c)| c.total(now(n), |p| process_ticks(p).map(pick))).sum::<u64>() as f64
        };
        let agents = sum(&self.execd, &|n| execd_of(self.lab, n), |t| t.1);
        let libvirtd = sum(&self.libvirtd, &|n| libvirtd_of(self.lab, n), |t| t.0);
        (agents / 100.0, 100.0 * agents / machine, libvirtd / 100.0, 100.0 * libvirtd / machine)
    }
}
