//! ferry's conversations with libvirtd end the way libvirt's own clients end
//! them, with the close procedure: a client that just hangs up makes
//! libvirtd log "End of file while reading data" at error level, and a
//! cluster's monitors would fill the daemon's log with it (issue 27).

use crate::support::*;
use std::time::Duration;

/// The lab node's libvirtd logs warnings and errors here
/// (tests/lab/two-nodes.sh, log_outputs).
const LIBVIRTD_LOG: &str = "/var/log/libvirt/libvirtd.log";
const HANG_UP: &str = "End of file while reading data";
/// How many bursts may be spoilt by other tests' hang-ups.
const BURSTS: usize = 5;

fn hang_ups_logged() -> usize {
    std::fs::read_to_string(LIBVIRTD_LOG).unwrap_or_else(|e| panic!("{LIBVIRTD_LOG}: {e}")).lines().filter(|l| l.contains(HANG_UP)).count()
}

#[test]
fn monitors_and_probes_leave_no_hang_up_in_libvirtd_s_log() {
    let g = Guest::new("goodbye");
    let absent = Guest::new("goodbye-absent");
    assert_eq!(g.run("start", &[]).code, 0);
    // The log shows a client that hangs up: without that, no count below
    // would mean anything.
    let before = hang_ups_logged();
    drop(std::os::unix::net::UnixStream::connect("/run/libvirt/libvirt-sock").expect("libvirtd's socket"));
    assert!(wait_for(Duration::from_secs(5), || hang_ups_logged() > before), "libvirtd logged no hang-up of a bare client in {LIBVIRTD_LOG}");

    // Other tests of this suite make libvirtd log hang-ups of their own
    // (stall_fs and bounds kill ferry mid-action, and a killed client
    // cannot say goodbye), so a burst during which the count moved proves
    // nothing either way: it is tried again, until one burst passes with
    // nothing logged. Without the close procedure every burst logged a
    // line per action (61 for 60).
    let mut counts = Vec::new();
    for _ in 0..BURSTS {
        let before = hang_ups_logged();
        for _ in 0..20 {
            let monitor = g.run("monitor", &[]);
            assert_eq!(monitor.code, 0, "{}", monitor.stderr);
            let probe = g.probe();
            assert_eq!(probe.code, 0, "{}", probe.stderr);
            // A guest not here: "no such domain", then the search by mark.
            let probe = absent.probe();
            assert_eq!(probe.code, 7, "{}", probe.stderr);
        }
        // libvirtd logs from its event loop: give it a moment.
        std::thread::sleep(Duration::from_secs(1));
        counts.push(hang_ups_logged() - before);
        if counts.last() == Some(&0) {
            break;
        }
    }
    eprintln!("hang-up lines libvirtd logged per burst of 60: {counts:?}");
    assert_eq!(counts.last(), Some(&0), "each burst of 60 ferry monitors and probes saw libvirtd log \"{HANG_UP}\" lines: {counts:?}");
    assert_eq!(g.run("stop", &[]).code, 0);
}
