//! The two-node lab from the tests' side: run ferry inside a node, ask each
//! node's libvirtd directly, cut the link, stop a daemon. The lab itself is
//! brought up and torn down by tests/lab/with-two-nodes.sh, which names it
//! in FERRY_LAB_DIR.

use std::path::PathBuf;
use std::process::{Command, Output};
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
        let pid = std::fs::read_to_string(self.dir.join(node).join("run/virtlogd.pid")).expect("node virtlogd pid");
        let node_net = std::fs::read_link(format!("/proc/{}/ns/net", pid.trim())).expect("node netns");
        let needle = format!("guest={name},");
        std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
            let p = e.path();
            std::fs::read_link(p.join("ns/net")).ok().as_ref() == Some(&node_net)
                && std::fs::read(p.join("cmdline")).map(|c| String::from_utf8_lossy(&c).contains(&needle)).unwrap_or(false)
        })
    }

    pub fn link(&self, up: bool) {
        let status = Command::new(script()).arg("link").arg(&self.dir).arg(if up { "up" } else { "down" }).status().unwrap();
        assert!(status.success(), "two-nodes.sh link");
    }

    pub fn libvirtd(&self, node: &str, start: bool) {
        let status = Command::new(script()).arg("libvirtd").arg(&self.dir).arg(node).arg(if start { "start" } else { "stop" }).status().unwrap();
        assert!(status.success(), "two-nodes.sh libvirtd {node}");
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

    pub fn last_tick(&self) -> Option<u64> {
        self.g.ticks().into_iter().max()
    }

    /// The serial counter goes beyond where it is now, within `within`.
    pub fn ticks_on(&self, within: Duration) -> bool {
        let now = self.last_tick();
        wait_for(within, || self.last_tick() > now)
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
