//! argv[0] dispatch and the operator CLI.

use crate::support::*;
use std::os::unix::fs::symlink;

#[test]
fn a_fresh_link_named_after_the_agent_dispatches_to_it() {
    let dir = TempDir::new("link");
    for name in agents() {
        let link = dir.join(&name);
        symlink(ferry(), &link).unwrap();
        let run = run_program(&link, &["meta-data"], &[]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert!(run.stdout.contains(&format!(r#"<resource-agent name="{name}""#)));
        let no_action = run_program(&link, &[], &[]);
        assert_eq!(no_action.code, 2, "no action is a usage error");
        assert!(no_action.stderr.contains(&format!("usage: {name}")));
        let unknown = run_program(&link, &["frobnicate"], &[]);
        assert_eq!(unknown.code, 3);
        assert!(unknown.reason().unwrap().contains("'frobnicate' is not implemented"));
    }
}

#[test]
fn as_ferry_it_lists_agents_and_runs_them_by_name() {
    let list = run_program(&ferry(), &["list"], &[]);
    assert_eq!(list.code, 0);
    assert_eq!(list.stdout.lines().collect::<Vec<_>>(), agents());
    assert!(agents().len() >= 2, "VirtualDomain and Xen at least");
    let version = run_program(&ferry(), &["--version"], &[]);
    assert!(version.stdout.starts_with("ferry "), "{}", version.stdout);
    for name in agents() {
        let meta = run_program(&ferry(), &[&name, "meta-data"], &[]);
        assert_eq!(meta.code, 0);
        assert_eq!(meta.stdout, std::fs::read_to_string(repo().join(format!("metadata/{name}.xml"))).unwrap());
    }
    assert_eq!(run_program(&ferry(), &[], &[]).code, 2);
    assert_eq!(run_program(&ferry(), &["NoSuchAgent", "start"], &[]).code, 2);
}

#[test]
fn the_binary_is_static() {
    let out = std::process::Command::new("ldd").arg(ferry()).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("statically linked") || text.contains("not a dynamic executable"), "{text}");
}

#[test]
fn make_install_links_every_agent_and_uninstall_removes_exactly_that() {
    let scratch = TempDir::new("stage");
    let stage = scratch.join("root");
    let make = |target: &str| {
        let out = std::process::Command::new("make")
            .current_dir(repo())
            .args([target, &format!("DESTDIR={}", stage.display()), "PREFIX=/usr"])
            .output()
            .unwrap();
        assert!(out.status.success(), "make {target}: {}", String::from_utf8_lossy(&out.stderr));
    };
    make("install");
    for name in agents() {
        let link = stage.join(format!("usr/lib/ocf/resource.d/ferry/{name}"));
        assert_eq!(std::fs::read_link(&link).unwrap(), std::path::PathBuf::from("../../lib/ferry/ferry"));
        assert!(run_program(&link, &["meta-data"], &[]).stdout.contains(&format!("name=\"{name}\"")));
        let page = stage.join(format!("usr/share/man/man7/ocf_ferry_{name}.7.gz"));
        let man = std::process::Command::new("man").arg("-l").arg(&page).env("MANPAGER", "cat").output().unwrap();
        assert!(String::from_utf8_lossy(&man.stdout).contains(&format!("ocf_ferry_{name}")), "{}: {}", page.display(), String::from_utf8_lossy(&man.stderr));
    }
    make("uninstall");
    for name in agents() {
        assert!(!stage.join(format!("usr/lib/ocf/resource.d/ferry/{name}")).exists());
        assert!(!stage.join(format!("usr/share/man/man7/ocf_ferry_{name}.7.gz")).exists());
    }
    assert!(!stage.join("usr/lib/ocf/lib/ferry/ferry").exists());
    assert!(!stage.join("usr/lib/ocf/resource.d/ferry").exists());
}

#[test]
fn logs_follow_resource_agents_conventions() {
    let dir = TempDir::new("logs");
    let (logfile, debuglog) = (dir.join("ha.log"), dir.join("ha-debug.log"));
    let env = pairs(&[
        ("OCF_RESOURCE_INSTANCE", "logtest"),
        ("OCF_RESKEY_config", "/nonexistent/logtest.xml"),
        ("HA_LOGFILE", logfile.to_str().unwrap()),
        ("HA_DEBUGLOG", debuglog.to_str().unwrap()),
        ("HA_debug", "1"),
    ]);
    let run = agent("start", &env);
    assert_eq!(run.code, 5);
    // One exit reason, on stderr, with Pacemaker's prefix.
    assert_eq!(run.stderr.lines().filter(|l| l.starts_with("ocf-exit-reason:")).count(), 1);
    let log = std::fs::read_to_string(&logfile).unwrap();
    assert!(log.contains("VirtualDomain(logtest)[") && log.contains("ERROR: config file /nonexistent/logtest.xml is not readable"), "{log}");
    assert!(!log.contains("DEBUG"), "debug lines stay out of HA_LOGFILE");
    assert!(std::fs::read_to_string(&debuglog).unwrap().contains("DEBUG: start: budget"));
    // Without HA_debug, no debug output at all.
    let quiet = agent("monitor", &pairs(&[("OCF_RESOURCE_INSTANCE", "logtest"), ("OCF_RESKEY_config", "/nonexistent/logtest.xml")]));
    assert!(!quiet.stderr.contains("DEBUG"), "{}", quiet.stderr);
}

#[test]
fn ferry_status_lists_the_guests_ferry_owns_here_with_their_state() {
    let g = Guest::new("status");
    let listed = |needle: &str| run_program(&ferry(), &["status"], &[]).stdout.lines().any(|l| l.contains(needle));
    assert!(!listed(&g.name), "listed before start");
    // A domain ferry did not start carries no mark and is not listed.
    let stranger = Guest::new("stranger");
    let out = virsh(&["create", stranger.config.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(g.run("start", &[]).code, 0);
    let status = run_program(&ferry(), &["status"], &[]);
    assert_eq!(status.code, 0, "{}", status.stderr);
    let row = status.stdout.lines().find(|l| l.contains(&g.name)).unwrap_or_else(|| panic!("{} is not listed:\n{}", g.name, status.stdout));
    let words: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(words[..3], [g.instance.as_str(), "VirtualDomain", g.name.as_str()], "{row}");
    assert!(row.contains("running ("), "{row}");
    assert!(!status.stdout.contains(&stranger.name), "an unmarked domain is listed:\n{}", status.stdout);
    let _ = virsh(&["suspend", &g.name]);
    assert!(run_program(&ferry(), &["status"], &[]).stdout.lines().any(|l| l.contains(&g.name) && l.contains("paused (user)")), "the pause is not shown");
    let _ = virsh(&["resume", &g.name]);
    assert_eq!(g.run("stop", &[]).code, 0);
    assert!(!listed(&g.name), "listed after stop");
    // libvirt unreachable: said, and exit 1, never an empty "all clear".
    let down = run_program(&ferry(), &["status"], &pairs(&[("LIBVIRT_DEFAULT_URI", "qemu+unix:///system?socket=/nonexistent/sock")]));
    assert_eq!(down.code, 1, "{}", down.stdout);
    assert!(down.stderr.contains("cannot list the domains"), "{}", down.stderr);
}

#[test]
fn ferry_man_writes_each_agent_s_page_from_its_meta_data() {
    for name in agents() {
        let page = run_program(&ferry(), &["man", &name], &[]);
        assert_eq!(page.code, 0, "{}", page.stderr);
        assert!(page.stdout.starts_with(&format!(".TH OCF_FERRY_{}", name.to_uppercase())));
        let md = run_program(&ferry(), &[&name, "meta-data"], &[]).stdout;
        for param in md.split("<parameter name=\"").skip(1).map(|s| &s[..s.find('"').unwrap()]) {
            assert!(page.stdout.contains(&format!("\\fB{}\\fR (", param.replace('-', "\\-"))), "{name}: {param} is not on the page");
        }
    }
    assert_eq!(run_program(&ferry(), &["man", "NoSuchAgent"], &[]).code, 2);
}
