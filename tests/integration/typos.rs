//! A typo in the CIB never costs a guest or a node (issue 24): for every
//! parameter of ocf:ferry:VirtualDomain, values its meta-data type or its
//! rules refuse (validate-all is the judge) are given to the probe and the
//! monitor of a running guest, which must still say it runs (0 or 190,
//! never 1, 2, 5, 6 or 7), and to one stop, which must still stop it. The
//! guest's identity (config, hypervisor) is left out: a wrong one names
//! another guest, and "cannot tell" (1) is then the truthful answer.

use crate::support::*;

/// (name, content type) of every parameter metadata/VirtualDomain.xml declares.
fn parameters() -> Vec<(String, String)> {
    let xml = std::fs::read_to_string(repo().join("metadata/VirtualDomain.xml")).unwrap();
    xml.split("<parameter name=\"")
        .skip(1)
        .map(|chunk| {
            let name = chunk.split('"').next().unwrap().to_string();
            let kind = chunk.split("<content type=\"").nth(1).and_then(|c| c.split('"').next()).unwrap_or("string").to_string();
            (name, kind)
        })
        .collect()
}

/// Values that a parameter of this type may be mistyped as.
fn mistakes(kind: &str) -> &'static [&'static str] {
    match kind {
        "integer" => &["abc", "-7", "99999999999"],
        "boolean" => &["perhaps"],
        _ => &["bogus", "-1"],
    }
}

#[test]
fn a_mistyped_parameter_never_fails_the_monitor_of_a_running_guest_nor_its_stop() {
    let g = Guest::new("typos");
    assert_eq!(g.run("start", &[]).code, 0);
    let domid = || String::from_utf8_lossy(&virsh(&["domid", &g.name]).stdout).trim().to_string();
    let started_as = domid();
    let mut refused = Vec::new();
    let mut failures = Vec::new();
    for (name, kind) in parameters() {
        if name == "config" || name == "hypervisor" {
            continue;
        }
        for value in mistakes(&kind) {
            let key = format!("OCF_RESKEY_{name}");
            let validate = g.run("validate-all", &[(key.as_str(), value)]);
            if validate.code != 6 {
                continue; // a value the rules accept is no mistake
            }
            refused.push((key.clone(), value.to_string()));
            // Where a refusal harms nothing, it stands: reload-agent refuses
            // too, and leaves the guest alone.
            let reload = g.run("reload-agent", &[(key.as_str(), value)]);
            if reload.code != 6 {
                failures.push(format!("reload-agent with {name}={value}: {} (want 6) {}", reload.code, reload.stderr.trim()));
            }
            for (what, run) in [("probe", agent("monitor", &g.env(&[(key.as_str(), value), ("OCF_RESKEY_CRM_meta_interval", "0")]))), ("monitor", g.run("monitor", &[(key.as_str(), value)]))] {
                if !matches!(run.code, 0 | 190) {
                    failures.push(format!("{what} with {name}={value}: {} {}", run.code, run.stderr.trim()));
                } else if !run.stderr.contains(&name) {
                    failures.push(format!("{what} with {name}={value}: the log does not name the parameter: {}", run.stderr.trim()));
                }
            }
        }
    }
    // A monitor script that cannot be run is no verdict on the guest.
    let missing_script = g.run("monitor", &[("OCF_RESKEY_monitor_scripts", "/nonexistent/ferry-check")]);
    if missing_script.code != 190 || !missing_script.reason().unwrap_or_default().contains("/nonexistent/ferry-check") {
        failures.push(format!("monitor with a missing monitor script: {} {}", missing_script.code, missing_script.stderr.trim()));
    }
    assert_eq!(domid(), started_as, "no action may have restarted the guest");
    // Every mistake at once, in one stop: it stops the guest.
    let all: Vec<(&str, &str)> = refused.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut stop_env = all.clone();
    stop_env.push(("OCF_RESKEY_CRM_meta_timeout", "40000"));
    let stop = g.run("stop", &stop_env);
    eprintln!("typos: {} refused values of {} parameters; monitor and probe failures: {}; stop with all of them: {}", refused.len(), parameters().len() - 2, failures.len(), stop.code);
    if stop.code != 0 || g.libvirt_state().is_some() {
        failures.push(format!("stop with every mistake: {} (guest {:?}): {}", stop.code, g.libvirt_state(), stop.stderr.trim()));
    }
    assert!(refused.len() >= 20, "the matrix must exercise the refused values: {refused:?}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
