//! Shared test support: running the ferry binary as an agent, and real test
//! guests (the TCG Linux guest built by tests/guest/build.sh) that remove
//! themselves from libvirt when the test ends, passed or failed.
#![allow(dead_code)]

pub mod judge;
pub mod lab;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub fn ferry() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ferry"))
}

/// Every agent the binary carries, as `ferry list` names them: tests
/// iterate this rather than naming agents, so a new agent gets every check.
pub fn agents() -> Vec<String> {
    let out = Command::new(ferry()).arg("list").output().expect("ferry list");
    String::from_utf8_lossy(&out.stdout).lines().map(String::from).collect()
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One finished agent invocation.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub took: Duration,
}

impl Run {
    /// The `ocf-exit-reason:` line, as Pacemaker would read it.
    pub fn reason(&self) -> Option<String> {
        self.stderr.lines().find_map(|l| l.strip_prefix("ocf-exit-reason:")).map(String::from)
    }
}

/// Runs `ferry VirtualDomain ACTION` with exactly `env` as the OCF environment.
pub fn agent(action: &str, env: &[(String, String)]) -> Run {
    run_program(&ferry(), &["VirtualDomain", action], env)
}

pub fn run_program(program: &Path, args: &[&str], env: &[(String, String)]) -> Run {
    let mut cmd = Command::new(program);
    cmd.args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("OCF_") || k.starts_with("HA_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("OCF_ROOT", "/usr/lib/ocf");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let started = Instant::now();
    let out = cmd.output().expect("run ferry");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        took: started.elapsed(),
    }
}

pub fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

pub fn virsh(args: &[&str]) -> std::process::Output {
    Command::new("virsh").arg("--connect").arg("qemu:///system").args(args).output().expect("run virsh")
}

pub fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('\'', "&apos;").replace('"', "&quot;")
}

/// A test guest: a directory with its domain XML and serial console file, and
/// a libvirt domain name unique to this test run.
pub struct Guest {
    pub name: String,
    pub instance: String,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub console: PathBuf,
    /// Extra OCF_RESKEY_* parameters for every action.
    pub params: Vec<(String, String)>,
}

impl Guest {
    pub fn new(tag: &str) -> Guest {
        Self::named(&format!("ferry-it-{tag}-{}", std::process::id()), tag)
    }

    pub fn named(name: &str, tag: &str) -> Guest {
        let dir = std::env::temp_dir().join(format!("ferry-it-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let guest = Guest {
            name: name.to_string(),
            instance: format!("res-{tag}"),
            config: dir.join("guest.xml"),
            console: dir.join("console.log"),
            dir,
            params: Vec::new(),
        };
        std::fs::write(&guest.config, guest.xml()).unwrap();
        guest
    }

    /// The test guest's definition, from the template the shell scripts share.
    pub fn xml(&self) -> String {
        let images = std::env::var("FERRY_GUEST_DIR").map(PathBuf::from).unwrap_or_else(|_| repo().join("build/guest"));
        std::fs::read_to_string(repo().join("tests/guest/domain.xml.in"))
            .expect("tests/guest/domain.xml.in")
            .replace("@NAME@", &xml_escape(&self.name))
            .replace("@IMAGES@", &images.display().to_string())
            .replace("@CONSOLE@", &self.console.display().to_string())
    }

    /// Rewrites the guest's config file (more devices, kernel arguments).
    pub fn edit_config(&self, edit: impl FnOnce(String) -> String) {
        let xml = std::fs::read_to_string(&self.config).unwrap();
        std::fs::write(&self.config, edit(xml)).unwrap();
    }

    /// Adds devices to the guest's config and words to its kernel command line.
    pub fn with_devices(&self, devices: &str, cmdline: &str) {
        self.edit_config(|xml| xml.replace("</devices>", &format!("{devices}</devices>")).replace("</cmdline>", &format!(" {cmdline}</cmdline>")));
    }

    /// libvirt's state with its reason, as `virsh domstate --reason` says it.
    pub fn libvirt_status(&self) -> Option<String> {
        let out = virsh(&["domstate", "--reason", &self.name]);
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    pub fn env(&self, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut env = vec![
            ("OCF_RESOURCE_INSTANCE".to_string(), self.instance.clone()),
            ("OCF_RESKEY_config".to_string(), self.config.display().to_string()),
        ];
        env.extend(self.params.iter().cloned());
        env.extend(pairs(extra));
        env
    }

    /// Runs an action as a recurring operation would (interval set).
    pub fn run(&self, action: &str, extra: &[(&str, &str)]) -> Run {
        let mut env = self.env(&[("OCF_RESKEY_CRM_meta_interval", "10000"), ("OCF_RESKEY_CRM_meta_timeout", "30000")]);
        env.extend(pairs(extra));
        agent(action, &env)
    }

    /// Runs a probe (monitor with interval 0).
    pub fn probe(&self) -> Run {
        agent("monitor", &self.env(&[("OCF_RESKEY_CRM_meta_interval", "0"), ("OCF_RESKEY_CRM_meta_timeout", "30000")]))
    }

    pub fn console_text(&self) -> String {
        std::fs::read_to_string(&self.console).unwrap_or_default()
    }

    /// Waits until the console shows `needle`.
    pub fn wait_console(&self, needle: &str, within: Duration) -> bool {
        wait_for(within, || self.console_text().contains(needle))
    }

    pub fn ticks(&self) -> Vec<u64> {
        self.console_text().lines().filter_map(|l| l.trim().strip_prefix("ferry-tick ")?.trim().parse().ok()).collect()
    }

    /// libvirt's view: the domain's state, or None if libvirt has no such domain.
    pub fn libvirt_state(&self) -> Option<String> {
        let out = virsh(&["domstate", &self.name]);
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = virsh(&["destroy", &self.name]);
        let _ = virsh(&["undefine", &self.name]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The guest kernel's own report of a failure, if its console shows one.
/// After a migration that libvirt and the agent both report done, with the
/// guest on exactly one node, such a report is QEMU's or the guest's (the
/// soak in tests/migration_soak measures the same failures with raw virsh);
/// without it, a stopped counter is the agent's to answer for.
pub fn guest_kernel_failure(console: &str) -> Option<String> {
    const SIGNS: [&str; 6] = ["Kernel panic", "Oops:", "BUG:", "stack-protector", "general protection fault", "RIP: "];
    console.lines().find(|l| SIGNS.iter().any(|s| l.contains(s))).map(|l| l.trim().to_string())
}

/// A scratch directory removed when the test ends, passed or failed.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("ferry-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `undo` when dropped: puts back what a test changed (a cut link, a
/// stopped daemon, a standby node), also when an assertion fails first.
pub struct Defer<F: FnMut()>(pub F);

impl<F: FnMut()> Drop for Defer<F> {
    fn drop(&mut self) {
        (self.0)()
    }
}

pub fn wait_for(within: Duration, cond: impl FnMut() -> bool) -> bool {
    wait_every(Duration::from_millis(200), within, cond)
}

/// `wait_for`, asking `cond` once per `pace`.
pub fn wait_every(pace: Duration, within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        std::thread::sleep(pace);
    }
}

/// How long a TCG guest may take to reach its init and ACPI handler.
pub const BOOT: Duration = Duration::from_secs(60);
