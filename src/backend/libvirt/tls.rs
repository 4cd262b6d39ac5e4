//! Migration TLS on this node: where libvirt has QEMU look for the
//! certificates of an encrypted migration stream (`virsh migrate --tls`), and
//! whether they are there. Read from qemu.conf without asking libvirtd, which
//! has no call for it.
//!
//! The source of a migration presents a client certificate, the target a
//! server one, and each checks the other's against the CA, so one set of five
//! files lets a node be either end.

use std::path::{Path, PathBuf};

use super::uri::conf_value;

/// Where libvirt looks when qemu.conf names no directory.
const DEFAULT_DIR: &str = "/etc/pki/qemu";

/// What the sending end needs.
pub const SOURCE_FILES: [&str; 3] = ["ca-cert.pem", "client-cert.pem", "client-key.pem"];
/// What the receiving end needs.
pub const TARGET_FILES: [&str; 3] = ["ca-cert.pem", "server-cert.pem", "server-key.pem"];

/// The migration certificate directory qemu.conf sets
/// (`migrate_tls_x509_cert_dir`, else `default_tls_x509_cert_dir`).
pub fn migration_cert_dir(qemu_conf: Option<&str>) -> PathBuf {
    let set = |key| qemu_conf.and_then(|text| conf_value(text, key));
    PathBuf::from(set("migrate_tls_x509_cert_dir").or_else(|| set("default_tls_x509_cert_dir")).unwrap_or_else(|| DEFAULT_DIR.to_string()))
}

/// Those of `files` that are missing or unreadable in `dir`.
pub fn missing_certs<'f>(dir: &Path, files: &[&'f str]) -> Vec<&'f str> {
    files.iter().copied().filter(|f| std::fs::File::open(dir.join(f)).is_err()).collect()
}

/// Whether a failed `--tls` migration failed because the target has no
/// certificates: QEMU there could not load them when libvirt set the
/// stream up, before any memory was sent.
pub fn target_lacks_certs(message: &str) -> bool {
    message.contains("Unable to access credentials")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_directory_is_qemu_conf_s_migration_one_then_its_default_then_libvirt_s() {
        assert_eq!(migration_cert_dir(None), PathBuf::from("/etc/pki/qemu"));
        assert_eq!(migration_cert_dir(Some("#migrate_tls_x509_cert_dir = \"/x\"\n")), PathBuf::from("/etc/pki/qemu"));
        assert_eq!(migration_cert_dir(Some("default_tls_x509_cert_dir = \"/d\"\n")), PathBuf::from("/d"));
        let both = "default_tls_x509_cert_dir = \"/d\"\nmigrate_tls_x509_cert_dir=\"/m\"\nmigrate_tls_x509_verify = 1\n";
        assert_eq!(migration_cert_dir(Some(both)), PathBuf::from("/m"));
    }

    #[test]
    fn missing_files_are_named() {
        let dir = std::env::temp_dir().join(format!("ferry-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("ca-cert.pem"), "x").unwrap();
        std::fs::write(dir.join("client-cert.pem"), "x").unwrap();
        assert_eq!(missing_certs(&dir, &SOURCE_FILES), ["client-key.pem"]);
        assert_eq!(missing_certs(&dir, &TARGET_FILES), ["server-cert.pem", "server-key.pem"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn qemu_s_credential_error_is_recognised() {
        let seen = "internal error: unable to execute QEMU command 'object-add': Unable to access credentials /etc/pki/qemu/ca-cert.pem: No such file or directory";
        assert!(target_lacks_certs(seen));
        assert!(!target_lacks_certs("operation failed: migration out job: unexpectedly failed"));
    }
}
