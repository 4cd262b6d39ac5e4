//! Where a migration goes: the target's libvirt URI and the data stream's,
//! built from the anchor's parameters (remoteuri, migrateuri, transport,
//! user, network suffix, port) so a CIB written for heartbeat:VirtualDomain
//! keeps its meaning.

use super::settings::{words, MigrationSettings};

/// The libvirt URI of `node` as the source's libvirtd should open it.
/// `remoteuri` wins; otherwise the local URI's driver and path with the
/// transport (ssh unless told), user and migration network suffix.
pub fn target_uri(m: &MigrationSettings, local_uri: &str, node: &str) -> String {
    if let Some(uri) = &m.remote_uri {
        return uri.replace("%n", node);
    }
    let (scheme, rest) = local_uri.split_once("://").unwrap_or(("qemu", "/system"));
    let driver = scheme.split('+').next().unwrap_or("qemu");
    let path = rest.find('/').map(|i| &rest[i..]).unwrap_or("/system");
    let path = path.split('?').next().unwrap_or(path);
    let transport = m.transport.as_deref().filter(|t| !t.is_empty()).unwrap_or("ssh");
    let user = m.user.as_deref().map(|u| format!("{u}@")).unwrap_or_default();
    format!("{driver}+{transport}://{user}{}{path}", migration_host(m, node))
}

/// The data stream's URI: `migrateuri`, else a `--migrateuri=` inside
/// `migrate_options` (the anchor accepts it there), else one on the migration
/// network when a suffix or port is set; `None` lets libvirt choose.
pub fn data_uri(m: &MigrationSettings, node: &str) -> Option<String> {
    let in_options = words(m.options.as_deref()).into_iter().find_map(|w| w.strip_prefix("--migrateuri=").map(String::from));
    if let Some(uri) = m.migrate_uri.clone().or(in_options) {
        return Some(uri.replace("%n", node));
    }
    let suffixed = m.network_suffix.as_deref().is_some_and(|suffix| !suffix.is_empty());
    if !suffixed && m.port.is_none() {
        return None;
    }
    let port = m.port.map(|p| format!(":{p}")).unwrap_or_default();
    Some(format!("tcp://{}{port}", migration_host(m, node)))
}

/// `migrate_options` as virsh words, without a `--migrateuri=` (see
/// `data_uri`) or `--tls` and `--tunnelled`, which migration_encryption
/// took over (see encryption.rs) and the stream adds when it is chosen.
pub fn extra_options(m: &MigrationSettings) -> Vec<String> {
    words(m.options.as_deref()).into_iter().filter(|w| !w.starts_with("--migrateuri=") && w != "--tls" && w != "--tunnelled").collect()
}

/// `node` with the migration network suffix after its short name
/// (node1.example.com with -mig becomes node1-mig.example.com).
fn migration_host(m: &MigrationSettings, node: &str) -> String {
    match m.network_suffix.as_deref().filter(|suffix| !suffix.is_empty()) {
        Some(suffix) => match node.split_once('.') {
            Some((short, domain)) => format!("{short}{suffix}.{domain}"),
            None => format!("{node}{suffix}"),
        },
        None => node.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use super::super::settings::tests::migration_settings as settings;


    #[test]
    fn target_uris_follow_the_anchor_s_parameters() {
        let m = settings(&[]);
        assert_eq!(target_uri(&m, "qemu:///system", "nodeb"), "qemu+ssh://nodeb/system");
        assert_eq!(target_uri(&m, "qemu+unix:///system?socket=/x", "nodeb"), "qemu+ssh://nodeb/system");
        let m = settings(&[("migration_transport", "tcp"), ("migration_user", "mig"), ("migration_network_suffix", "-mig"), ("migrateport", "49999")]);
        assert_eq!(target_uri(&m, "qemu:///system", "node2.example.com"), "qemu+tcp://mig@node2-mig.example.com/system");
        assert_eq!(data_uri(&m, "node2.example.com").as_deref(), Some("tcp://node2-mig.example.com:49999"));
        let m = settings(&[("remoteuri", "qemu+tls://%n.lan/system"), ("migrateuri", "tcp://%n-fast")]);
        assert_eq!(target_uri(&m, "qemu:///system", "b"), "qemu+tls://b.lan/system");
        assert_eq!(data_uri(&m, "b").as_deref(), Some("tcp://b-fast"));
        assert_eq!(data_uri(&settings(&[]), "b"), None);
        let m = settings(&[("migration_network_suffix", "-mig")]);
        assert_eq!(data_uri(&m, "b").as_deref(), Some("tcp://b-mig"), "the data goes over the migration network");
        let m = settings(&[("migrate_options", "--compressed --migrateuri=tcp://%n-x:5000 --abort-on-error")]);
        assert_eq!(data_uri(&m, "b").as_deref(), Some("tcp://b-x:5000"));
        assert_eq!(extra_options(&m), ["--compressed", "--abort-on-error"]);
        let m = settings(&[("migrate_options", "--tls --compressed")]);
        assert_eq!(extra_options(&m), ["--compressed"], "--tls is migration_encryption's now");
    }
}
