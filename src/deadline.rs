//! Time is a deadline, not a sum of sleeps.
//!
//! Pacemaker SIGKILLs the agent's whole process group when an operation's
//! timeout (`OCF_RESKEY_CRM_meta_timeout`) runs out. ferry turns that timeout
//! into one `Deadline` when the action starts, keeps a safety margin for its own
//! exit, and hands the deadline to every wait loop and every child process, so
//! it always answers before the kill.
//!
//! A SIGTERM shortens every deadline at once to `TERM_GRACE` from its arrival:
//! whoever sent it wants ferry gone soon, and the same code paths that end an
//! action at its deadline (kill children, abort a migration, report where the
//! guest is) then end it cleanly, instead of a special path that is never
//! tested. No arithmetic here can panic: the numbers come from operators.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long ferry keeps going after a SIGTERM: enough to abort a migration
/// and see the guest resumed, short enough for whoever sent it.
pub const TERM_GRACE: Duration = Duration::from_secs(5);

/// Set by the SIGTERM handler: an atomic store is all a handler may do.
static TERMINATED: AtomicBool = AtomicBool::new(false);
/// When ferry first noticed the SIGTERM (set outside the handler).
static TERMINATED_AT: OnceLock<Instant> = OnceLock::new();

/// Records a SIGTERM. Async-signal-safe: one atomic store.
pub fn note_termination() {
    TERMINATED.store(true, Ordering::SeqCst);
}

extern "C" fn on_sigterm(_: libc::c_int) {
    note_termination();
}

/// Routes SIGTERM to `note_termination` for the rest of the process's life.
/// SA_RESTART keeps reads and waits going; they look at the deadline often.
pub fn catch_termination() {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let action = SigAction::new(SigHandler::Handler(on_sigterm), SaFlags::SA_RESTART, SigSet::empty());
    // SAFETY: the handler does one atomic store, which is async-signal-safe,
    // and replaces no handler that other code relies on.
    let _ = unsafe { sigaction(Signal::SIGTERM, &action) };
}

/// Whether a SIGTERM has arrived.
pub fn terminated() -> bool {
    TERMINATED.load(Ordering::SeqCst)
}

fn termination_end() -> Option<Instant> {
    terminated().then(|| *TERMINATED_AT.get_or_init(Instant::now) + TERM_GRACE)
}

/// `now + d`, or a point far enough away when `d` is absurdly large.
fn instant_after(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d).unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 86_400))
}

#[derive(Clone, Copy, Debug)]
pub struct Deadline {
    end: Instant,
}

/// What ferry keeps back from the operation timeout to reap children, log, and
/// exit: 5 % of the timeout, at least 0.5 s and at most 5 s.
pub fn exit_margin(timeout: Duration) -> Duration {
    (timeout / 20).clamp(Duration::from_millis(500), Duration::from_secs(5))
}

impl Deadline {
    /// The deadline for an operation Pacemaker gave `timeout`.
    pub fn for_operation(timeout: Duration) -> Deadline {
        let budget = timeout.saturating_sub(exit_margin(timeout));
        Deadline { end: instant_after(budget) }
    }

    /// `d` from now.
    pub fn after(d: Duration) -> Deadline {
        Deadline { end: instant_after(d) }
    }

    /// The end in force: the given one, or sooner after a SIGTERM.
    fn end(&self) -> Instant {
        match termination_end() {
            Some(t) => self.end.min(t),
            None => self.end,
        }
    }

    pub fn remaining(&self) -> Duration {
        self.end().saturating_duration_since(Instant::now())
    }

    pub fn expired(&self) -> bool {
        self.remaining().is_zero()
    }

    /// An earlier deadline that leaves `reserve` for what must come after.
    pub fn leaving(&self, reserve: Duration) -> Deadline {
        let end = self.end.checked_sub(reserve).unwrap_or(self.end);
        Deadline { end: end.max(Instant::now()) }
    }

    /// The earlier of this deadline and `d` from now.
    pub fn within(&self, d: Duration) -> Deadline {
        Deadline { end: self.end.min(instant_after(d)) }
    }

    /// Polls `check` every `every` until it yields a value or the deadline passes.
    pub fn wait_until<T>(&self, every: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
        loop {
            if let Some(v) = check() {
                return Some(v);
            }
            let left = self.remaining();
            if left.is_zero() {
                return None;
            }
            std::thread::sleep(every.min(left));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn margin_grows_with_the_timeout_within_bounds() {
        assert_eq!(exit_margin(Duration::from_secs(5)), Duration::from_millis(500));
        assert_eq!(exit_margin(Duration::from_secs(20)), Duration::from_secs(1));
        assert_eq!(exit_margin(Duration::from_secs(600)), Duration::from_secs(5));
    }

    #[test]
    fn an_operation_deadline_ends_before_the_timeout() {
        let d = Deadline::for_operation(Duration::from_secs(20));
        let left = d.remaining();
        assert!(left <= Duration::from_secs(19) && left > Duration::from_millis(18_900), "{left:?}");
    }

    #[test]
    fn absurd_durations_do_not_panic() {
        assert!(!Deadline::for_operation(Duration::MAX).expired());
        assert!(!Deadline::after(Duration::MAX).within(Duration::MAX).expired());
        assert!(Deadline::after(Duration::ZERO).leaving(Duration::MAX).expired());
    }

    #[test]
    fn leaving_a_reserve_moves_the_end_earlier_but_not_into_the_past() {
        let d = Deadline::after(Duration::from_secs(10));
        assert!(d.leaving(Duration::from_secs(4)).remaining() <= Duration::from_secs(6));
        assert!(d.leaving(Duration::from_secs(60)).expired());
    }

    #[test]
    fn wait_until_gives_up_at_the_deadline() {
        let d = Deadline::after(Duration::from_millis(120));
        let started = Instant::now();
        let got: Option<()> = d.wait_until(Duration::from_millis(20), || None);
        assert!(got.is_none());
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(110) && took < Duration::from_millis(400), "{took:?}");
        let mut n = 0;
        assert_eq!(Deadline::after(Duration::from_secs(1)).within(Duration::from_secs(2)).wait_until(Duration::from_millis(1), || { n += 1; (n == 3).then_some(n) }), Some(3));
    }
}
