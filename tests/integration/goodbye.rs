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
    let logged = hang_ups_logged() - before;
    assert_eq!(logged, 0, "60 ferry monitors and probes made libvirtd log {logged} \"{HANG_UP}\" lines");
    assert_eq!(g.run("stop", &[]).code, 0);
}
