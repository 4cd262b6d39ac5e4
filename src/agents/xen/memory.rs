//! allow_mem_management: the host's memory, less dom0's reserve, shared
//! evenly between the running guests. The operator's xmfile is never
//! rewritten (heartbeat:Xen runs `sed -i` on it): running guests are
//! resized with `xl mem-set`, and a starting one gets its share as a
//! command-line override.

use crate::backend::xl::{Xl, XlDomain};
use crate::deadline::Deadline;
use crate::ocf::log;

/// Resizes every running guest to an equal share, counting one more that is
/// `starting`; returns the share in MiB. Failures are warnings: a guest
/// that keeps its size still runs.
pub fn balance(xl: &Xl, reserved_dom0_mib: u64, starting: bool, deadline: Deadline) -> Option<u64> {
    let total = xl.total_memory_mib(deadline).map_err(|e| log::warn(&format!("allow_mem_management: {e}"))).ok()?;
    let guests: Vec<XlDomain> = xl.list(deadline).map_err(|e| log::warn(&format!("allow_mem_management: {e}"))).ok()?.domains.into_iter().filter(|d| d.id != 0).collect();
    let count = guests.len() as u64 + u64::from(starting);
    if count == 0 {
        return None;
    }
    let available = total.saturating_sub(reserved_dom0_mib);
    let share = available / count;
    for guest in &guests {
        if let Err(e) = xl.mem_set(&guest.name, share, deadline) {
            log::warn(&format!("allow_mem_management: cannot resize {} to {share} MiB: {e}", guest.name));
        }
    }
    log::info(&format!("allow_mem_management: {count} guests share {available} MiB, {share} MiB each"));
    Some(share)
}
