//! Who can read a guest's memory while it migrates: migration_encryption
//! and migration_parallel, checked against each other and against what
//! libvirt and QEMU refuse, and turned into the stream a migrate_to uses.
//!
//! A guest's RAM holds its keys and passwords. `virsh migrate --p2p` sends it
//! over a TCP connection of QEMU's own, in clear text, whatever the libvirt
//! connection's transport: ssh protects only libvirt's control messages.
//! So, by default (`auto`), ferry encrypts the stream with TLS whenever the
//! node has migration certificates, and says so loudly when it cannot.

use std::path::Path;

use crate::backend::libvirt::migration::Stream;
use crate::backend::libvirt::tls::{missing_certs, SOURCE_FILES, TARGET_FILES};
use crate::ocf::OcfError;

use super::settings::{words, MigrationMode};

/// migration_encryption.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Encryption {
    /// TLS when this node has migration certificates and the target accepts
    /// them; otherwise clear text, with a warning every time.
    #[default]
    Auto,
    Tls,
    Tunnelled,
    /// Clear text, because the operator said so.
    None,
}

impl Encryption {
    pub const NAMES: [&'static str; 4] = ["auto", "tls", "tunnelled", "none"];

    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

/// The migration parameters that decide the stream, as the operator set them.
#[derive(Clone, Copy)]
pub struct Requested<'a> {
    pub encryption: &'a str,
    pub parallel: i64,
    pub mode: MigrationMode,
    pub migrate_options: Option<&'a str>,
    /// The transport of the libvirt connection to the target (ssh, tls, tcp…).
    pub transport: &'a str,
    /// A data URI or port the operator set for the stream.
    pub data_uri_set: bool,
}

/// What the parameters decide, once checked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamSettings {
    pub encryption: Encryption,
    /// Parallel connections (migration_parallel); `None` for one.
    pub parallel: Option<u32>,
    /// migrate_options asks for zero-copy, which cannot encrypt.
    pub zerocopy: bool,
}

fn conflict(reason: String) -> OcfError {
    OcfError::configured(reason)
}

impl StreamSettings {
    /// Checks the request. A heartbeat CIB that put --tls or --tunnelled in
    /// migrate_options keeps its meaning: under `auto` they choose the mode.
    pub fn check(r: &Requested) -> Result<StreamSettings, OcfError> {
        let mut encryption = match r.encryption {
            "auto" => Encryption::Auto,
            "tls" => Encryption::Tls,
            "tunnelled" => Encryption::Tunnelled,
            "none" => Encryption::None,
            other => return Err(conflict(format!("migration_encryption '{other}' is not one of {}", Encryption::NAMES.join(", ")))),
        };
        let options = words(r.migrate_options);
        let has = |flag: &str| options.iter().any(|w| w == flag || w.starts_with(&format!("{flag}=")));
        for (flag, wanted) in [("--tls", Encryption::Tls), ("--tunnelled", Encryption::Tunnelled)] {
            if !has(flag) {
                continue;
            }
            if encryption == Encryption::Auto {
                encryption = wanted;
            } else if encryption != wanted {
                return Err(conflict(format!("migrate_options has {flag}, but migration_encryption is {}", encryption.name())));
            }
        }
        let parallel = match r.parallel {
            0 => None,
            n @ 1..=255 => Some(n as u32),
            n => return Err(conflict(format!("migration_parallel {n} is not between 0 (one connection) and 255"))),
        };
        let parallel_option = has("--parallel") || has("--parallel-connections");
        if parallel.is_some() && parallel_option {
            return Err(conflict("migrate_options has --parallel as well as migration_parallel; set one".into()));
        }
        // Seen in the lab: QEMU 7.2 (Debian 12) accepts post-copy with
        // multifd, then its target aborts on the switch (an assertion in
        // yank.c) and the guest, already running there, is lost. Post-copy
        // asked for through heartbeat's migrate_options counts the same.
        let postcopy = r.mode == MigrationMode::PostCopy || has("--postcopy");
        if postcopy && (parallel.is_some() || parallel_option) {
            return Err(conflict("post-copy with parallel connections crashes QEMU's target at the switch, losing the guest: use migration_mode=live with migration_parallel, or no parallel connections".into()));
        }
        let zerocopy = has("--zerocopy");
        if encryption == Encryption::Tunnelled {
            if parallel.is_some() || parallel_option {
                return Err(conflict("libvirt cannot send parallel connections through a tunnel: set migration_parallel=0 or migration_encryption=tls".into()));
            }
            if postcopy {
                return Err(conflict("libvirt does not support post-copy with a tunnelled migration: use migration_encryption=tls".into()));
            }
            if r.data_uri_set {
                return Err(conflict("a tunnelled migration goes through the libvirt connection, so migrateuri and migrateport have no meaning with it".into()));
            }
            if r.transport == "tcp" {
                return Err(conflict("a tunnel through a qemu+tcp connection is clear text: use the ssh or tls transport, or migration_encryption=tls".into()));
            }
        }
        if zerocopy && matches!(encryption, Encryption::Tls | Encryption::Tunnelled) {
            return Err(conflict(format!("zero-copy (--zerocopy in migrate_options) cannot send an encrypted stream, and migration_encryption is {}", encryption.name())));
        }
        Ok(StreamSettings { encryption, parallel, zerocopy })
    }

    /// What works between Debian 12 nodes but fails once a Debian 13 node
    /// is an end of the migration, for validate-all to say before a
    /// rolling upgrade finds it. Warnings, not refusals: the same settings
    /// work today on a cluster of Debian 12 nodes, and a refusal would
    /// answer 6 to every monitor of a guest that runs fine.
    pub fn upgrade_warnings(&self, migrate_options: Option<&str>) -> Vec<String> {
        let options = words(migrate_options);
        let has = |flag: &str| options.iter().any(|w| w == flag || w.starts_with(&format!("{flag}=")));
        let mut warnings = Vec::new();
        let parallel = self.parallel.is_some() || has("--parallel") || has("--parallel-connections");
        if parallel && (has("--compressed") || has("--comp-methods")) {
            warnings.push(
                "migrate_options asks for compression over parallel connections: libvirt 9.4 and later (11.3 on Debian 13) refuse that before any data is sent, so a migration to or from such a node fails; drop one of them before a node is upgraded"
                    .to_string(),
            );
        }
        let methods = options.iter().position(|w| w == "--comp-methods").and_then(|i| options.get(i + 1)).map(String::as_str);
        let methods = options.iter().find_map(|w| w.strip_prefix("--comp-methods=")).or(methods);
        if methods.is_some_and(|m| m.split(',').any(|m| m == "mt")) {
            warnings.push("migrate_options asks for the 'mt' compression method, which QEMU 9.1 and later (10.0 on Debian 13) no longer have: a migration to or from such a node fails".to_string());
        }
        warnings
    }

    /// How this node sends the stream now, from its own certificates in
    /// `cert_dir`. Err: `tls` was asked for and cannot be had.
    pub fn plan(&self, cert_dir: &Path) -> Result<Plan, String> {
        let missing = || missing_certs(cert_dir, &SOURCE_FILES);
        Ok(match self.encryption {
            Encryption::Tunnelled => Plan::Use(Stream::Tunnelled),
            Encryption::None => Plan::Use(Stream::Clear),
            Encryption::Tls => match missing() {
                m if m.is_empty() => Plan::Use(Stream::Tls),
                m => return Err(format!("migration_encryption=tls, but {} has no {}", cert_dir.display(), m.join(", "))),
            },
            Encryption::Auto if self.zerocopy => Plan::Clear { why: "migrate_options asks for zero-copy, which cannot encrypt".into() },
            Encryption::Auto => match missing() {
                m if m.is_empty() => Plan::TlsElseClear,
                m => Plan::Clear { why: format!("this node has no migration certificates ({} has no {})", cert_dir.display(), m.join(", ")) },
            },
        })
    }

    /// What validate-all says of this node. Err (6): `tls` without the
    /// certificates a node needs to send and to receive. Ok(Some): a warning,
    /// for `auto` on a node without them.
    pub fn check_node(&self, mode: MigrationMode, cert_dir: &Path) -> Result<Option<String>, String> {
        if mode == MigrationMode::Save {
            return Ok(None); // the memory goes to shared storage, not over the wire
        }
        let mut missing = missing_certs(cert_dir, &SOURCE_FILES);
        for f in missing_certs(cert_dir, &TARGET_FILES) {
            if !missing.contains(&f) {
                missing.push(f);
            }
        }
        match self.encryption {
            _ if missing.is_empty() => Ok(None),
            Encryption::Tls => Err(format!("migration_encryption=tls, but {} has no {}", cert_dir.display(), missing.join(", "))),
            Encryption::Auto if !self.zerocopy => Ok(Some(format!(
                "{} has no {}: migrations to and from this node will send the guest's memory in clear text (migration_encryption=auto)",
                cert_dir.display(),
                missing.join(", ")
            ))),
            _ => Ok(None),
        }
    }
}

/// The stream a migrate_to uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    Use(Stream),
    /// TLS; clear text only if the target turns out to have no certificates.
    TlsElseClear,
    /// Clear text under `auto`, for this reason, with a warning.
    Clear { why: String },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ocf::OcfCode;

    #[test]
    fn compression_with_parallel_connections_and_the_mt_method_are_warned_of() {
        let check = |parallel: i64, options: &str| StreamSettings::check(&Requested { parallel, migrate_options: Some(options), ..request("none") }).unwrap().upgrade_warnings(Some(options));
        assert!(check(2, "--compressed")[0].contains("compression over parallel connections"));
        assert!(check(0, "--parallel --compressed")[0].contains("compression over parallel connections"));
        assert!(check(0, "--compressed").is_empty(), "compression alone works on both releases");
        assert!(check(2, "--abort-on-error").is_empty());
        assert!(check(0, "--compressed --comp-methods mt").iter().any(|w| w.contains("'mt'")));
        assert!(check(0, "--compressed --comp-methods=xbzrle,mt").iter().any(|w| w.contains("'mt'")));
        assert!(check(0, "--compressed --comp-methods xbzrle").is_empty());
    }

    fn request(encryption: &str) -> Requested<'_> {
        Requested { encryption, parallel: 0, mode: MigrationMode::Live, migrate_options: None, transport: "ssh", data_uri_set: false }
    }

    fn refused(r: Requested) -> String {
        let e = StreamSettings::check(&r).unwrap_err();
        assert_eq!(e.code, OcfCode::ErrConfigured);
        e.reason
    }

    #[test]
    fn every_mode_parses_and_auto_is_the_default_name() {
        for name in Encryption::NAMES {
            assert_eq!(StreamSettings::check(&request(name)).unwrap().encryption.name(), name);
        }
        assert!(refused(request("ipsec")).contains("'ipsec' is not one of auto, tls, tunnelled, none"));
    }

    #[test]
    fn heartbeat_s_flags_in_migrate_options_keep_their_meaning() {
        let tls = StreamSettings::check(&Requested { migrate_options: Some("--compressed --tls"), ..request("auto") }).unwrap();
        assert_eq!(tls.encryption, Encryption::Tls);
        let tunnel = StreamSettings::check(&Requested { migrate_options: Some("--tunnelled"), ..request("auto") }).unwrap();
        assert_eq!(tunnel.encryption, Encryption::Tunnelled);
        assert!(refused(Requested { migrate_options: Some("--tls"), ..request("none") }).contains("migrate_options has --tls"));
    }

    #[test]
    fn what_libvirt_and_qemu_refuse_is_refused_first_with_a_reason() {
        let cases: &[(Requested, &str)] = &[
            (Requested { parallel: 4, ..request("tunnelled") }, "parallel connections through a tunnel"),
            (Requested { migrate_options: Some("--parallel"), ..request("tunnelled") }, "parallel connections through a tunnel"),
            (Requested { mode: MigrationMode::PostCopy, ..request("tunnelled") }, "post-copy"),
            (Requested { migrate_options: Some("--postcopy"), ..request("tunnelled") }, "post-copy with a tunnelled"),
            (Requested { data_uri_set: true, ..request("tunnelled") }, "migrateuri"),
            (Requested { transport: "tcp", ..request("tunnelled") }, "clear text"),
            (Requested { migrate_options: Some("--parallel --zerocopy"), ..request("tls") }, "zero-copy"),
            (Requested { parallel: 256, ..request("tls") }, "between 0"),
            (Requested { parallel: 2, migrate_options: Some("--parallel"), ..request("tls") }, "set one"),
            (Requested { parallel: 2, migrate_options: Some("--postcopy --postcopy-after-precopy"), ..request("tls") }, "post-copy with parallel"),
            (Requested { migrate_options: Some("--parallel --postcopy"), ..request("none") }, "post-copy with parallel"),
            (Requested { parallel: 2, mode: MigrationMode::PostCopy, ..request("tls") }, "crashes QEMU's target"),
        ];
        for (r, expected) in cases {
            let reason = refused(Requested { ..*r });
            assert!(reason.contains(expected), "{reason}");
        }
        let ok = StreamSettings::check(&Requested { parallel: 4, mode: MigrationMode::Pause, ..request("tls") }).unwrap();
        assert_eq!(ok.parallel, Some(4));
    }

    fn cert_dir(files: &[&str]) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("ferry-enc-{}-{}", std::process::id(), files.len()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for f in files {
            std::fs::write(dir.join(f), "pem").unwrap();
        }
        dir
    }

    #[test]
    fn auto_uses_tls_only_with_certificates_and_otherwise_says_why() {
        let auto = StreamSettings::check(&request("auto")).unwrap();
        let all = cert_dir(&["ca-cert.pem", "client-cert.pem", "client-key.pem", "server-cert.pem", "server-key.pem"]);
        let none = cert_dir(&[]);
        assert_eq!(auto.plan(&all), Ok(Plan::TlsElseClear));
        assert!(matches!(auto.plan(&none), Ok(Plan::Clear { why }) if why.contains("no migration certificates") && why.contains("client-key.pem")));
        let tls = StreamSettings::check(&request("tls")).unwrap();
        assert_eq!(tls.plan(&all), Ok(Plan::Use(Stream::Tls)));
        assert!(tls.plan(&none).unwrap_err().contains("ca-cert.pem"));
        let zerocopy = StreamSettings::check(&Requested { migrate_options: Some("--parallel --zerocopy"), ..request("auto") }).unwrap();
        assert!(matches!(zerocopy.plan(&all), Ok(Plan::Clear { why }) if why.contains("zero-copy")));
        assert_eq!(StreamSettings::check(&request("none")).unwrap().plan(&none), Ok(Plan::Use(Stream::Clear)));
        // validate-all: tls needs all five files; auto warns; save needs none.
        assert!(tls.check_node(MigrationMode::Live, &none).unwrap_err().contains("server-key.pem"));
        assert_eq!(tls.check_node(MigrationMode::Live, &all), Ok(None));
        assert_eq!(tls.check_node(MigrationMode::Save, &none), Ok(None));
        assert!(auto.check_node(MigrationMode::Live, &none).unwrap().unwrap().contains("clear text"));
        for dir in [all, none] {
            std::fs::remove_dir_all(dir).unwrap();
        }
    }
}
