//! The index of marks (issue 26): a search by mark asks libvirt only about
//! domains the node's index does not know yet. What it may never do is keep
//! a guest from being found. Each test makes the index wrong the way it can
//! go wrong on a node, and asserts the answer Pacemaker would act on.

use crate::support::*;

/// The index files of this node's ferry (libvirt's run dir is private to
/// the test's libvirtd, and ferry keeps its index beside it).
fn index_files() -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir("/run/ferry") else { return Vec::new() };
    entries.flatten().map(|e| e.path()).filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("libvirt-marks-"))).collect()
}

/// A probe of a resource whose guest runs nowhere: it searches every
/// running domain's mark, and records what it read.
fn search_by_mark(tag: &str) {
    let other = Guest::new(tag);
    let probe = other.probe();
    assert_eq!(probe.code, 7, "{}", probe.stderr);
}

/// A guest heartbeat started carries no mark; a search by another
/// resource records it as unmarked. ferry's probe then adopts (marks) it.
/// With its config gone, the guest must still be found by its mark: an
/// index that still said "no mark" would make the probe answer 7 while it
/// runs, and Pacemaker would start a second copy.
#[test]
fn an_adopted_guest_is_found_by_its_mark_though_the_index_had_seen_it_unmarked() {
    let g = Guest::new("idx-adopt");
    let heartbeat = std::path::Path::new("/usr/lib/ocf/resource.d/heartbeat/VirtualDomain");
    let start = run_program(heartbeat, &["start"], &g.env(&[("OCF_RESKEY_CRM_meta_timeout", "60000")]));
    assert_eq!(start.code, 0, "heartbeat:VirtualDomain start: {}", start.stderr);
    let _stop = Defer(|| drop(virsh(&["destroy", &g.name])));

    search_by_mark("idx-adopt-other");
    // The index is this libvirtd's: named by its PID (and start time).
    let pid = std::fs::read_to_string("/run/libvirtd.pid").expect("the test's libvirtd pid file");
    let index = index_files();
    assert!(index.iter().any(|p| p.to_string_lossy().contains(&format!("libvirt-marks-{}-", pid.trim()))), "no index of libvirtd {}: {index:?}", pid.trim());
    let text: String = index.iter().map(|p| std::fs::read_to_string(p).unwrap_or_default()).collect();
    assert!(text.lines().any(|l| l.ends_with(" -")), "the search must have recorded the unmarked guest: {text:?}");

    let probe = g.probe();
    assert_eq!(probe.code, 0, "{}", probe.stderr);
    assert!(probe.stderr.contains("marked it"), "the probe must adopt the guest: {}", probe.stderr);
    std::fs::rename(&g.config, g.dir.join("away.xml")).unwrap();
    let probe = g.probe();
    assert_eq!(probe.code, 190, "with its config gone the adopted guest must still be found by its mark: {}", probe.stderr);
}

/// An index that is garbage, or that cannot be read at all, costs libvirt
/// questions, never an answer.
#[test]
fn a_garbled_or_unreadable_index_still_finds_the_guest() {
    let g = Guest::new("idx-garbled");
    assert_eq!(g.run("start", &[]).code, 0);
    search_by_mark("idx-garbled-other");
    std::fs::rename(&g.config, g.dir.join("away.xml")).unwrap();
    let index = index_files();
    assert!(!index.is_empty(), "the search must have written an index");
    for path in &index {
        std::fs::write(path, "garbage\n1 2 3 4 5\n\u{0}\u{1}\n").unwrap();
    }
    let probe = g.probe();
    assert_eq!(probe.code, 190, "a garbled index: {}", probe.stderr);
    for path in &index {
        std::fs::remove_file(path).unwrap();
        std::fs::create_dir(path).unwrap();
    }
    let _cleanup = Defer(|| {
        for path in &index {
            let _ = std::fs::remove_dir(path);
        }
    });
    let probe = g.probe();
    assert_eq!(probe.code, 190, "an index that cannot be read: {}", probe.stderr);
    std::fs::rename(g.dir.join("away.xml"), &g.config).unwrap();
    assert_eq!(g.run("stop", &[("OCF_RESKEY_force_stop", "true")]).code, 0);
}
