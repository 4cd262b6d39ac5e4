//! Time is a deadline, not a sum of sleeps.
//!
//! Pacemaker SIGKILLs the agent's whole process group when an operation's
//! timeout (`OCF_RESKEY_CRM_meta_timeout`) runs out. ferry turns that timeout
//! into one `Deadline` when the action starts, keeps a safety margin for its own
//! exit, and hands the deadline to every wait loop and every child process, so
//! it always answers before the kill.

use std::time::{Duration, Instant};

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
        Deadline { end: Instant::now() + budget }
    }

    #[cfg(test)]
    pub fn after(d: Duration) -> Deadline {
        Deadline { end: Instant::now() + d }
    }

    pub fn remaining(&self) -> Duration {
        self.end.saturating_duration_since(Instant::now())
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
        Deadline { end: self.end.min(Instant::now() + d) }
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
