//! Every option ferry passes to Pacemaker's tools is one this node's
//! Pacemaker accepts: the integration suite runs on Debian 12 (Pacemaker
//! 2.1.5) and, in make test's trixie suites, on Debian 13 (Pacemaker 3.0),
//! whose tools dropped options of their own. No cluster runs here, so each
//! call fails to connect; what must not happen is a usage error (exit 64,
//! "Unknown option"), which in a cluster would lose the utilization or the
//! migration's progress with only a WARNING in the log.

use std::process::Command;

/// The calls ferry makes (src/agents/common.rs: utilization and progress;
/// src/agents/xen/mod.rs: the node attribute naming the Xen target's
/// migration address).
const CALLS: [&[&str]; 6] = [
    &["attrd_updater", "-p", "-n", "ferry-migration-r1", "-U", "10% sent"],
    &["attrd_updater", "-p", "-n", "ferry-migration-r1", "-D"],
    &["attrd_updater", "-Q", "-n", "ferry-migration-r1"],
    &["crm_resource", "-Q", "-r", "r1", "-z", "-p", "cpu", "-v", "2"],
    &["crm_resource", "-Q", "-r", "r1", "-z", "-d", "cpu"],
    &["crm_attribute", "--type", "nodes", "--node", "nodeb", "-n", "mig_ip", "-G", "-q"],
];

/// Exit status and stderr, or None where the tool is not installed.
fn run(argv: &[&str]) -> Option<(i32, String)> {
    let out = Command::new(argv[0]).args(&argv[1..]).output().ok()?;
    Some((out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned()))
}

fn usage_error(status: i32, stderr: &str) -> bool {
    // CRM_EX_USAGE; glib's option parser says "Unknown option".
    status == 64 || stderr.contains("Unknown option") || stderr.contains("unrecognized option")
}

#[test]
fn every_pacemaker_option_ferry_passes_is_accepted_by_this_nodes_tools() {
    let version = Command::new("pacemakerd").arg("--version").output().map(|o| String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or("").to_string()).unwrap_or_default();
    // The control: this node's tools do refuse an option they lack, so the
    // check below can fail.
    let (status, stderr) = run(&["crm_resource", "-Q", "-r", "r1", "--ferry-no-such-option"]).expect("crm_resource is not installed (make deps)");
    assert!(usage_error(status, &stderr), "an unknown option was not refused ({status}): {stderr}");
    let refused: Vec<String> = CALLS
        .iter()
        .filter_map(|argv| {
            let (status, stderr) = run(argv).unwrap_or_else(|| panic!("{} is not installed (make deps)", argv[0]));
            usage_error(status, &stderr).then(|| format!("{} -> {status}: {}", argv.join(" "), stderr.trim()))
        })
        .collect();
    eprintln!("pacemaker tools: {version}: {} calls, {} refused", CALLS.len(), refused.len());
    assert!(refused.is_empty(), "{version} refuses what ferry passes:\n{}", refused.join("\n"));
}
