//! The guest lifecycle, written once for every hypervisor: how a stop
//! spends its budget, how a start waits for the guest, how a migration's
//! arrival is awaited, and how a save migration hands the guest's memory
//! over shared storage. Each agent brings its backend (a `Hypervisor`) and
//! what is truly its own: parameters, and the hypervisor-specific steps
//! around these (libvirt's owner mark and ladder, Xen's memory balancing).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::backend::{BackendError, GuestState, Hypervisor};
use crate::deadline::Deadline;
use crate::ocf::{log, OcfError};

/// How often to look again while waiting for a guest to come up or go down.
pub const POLL: Duration = Duration::from_millis(250);
/// How long to wait for a requested shutdown before asking again: a guest
/// still booting ignores a power button pressed before its handler is up.
const SHUTDOWN_REPEAT: Duration = Duration::from_secs(5);

/// A backend failure as an OCF error: a missing tool is this node's fault
/// (5); anything else fails the action (1).
pub fn backend_error(what: &str, e: BackendError) -> OcfError {
    match e {
        BackendError::Missing(m) => OcfError::installed(format!("{what}: {m}")),
        other => OcfError::generic(format!("{what}: {other}")),
    }
}

/// How a migration moves the guest; each agent accepts a subset.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MigrationMode {
    /// Pre-copy while the guest runs.
    #[default]
    Live,
    /// Paused for the whole copy: slower for the guest, always converges.
    Pause,
    /// Pre-copy that may switch to post-copy when it stalls.
    PostCopy,
    /// Pull: memory to shared storage on the source, restored on the target.
    Save,
}

impl MigrationMode {
    pub fn name(self) -> &'static str {
        match self {
            MigrationMode::Live => "live",
            MigrationMode::Pause => "pause",
            MigrationMode::PostCopy => "postcopy",
            MigrationMode::Save => "save",
        }
    }

    /// Parses `value` as one of the `accepted` modes; ERR_CONFIGURED otherwise.
    pub fn parse(value: &str, accepted: &[MigrationMode]) -> Result<MigrationMode, OcfError> {
        accepted.iter().copied().find(|m| m.name() == value).ok_or_else(|| {
            let names: Vec<&str> = accepted.iter().map(|m| m.name()).collect();
            OcfError::configured(format!("migration_mode '{value}' is not one of {}", names.join(", ")))
        })
    }
}

/// A stop's time: destroy needs time of its own (libvirt waits for QEMU to
/// die before it returns), so a third of the budget (2-20 s) is kept for
/// it, and the graceful part gets the rest, or less when the operator says.
pub struct StopBudget {
    pub graceful: Deadline,
    pub reserve: Duration,
}

impl StopBudget {
    pub fn new(deadline: Deadline, graceful_limit: Option<Duration>) -> StopBudget {
        let reserve = (deadline.remaining() / 3).clamp(Duration::from_secs(2), Duration::from_secs(20));
        let graceful = deadline.leaving(reserve);
        StopBudget { graceful: graceful_limit.map_or(graceful, |limit| graceful.within(limit)), reserve }
    }
}

/// The hypervisor answered that nothing of the guest is left to stop.
fn is_gone(look: &Result<Option<GuestState>, BackendError>) -> bool {
    match look {
        Ok(None) => true,
        Ok(Some(state)) => state.is_gone(),
        Err(_) => false,
    }
}

/// Waits until the guest is gone or off; true if it is. A look that fails
/// is not "gone".
pub fn wait_gone(hv: &dyn Hypervisor, name: &str, until: Deadline) -> bool {
    until.wait_until(POLL, || is_gone(&hv.guest_state(name, until)).then_some(())).is_some()
}

/// Asks the guest to shut down, again every few seconds, until it is gone
/// or `until` passes. True if it is gone.
pub fn shut_down(hv: &dyn Hypervisor, name: &str, until: Deadline) -> bool {
    while !until.expired() {
        match hv.request_shutdown(name, until) {
            Ok(()) => {}
            Err(BackendError::NoSuchGuest) => return true,
            Err(e) => log::warn(&format!("graceful shutdown of {name} failed: {e}")),
        }
        if wait_gone(hv, name, until.within(SHUTDOWN_REPEAT)) {
            return true;
        }
    }
    false
}

/// Destroys the guest and confirms it is gone; an error says why not.
pub fn destroy(hv: &dyn Hypervisor, name: &str, deadline: Deadline) -> Result<(), OcfError> {
    if let Err(e) = hv.destroy(name, deadline) {
        // The destroy may have failed because the guest went by itself.
        if !is_gone(&hv.guest_state(name, deadline)) {
            return Err(backend_error(&format!("cannot destroy {name}"), e));
        }
    }
    if !wait_gone(hv, name, deadline) {
        return Err(OcfError::generic(format!("{name} is still present after destroy")));
    }
    Ok(())
}

/// Waits until the guest runs and `ready` agrees (monitor scripts pass).
pub fn wait_started(hv: &dyn Hypervisor, name: &str, deadline: Deadline, mut ready: impl FnMut() -> bool) -> Result<(), OcfError> {
    let up = deadline.wait_until(POLL, || match hv.guest_state(name, deadline) {
        Ok(Some(GuestState::Running | GuestState::Paused { .. })) => ready().then_some(()),
        _ => None,
    });
    up.ok_or_else(|| OcfError::generic(format!("{name} did not reach a running state with passing monitor scripts in time")))
}

/// migrate_from of a push migration: waits, within its own timeout, for the
/// guest to run here with the hand-over finished. Pacemaker runs it only
/// after migrate_to succeeded, so the guest is here or about to be; if it
/// is not, this says so instead of hanging.
pub fn wait_arrival(hv: &dyn Hypervisor, name: &str, source: &str, deadline: Deadline) -> Result<(), OcfError> {
    let mut last: Result<Option<GuestState>, BackendError> = Ok(None);
    // The last look gets a second of its own to be answered.
    let arrived = deadline.leaving(Duration::from_secs(1)).wait_until(POLL, || {
        last = hv.guest_state(name, deadline);
        matches!(&last, Ok(Some(s)) if s.has_arrived()).then_some(())
    });
    match (arrived, last) {
        (Some(()), _) => Ok(()),
        (None, Ok(None)) => Err(OcfError::generic(format!("{name} never arrived from {source}"))),
        (None, Ok(Some(GuestState::Arriving | GuestState::RunningMidHandover | GuestState::Paused { handover: true }))) => {
            Err(OcfError::generic(format!("{name} is still mid-hand-over from {source}")))
        }
        (None, Ok(Some(state))) => Err(OcfError::generic(format!("{name} arrived from {source} but is {state:?}, not running"))),
        (None, Err(e)) => Err(backend_error(&format!("cannot see whether {name} arrived"), e)),
    }
}

/// Makes a finished image visible under its final name on shared storage:
/// flush it to the server, rename it, flush the directory. Another node
/// then reads the whole image or none; a cached or network file system
/// would otherwise let it see the new name before all of the data.
pub fn publish_image(partial: &Path, image: &Path) -> std::io::Result<()> {
    // Opened for writing: some file systems (9p, NFS) flush only a writer's data.
    std::fs::OpenOptions::new().write(true).open(partial)?.sync_all()?;
    std::fs::rename(partial, image)?;
    if let Some(dir) = image.parent() {
        // Not every file system can sync a directory; the rename stands anyway.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// Save migration, first half: the guest's memory to `image` on shared
/// storage, written under a temporary name and renamed when complete.
pub fn save_for_migration(hv: &dyn Hypervisor, name: &str, image: &Path, deadline: Deadline) -> Result<(), OcfError> {
    let dir = image.parent().unwrap_or(Path::new("/"));
    if !dir.is_dir() {
        return Err(OcfError::installed(format!("migration_state_dir {} does not exist on this node", dir.display())));
    }
    let partial = image.with_extension("migrating.part");
    let _ = std::fs::remove_file(&partial);
    let started = Instant::now();
    if let Err(e) = hv.save(name, &partial, deadline) {
        let _ = std::fs::remove_file(&partial);
        let here = match hv.guest_state(name, deadline) {
            Ok(Some(GuestState::Off)) | Ok(None) => "it is no longer running here".to_string(),
            Ok(Some(state)) => format!("it is {state:?} here"),
            Err(e) => format!("where it is cannot be told ({e})"),
        };
        return Err(OcfError::generic(format!("cannot save {name} to {}: {e}; {here}", partial.display())));
    }
    publish_image(&partial, image)
        .map_err(|e| OcfError::generic(format!("{name} saved, but {} cannot be published as {}: {e}", partial.display(), image.display())))?;
    log::info(&format!("saved {name} to {} in {:.2?} for the target to restore", image.display(), started.elapsed()));
    Ok(())
}

/// `image` with `suffix` added to its file name: `vm.migrating.restoring`.
fn beside(image: &Path, suffix: &str) -> PathBuf {
    let mut name = image.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

/// Takes a saved image out of every start's reach before it is restored:
/// renamed to `<image>.restoring`, a name no start restores, and the rename
/// flushed to the directory. Restoring first and deleting after left the
/// image for the next start whenever the delete failed (a read-only or
/// stale mount, an immutable file), and that start, after any stop, crash
/// or fencing, restored stale memory over newer disks. The rename is
/// atomic, so of two takers one wins. An image that cannot be taken is not
/// restored: the error says why, and the image stays where it was.
pub fn take_image(image: &Path) -> Result<PathBuf, OcfError> {
    let taken = beside(image, ".restoring");
    let refused = |e: std::io::Error| OcfError::generic(format!("cannot set {} aside before restoring it, so it was not restored: {e}", image.display()));
    std::fs::rename(image, &taken).map_err(refused)?;
    if let Some(dir) = image.parent() {
        // A rename not yet on disk can come back after a crash, and the
        // image with it. EINVAL: this file system cannot sync a directory.
        match std::fs::File::open(dir).and_then(|d| d.sync_all()) {
            Err(e) if e.raw_os_error() != Some(libc::EINVAL) => {
                return Err(OcfError::generic(format!("cannot flush the renaming of {} to {}, so it was not restored: {e}", image.display(), taken.display())));
            }
            _ => {}
        }
    }
    Ok(taken)
}

/// Restores the guest from `taken`, an image `take_image` took from
/// `image`, and deletes it. A failure to delete is a warning: no start
/// restores that name. A failed restore is kept as `<image>.failed` for the
/// operator, never put back: whether the hypervisor had begun (a restore
/// that timed out may still finish) cannot be told, and restoring it again
/// later could run stale memory over newer disks.
pub fn restore_taken(hv: &dyn Hypervisor, name: &str, image: &Path, taken: &Path, deadline: Deadline) -> Result<(), OcfError> {
    let started = Instant::now();
    if let Err(e) = hv.restore(taken, deadline) {
        let failed = beside(image, ".failed");
        let kept = match std::fs::rename(taken, &failed) {
            Ok(()) => failed,
            Err(_) => taken.to_path_buf(),
        };
        return Err(backend_error(&format!("cannot restore {name} from {} (kept as {})", image.display(), kept.display()), e));
    }
    if let Err(e) = std::fs::remove_file(taken) {
        log::warn(&format!("restored {name}, but cannot remove {}: {e}; no start restores it under that name", taken.display()));
    }
    log::info(&format!("restored {name} from {} in {:.2?}", image.display(), started.elapsed()));
    Ok(())
}

/// Restores the guest from `image`, taken first (see `take_image`).
pub fn restore_image(hv: &dyn Hypervisor, name: &str, image: &Path, deadline: Deadline) -> Result<(), OcfError> {
    let taken = take_image(image)?;
    restore_taken(hv, name, image, &taken, deadline)
}

/// Save migration, second half: restore what the source saved. A retried
/// migrate_from may find the guest already restored.
pub fn restore_migrated(hv: &dyn Hypervisor, name: &str, image: &Path, source: &str, deadline: Deadline) -> Result<(), OcfError> {
    if image.exists() {
        return restore_image(hv, name, image, deadline);
    }
    if let Ok(Some(GuestState::Running)) = hv.guest_state(name, deadline) {
        log::info(&format!("{name} already runs here"));
        return Ok(());
    }
    let failed = beside(image, ".failed");
    if failed.exists() {
        return Err(OcfError::generic(format!("{name} does not run here, and {} is what a failed restore left", failed.display())));
    }
    Err(OcfError::generic(format!("no saved image of {name} at {}: {source} did not save it", image.display())))
}

#[cfg(test)]
mod tests {
    //! The shared policy against a recording hypervisor: scripted states,
    //! every order written down.
    use super::*;
    use std::cell::RefCell;

    #[derive(Default)]
    struct Recording {
        /// Answers to guest_state, in order; the last one repeats.
        states: RefCell<Vec<Result<Option<GuestState>, BackendError>>>,
        shutdown: Option<BackendError>,
        destroy: Option<BackendError>,
        save: Option<BackendError>,
        restore: Option<BackendError>,
        /// Runs inside restore, with the path it was given.
        on_restore: Option<fn(&Path)>,
        orders: RefCell<Vec<String>>,
    }

    impl Recording {
        fn answering(states: Vec<Result<Option<GuestState>, BackendError>>) -> Recording {
            Recording { states: RefCell::new(states), ..Default::default() }
        }
        fn order(&self, what: String, fails: &Option<BackendError>) -> Result<(), BackendError> {
            self.orders.borrow_mut().push(what);
            fails.clone().map_or(Ok(()), Err)
        }
        fn orders(&self) -> Vec<String> {
            self.orders.borrow().clone()
        }
    }

    impl Hypervisor for Recording {
        fn guest_state(&self, _: &str, _: Deadline) -> Result<Option<GuestState>, BackendError> {
            let mut states = self.states.borrow_mut();
            if states.len() > 1 {
                states.remove(0)
            } else {
                states[0].clone()
            }
        }
        fn request_shutdown(&self, name: &str, _: Deadline) -> Result<(), BackendError> {
            self.order(format!("shutdown {name}"), &self.shutdown)
        }
        fn destroy(&self, name: &str, _: Deadline) -> Result<(), BackendError> {
            self.order(format!("destroy {name}"), &self.destroy)
        }
        fn save(&self, name: &str, image: &Path, _: Deadline) -> Result<(), BackendError> {
            if self.save.is_none() {
                std::fs::write(image, b"memory").unwrap();
            }
            self.order(format!("save {name}"), &self.save)
        }
        fn restore(&self, image: &Path, _: Deadline) -> Result<(), BackendError> {
            if let Some(f) = self.on_restore {
                f(image);
            }
            self.order(format!("restore {}", image.display()), &self.restore)
        }
    }

    fn soon() -> Deadline {
        Deadline::after(Duration::from_millis(1200))
    }

    const RUNNING: Result<Option<GuestState>, BackendError> = Ok(Some(GuestState::Running));

    #[test]
    fn a_stop_budget_keeps_a_third_for_destroy_within_bounds() {
        let b = StopBudget::new(Deadline::after(Duration::from_secs(90)), None);
        assert_eq!(b.reserve, Duration::from_secs(20));
        let b = StopBudget::new(Deadline::after(Duration::from_secs(3)), None);
        assert_eq!(b.reserve, Duration::from_secs(2));
        assert!(b.graceful.remaining() <= Duration::from_secs(1));
        let b = StopBudget::new(Deadline::after(Duration::from_secs(60)), Some(Duration::from_secs(5)));
        assert!(b.graceful.remaining() <= Duration::from_secs(5), "the operator's limit wins");
    }

    #[test]
    fn a_guest_that_goes_after_a_shutdown_request_is_gone() {
        let hv = Recording::answering(vec![RUNNING, Ok(Some(GuestState::Off))]);
        assert!(shut_down(&hv, "vm", soon()));
        assert_eq!(hv.orders(), ["shutdown vm"]);
    }

    #[test]
    fn a_look_that_fails_is_never_taken_for_gone() {
        let hv = Recording::answering(vec![Err(BackendError::TimedOut("slow".into()))]);
        assert!(!wait_gone(&hv, "vm", Deadline::after(Duration::from_millis(300))));
        let e = destroy(&hv, "vm", Deadline::after(Duration::from_millis(300))).unwrap_err();
        assert!(e.reason.contains("still present after destroy"), "{}", e.reason);
    }

    #[test]
    fn a_destroy_that_fails_while_the_guest_runs_says_why() {
        let hv = Recording { destroy: Some(BackendError::Failed("device busy".into())), ..Recording::answering(vec![RUNNING]) };
        let e = destroy(&hv, "vm", soon()).unwrap_err();
        assert!(e.reason.contains("cannot destroy vm: device busy"), "{}", e.reason);
        let missing = Recording { destroy: Some(BackendError::Missing("no xl".into())), ..Recording::answering(vec![RUNNING]) };
        assert_eq!(destroy(&missing, "vm", soon()).unwrap_err().code, crate::ocf::OcfCode::ErrInstalled);
    }

    #[test]
    fn a_destroy_that_fails_because_the_guest_went_is_a_success() {
        let hv = Recording { destroy: Some(BackendError::Failed("domain is not running".into())), ..Recording::answering(vec![Ok(None)]) };
        assert_eq!(destroy(&hv, "vm", soon()), Ok(()));
    }

    #[test]
    fn arrival_waits_for_the_hand_over_to_finish_and_says_what_it_saw() {
        let hv = Recording::answering(vec![Ok(None), Ok(Some(GuestState::Paused { handover: true })), RUNNING]);
        assert_eq!(wait_arrival(&hv, "vm", "nodea", Deadline::after(Duration::from_secs(3))), Ok(()));
        let never = Recording::answering(vec![Ok(None)]);
        assert!(wait_arrival(&never, "vm", "nodea", Deadline::after(Duration::from_millis(1300))).unwrap_err().reason.contains("never arrived from nodea"));
        let stuck = Recording::answering(vec![Ok(Some(GuestState::Arriving))]);
        assert!(wait_arrival(&stuck, "vm", "nodea", Deadline::after(Duration::from_millis(1300))).unwrap_err().reason.contains("mid-hand-over"));
    }

    #[test]
    fn a_save_migration_publishes_whole_images_and_restores_them_once() {
        let dir = std::env::temp_dir().join(format!("ferry-lifecycle-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let image = dir.join("vm.migrating");
        let hv = Recording::answering(vec![RUNNING]);
        save_for_migration(&hv, "vm", &image, soon()).unwrap();
        assert!(image.exists() && !dir.join("vm.migrating.part").exists());
        restore_migrated(&hv, "vm", &image, "nodea", soon()).unwrap();
        assert!(!image.exists(), "a restored image is removed");
        assert!(restore_migrated(&hv, "vm", &image, "nodea", soon()).is_ok(), "a retry finds the guest running");
        let failing = Recording { save: Some(BackendError::Failed("disk full".into())), ..Recording::answering(vec![RUNNING]) };
        let e = save_for_migration(&failing, "vm", &image, soon()).unwrap_err();
        assert!(e.reason.contains("disk full") && e.reason.contains("Running here"), "{}", e.reason);
        assert!(!dir.join("vm.migrating.part").exists(), "no partial image is left");
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ferry-restore-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn an_image_is_out_of_every_start_s_reach_before_it_is_restored() {
        let dir = scratch("order");
        let image = dir.join("vm.state");
        std::fs::write(&image, b"memory").unwrap();
        // What a second start would find while this restore runs.
        let hv = Recording {
            on_restore: Some(|taken| {
                let image = taken.with_extension("state");
                assert!(!image.exists(), "restoring {} while {} still waits for a start", taken.display(), image.display());
                assert!(taken.exists() && taken.to_string_lossy().ends_with("vm.state.restoring"), "{}", taken.display());
            }),
            ..Recording::answering(vec![RUNNING])
        };
        restore_image(&hv, "vm", &image, soon()).unwrap();
        assert_eq!(hv.orders(), [format!("restore {}.restoring", image.display())]);
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "nothing is left once restored");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_image_that_cannot_be_set_aside_is_not_restored() {
        let dir = scratch("stuck");
        let image = dir.join("vm.migrating");
        std::fs::write(&image, b"memory").unwrap();
        // The rename fails as on a read-only mount: the new name is a
        // directory that is not empty.
        std::fs::create_dir_all(dir.join("vm.migrating.restoring/x")).unwrap();
        let hv = Recording::answering(vec![Ok(None)]);
        let e = restore_migrated(&hv, "vm", &image, "nodea", soon()).unwrap_err();
        assert!(e.reason.starts_with(&format!("cannot set {} aside before restoring it, so it was not restored: ", image.display())), "{}", e.reason);
        assert!(hv.orders().is_empty(), "nothing restored: {:?}", hv.orders());
        assert!(image.exists(), "the image stays for a start that can take it");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_restored_image_that_cannot_be_deleted_is_only_a_warning() {
        let dir = scratch("undeletable");
        let image = dir.join("vm.migrating");
        std::fs::write(&image, b"memory").unwrap();
        let hv = Recording {
            // The restored image turns into something remove_file refuses.
            on_restore: Some(|taken| {
                std::fs::remove_file(taken).unwrap();
                std::fs::create_dir_all(taken.join("x")).unwrap();
            }),
            ..Recording::answering(vec![RUNNING])
        };
        assert_eq!(restore_migrated(&hv, "vm", &image, "nodea", soon()), Ok(()), "the guest runs: migrate_from succeeded");
        assert!(!image.exists(), "no start can restore it again");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_failed_restore_is_kept_aside_and_never_restored_again() {
        let dir = scratch("failed");
        let image = dir.join("vm.migrating");
        std::fs::write(&image, b"memory").unwrap();
        let hv = Recording { restore: Some(BackendError::TimedOut("virsh restore".into())), ..Recording::answering(vec![Ok(None)]) };
        let e = restore_migrated(&hv, "vm", &image, "nodea", soon()).unwrap_err();
        assert!(e.reason.contains(&format!("kept as {}.failed", image.display())), "{}", e.reason);
        assert!(!image.exists() && dir.join("vm.migrating.failed").exists());
        let again = restore_migrated(&hv, "vm", &image, "nodea", soon()).unwrap_err();
        assert!(again.reason.contains("what a failed restore left"), "{}", again.reason);
        assert_eq!(hv.orders().len(), 1, "restored once: {:?}", hv.orders());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn migration_modes_are_checked_against_what_the_agent_accepts() {
        use MigrationMode::*;
        assert_eq!(MigrationMode::parse("save", &[Live, Save]), Ok(Save));
        let e = MigrationMode::parse("postcopy", &[Live, Save]).unwrap_err();
        assert_eq!(e.reason, "migration_mode 'postcopy' is not one of live, save");
    }
}
