//! Moving a domain between hosts with libvirt: start a migration job, read its
//! progress, steer it while it runs, abort it. Policy (when to steer, when to
//! give up) belongs to the caller; this only says what libvirt can do.
//!
//! Migrations are peer-to-peer (`--p2p`): the source libvirtd drives the whole
//! exchange with the target's. If the program that asked is killed, libvirt
//! still finishes or cancels the job cleanly, instead of leaving the guest
//! paused on one or both hosts as a client-driven migration can.

use crate::deadline::Deadline;
use crate::backend::ChildMigration;
use crate::process::Output;

use super::{classify_virsh_failure, DomainState, Libvirt, Pause, Status};
use crate::backend::BackendError;

/// How the guest's memory travels to the target.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Stream {
    /// A TCP connection of QEMU's own, in clear text.
    #[default]
    Clear,
    /// QEMU's own connection, TLS with both ends' certificates (`--tls`).
    Tls,
    /// Inside the libvirt connection to the target (`--tunnelled`): as
    /// private as that connection's transport, and with extra copies.
    Tunnelled,
}

/// What to migrate, where, and how.
#[derive(Clone, Debug, Default)]
pub struct MigrationRequest<'a> {
    pub domain: &'a str,
    /// The target's libvirt URI, as the source libvirtd will open it.
    pub target_uri: &'a str,
    /// Where the data stream goes, when not where the target URI says.
    pub data_uri: Option<&'a str>,
    /// Keep the guest running during the copy (pre-copy); else it is paused.
    pub live: bool,
    /// Allow a later switch to post-copy (`start_postcopy`).
    pub postcopy: bool,
    pub auto_converge: bool,
    /// MiB/s; `None` keeps libvirt's (unlimited) default.
    pub bandwidth_mib_s: Option<u64>,
    pub stream: Stream,
    /// Parallel connections for the stream (multifd); `None`: one.
    pub parallel: Option<u32>,
    /// Further `virsh migrate` options, one word each.
    pub extra: &'a [String],
}

/// A snapshot of a migration job, from `virsh domjobinfo --rawstats`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobStats {
    /// A job is running (libvirt's bounded or unbounded job types).
    pub active: bool,
    pub elapsed_ms: u64,
    pub data_processed: u64,
    pub data_remaining: u64,
    /// What the job must send in all (the guest's memory, and disks if copied).
    pub data_total: u64,
    /// Pre-copy passes over memory so far (1 is the first full pass).
    pub memory_iteration: u64,
    pub dirty_pages_per_s: u64,
    /// Percent of CPU time auto-converge takes from the guest.
    pub throttle_percent: u64,
    /// Of a completed job: how long the guest was paused.
    pub downtime_ms: Option<u64>,
    pub total_ms: Option<u64>,
}

impl JobStats {
    /// Parses `virsh domjobinfo --rawstats` (key: value lines; job type numeric).
    pub fn parse(text: &str) -> JobStats {
        let mut stats = JobStats::default();
        for line in text.lines() {
            let Some((key, value)) = line.split_once(':') else { continue };
            let value = value.trim();
            let number = value.parse::<u64>().ok();
            match (key.trim(), number) {
                // virJobType: 1 bounded, 2 unbounded are running jobs.
                ("Job type", Some(t)) => stats.active = t == 1 || t == 2,
                ("time_elapsed", Some(n)) => stats.elapsed_ms = n,
                ("data_processed", Some(n)) => stats.data_processed = n,
                ("data_remaining", Some(n)) => stats.data_remaining = n,
                ("data_total", Some(n)) => stats.data_total = n,
                ("memory_iteration", Some(n)) => stats.memory_iteration = n,
                ("memory_dirty_rate", Some(n)) => stats.dirty_pages_per_s = n,
                ("auto_converge_throttle", Some(n)) => stats.throttle_percent = n,
                ("downtime", Some(n)) => stats.downtime_ms = Some(n),
                ("time_elapsed_net", _) => {}
                _ => {}
            }
        }
        if !stats.active && stats.elapsed_ms > 0 {
            stats.total_ms = Some(stats.elapsed_ms);
        }
        stats
    }

    /// How much of the memory is across, as `virsh migrate --verbose`
    /// counts it: the total less what remains (a later pass starts over).
    pub fn percent_done(&self) -> u64 {
        match self.data_total {
            0 => 0,
            total => total.saturating_sub(self.data_remaining) * 100 / total,
        }
    }
}

/// Where an outgoing migration stands, as the source's libvirt says: the
/// domain's state reason, which libvirt changes when the switch to
/// post-copy has happened, whoever asked for it (`start_postcopy`, or virsh
/// itself with `--postcopy-after-precopy` or `--timeout-postcopy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// The guest still runs here (or is paused for the switch-over): an
    /// abort cancels the job and resumes it here.
    PreCopy,
    /// The target runs the guest and pulls what it lacks from here. libvirt
    /// refuses a plain abort now; the job ends by itself when all is across.
    PostCopy,
    /// Post-copy broke off: the guest's memory is split between the nodes
    /// until someone resumes the migration (`virsh migrate --postcopy-resume`).
    PostCopyFailed,
    /// No domain here any more, or shut off: the job is over on this side.
    Left,
}

impl Phase {
    /// The phase a source domain in `status` (`None`: no such domain) is in.
    pub fn of(status: Option<Status>) -> Phase {
        match status {
            None => Phase::Left,
            Some(s) if s.state == DomainState::ShutOff => Phase::Left,
            Some(s) if s.postcopy_failed() => Phase::PostCopyFailed,
            Some(s) if s.pause() == Some(Pause::PostCopy) => Phase::PostCopy,
            Some(_) => Phase::PreCopy,
        }
    }
}

impl MigrationRequest<'_> {
    fn args(&self) -> Vec<String> {
        let mut args = vec!["migrate".to_string(), "--p2p".into()];
        if self.live {
            args.push("--live".into());
        }
        if self.postcopy {
            args.push("--postcopy".into());
        }
        if self.auto_converge {
            args.push("--auto-converge".into());
        }
        if let Some(b) = self.bandwidth_mib_s {
            args.extend(["--bandwidth".into(), b.to_string()]);
        }
        match self.stream {
            Stream::Clear => {}
            Stream::Tls => args.push("--tls".into()),
            Stream::Tunnelled => args.push("--tunnelled".into()),
        }
        if let Some(n) = self.parallel {
            args.extend(["--parallel".into(), "--parallel-connections".into(), n.to_string()]);
        }
        args.extend(self.extra.iter().cloned());
        args.extend([self.domain.to_string(), self.target_uri.to_string()]);
        if let Some(uri) = self.data_uri {
            args.extend(["--migrateuri".into(), uri.to_string()]);
        }
        args
    }
}

/// How a finished `virsh migrate` ended.
fn outcome(out: Output) -> Result<(), BackendError> {
    if out.success() {
        Ok(())
    } else {
        Err(classify_virsh_failure(&out))
    }
}

impl<'r> Libvirt<'r> {
    /// Starts migrating; the returned handle ends with the job. The deadline
    /// bounds the virsh that waits on it, not the job inside libvirtd: to stop
    /// the job itself, `abort_job`.
    pub fn start_migration(&self, req: &MigrationRequest, deadline: Deadline) -> Result<ChildMigration<'r>, BackendError> {
        let args = req.args();
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let job = self.runner.spawn(&self.virsh_cmd(&argv), deadline)?;
        Ok(ChildMigration::new(job, outcome))
    }

    /// The domain's current job; inactive when there is none.
    pub fn job_stats(&self, name: &str, deadline: Deadline) -> Result<JobStats, BackendError> {
        self.virsh(&["domjobinfo", "--rawstats", name], deadline).map(|o| JobStats::parse(&o.stdout))
    }

    /// Where the domain's outgoing migration stands (see `Phase`).
    pub fn migration_phase(&self, name: &str, deadline: Deadline) -> Result<Phase, BackendError> {
        self.status(name, deadline).map(Phase::of)
    }

    /// The domain's last completed job (on a migration target: the migration),
    /// left in place for whoever asks next (libvirt drops it when read otherwise).
    pub fn completed_job_stats(&self, name: &str, deadline: Deadline) -> Result<JobStats, BackendError> {
        self.virsh(&["domjobinfo", "--completed", "--keep-completed", "--rawstats", name], deadline).map(|o| JobStats::parse(&o.stdout))
    }

    /// Allows the running migration this long a pause at switch-over.
    pub fn set_max_downtime(&self, name: &str, ms: u64, deadline: Deadline) -> Result<(), BackendError> {
        self.virsh(&["migrate-setmaxdowntime", name, &ms.to_string()], deadline).map(drop)
    }

    /// Switches a migration started with `postcopy` over to post-copy.
    pub fn start_postcopy(&self, name: &str, deadline: Deadline) -> Result<(), BackendError> {
        self.virsh(&["migrate-postcopy", name], deadline).map(drop)
    }

    /// Aborts the domain's running job. "No job" is not an error: there is
    /// nothing left to abort.
    pub fn abort_job(&self, name: &str, deadline: Deadline) -> Result<(), BackendError> {
        match self.virsh(&["domjobabort", name], deadline) {
            Err(BackendError::Failed(m)) if m.contains("no job is active") => Ok(()),
            other => other.map(drop),
        }
    }

    pub fn resume(&self, name: &str, deadline: Deadline) -> Result<(), BackendError> {
        self.virsh(&["resume", name], deadline).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::MigrationJob;
    use crate::process::recording::RecordingRunner;
    use std::time::Duration;

    const RUNNING: &str = "Job type: 2\n\noperation: 5\ntime_elapsed: 8019\ndata_processed: 239237637\ndata_remaining: 6324224\ndata_total: 134750208\nmemory_iteration: 4\nmemory_dirty_rate: 7665\nauto_converge_throttle: 30\n";
    const COMPLETED: &str = "Job type: 3\n\noperation: 5\ntime_elapsed: 5711\ntime_elapsed_net: 5709\ndowntime: 97\ndowntime_net: 95\n";

    #[test]
    fn running_and_completed_jobs_parse() {
        let s = JobStats::parse(RUNNING);
        assert!(s.active);
        assert_eq!((s.elapsed_ms, s.data_remaining, s.memory_iteration, s.dirty_pages_per_s, s.throttle_percent), (8019, 6324224, 4, 7665, 30));
        assert_eq!(s.downtime_ms, None);
        assert_eq!(s.percent_done(), 95);
        let c = JobStats::parse(COMPLETED);
        assert!(!c.active);
        assert_eq!((c.downtime_ms, c.total_ms), (Some(97), Some(5711)));
        assert!(!JobStats::parse("Job type: 0\n\n").active);
    }

    #[test]
    fn the_phase_is_read_from_the_state_reason() {
        let of = |words: &str| Phase::of(Some(Status::from_virsh(words)));
        assert_eq!(of("running (booted)"), Phase::PreCopy);
        assert_eq!(of("paused (migrating)"), Phase::PreCopy, "the switch-over of a pre-copy can still be cancelled");
        assert_eq!(of("paused (post-copy)"), Phase::PostCopy);
        assert_eq!(of("paused (post-copy failed)"), Phase::PostCopyFailed);
        assert_eq!(of("shut off (migrated)"), Phase::Left);
        assert_eq!(Phase::of(None), Phase::Left);
    }

    #[test]
    fn a_migration_is_peer_to_peer_and_carries_every_option() {
        let extra = vec!["--compressed".to_string()];
        let req = MigrationRequest {
            domain: "vm",
            target_uri: "qemu+ssh://b/system",
            data_uri: Some("tcp://b-mig:49152"),
            live: true,
            postcopy: true,
            auto_converge: true,
            bandwidth_mib_s: Some(30),
            stream: Stream::Tls,
            parallel: Some(4),
            extra: &extra,
        };
        assert_eq!(
            req.args(),
            [
                "migrate", "--p2p", "--live", "--postcopy", "--auto-converge", "--bandwidth", "30", "--tls", "--parallel", "--parallel-connections", "4",
                "--compressed", "vm", "qemu+ssh://b/system", "--migrateuri", "tcp://b-mig:49152"
            ]
        );
        let tunnelled = MigrationRequest { domain: "vm", target_uri: "qemu+tls://b/system", live: true, stream: Stream::Tunnelled, ..Default::default() };
        assert_eq!(tunnelled.args(), ["migrate", "--p2p", "--live", "--tunnelled", "vm", "qemu+tls://b/system"]);
        let paused = MigrationRequest { domain: "vm", target_uri: "qemu+tcp://b/system", ..Default::default() };
        assert_eq!(paused.args(), ["migrate", "--p2p", "vm", "qemu+tcp://b/system"]);
    }

    #[test]
    fn a_failed_migration_reports_virsh_s_reason() {
        let uri = "qemu+ssh://a/system";
        let runner = RecordingRunner::new()
            .reply_after(2, &["virsh", "--quiet", "--connect", uri, "migrate"], 1, "", "error: operation aborted: job 'migration out' canceled by client\n")
            .reply(&["virsh", "--quiet", "--connect", uri, "domjobabort"], 1, "", "error: Requested operation is not valid: no job is active on the domain\n");
        let libvirt = Libvirt::new(uri, &runner);
        let d = Deadline::after(Duration::from_secs(5));
        let mut m = libvirt.start_migration(&MigrationRequest { domain: "vm", target_uri: "qemu+ssh://b/system", live: true, ..Default::default() }, d).unwrap();
        assert!(m.wait_for(Duration::ZERO).is_none());
        assert!(m.wait_for(Duration::ZERO).is_none());
        assert!(matches!(m.wait_for(Duration::ZERO), Some(Err(BackendError::Failed(e))) if e.contains("canceled by client")));
        assert_eq!(libvirt.abort_job("vm", d), Ok(()));
    }
}
