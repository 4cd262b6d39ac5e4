//! The xl backend: Xen domains through the `xl` toolstack. Knows nothing of
//! OCF. Every call is one `xl` process bounded by the caller's deadline; xl
//! talks to xenstored and the hypervisor itself, so there is no daemon to be
//! down, but xenstored can hang, and then the deadline answers.
//!
//! Migration is `xl migrate`: xl runs a transport command (ssh by default,
//! which authenticates and encrypts; `-s CMD` for another) that must start
//! `xl migrate-receive` on the target, and sends the guest's memory through
//! that command's stdin, so the transport protects the memory too. There is no unauthenticated relocation
//! service, unlike xend's. Xen's pre-copy always ends, after at most five
//! rounds, so the job is bounded by the guest's memory over the link.

use std::path::Path;

use super::{BackendError, ChildMigration, GuestState, Hypervisor};
use crate::deadline::Deadline;
use crate::process::{Cmd, Output, RunError, Runner};

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

/// xl's state flags, one per column, in the order xl prints them.
const FLAGS: [u8; 6] = *b"rbpscd";

impl XlDomain {
    /// The flag in column `i` (of `FLAGS`) is set. Read by column, not by
    /// searching the string: xl prints '-' for every flag that is unset.
    fn flag(&self, i: usize) -> bool {
        self.flags.as_bytes().get(i) == Some(&FLAGS[i])
    }
    pub fn paused(&self) -> bool {
        self.flag(2)
    }
    /// Shut down (by the guest, a crash, or a suspend for save or
    /// migration) and not yet destroyed: it still holds its memory and name.
    pub fn shut_down(&self) -> bool {
        self.flag(3)
    }
    /// Crashed and kept (on_crash="preserve"), for inspection.
    pub fn crashed(&self) -> bool {
        self.flag(4)
    }
    /// Being torn down after a destroy.
    pub fn dying(&self) -> bool {
        self.flag(5)
    }
}

/// Six columns, each its own flag or '-'.
fn valid_flags(flags: &str) -> bool {
    flags.len() == FLAGS.len() && flags.bytes().zip(FLAGS).all(|(got, flag)| got == flag || got == b'-')
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
                    flags: cols.get(4).filter(|f| valid_flags(f))?.to_string(),
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

fn checked(result: Result<Output, RunError>) -> Result<Output, BackendError> {
    let out = result?;
    if out.success() {
        Ok(out)
    } else {
        Err(BackendError::Failed(out.complaint()))
    }
}

pub struct Xl<'r> {
    runner: &'r dyn Runner,
    /// Shut guests down with the virtual power button (HVM guests without
    /// PV drivers) instead of xl's PV shutdown request.
    power_button: bool,
}

impl<'r> Xl<'r> {
    pub fn new(runner: &'r dyn Runner) -> Xl<'r> {
        Xl { runner, power_button: false }
    }

    pub fn shutting_down_by_power_button(mut self, yes: bool) -> Xl<'r> {
        self.power_button = yes;
        self
    }

    fn xl_cmd(args: &[&str]) -> Cmd {
        args.iter().fold(Cmd::new(&["xl"]), |c, a| c.arg(*a))
    }

    fn xl(&self, args: &[&str], deadline: Deadline) -> Result<Output, BackendError> {
        checked(self.runner.run(&Self::xl_cmd(args), deadline))
    }

    /// For commands that start a domain: xl leaves a process behind that
    /// watches the domain (reboot, crash actions) for its whole life.
    fn xl_starting_domain(&self, args: &[&str], deadline: Deadline) -> Result<Output, BackendError> {
        checked(self.runner.run(&Self::xl_cmd(args).leaving_daemons(), deadline))
    }

    /// Every domain, dom0 included. Callers look for a name in the full list:
    /// `xl list NAME` answers a missing name and a broken toolstack alike.
    pub fn list(&self, deadline: Deadline) -> Result<Vec<XlDomain>, BackendError> {
        self.xl(&["list"], deadline).and_then(|o| parse_list(&o.stdout).map_err(BackendError::Failed))
    }

    /// Creates the domain from `file`, with `name` and any further `key=value`
    /// settings on the command line (they override the file, which is never
    /// written to).
    pub fn create(&self, file: &Path, overrides: &[String], deadline: Deadline) -> Result<(), BackendError> {
        let file = file.to_string_lossy();
        let mut args = vec!["create", "-q", file.as_ref()];
        args.extend(overrides.iter().map(String::as_str));
        self.xl_starting_domain(&args, deadline).map(drop)
    }

    pub fn mem_set(&self, name: &str, mib: u64, deadline: Deadline) -> Result<(), BackendError> {
        self.xl(&["mem-set", name, &format!("{mib}m")], deadline).map(drop)
    }

    /// `total_memory` from `xl info`, in MiB.
    pub fn total_memory_mib(&self, deadline: Deadline) -> Result<u64, BackendError> {
        let out = self.xl(&["info"], deadline)?;
        out.stdout
            .lines()
            .find_map(|l| l.strip_prefix("total_memory")?.trim().trim_start_matches(':').trim().parse().ok())
            .ok_or_else(|| BackendError::Failed("xl info reports no total_memory".into()))
    }

    /// Starts `xl migrate NAME HOST`, through `transport` when given (xl's
    /// `-s`; ssh otherwise).
    pub fn start_migration(&self, name: &str, host: &str, transport: Option<&str>, deadline: Deadline) -> Result<ChildMigration<'r>, BackendError> {
        let mut cmd = Cmd::new(&["xl", "migrate"]);
        if let Some(t) = transport {
            cmd = cmd.arg("-s").arg(t);
        }
        let job = self.runner.spawn(&cmd.arg(name).arg(host), deadline)?;
        Ok(ChildMigration::new(job, |out| checked(Ok(out)).map(drop)))
    }
}

/// The name xl gives the receiving half of a migration of `name`.
pub fn incoming_name(name: &str) -> String {
    format!("{name}--incoming")
}

impl Hypervisor for Xl<'_> {
    /// Every domain xl lists is present, whatever its flags: a crashed or
    /// shut-down one still holds its memory and its name, and only a
    /// destroy frees them. A dying one is already being destroyed.
    fn guest_state(&self, name: &str, deadline: Deadline) -> Result<Option<GuestState>, BackendError> {
        let domains = self.list(deadline)?;
        if let Some(d) = domains.iter().find(|d| d.name == name) {
            return Ok(Some(match () {
                _ if d.dying() => GuestState::Dying,
                _ if d.crashed() => GuestState::Crashed,
                _ if d.shut_down() => GuestState::ShuttingDown,
                _ if d.paused() => GuestState::Paused { handover: false },
                _ => GuestState::Running,
            }));
        }
        let incoming = incoming_name(name);
        Ok(domains.iter().any(|d| d.name == incoming).then_some(GuestState::Arriving))
    }

    fn request_shutdown(&self, name: &str, deadline: Deadline) -> Result<(), BackendError> {
        if self.power_button {
            self.xl(&["trigger", name, "power"], deadline).map(drop)
        } else {
            self.xl(&["shutdown", name], deadline).map(drop)
        }
    }

    /// Destroys the guest and the receiving half a failed migration may
    /// have left. One that does not exist is what destroy asks for.
    fn destroy(&self, name: &str, deadline: Deadline) -> Result<(), BackendError> {
        // The receiving half rarely exists; whether it did is seen in the
        // list that follows a destroy, so its failure is not the answer.
        let _ = self.xl(&["destroy", &incoming_name(name)], deadline);
        match self.xl(&["destroy", name], deadline) {
            Err(BackendError::Failed(m)) if m.contains("invalid domain identifier") => Ok(()),
            other => other.map(drop),
        }
    }

    fn save(&self, name: &str, image: &Path, deadline: Deadline) -> Result<(), BackendError> {
        self.xl(&["save", name, &image.to_string_lossy()], deadline).map(drop)
    }

    fn restore(&self, image: &Path, deadline: Deadline) -> Result<(), BackendError> {
        self.xl_starting_domain(&["restore", &image.to_string_lossy()], deadline).map(drop)
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
        assert!(d[3].crashed() && d[3].shut_down() && !d[3].dying());
        assert!(parse_list("Name ID Mem VCPUs State Time(s)\n").unwrap().is_empty());
    }

    /// Rows as Xen 4.17's xl printed them in the Xen lab (make test-xen):
    /// a PVH guest after `xl pause`, and one whose kernel crashed under
    /// on_crash="preserve" (shut down and crashed together).
    const LAB_ROWS: &str = "Name                                        ID   Mem VCPUs\tState\tTime(s)\n\
xguest                                       1   128     1     --p---       8.9\n\
xcrash                                       3   128     1     ---sc-       8.9\n";

    #[test]
    fn rows_real_xl_printed_read_as_paused_and_crashed() {
        use crate::process::recording::RecordingRunner;
        let rows = parse_list(LAB_ROWS).unwrap();
        assert!(rows[0].paused() && !rows[0].shut_down());
        assert!(rows[1].crashed() && rows[1].shut_down() && !rows[1].dying());
        let runner = RecordingRunner::new().reply(&["xl", "list"], 0, LAB_ROWS, "");
        let d = Deadline::after(std::time::Duration::from_secs(3));
        assert_eq!(Xl::new(&runner).guest_state("xguest", d), Ok(Some(GuestState::Paused { handover: false })));
        assert_eq!(Xl::new(&runner).guest_state("xcrash", d), Ok(Some(GuestState::Crashed)));
    }

    #[test]
    fn flags_are_read_by_column_and_a_flag_out_of_place_fails_the_row() {
        let row = |flags: &str| format!("Name ID Mem VCPUs State Time(s)\nvm 3 128 1 {flags} 0.1\n");
        assert!(parse_list(&row("------")).unwrap()[0] == XlDomain { name: "vm".into(), id: 3, memory_mib: 128, vcpus: 1, flags: "------".into() });
        assert!(parse_list(&row("-----d")).unwrap()[0].dying());
        assert!(parse_list(&row("--p---")).unwrap()[0].paused());
        for garbled in ["d-----", "-b---", "rbpscdx", "--P---"] {
            assert!(parse_list(&row(garbled)).is_err(), "{garbled}");
        }
    }

    #[test]
    fn every_listed_domain_is_present_whatever_its_flags() {
        use crate::process::recording::RecordingRunner;
        let d = Deadline::after(std::time::Duration::from_secs(3));
        let state_of = |flags: &str| {
            let list = format!("Name ID Mem VCPUs State Time(s)\nDomain-0 0 1024 2 r----- 9.0\nvm 3 128 1 {flags} 0.1\n");
            let runner = RecordingRunner::new().reply(&["xl", "list"], 0, &list, "");
            Xl::new(&runner).guest_state("vm", d).unwrap()
        };
        assert_eq!(state_of("-b----"), Some(GuestState::Running));
        assert_eq!(state_of("------"), Some(GuestState::Running));
        assert_eq!(state_of("--p---"), Some(GuestState::Paused { handover: false }));
        assert_eq!(state_of("---s--"), Some(GuestState::ShuttingDown));
        assert_eq!(state_of("---sc-"), Some(GuestState::Crashed));
        assert_eq!(state_of("----c-"), Some(GuestState::Crashed));
        assert_eq!(state_of("---s-d"), Some(GuestState::Dying));
    }

    #[test]
    fn an_unreadable_list_fails_instead_of_losing_a_domain() {
        assert!(parse_list("").is_err(), "no header: xl printed something else");
        let garbled = LIST.replace("guest1                                       3", "guest1                                       ?");
        assert!(parse_list(&garbled).unwrap_err().contains("guest1"));
        assert!(parse_list(&format!("{LIST}half-row 7\n")).is_err());
    }

    #[test]
    fn a_finished_migration_keeps_what_xl_said_of_it() {
        use crate::backend::MigrationJob;
        use crate::process::recording::RecordingRunner;
        let said = "migration sender: Target has acknowledged transfer.\nmigration sender: Target reports successful startup.\n";
        let runner = RecordingRunner::new().reply(&["xl", "migrate"], 0, "", said);
        let xl = Xl::new(&runner);
        let mut job = xl.start_migration("vm1", "nodeb", None, Deadline::after(std::time::Duration::from_secs(3))).unwrap();
        assert_eq!(job.wait_for(std::time::Duration::from_secs(1)), Some(Ok(())));
        assert_eq!(job.account(), said);
        // No -s: xl's own ssh, which encrypts the whole stream, memory included.
        assert!(runner.called(&["xl", "migrate", "vm1", "nodeb"]));
    }

    #[test]
    fn the_name_comes_from_the_config_file() {
        assert_eq!(config_name("kernel = \"/k\"\nname = \"vm1\" # the guest\nmemory = 256\n").as_deref(), Some("vm1"));
        assert_eq!(config_name("name='vm2'").as_deref(), Some("vm2"));
        assert_eq!(config_name("# name = \"x\"\nmemory = 1\n"), None);
    }
}
