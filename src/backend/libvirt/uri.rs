//! Which libvirt to talk to, found without running virsh (a process on
//! every monitor): the default URI as virsh would pick it, and the local
//! UNIX socket behind a local QEMU URI, which the RPC client uses.

use std::path::{Path, PathBuf};

/// How to reach a local daemon's socket directly, for URIs that name one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalSocket {
    pub path: PathBuf,
    /// The URI the daemon opens (without transport and socket parameters).
    pub open_uri: String,
}

/// The local socket behind `uri`, if it is a local `qemu` URI; `run_dir` is
/// normally /run/libvirt. Remote and non-QEMU URIs go through virsh.
pub fn local_socket(uri: &str, run_dir: &Path) -> Option<LocalSocket> {
    let (scheme, rest) = uri.split_once("://")?;
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if !path.starts_with('/') || path != "/system" {
        return None;
    }
    let explicit = query.split('&').find_map(|kv| kv.strip_prefix("socket=")).map(PathBuf::from);
    let socket = match (scheme, explicit) {
        ("qemu+unix", Some(p)) => p,
        ("qemu" | "qemu+unix", None) => {
            // Split daemons (virtqemud) take over from libvirtd where installed.
            let modular = run_dir.join("virtqemud-sock");
            if modular.exists() {
                modular
            } else {
                run_dir.join("libvirt-sock")
            }
        }
        _ => return None,
    };
    Some(LocalSocket { path: socket, open_uri: "qemu:///system".into() })
}

/// The URI virsh would use when none is configured: `LIBVIRT_DEFAULT_URI`, then
/// `uri_default` in /etc/libvirt/libvirt.conf, then the system QEMU driver (what
/// libvirt picks for root on a KVM host). Found without running virsh, which
/// would cost a process on every monitor.
pub fn default_uri(conf_text: Option<&str>) -> String {
    if let Ok(uri) = std::env::var("LIBVIRT_DEFAULT_URI") {
        if !uri.is_empty() {
            return uri;
        }
    }
    conf_text.and_then(|text| conf_value(text, "uri_default")).unwrap_or_else(|| "qemu:///system".to_string())
}

/// A string setting of a libvirt configuration file (`key = "value"`; `#`
/// starts a comment); the last one set wins, as when libvirt reads it.
pub(super) fn conf_value(text: &str, key: &str) -> Option<String> {
    text.lines()
        .filter_map(|line| {
            let rest = line.trim().strip_prefix(key)?;
            let value = rest.trim_start().strip_prefix('=')?;
            let value = value.trim().trim_matches('"').trim_matches('\'');
            (!value.is_empty()).then(|| value.to_string())
        })
        .last()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_qemu_uris_map_to_sockets_and_others_do_not() {
        let run = Path::new("/nonexistent-run");
        assert_eq!(local_socket("qemu:///system", run).unwrap().path, run.join("libvirt-sock"));
        let explicit = local_socket("qemu+unix:///system?socket=/tmp/n1/libvirt-sock", run).unwrap();
        assert_eq!(explicit.path, PathBuf::from("/tmp/n1/libvirt-sock"));
        assert_eq!(explicit.open_uri, "qemu:///system");
        assert_eq!(local_socket("qemu+ssh://nodeb/system", run), None);
        assert_eq!(local_socket("qemu+tcp://127.0.0.1:1/system", run), None);
        assert_eq!(local_socket("qemu:///session", run), None);
        assert_eq!(local_socket("xen:///system", run), None);
        assert_eq!(local_socket("nonsense", run), None);
    }

    #[test]
    fn the_default_uri_comes_from_libvirt_conf_when_set() {
        if std::env::var("LIBVIRT_DEFAULT_URI").is_ok() {
            return; // the environment decides, as it does for virsh
        }
        assert_eq!(default_uri(None), "qemu:///system");
        assert_eq!(default_uri(Some("#uri_default = \"x\"\nuri_default = \"qemu+tcp://h/system\"\n")), "qemu+tcp://h/system");
    }
}
