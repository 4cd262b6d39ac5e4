//! The README's cluster guide, run as written: every fenced block marked
//! `sh cluster-lab` in README.md is run on nodea of the running cluster, one
//! block at a time, and the resource it creates must start and move (by live
//! migration when the block allows it). An edit to the README that breaks a
//! command fails here. The lab differs from the README's example node in two
//! things only, which are replaced: no ssh between the nodes (tcp), and the
//! guest's file.

use super::*;

/// The marked blocks of README.md, in order.
fn marked_blocks() -> Vec<String> {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in readme.lines() {
        match &mut current {
            None if line.trim_end() == "```sh cluster-lab" => current = Some(String::new()),
            None => {}
            Some(_) if line.trim_end() == "```" => blocks.push(current.take().unwrap()),
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
        }
    }
    blocks
}

#[test]
fn every_cluster_command_in_the_readme_creates_a_resource_that_starts_and_moves() {
    let lab = Lab::from_env();
    let blocks = marked_blocks();
    let text = blocks.concat();
    // The guide shows each door an operator uses.
    for tool in ["pcs resource create", "crm configure primitive", "cibadmin --create", "pcs -f", "cibadmin --replace"] {
        assert!(text.contains(tool), "no marked README block uses {tool}");
    }
    for (i, block) in blocks.iter().enumerate() {
        let g = LabGuest::new(&lab, &format!("readme{i}"), None);
        let script = block.replace("/shared/vms/vm1.xml", &g.g.config.display().to_string()).replace("migration_transport=ssh", "migration_transport=tcp").replace("value=\"ssh\"", "value=\"tcp\"");
        // The resource is deleted however the block ends.
        let r = ClusterResource { lab: &lab, id: "vm1".into() };
        let scratch = TempDir::new(&format!("readme{i}"));
        let run = lab.on("nodea", &["bash", "-euo", "pipefail", "-c", &format!("cd {}\n{script}", scratch.0.display())]);
        let said = format!("{}{}", String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));
        assert!(run.status.success(), "README block {i} failed:\n{block}\n{said}");
        // pcs checks the parameters and operations against the meta-data
        // (pcs 0.12 also runs validate-all): the README's commands must pass
        // without a warning an operator would have to judge.
        // crmsh repeats the scheduler's warning about the lab's fencing
        // being off ("Blind faith", from unpack_config): the lab's, not the
        // resource's.
        let warnings: Vec<&str> = said.lines().filter(|l| l.to_lowercase().contains("warning") && !l.contains("(unpack_config)")).collect();
        assert!(warnings.is_empty(), "README block {i} drew warnings:\n{block}\n{}", warnings.join("\n"));
        let home = r.wait_active(SETTLE).unwrap_or_else(|| panic!("README block {i}: vm1 did not start:\n{block}"));
        assert!(g.ticks_on(crate::support::BOOT), "README block {i}: the guest does not run");
        let to = other(&home);
        lab.crm("nodea", &["crm_resource", "--move", "-r", "vm1", "-N", to]);
        assert!(r.settle(SETTLE), "README block {i}: the move did not settle");
        assert_eq!(lab.located("vm1"), vec![to.to_string()], "README block {i}: vm1 did not move");
        assert_only_on(&g, to, &format!("README block {i}"));
        if block.contains("allow-migrate") {
            assert_live_move(&lab, "vm1", &home, to);
            assert_eq!(boots(&g), 1, "README block {i}: a live move rebooted the guest");
        }
        lab.crm("nodea", &["crm_resource", "--clear", "-r", "vm1"]);
        drop(r);
        assert!(lab.active_on(g.name()).is_empty(), "README block {i}: the guest outlived its resource");
    }
}
