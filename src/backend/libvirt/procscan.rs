//! Finding a QEMU guest's process without libvirtd.
//!
//! When libvirtd is down or hung, its guests keep running. A monitor that then
//! answered "not running" would let Pacemaker start a second copy elsewhere and
//! corrupt the guest's disks. libvirt names every QEMU process after its guest
//! (`-name guest=NAME,…`, or `-name NAME` from older versions), so /proc can
//! still tell whether the guest runs on this node.

use std::path::Path;

#[derive(Debug, PartialEq, Eq)]
pub enum Scan {
    Found(u32),
    Absent,
    /// /proc could not be read well enough to say "absent".
    Undecided(String),
}

/// The guest name a QEMU command line declares, if it is one.
pub fn guest_name(argv: &[&str]) -> Option<String> {
    let program = Path::new(argv.first()?).file_name()?.to_string_lossy().into_owned();
    if !program.contains("qemu") && !program.contains("kvm") {
        return None;
    }
    let value = argv.windows(2).find(|w| w[0] == "-name").map(|w| w[1])?;
    // QEMU option syntax: key=value pairs split by ',', a literal comma doubled.
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ',' {
            if chars.peek() == Some(&',') {
                chars.next();
                field.push(',');
            } else {
                fields.push(std::mem::take(&mut field));
            }
        } else {
            field.push(c);
        }
    }
    fields.push(field);
    let first = fields.first()?;
    Some(first.strip_prefix("guest=").unwrap_or(first).to_string())
}

/// Looks through `proc_root` (normally /proc) for the QEMU process of `name`.
pub fn find_qemu_guest(proc_root: &Path, name: &str) -> Scan {
    let entries = match std::fs::read_dir(proc_root) {
        Ok(e) => e,
        Err(e) => return Scan::Undecided(format!("cannot read {}: {e}", proc_root.display())),
    };
    // Only processes in this node's network namespace are this node's. On a
    // real host that is every process; in a lab of namespaced nodes that share
    // one kernel it keeps another node's guest from looking like ours.
    let own_net = std::fs::read_link(proc_root.join("self/ns/net")).ok();
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        if let (Some(own), Ok(theirs)) = (&own_net, std::fs::read_link(entry.path().join("ns/net"))) {
            if &theirs != own {
                continue;
            }
        }
        // A process may exit between readdir and read: that is not a failure.
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let text = String::from_utf8_lossy(&raw);
        let argv: Vec<&str> = text.split('\0').filter(|a| !a.is_empty()).collect();
        if guest_name(&argv).as_deref() == Some(name) {
            return Scan::Found(pid);
        }
    }
    Scan::Absent
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_name_syntaxes_and_escaped_commas() {
        assert_eq!(
            guest_name(&["/usr/bin/qemu-system-x86_64", "-name", "guest=vm1,debug-threads=on"]).as_deref(),
            Some("vm1")
        );
        assert_eq!(guest_name(&["/usr/bin/kvm", "-name", "vm2"]).as_deref(), Some("vm2"));
        assert_eq!(guest_name(&["qemu-system-x86_64", "-name", "guest=a,,b,debug-threads=on"]).as_deref(), Some("a,b"));
        assert_eq!(guest_name(&["/bin/sleep", "-name", "vm1"]), None);
        assert_eq!(guest_name(&["/usr/bin/qemu-system-x86_64", "-m", "128"]), None);
    }

    #[test]
    fn scans_a_proc_tree() {
        let root = std::env::temp_dir().join(format!("ferry-procscan-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for (pid, argv) in [("10", "bash\0-c\0true\0"), ("42", "/usr/bin/qemu-system-x86_64\0-name\0guest=vm1,debug-threads=on\0")] {
            std::fs::create_dir_all(root.join(pid)).unwrap();
            std::fs::write(root.join(pid).join("cmdline"), argv).unwrap();
        }
        std::fs::create_dir_all(root.join("self")).unwrap();
        assert_eq!(find_qemu_guest(&root, "vm1"), Scan::Found(42));
        assert_eq!(find_qemu_guest(&root, "vm2"), Scan::Absent);
        assert!(matches!(find_qemu_guest(&root.join("missing"), "vm1"), Scan::Undecided(_)));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
