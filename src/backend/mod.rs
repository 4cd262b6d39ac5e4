//! Hypervisor backends. Each knows its hypervisor's tools and protocols and
//! nothing of OCF: they answer questions ("what state is guest X in?") and
//! carry out orders ("shut X down") within a deadline, and report failures
//! as a `BackendError`. Agents translate those into OCF results.
//!
//! `Hypervisor` is what the guest lifecycle (agents/lifecycle.rs) needs of
//! any backend: it is written once against this trait, and libvirt and xl
//! implement it. What only one hypervisor has (libvirt's owner mark and
//! migration ladder, xl's memory balancing) stays in that backend's own API.

pub mod libvirt;
pub mod xl;

use std::fmt;
use std::path::Path;
use std::time::Duration;

use crate::deadline::Deadline;
use crate::process::{Job, Output, RunError};

/// Why a backend could not answer or act.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackendError {
    /// The hypervisor's daemon could not be reached: nothing is known.
    Unreachable(String),
    /// The hypervisor answered: it has no such guest.
    NoSuchGuest,
    /// The hypervisor (or its tool) refused or failed the request.
    Failed(String),
    /// A tool this needs is not installed.
    Missing(String),
    TimedOut(String),
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendError::NoSuchGuest => f.write_str("no such domain"),
            BackendError::Unreachable(m) | BackendError::Failed(m) | BackendError::Missing(m) | BackendError::TimedOut(m) => f.write_str(m),
        }
    }
}

impl From<RunError> for BackendError {
    fn from(e: RunError) -> Self {
        match e {
            RunError::Spawn { .. } => BackendError::Missing(e.to_string()),
            RunError::TimedOut { .. } => BackendError::TimedOut(e.to_string()),
        }
    }
}

/// A guest's state, as much as the shared lifecycle needs to decide.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GuestState {
    /// Running (or idle): it serves.
    Running,
    /// Running on a migration target while post-copy still pulls its memory.
    RunningMidHandover,
    /// Paused; `handover` when a migration paused it.
    Paused { handover: bool },
    ShuttingDown,
    /// Known to the hypervisor, but not running (libvirt's "shut off").
    Off,
    Crashed,
    /// The receiving half of a migration that has not finished (xl).
    Arriving,
    /// Being torn down by the hypervisor after a destroy (xl's `d`): there
    /// is nothing left to stop, though it still holds memory for a moment.
    Dying,
    /// A state the lifecycle has no rule for; the words say which.
    Other(String),
}

impl GuestState {
    /// Running here and finished arriving: what migrate_from waits for.
    pub fn has_arrived(&self) -> bool {
        matches!(self, GuestState::Running)
    }

    /// Nothing of it is left to stop: off, or already being torn down.
    pub fn is_gone(&self) -> bool {
        matches!(self, GuestState::Off | GuestState::Dying)
    }
}

/// A migration in flight.
pub trait MigrationJob {
    /// Waits up to `wait` for the migration to end. `None`: still going.
    fn wait_for(&mut self, wait: Duration) -> Option<Result<(), BackendError>>;
}

/// A migration run by one child process (`virsh migrate`, `xl migrate`):
/// it ends when the child does, with the child's words on failure.
pub struct ChildMigration<'a> {
    job: Box<dyn Job + 'a>,
    judge: fn(Output) -> Result<(), BackendError>,
    account: String,
}

impl<'a> ChildMigration<'a> {
    pub fn new(job: Box<dyn Job + 'a>, judge: fn(Output) -> Result<(), BackendError>) -> ChildMigration<'a> {
        ChildMigration { job, judge, account: String::new() }
    }

    /// What the finished child said on stderr, success or not: xl tells
    /// there how the hand-over went, which an operator reading the log of
    /// a good migration wants as much as that of a failed one.
    pub fn account(&self) -> &str {
        &self.account
    }
}

impl MigrationJob for ChildMigration<'_> {
    fn wait_for(&mut self, wait: Duration) -> Option<Result<(), BackendError>> {
        let finished = self.job.wait_for(wait)?;
        Some(finished.map_err(BackendError::from).and_then(|out| {
            self.account = out.stderr.clone();
            (self.judge)(out)
        }))
    }
}

/// What the guest lifecycle needs of a hypervisor. Every call is bounded
/// by its deadline.
pub trait Hypervisor {
    /// The guest's state here; `Ok(None)` only when the hypervisor answered
    /// that it has no such guest. Anything it could not answer is an error,
    /// never `None`.
    fn guest_state(&self, name: &str, deadline: Deadline) -> Result<Option<GuestState>, BackendError>;
    /// Asks the guest to shut down, in whatever way this backend was told.
    fn request_shutdown(&self, name: &str, deadline: Deadline) -> Result<(), BackendError>;
    /// Ends the guest at once (and any half of a failed migration of it).
    /// A guest already gone is what destroy asks for, not a failure.
    fn destroy(&self, name: &str, deadline: Deadline) -> Result<(), BackendError>;
    /// Saves the running guest's memory to `image` and stops it.
    fn save(&self, name: &str, image: &Path, deadline: Deadline) -> Result<(), BackendError>;
    /// Starts a guest from a saved image.
    fn restore(&self, image: &Path, deadline: Deadline) -> Result<(), BackendError>;
}
