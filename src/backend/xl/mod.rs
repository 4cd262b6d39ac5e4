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
//!
//! A guest goes by three names in `xl list`: its own; `NAME--incoming`
//! while a migration brings it in (xl renames it when the sender says go);
//! and `NAME--migratedaway` on a source that xl renamed just before saying
//! go, where it stays suspended if the migration breaks after that point.
//! The last two hold the guest's memory as much as the first does.

use std::path::Path;

use super::{BackendError, ChildMigration, GuestState, Hypervisor};
use crate::deadline::Deadline;
use crate::process::{Cmd, Output, RunError, Runner};

/// Why a domain shut down: the fifth letter of `xl list`'s state column.
/// xl prints it from "-rscwS" indexed by libxl's shutdown reason (poweroff
/// 0 to soft_reset 5), '?' for a reason outside that range, and '-' for a
/// domain that is not shut down (tools/xl/xl_info.c, list_domains; the same
/// from 4.17 to 4.22).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShutdownReason {
    /// '-' beside 's': the guest powered off.
    Poweroff,
    /// 'r': the guest asked for a reboot; xl's per-domain process restarts it.
    Reboot,
    /// 's': suspended for `xl save` or `xl migrate`; its memory is being
    /// (or was) copied out, and only xl resumes or destroys it.
    Suspend,
    /// 'c': the guest crashed (kept when on_crash="preserve").
    Crash,
    /// 'w': the guest's watchdog expired.
    Watchdog,
    /// 'S': a soft reset (kexec) that xl carries out in place.
    SoftReset,
    /// '?': a reason this xl has no letter for.
    Unknown,
}

impl ShutdownReason {
    fn from_letter(letter: u8) -> Option<ShutdownReason> {
        Some(match letter {
            b'-' => ShutdownReason::Poweroff,
            b'r' => ShutdownReason::Reboot,
            b's' => ShutdownReason::Suspend,
            b'c' => ShutdownReason::Crash,
            b'w' => ShutdownReason::Watchdog,
            b'S' => ShutdownReason::SoftReset,
            b'?' => ShutdownReason::Unknown,
            _ => return None,
        })
    }

    /// In words, for logs and exit reasons.
    pub fn describe(self) -> &'static str {
        match self {
            ShutdownReason::Poweroff => "powered off",
            ShutdownReason::Reboot => "rebooting",
            ShutdownReason::Suspend => "suspended for xl save or migrate",
            ShutdownReason::Crash => "crashed",
            ShutdownReason::Watchdog => "stopped by its watchdog",
            ShutdownReason::SoftReset => "soft-resetting",
            ShutdownReason::Unknown => "shut down for a reason xl cannot name",
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
    /// The state column as xl printed it: r b p s, the shutdown reason
    /// letter, d; '-' where unset.
    pub flags: String,
}

impl XlDomain {
    /// The letter in column `i`, or '-' (a row is only built from a valid column).
    fn letter(&self, i: usize) -> u8 {
        self.flags.as_bytes().get(i).copied().unwrap_or(b'-')
    }
    pub fn paused(&self) -> bool {
        self.letter(2) == b'p'
    }
    /// Shut down (powered off, rebooting, suspended for save or migration,
    /// crashed...) and not yet destroyed: it still holds its memory.
    pub fn shut_down(&self) -> bool {
        self.letter(3) == b's'
    }
    /// Why it shut down; `None` while it is not shut down.
    pub fn shutdown_reason(&self) -> Option<ShutdownReason> {
        self.shut_down().then(|| ShutdownReason::from_letter(self.letter(4))).flatten()
    }
    /// Crashed and kept (on_crash="preserve"), for inspection.
    pub fn crashed(&self) -> bool {
        self.shutdown_reason() == Some(ShutdownReason::Crash)
    }
    /// Being torn down after a destroy.
    pub fn dying(&self) -> bool {
        self.letter(5) == b'd'
    }
}

/// The state column as xl prints it: `%c%c%c%c%c%c`, each of r b p s d
/// its own letter or '-', and the fifth the shutdown reason, which xl
/// prints only beside 's'.
fn valid_flags(flags: &str) -> bool {
    let f = flags.as_bytes();
    f.len() == 6
        && (f[0] == b'r' || f[0] == b'-')
        && (f[1] == b'b' || f[1] == b'-')
        && (f[2] == b'p' || f[2] == b'-')
        && (f[3] == b's' || f[3] == b'-')
        && ShutdownReason::from_letter(f[4]).is_some()
        && (f[3] == b's' || f[4] == b'-')
        && (f[5] == b'd' || f[5] == b'-')
}

/// What glibc prints for a NULL name: xl prints a domain whose name xenstore
/// no longer (or not yet) holds so, while it is created or torn down.
const NO_NAME: &str = "(null)";

/// One row, read from the right: xl prints the name `%-40s` and then five
/// columns (`%5d %5lu %5d     %c…%c  %8.1f`), so a name with spaces, or one
/// longer than its column, still ends where the ID begins.
fn parse_row(line: &str) -> Option<XlDomain> {
    let mut rest = line.trim_end();
    let mut columns = [""; 5];
    for column in columns.iter_mut().rev() {
        let (head, last) = rest.rsplit_once(char::is_whitespace)?;
        *column = last;
        rest = head.trim_end();
    }
    let [id, memory, vcpus, flags, time] = columns;
    time.parse::<f64>().ok()?;
    Some(XlDomain {
        name: rest.to_string(),
        id: id.parse().ok()?,
        memory_mib: memory.parse().ok()?,
        vcpus: vcpus.parse().ok()?,
        flags: Some(flags).filter(|f| valid_flags(f))?.to_string(),
    })
}

/// `xl list`, read row by row: one row ferry cannot read leaves the others
/// standing, and is kept so that whoever asks after a domain it could be
/// hears "unknown" instead of "absent".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct XlList {
    pub domains: Vec<XlDomain>,
    /// The rows that did not parse, as printed.
    pub unreadable: Vec<String>,
}

/// Where xl shows one guest, under each of its names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sighting {
    pub own: Option<XlDomain>,
    pub incoming: Option<XlDomain>,
    pub migrated_away: Option<XlDomain>,
}

impl Sighting {
    /// xl lists the guest under none of its names.
    pub fn is_absent(&self) -> bool {
        self.own.is_none() && self.incoming.is_none() && self.migrated_away.is_none()
    }
}

impl XlList {
    /// Where guest `name` is. A row ferry cannot read that could be it, or
    /// one of its other names, makes the answer unknown unless the guest's
    /// own row is there (names are unique): absence is only ever proven.
    pub fn sighting(&self, name: &str) -> Result<Sighting, String> {
        let find = |n: &str| self.domains.iter().find(|d| d.name == n).cloned();
        let seen = Sighting { own: find(name), incoming: find(&incoming_name(name)), migrated_away: find(&migrated_away_name(name)) };
        if seen.own.is_none() {
            if let Some(row) = self.unreadable.iter().find(|row| row.starts_with(name) || !named(row)) {
                return Err(format!("xl list printed a row ferry cannot read, which could be {name}: '{}'", row.trim()));
            }
        }
        Ok(seen)
    }

    /// Guests (any domain but dom0) that could run here: every readable
    /// one not being torn down, and every row ferry cannot read.
    pub fn guests(&self) -> usize {
        self.domains.iter().filter(|d| d.id != 0 && !d.dying()).count() + self.unreadable.len()
    }
}

/// Whether an unreadable row still shows a name: xl prints the name first,
/// so a row that starts blank or with glibc's "(null)" names nothing.
fn named(row: &str) -> bool {
    !row.starts_with(char::is_whitespace) && !row.starts_with(NO_NAME) && !row.trim().is_empty()
}

/// Parses `xl list` output (a header, then one row per domain). Only a
/// list without its header (dom0 is always there) is no list: a row that
/// does not parse goes to `unreadable`, and only its own domain's answer
/// becomes unknown.
pub fn parse_list(text: &str) -> Result<XlList, String> {
    let mut lines = text.lines().skip_while(|l| !l.starts_with("Name"));
    if lines.next().is_none() {
        return Err("xl list printed no header".into());
    }
    let mut list = XlList::default();
    for line in lines.filter(|l| !l.trim().is_empty()) {
        match parse_row(line) {
            Some(domain) if named(&domain.name) => list.domains.push(domain),
            // Nameless and being torn down: whatever guest it was, it runs
            // no more, as a dying domain with its name would not.
            Some(domain) if domain.dying() => {}
            _ => list.unreadable.push(line.trim_end().to_string()),
        }
    }
    Ok(list)
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
    pub fn list(&self, deadline: Deadline) -> Result<XlList, BackendError> {
        self.xl(&["list"], deadline).and_then(|o| parse_list(&o.stdout).map_err(BackendError::Failed))
    }

    /// Where guest `name` is, under each of its names; unknown (an error)
    /// when xl cannot answer or prints a row that could be it unreadably.
    pub fn sighting(&self, name: &str, deadline: Deadline) -> Result<Sighting, BackendError> {
        self.list(deadline)?.sighting(name).map_err(BackendError::Failed)
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

/// The name xl gives the source of a migration of `name` just before it
/// lets the target start it (tools/xl/xl_migrate.c): kept so, suspended,
/// if the hand-shake breaks after that point.
pub fn migrated_away_name(name: &str) -> String {
    format!("{name}--migratedaway")
}

/// A domain's state in the lifecycle's terms, from its flags.
fn state_of(d: &XlDomain) -> GuestState {
    match d.shutdown_reason() {
        _ if d.dying() => GuestState::Dying,
        Some(ShutdownReason::Crash) => GuestState::Crashed,
        Some(_) => GuestState::ShuttingDown,
        None if d.paused() => GuestState::Paused { handover: false },
        None => GuestState::Running,
    }
}

/// A domain's state in words, from its flags.
pub fn state_words(d: &XlDomain) -> &'static str {
    match d.shutdown_reason() {
        _ if d.dying() => "dying",
        Some(reason) => reason.describe(),
        None if d.paused() => "paused",
        None => "running",
    }
}

impl Hypervisor for Xl<'_> {
    /// Every domain xl lists is present, whatever its flags: a crashed or
    /// shut-down one still holds its memory and its name, and only a
    /// destroy frees them. A dying one is already being destroyed. Under
    /// another of its names the guest is present too: arriving, or left
    /// suspended by a migration that broke after xl renamed it away.
    fn guest_state(&self, name: &str, deadline: Deadline) -> Result<Option<GuestState>, BackendError> {
        let seen = self.sighting(name, deadline)?;
        Ok(match (seen.own, seen.incoming, seen.migrated_away) {
            (Some(own), _, _) => Some(state_of(&own)),
            (None, Some(_), _) => Some(GuestState::Arriving),
            (None, None, Some(away)) if away.dying() => Some(GuestState::Dying),
            (None, None, Some(away)) => Some(GuestState::Other(format!("left {} as {} by a broken migration", state_words(&away), away.name))),
            (None, None, None) => None,
        })
    }

    fn request_shutdown(&self, name: &str, deadline: Deadline) -> Result<(), BackendError> {
        if self.power_button {
            self.xl(&["trigger", name, "power"], deadline).map(drop)
        } else {
            self.xl(&["shutdown", name], deadline).map(drop)
        }
    }

    /// Destroys the guest and the halves a failed migration may have left
    /// (receiving, or renamed away and suspended). One that does not exist
    /// is what destroy asks for.
    fn destroy(&self, name: &str, deadline: Deadline) -> Result<(), BackendError> {
        // The halves rarely exist; whether they did is seen in the list
        // that follows a destroy, so their failure is not the answer.
        let _ = self.xl(&["destroy", &incoming_name(name)], deadline);
        let _ = self.xl(&["destroy", &migrated_away_name(name)], deadline);
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

/// `xl list` as tools/xl/xl_info.c prints it, for the unit tests here and
/// in the Xen agent.
#[cfg(test)]
pub mod printed {
    /// The header line.
    pub const HEADER: &str = "Name                                        ID   Mem VCPUs\tState\tTime(s)\n";

    /// A row: `%-40s %5d %5lu %5d     %c%c%c%c%c%c  %8.1f`.
    pub fn xl_row(name: &str, id: u32, mib: u64, vcpus: u32, flags: &str, seconds: f64) -> String {
        format!("{name:<40} {id:>5} {mib:>5} {vcpus:>5}     {flags}  {seconds:>8.1}\n")
    }
}

#[cfg(test)]
mod tests {
    use super::printed::{xl_row, HEADER};
    use super::*;
    use crate::process::recording::RecordingRunner;
    use std::time::Duration;

    fn listing(rows: &[String]) -> String {
        format!("{HEADER}{}{}", xl_row("Domain-0", 0, 1024, 2, "r-----", 12.3), rows.concat())
    }

    fn soon() -> Deadline {
        Deadline::after(Duration::from_secs(3))
    }

    const LIST: &str = "Name                                        ID   Mem VCPUs\tState\tTime(s)\n\
Domain-0                                     0  1024     2     r-----      12.3\n\
guest1                                       3   256     1     -b----       0.9\n\
guest1--incoming                             4   256     1     --p---       0.0\n\
dead                                         5   128     1     ---sc-       0.1\n";

    #[test]
    fn xl_list_parses_into_domains_with_flags() {
        let d = parse_list(LIST).unwrap().domains;
        assert_eq!(d.len(), 4);
        assert_eq!(d[1], XlDomain { name: "guest1".into(), id: 3, memory_mib: 256, vcpus: 1, flags: "-b----".into() });
        assert!(d[2].paused() && !d[2].crashed());
        assert!(d[3].crashed() && d[3].shut_down() && !d[3].dying());
        assert_eq!(parse_list(HEADER).unwrap(), XlList::default());
    }

    /// Rows as Xen 4.17's xl printed them in the Xen lab (make test-xen):
    /// a PVH guest after `xl pause`, and one whose kernel crashed under
    /// on_crash="preserve" (shut down and crashed together).
    const LAB_ROWS: &str = "Name                                        ID   Mem VCPUs\tState\tTime(s)\n\
xguest                                       1   128     1     --p---       8.9\n\
xcrash                                       3   128     1     ---sc-       8.9\n";

    #[test]
    fn rows_real_xl_printed_read_as_paused_and_crashed() {
        let rows = parse_list(LAB_ROWS).unwrap().domains;
        assert!(rows[0].paused() && !rows[0].shut_down());
        assert!(rows[1].crashed() && rows[1].shut_down() && !rows[1].dying());
        let runner = RecordingRunner::new().reply(&["xl", "list"], 0, LAB_ROWS, "");
        assert_eq!(Xl::new(&runner).guest_state("xguest", soon()), Ok(Some(GuestState::Paused { handover: false })));
        assert_eq!(Xl::new(&runner).guest_state("xcrash", soon()), Ok(Some(GuestState::Crashed)));
        // The rows the tests build are the rows xl prints.
        assert_eq!(format!("{HEADER}{}{}", xl_row("xguest", 1, 128, 1, "--p---", 8.9), xl_row("xcrash", 3, 128, 1, "---sc-", 8.9)), LAB_ROWS);
    }

    /// The fifth letter is why the domain shut down, from "-rscwS" (poweroff,
    /// reboot, suspend, crash, watchdog, soft reset), or '?'.
    /// Rows Xen 4.17's xl printed in the Xen lab (make test-xen, stage 1)
    /// beside the agent's guest: one rebooting under on_reboot="preserve",
    /// one held suspended by an `xl save` whose output nobody reads, and
    /// that one again once renamed as a broken migration leaves its source.
    const LAB_ODD_ROWS: &str = "Name                                        ID   Mem VCPUs\tState\tTime(s)\n\
Domain-0                                     0  1024     1     r-----      86.3\n\
xodd                                         4   128     1     ---sr-      10.8\n\
xsave                                        6   128     1     ---ss-      10.5\n\
xguest--migratedaway                         6   128     1     ---ss-      10.5\n";

    #[test]
    fn rows_real_xl_printed_while_rebooting_saving_and_migrated_away_are_read() {
        let list = parse_list(LAB_ODD_ROWS).unwrap();
        assert!(list.unreadable.is_empty(), "{:?}", list.unreadable);
        assert_eq!(list.domains[1].shutdown_reason(), Some(ShutdownReason::Reboot));
        assert_eq!(list.domains[2].shutdown_reason(), Some(ShutdownReason::Suspend));
        let xguest = list.sighting("xguest").unwrap();
        assert!(xguest.own.is_none() && xguest.migrated_away.is_some());
        let runner = RecordingRunner::new().reply(&["xl", "list"], 0, LAB_ODD_ROWS, "");
        assert_eq!(Xl::new(&runner).guest_state("xodd", soon()), Ok(Some(GuestState::ShuttingDown)));
        assert_eq!(Xl::new(&runner).guest_state("other", soon()), Ok(None));
        assert_eq!(xl_row("xsave", 6, 128, 1, "---ss-", 10.5), LAB_ODD_ROWS.lines().nth(3).unwrap().to_string() + "\n");
    }

    #[test]
    fn every_shutdown_reason_xl_prints_is_read() {
        use ShutdownReason::*;
        let cases = [
            ("r-----", None),
            ("-b----", None),
            ("------", None),
            ("--p---", None),
            ("---s--", Some(Poweroff)),
            ("---sr-", Some(Reboot)),
            ("---ss-", Some(Suspend)),
            ("--pss-", Some(Suspend)),
            ("---sc-", Some(Crash)),
            ("---sw-", Some(Watchdog)),
            ("---sS-", Some(SoftReset)),
            ("---s?-", Some(Unknown)),
            ("-b-srd", Some(Reboot)),
        ];
        for (flags, reason) in cases {
            let list = parse_list(&listing(&[xl_row("vm", 7, 128, 1, flags, 3.4)])).unwrap();
            assert!(list.unreadable.is_empty(), "{flags}: {:?}", list.unreadable);
            let vm = &list.domains[1];
            assert_eq!(vm.shutdown_reason(), reason, "{flags}");
            assert_eq!(vm.crashed(), reason == Some(Crash), "{flags}");
        }
    }

    #[test]
    fn a_suspended_rebooting_or_watchdog_domain_is_present_and_not_running() {
        let state_of = |flags: &str| {
            let list = listing(&[xl_row("vm", 3, 128, 1, flags, 0.1)]);
            let runner = RecordingRunner::new().reply(&["xl", "list"], 0, &list, "");
            Xl::new(&runner).guest_state("vm", soon()).unwrap()
        };
        assert_eq!(state_of("-b----"), Some(GuestState::Running));
        assert_eq!(state_of("------"), Some(GuestState::Running));
        assert_eq!(state_of("--p---"), Some(GuestState::Paused { handover: false }));
        for flags in ["---s--", "---sr-", "---ss-", "--pss-", "---sw-", "---sS-", "---s?-"] {
            assert_eq!(state_of(flags), Some(GuestState::ShuttingDown), "{flags}");
        }
        assert_eq!(state_of("---sc-"), Some(GuestState::Crashed));
        assert_eq!(state_of("---s-d"), Some(GuestState::Dying));
        assert_eq!(state_of("---ssd"), Some(GuestState::Dying));
    }

    #[test]
    fn flags_are_read_by_column_and_a_flag_out_of_place_spoils_only_its_row() {
        let list = |flags: &str| parse_list(&listing(&[xl_row("vm", 3, 128, 1, flags, 0.1)])).unwrap();
        assert_eq!(list("------").domains[1], XlDomain { name: "vm".into(), id: 3, memory_mib: 128, vcpus: 1, flags: "------".into() });
        assert!(list("-----d").domains[1].dying());
        assert!(list("--p---").domains[1].paused());
        // xl prints a reason only beside 's'.
        for garbled in ["d-----", "-b---", "rbpscdx", "--P---", "----c-", "---sx-", "----s-"] {
            let l = list(garbled);
            assert_eq!((l.domains.len(), l.unreadable.len()), (1, 1), "{garbled}");
        }
    }

    #[test]
    fn one_unreadable_row_makes_only_its_own_domain_unknown() {
        let text = format!("{LIST}{}", "other ? 128 1 ---ss- 0.1\n");
        let list = parse_list(&text).unwrap();
        assert_eq!(list.domains.len(), 4);
        assert_eq!(list.sighting("guest1").unwrap().own.unwrap().id, 3);
        assert!(list.sighting("absent").unwrap().is_absent(), "a row named 'other' cannot be 'absent'");
        let e = list.sighting("other").unwrap_err();
        assert!(e.contains("could be other") && e.contains("---ss-"), "{e}");
        // Its other names count: the row could be other--migratedaway.
        let away = parse_list(&format!("{LIST}other--migratedaway 5 x 1 ---ss- 0.1\n")).unwrap();
        assert!(away.sighting("other").is_err());
        // The guest's own row, readable, answers whatever else is unreadable.
        let garbled = LIST.replace("guest1--incoming                             4", "guest1--incoming                             ?");
        assert!(parse_list(&garbled).unwrap().sighting("guest1").unwrap().own.is_some());
        assert!(parse_list(&garbled).unwrap().sighting("dead").unwrap().own.is_some());
        assert!(parse_list(&format!("{LIST}half-row 7\n")).unwrap().sighting("half-row").is_err());
        assert!(parse_list("").is_err(), "no header: xl printed something else");
    }

    #[test]
    fn a_domain_without_a_name_could_be_any_guest_unless_it_is_dying() {
        // glibc's "(null)": xenstore holds no name while a domain is created or torn down.
        let creating = parse_list(&listing(&[xl_row("(null)", 9, 0, 1, "--p---", 0.0)])).unwrap();
        assert!(creating.sighting("vm").unwrap_err().contains("(null)"));
        assert_eq!(creating.guests(), 1);
        let dying = parse_list(&listing(&[xl_row("(null)", 9, 0, 1, "--ps-d", 0.0)])).unwrap();
        assert!(dying.sighting("vm").unwrap().is_absent());
        assert_eq!(dying.guests(), 0);
    }

    #[test]
    fn names_with_spaces_or_longer_than_the_column_are_read_whole() {
        let long = "a-guest-name-well-beyond-forty-characters-wide";
        let list = parse_list(&listing(&[xl_row(long, 4, 512, 2, "-b----", 100.0), xl_row("my vm", 5, 128, 1, "r-----", 1.0)])).unwrap();
        assert!(list.unreadable.is_empty());
        assert_eq!(list.domains[1].name, long);
        assert_eq!(list.domains[2].name, "my vm");
        assert!(list.sighting("my").unwrap().is_absent());
    }

    #[test]
    fn a_guest_renamed_away_by_a_broken_migration_is_still_here() {
        let state_of = |rows: &[String]| {
            let runner = RecordingRunner::new().reply(&["xl", "list"], 0, &listing(rows), "");
            Xl::new(&runner).guest_state("vm", soon()).unwrap()
        };
        let left = state_of(&[xl_row("vm--migratedaway", 3, 128, 1, "---ss-", 4.2)]);
        assert!(matches!(&left, Some(GuestState::Other(w)) if w.contains("vm--migratedaway") && w.contains("suspended")), "{left:?}");
        assert_eq!(state_of(&[xl_row("vm--migratedaway", 3, 128, 1, "---ssd", 4.2)]), Some(GuestState::Dying));
        assert_eq!(state_of(&[xl_row("vm--incoming", 4, 128, 1, "--p---", 0.0)]), Some(GuestState::Arriving));
        assert_eq!(state_of(&[xl_row("vm", 6, 128, 1, "-b----", 0.2), xl_row("vm--migratedaway", 3, 128, 1, "---ss-", 4.2)]), Some(GuestState::Running));
        assert_eq!(state_of(&[xl_row("vm2--migratedaway", 3, 128, 1, "---ss-", 4.2)]), None);
    }

    #[test]
    fn destroy_clears_every_name_a_migration_gave_the_guest() {
        let runner = RecordingRunner::new().reply(&["xl", "destroy"], 0, "", "");
        Xl::new(&runner).destroy("vm", soon()).unwrap();
        for name in ["vm--incoming", "vm--migratedaway", "vm"] {
            assert!(runner.called(&["xl", "destroy", name]), "{name}");
        }
    }

    #[test]
    fn a_finished_migration_keeps_what_xl_said_of_it() {
        use crate::backend::MigrationJob;
        let said = "migration sender: Target has acknowledged transfer.\nmigration sender: Target reports successful startup.\n";
        let runner = RecordingRunner::new().reply(&["xl", "migrate"], 0, "", said);
        let xl = Xl::new(&runner);
        let mut job = xl.start_migration("vm1", "nodeb", None, soon()).unwrap();
        assert_eq!(job.wait_for(Duration::from_secs(1)), Some(Ok(())));
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
