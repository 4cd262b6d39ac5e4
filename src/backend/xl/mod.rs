//! The xl backend: Xen domains through the `xl` toolstack. Knows nothing of
//! OCF. Every call is one `xl` process bounded by the caller's deadline; xl
//! talks to xenstored and the hypervisor itself, so there is no daemon to be
//! down, but xenstored can hang, and then the deadline answers.
//!
//! Migration is `xl migrate`: xl runs a transport command (ssh by default,
//! which authenticates; `-s CMD` for another) that must start
//! `xl migrate-receive` on the target. There is no unauthenticated relocation
//! service, unlike xend's. Xen's pre-copy always ends, after at most five
//! rounds, so the job is bounded by the guest's memory over the link.

use std::fmt;
use std::path::Path;

use crate::ocf::Deadline;
use crate::process::{Cmd, Job, Output, RunError, Runner};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum XlError {
    /// xl ran and failed; its own words.
    Failed(String),
    /// xl is not installed.
    Missing(String),
    TimedOut(String),
}

impl fmt::Display for XlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            XlError::Failed(m) | XlError::Missing(m) | XlError::TimedOut(m) => f.write_str(m),
        }
    }
}

impl From<RunError> for XlError {
    fn from(e: RunError) -> Self {
        match e {
            RunError::Spawn { .. } => XlError::Missing(e.to_string()),
            RunError::TimedOut { .. } => XlError::TimedOut(e.to_string()),
        }
    }
}

/// One row of `xl list`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XlDomain {
    pub name: String,
    pub id: u32,
    pub memory_mib: u64,
    pub vcpus: u32,
    /// xl's six state flags: r b p s c d (running, blocked, paused, shut
    /// down, crashed, dying), '-' where unset.
    pub flags: String,
}

impl XlDomain {
    pub fn crashed(&self) -> bool {
        self.flags.contains('c')
    }
    /// Shut down or dying: on its way out, holding nothing for long.
    pub fn ending(&self) -> bool {
        self.flags.contains('s') || self.flags.contains('d')
    }
    pub fn paused(&self) -> bool {
        self.flags.contains('p')
    }
}

/// Parses `xl list` output (a header, then one row per domain). All or
/// nothing: a row that does not parse could be the guest a caller looks
/// for, so it fails the list instead of dropping out of it; and a list
/// without its header (dom0 is always there) is no list.
pub fn parse_list(text: &str) -> Result<Vec<XlDomain>, String> {
    let mut lines = text.lines().skip_while(|l| !l.starts_with("Name"));
    if lines.next().is_none() {
        return Err("xl list printed no header".into());
    }
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            // The name may not contain spaces (xl refuses them), so columns split.
            let cols: Vec<&str> = line.split_whitespace().collect();
            let row = || -> Option<XlDomain> {
                Some(XlDomain {
                    name: cols.first()?.to_string(),
                    id: cols.get(1)?.parse().ok()?,
                    memory_mib: cols.get(2)?.parse().ok()?,
                    vcpus: cols.get(3)?.parse().ok()?,
                    flags: cols.get(4)?.to_string(),
                })
            };
            row().ok_or_else(|| format!("xl list printed a row ferry cannot read: '{}'", line.trim()))
        })
        .collect()
}

/// The domain name an xl config file sets with `name = "…"`, if any.
pub fn config_name(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let line = line.split('#').next()?.trim();
        let (key, value) = line.split_once('=')?;
        (key.trim() == "name").then(|| value.trim().trim_matches(|c| c == '"' || c == '\'').to_string())
    })
}

/// A migration in flight, started by `Xl::start_migration`.
pub struct Migration<'a> {
    job: Box<dyn Job + 'a>,
}

impl Migration<'_> {
    /// Waits up to `wait` for xl migrate to end. `None`: still going.
    pub fn wait_for(&mut self, wait: std::time::Duration) -> Option<Result<(), XlError>> {
        self.job.wait_for(wait).map(|r| checked(r).map(drop))
    }
}

fn checked(result: Result<Output, RunError>) -> Result<Output, XlError> {
    let out = result?;
    if out.success() {
        Ok(out)
    } else {
        Err(XlError::Failed(out.complaint()))
    }
}

pub struct Xl<'r> {
    runner: &'r dyn Runner,
}

impl<'r> Xl<'r> {
    pub fn new(runner: &'r dyn Runner) -> Xl<'r> {
        Xl { runner }
    }

    fn xl_cmd(args: &[&str]) -> Cmd {
        args.iter().fold(Cmd::new(&["xl"]), |c, a| c.arg(*a))
    }

    fn xl(&self, args: &[&str], deadline: Deadline) -> Result<Output, XlError> {
        checked(self.runner.run(&Self::xl_cmd(args), deadline))
    }

    /// For commands that start a domain: xl leaves a process behind that
    /// watches the domain (reboot, crash actions) for its whole life.
    fn xl_starting_domain(&self, args: &[&str], deadline: Deadline) -> Result<Output, XlError> {
        checked(self.runner.run(&Self::xl_cmd(args).leaving_daemons(), deadline))
    }

    /// Every domain, dom0 included. Callers look for a name in the full list:
    /// `xl list NAME` answers a missing name and a broken toolstack alike.
    pub fn list(&self, deadline: Deadline) -> Result<Vec<XlDomain>, XlError> {
        self.xl(&["list"], deadline).and_then(|o| parse_list(&o.stdout).map_err(XlError::Failed))
    }

    /// Creates the domain from `file`, with `name` and any further `key=value`
    /// settings on the command line (they override the file, which is never
    /// written to).
    pub fn create(&self, file: &Path, overrides: &[String], deadline: Deadline) -> Result<(), XlError> {
        let file = file.to_string_lossy();
        let mut args = vec!["create", "-q", file.as_ref()];
        args.extend(overrides.iter().map(String::as_str));
        self.xl_starting_domain(&args, deadline).map(drop)
    }

    pub fn shutdown(&self, name: &str, deadline: Deadline) -> Result<(), XlError> {
        self.xl(&["shutdown", name], deadline).map(drop)
    }

    /// Presses the virtual power button (for HVM guests without PV drivers).
    pub fn power_button(&self, name: &str, deadline: Deadline) -> Result<(), XlError> {
        self.xl(&["trigger", name, "power"], deadline).map(drop)
    }

    pub fn destroy(&self, name: &str, deadline: Deadline) -> Result<(), XlError> {
        self.xl(&["destroy", name], deadline).map(drop)
    }

    /// Saves the domain's memory to `file` and ends the domain (not live:
    /// it needs no log-dirty support from the hypervisor).
    pub fn save(&self, name: &str, file: &Path, deadline: Deadline) -> Result<(), XlError> {
        self.xl(&["save", name, &file.to_string_lossy()], deadline).map(drop)
    }

    /// Recreates a domain from a `save` image; it runs as it was.
    pub fn restore(&self, file: &Path, deadline: Deadline) -> Result<(), XlError> {
        self.xl_starting_domain(&["restore", &file.to_string_lossy()], deadline).map(drop)
    }

    pub fn mem_set(&self, name: &str, mib: u64, deadline: Deadline) -> Result<(), XlError> {
        self.xl(&["mem-set", name, &format!("{mib}m")], deadline).map(drop)
    }

    /// `total_memory` from `xl info`, in MiB.
    pub fn total_memory_mib(&self, deadline: Deadline) -> Result<u64, XlError> {
        let out = self.xl(&["info"], deadline)?;
        out.stdout
            .lines()
            .find_map(|l| l.strip_prefix("total_memory")?.trim().trim_start_matches(':').trim().parse().ok())
            .ok_or_else(|| XlError::Failed("xl info reports no total_memory".into()))
    }

    /// Starts `xl migrate NAME HOST`, through `transport` when given (xl's
    /// `-s`; ssh otherwise).
    pub fn start_migration(&self, name: &str, host: &str, transport: Option<&str>, deadline: Deadline) -> Result<Migration<'r>, XlError> {
        let mut cmd = Cmd::new(&["xl", "migrate"]);
        if let Some(t) = transport {
            cmd = cmd.arg("-s").arg(t);
        }
        let job = self.runner.spawn(&cmd.arg(name).arg(host), deadline)?;
        Ok(Migration { job })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: &str = "Name                                        ID   Mem VCPUs\tState\tTime(s)\n\
Domain-0                                     0  1024     2     r-----      12.3\n\
guest1                                       3   256     1     -b----       0.9\n\
guest1--incoming                             4   256     1     --p---       0.0\n\
dead                                         5   128     1     ---sc-       0.1\n";

    #[test]
    fn xl_list_parses_into_domains_with_flags() {
        let d = parse_list(LIST).unwrap();
        assert_eq!(d.len(), 4);
        assert_eq!(d[1], XlDomain { name: "guest1".into(), id: 3, memory_mib: 256, vcpus: 1, flags: "-b----".into() });
        assert!(d[2].paused() && !d[2].crashed());
        assert!(d[3].crashed() && d[3].ending());
        assert!(parse_list("Name ID Mem VCPUs State Time(s)\n").unwrap().is_empty());
    }

    #[test]
    fn an_unreadable_list_fails_instead_of_losing_a_domain() {
        assert!(parse_list("").is_err(), "no header: xl printed something else");
        let garbled = LIST.replace("guest1                                       3", "guest1                                       ?");
        assert!(parse_list(&garbled).unwrap_err().contains("guest1"));
        assert!(parse_list(&format!("{LIST}half-row 7\n")).is_err());
    }

    #[test]
    fn the_name_comes_from_the_config_file() {
        assert_eq!(config_name("kernel = \"/k\"\nname = \"vm1\" # the guest\nmemory = 256\n").as_deref(), Some("vm1"));
        assert_eq!(config_name("name='vm2'").as_deref(), Some("vm2"));
        assert_eq!(config_name("# name = \"x\"\nmemory = 1\n"), None);
    }
}
