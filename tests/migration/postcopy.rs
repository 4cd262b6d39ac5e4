//! Post-copy as libvirt reports it, and moves that happened whatever the
//! job said (issue 23): a switch virsh makes by itself is never aborted and
//! counts as a move; stop never destroys a post-copy source whose target
//! still pulls its memory; migrate_from finds the guest by its owner mark
//! when the config cannot be read on the target.
//!
//! The guest rewrites 48 MiB over a 30 MiB/s link, and post-copy's own
//! bandwidth is held at 2 MiB/s: the post-copy phase then lasts about 25 s
//! here, long enough to act in the middle of it.

use std::time::Duration;

use super::support::lab::*;
use super::support::*;
use super::{assert_only_on, SLOW_LINK};

/// migrate_options that have virsh switch to post-copy by itself after
/// the first pass, with a slow post-copy phase.
const SELF_SWITCH: &str = "--postcopy --postcopy-after-precopy --postcopy-bandwidth 2";

fn source_reason(g: &LabGuest) -> String {
    String::from_utf8_lossy(&g.lab.virsh("nodea", &["domstate", "--reason", g.name()]).stdout).trim().to_string()
}

#[test]
fn a_switch_to_post_copy_made_by_libvirt_itself_is_never_aborted_and_is_a_move() {
    let lab = Lab::from_env();
    let g = LabGuest::new(&lab, "pcself", Some(48));
    g.start_on("nodea");
    let params = [SLOW_LINK, ("OCF_RESKEY_migrate_options", SELF_SWITCH), ("OCF_RESKEY_migration_stall", "600")];
    // 20 s: the deadline comes while post-copy still copies.
    let out = g.migrate_to("nodea", "nodeb", 20, &params);
    assert_eq!(out.code, 0, "a guest in post-copy runs on the target for good:\n{}", out.stderr);
    assert!(out.stderr.contains("in post-copy"), "libvirt's switch was not seen:\n{}", out.stderr);
    assert!(!out.stderr.contains("aborting"), "{}", out.stderr);
    // Pacemaker goes on as after any migration: migrate_from waits for the
    // rest of the memory, and stop on the source finds nothing, or waits.
    let into = g.migrate_from("nodea", "nodeb", 90, &params);
    assert_eq!(into.code, 0, "{}", into.stderr);
    let stop = g.run("nodea", "stop", 60, &params);
    assert_eq!(stop.code, 0, "{}", stop.stderr);
    assert_only_on(&g, "nodeb", "after libvirt's own post-copy");
}

#[test]
fn stop_on_the_source_during_post_copy_waits_and_never_destroys_it() {
    let lab = Lab::from_env();
    let g = LabGuest::new(&lab, "pcstop", Some(48));
    g.start_on("nodea");
    // Raw virsh, as a migrate_to that ran out of time leaves the job.
    let mut argv = vec!["virsh", "--connect", "qemu:///system", "migrate", "--p2p", "--live", "--bandwidth", "30"];
    argv.extend(SELF_SWITCH.split(' '));
    argv.extend([g.name(), "qemu+tcp://nodeb/system", "--migrateuri", "tcp://nodeb"]);
    std::thread::scope(|s| {
        let migration = s.spawn(|| lab.on("nodea", &argv));
        assert!(wait_for(Duration::from_secs(60), || source_reason(&g) == "paused (post-copy)"), "no post-copy: {}", source_reason(&g));
        let before = g.last_tick();
        // Too short for the copy to finish: the stop must fail, not destroy.
        let short = g.run("nodea", "stop", 10, &[]);
        assert_eq!(short.code, 1, "{}", short.stderr);
        assert!(short.reason().unwrap_or_default().contains("post-copy"), "{}", short.stderr);
        assert_eq!(source_reason(&g), "paused (post-copy)", "the source must be left to serve the target's memory");
        // Long enough: it waits for libvirt to end the job, and succeeds.
        let long = g.run("nodea", "stop", 90, &[]);
        assert_eq!(long.code, 0, "{}", long.stderr);
        let migrated = migration.join().unwrap();
        assert!(migrated.status.success(), "{}", String::from_utf8_lossy(&migrated.stderr));
        if assert_only_on(&g, "nodeb", "after the stop during post-copy") {
            assert!(g.last_tick() > before, "the counter must continue on the target");
        }
    });
}

#[test]
fn migrate_from_finds_the_guest_by_its_mark_when_the_config_is_unreadable_there() {
    let lab = Lab::from_env();
    let g = LabGuest::new(&lab, "pcnocfg", None);
    g.start_on("nodea");
    let out = g.migrate_to("nodea", "nodeb", super::MIGRATE_TIMEOUT, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let unreadable = [("OCF_RESKEY_config", "/nonexistent/ferry-it-unreadable.xml")];
    let into = g.migrate_from("nodea", "nodeb", 60, &unreadable);
    assert_eq!(into.code, 0, "{}", into.stderr);
    assert!(into.stderr.contains("owner mark"), "{}", into.stderr);
    assert_only_on(&g, "nodeb", "after migrate_from without the config");
}
