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

/// Which end a failed migration could not reach, from libvirt's "unable
/// to connect to server at 'HOST:PORT'". libvirt says that both when the
/// target's libvirtd does not answer and when the memory stream, which the
/// source's libvirt opens for QEMU once the target has prepared to receive
/// it, cannot connect; the backend files both under "libvirt unreachable",
/// which reads as this node's libvirt being down. The address is libvirtd's
/// when it is the target URI's host and port (16509 for tcp, 16514 for tls
/// unless the URI says); any other is the stream's. `None` when libvirt
/// said something else.
pub fn unreached_end(message: &str, remote_uri: &str, data_uri: Option<&str>) -> Option<String> {
    let (_, after) = message.split_once("unable to connect to server at '")?;
    let address = after.split('\'').next()?;
    let said = message.trim_start_matches("libvirt unreachable: ").trim_start_matches("error: ");
    let (scheme, _) = remote_uri.split_once("://").unwrap_or(("", ""));
    let default_port = if scheme.ends_with("+tls") { "16514" } else { "16509" };
    let (host, port) = host_and_port(remote_uri);
    if address == format!("{host}:{}", port.unwrap_or(default_port)) {
        return Some(format!("libvirt on the target did not answer at {address} ({remote_uri}): {said}"));
    }
    let uri = data_uri.map(|d| format!("data URI {d}")).unwrap_or_else(|| "the port libvirt chose".into());
    Some(format!("the memory stream could not connect to {address} ({uri}) after libvirt there had prepared to receive it: {said}"))
}

/// A URI's host and port: `scheme://user@host:port/path`, or `tcp:host:port`.
fn host_and_port(uri: &str) -> (&str, Option<&str>) {
    let rest = match uri.split_once("://") {
        Some((_, rest)) => rest,
        None => uri.split_once(':').map_or(uri, |(_, rest)| rest),
    };
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    match authority.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    }
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

    #[test]
    fn a_connection_libvirt_could_not_make_is_named_for_the_end_it_failed_to_reach() {
        let said = |host: &str| format!("libvirt unreachable: error: unable to connect to server at '{host}': No route to host");
        let stream = unreached_end(&said("nodeb-mig:49152"), "qemu+tcp://nodeb/system", Some("tcp://nodeb-mig")).unwrap();
        assert!(stream.starts_with("the memory stream could not connect to nodeb-mig:49152 (data URI tcp://nodeb-mig)"), "{stream}");
        assert!(stream.ends_with(": unable to connect to server at 'nodeb-mig:49152': No route to host"), "{stream}");
        assert!(!stream.contains("libvirt unreachable"), "{stream}");
        let daemon = unreached_end(&said("nodeb:16509"), "qemu+tcp://root@nodeb/system", Some("tcp://nodeb-mig:49999")).unwrap();
        assert!(daemon.starts_with("libvirt on the target did not answer at nodeb:16509 (qemu+tcp://root@nodeb/system)"), "{daemon}");
        assert!(unreached_end(&said("nodeb:16514"), "qemu+tls://nodeb/system", None).unwrap().starts_with("libvirt on the target"));
        assert!(unreached_end(&said("nodeb:7000"), "qemu+tcp://nodeb:7000/system", None).unwrap().starts_with("libvirt on the target"));
        // The same host on another port is the stream libvirt opened there.
        let chosen = unreached_end(&said("nodeb:49152"), "qemu+tcp://nodeb/system", None).unwrap();
        assert!(chosen.starts_with("the memory stream could not connect to nodeb:49152 (the port libvirt chose)"), "{chosen}");
        assert_eq!(host_and_port("tcp:nodeb-mig:49152"), ("nodeb-mig", Some("49152")));
        assert_eq!(unreached_end("internal error: boom", "qemu+tcp://nodeb/system", None), None);
    }
}
