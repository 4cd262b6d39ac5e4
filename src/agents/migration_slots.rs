//! Host-wide slots for outgoing migrations.
//!
//! When a node is drained, Pacemaker starts every migrate_to it may at once
//! (its node-action-limit, twice the cores by default) and knows nothing of
//! the link they share. Each migration then gets a fraction of the link; a
//! guest that dirties memory faster than its fraction cannot converge, so
//! the ladder climbs, throttles it, and may abort, and Pacemaker falls back
//! to stop and start. A few migrations at a time, each at full speed, can
//! converge where many at a fraction cannot. Off by default (0): in issue
//! 12's bench, with guests that never outran their share, 2 slots drained
//! slower than Pacemaker's own pacing, and at short timeouts the wait ate
//! the same budget as the migration (README, "Draining a node").
//!
//! A slot is an exclusive flock on `DIR/slot-N`, N < `migration_slots`. The
//! kernel drops the lock when the process ends, however it ends, so a killed
//! agent frees its slot at once and nothing outlives the node's runtime
//! (DIR is under /run). The file says who holds it, for operators.
//!
//! The slot guards ferry's migrate_to, not libvirt's job. A migrate_to
//! that ends normally has aborted or finished the job first; one killed
//! before it could (Pacemaker's SIGKILL at its timeout, a crash) frees the
//! slot while libvirtd's peer-to-peer job runs on, and one more migration
//! than the cap may share the link until the job ends or Pacemaker's
//! recovery (stop on the source) ends it. That is left so: the cap is about
//! bandwidth, not safety (the guest still runs on one node), and nothing
//! that could hold the lock for the job is clean. Giving the descriptor to
//! a child (virsh) does not help, as Pacemaker kills ferry's whole process
//! group; a holder outside it would outlive the action; libvirtd cannot
//! take a descriptor, and QEMU can only through monitor commands that
//! taint the domain and keep it for as long as a failed migration's guest
//! runs. A slot checked against libvirt's job list would need a libvirt
//! call per slot per retry and a rule for libvirtd not answering.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::ocf::Deadline;

/// Where the slots live: tmpfs, so they vanish with the node's runtime.
pub const SLOT_DIR: &str = "/run/ferry/migration-slots";

/// How often a waiting migrate_to tries the slots again.
const RETRY: Duration = Duration::from_millis(200);

/// One held slot; dropping it (or the process ending) frees it.
#[derive(Debug)]
pub struct Slot {
    _file: File,
}

#[derive(Debug, PartialEq)]
pub enum Taken {
    /// A slot is ours; `waited` is how long that took.
    Held { index: u32, waited: Duration },
    /// Every slot stayed busy until the wait's deadline.
    Busy { waited: Duration },
    /// The slot directory cannot be used (not root, /run read-only): the
    /// migration goes ahead uncoordinated rather than not at all.
    Unusable(String),
}

/// The file that keeps how long this node's last completed migration took.
const LAST: &str = "last-migration-ms";

/// How long the last migration this node completed took, if one did since
/// boot: a waiting migrate_to keeps that much of its time for its own.
pub fn last_duration(dir: &Path) -> Option<Duration> {
    let text = std::fs::read_to_string(dir.join(LAST)).ok()?;
    text.trim().parse().ok().map(Duration::from_millis)
}

/// Records a completed migration's duration, for the next waiter. Written
/// whole under another name and renamed, so a reader never sees half.
pub fn record_duration(dir: &Path, took: Duration) {
    let temporary = dir.join(format!("{LAST}.{}", std::process::id()));
    if std::fs::write(&temporary, format!("{}\n", took.as_millis())).is_ok() && std::fs::rename(&temporary, dir.join(LAST)).is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
}

/// Tries the `count` slots in `dir` until one is free or `until` passes.
/// `waiting` is told how long it has waited, each round it finds none free.
pub fn take(dir: &Path, count: u32, owner: &str, until: Deadline, mut waiting: impl FnMut(Duration)) -> (Option<Slot>, Taken) {
    let started = Instant::now();
    if let Err(e) = std::fs::create_dir_all(dir) {
        return (None, Taken::Unusable(format!("cannot create {}: {e}", dir.display())));
    }
    loop {
        for index in 0..count {
            let path = dir.join(format!("slot-{index}"));
            let mut file = match OpenOptions::new().create(true).truncate(false).read(true).write(true).open(&path) {
                Ok(f) => f,
                Err(e) => return (None, Taken::Unusable(format!("cannot open {}: {e}", path.display()))),
            };
            // flock(2) underneath, as the resource lock (ocf/lock.rs).
            if file.try_lock().is_ok() {
                // Who holds it, for an operator reading the directory; a
                // failure to write this changes nothing about the lock.
                let _ = file.set_len(0).and_then(|_| writeln!(file, "{owner} pid {}", std::process::id()));
                let waited = started.elapsed();
                return (Some(Slot { _file: file }), Taken::Held { index, waited });
            }
        }
        let waited = started.elapsed();
        if until.remaining() < RETRY {
            return (None, Taken::Busy { waited });
        }
        waiting(waited);
        std::thread::sleep(RETRY.min(until.remaining()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::path::PathBuf;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ferry-slots-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn slots_are_shared_out_until_none_is_left_and_a_freed_one_is_taken_again() {
        let d = dir("share");
        let soon = || Deadline::after(Duration::from_millis(500));
        let (a, ta) = take(&d, 2, "vm1", soon(), |_| {});
        let (b, tb) = take(&d, 2, "vm2", soon(), |_| {});
        assert!(matches!(ta, Taken::Held { index: 0, .. }) && matches!(tb, Taken::Held { index: 1, .. }), "{ta:?} {tb:?}");
        assert!(std::fs::read_to_string(d.join("slot-0")).unwrap().starts_with("vm1 pid "));
        let mut rounds = 0;
        let (none, busy) = take(&d, 2, "vm3", soon(), |_| rounds += 1);
        assert!(none.is_none() && matches!(busy, Taken::Busy { waited } if waited >= Duration::from_millis(300)), "{busy:?}");
        assert!(rounds >= 1, "the waiter is told it waits");
        drop(b);
        let (c, tc) = take(&d, 2, "vm3", soon(), |_| {});
        assert!(c.is_some() && matches!(tc, Taken::Held { index: 1, .. }), "{tc:?}");
        drop((a, c));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_waiter_gets_the_slot_the_moment_its_holder_lets_go() {
        let d = dir("handover");
        let (held, _) = take(&d, 1, "vm1", Deadline::after(Duration::from_secs(1)), |_| {});
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(400));
            drop(held);
        });
        let (slot, taken) = take(&d, 1, "vm2", Deadline::after(Duration::from_secs(5)), |_| {});
        releaser.join().unwrap();
        assert!(slot.is_some());
        assert!(matches!(taken, Taken::Held { index: 0, waited } if waited >= Duration::from_millis(300) && waited < Duration::from_secs(2)), "{taken:?}");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn the_last_migration_s_duration_is_kept_for_the_next_waiter() {
        let d = dir("last");
        std::fs::create_dir_all(&d).unwrap();
        assert_eq!(last_duration(&d), None, "nothing migrated since boot");
        record_duration(&d, Duration::from_millis(26_400));
        record_duration(&d, Duration::from_millis(13_200));
        assert_eq!(last_duration(&d), Some(Duration::from_millis(13_200)), "the latest wins");
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 1, "no temporary file is left");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_directory_that_cannot_be_made_is_reported_not_fatal() {
        let (slot, taken) = take(Path::new("/proc/ferry-no-such/slots"), 2, "vm1", Deadline::after(Duration::from_secs(1)), |_| {});
        assert!(slot.is_none() && matches!(taken, Taken::Unusable(_)), "{taken:?}");
    }
}
