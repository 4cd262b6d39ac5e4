//! VirtualDomain's parameters, read once into typed settings and checked.
//! Every parameter metadata/VirtualDomain.xml declares is read here (a unit
//! test proves it), so the meta-data and the code cannot drift apart.

use std::path::PathBuf;

use crate::ocf::metadata::Params;
use crate::ocf::OcfError;

pub use crate::agents::common::UtilizationPolicy;
use crate::agents::common::{absolute_path, save_migration_dir};
pub use crate::agents::lifecycle::MigrationMode;
use super::encryption::{Requested, StreamSettings};
use super::health::{IoErrorPolicy, Silence};

/// The migration parameters.
#[derive(Clone, Debug, Default)]
pub struct MigrationSettings {
    pub mode: MigrationMode,
    /// Where `save` migrations keep the guest's memory; shared by all nodes.
    pub state_dir: Option<PathBuf>,
    /// How long without progress before the ladder climbs a rung.
    pub stall: std::time::Duration,
    pub downtime_max_ms: u64,
    pub downtime_steps: u32,
    pub auto_converge: bool,
    pub transport: Option<String>,
    pub user: Option<String>,
    pub downtime_ms: i64,
    pub speed_mib_s: i64,
    pub network_suffix: Option<String>,
    pub migrate_uri: Option<String>,
    pub options: Option<String>,
    pub port: Option<u16>,
    pub remote_uri: Option<String>,
    /// migration_encryption and migration_parallel, checked.
    pub stream: StreamSettings,
    /// How many outgoing migrations this node runs at once; 0: no limit.
    pub slots: u32,
}

#[derive(Clone, Debug)]
pub struct Settings {
    pub config: PathBuf,
    /// Set when the `hypervisor` parameter is; else the node's libvirt default.
    pub hypervisor: Option<String>,
    pub force_stop: bool,
    pub shutdown_mode: Option<String>,
    pub monitor_scripts: Vec<String>,
    /// (attribute name, policy) for cpu, host_memory, hv_memory.
    pub utilization: [(&'static str, UtilizationPolicy); 3],
    pub save_config_on_stop: bool,
    pub sync_config_on_stop: bool,
    pub snapshot_dir: Option<PathBuf>,
    pub backing_file: Option<PathBuf>,
    pub stateless: bool,
    pub copy_in_dirs: Vec<String>,
    pub start_resources: bool,
    pub migration: MigrationSettings,
    pub io_errors: IoErrorPolicy,
    /// What a silent guest agent means to a depth-10 monitor.
    pub guest_agent_silence: Silence,
    /// How long a depth-10 monitor waits for the guest agent's answer.
    pub guest_agent_timeout: std::time::Duration,
    /// How long after its start a guest's agent may not be connected yet.
    pub guest_agent_boot_grace: std::time::Duration,
}

const SHUTDOWN_MODES: [&str; 5] = ["acpi", "agent", "initctl", "signal", "paravirt"];

pub fn words(value: Option<&str>) -> Vec<String> {
    value.map(|v| v.split_whitespace().map(String::from).collect()).unwrap_or_default()
}

fn configuration_error(reason: String) -> OcfError {
    OcfError::configured(reason)
}

fn utilization_policy(params: &Params, attribute: &str) -> UtilizationPolicy {
    let auto = params.bool(&format!("autoset_utilization_{attribute}"));
    let unset = params.bool(&format!("unset_utilization_{attribute}"));
    match (auto, unset) {
        (true, _) => UtilizationPolicy::Set,
        (false, true) => UtilizationPolicy::Delete,
        (false, false) => UtilizationPolicy::Keep,
    }
}

fn is_user_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

impl Settings {
    /// Reads and checks every parameter. Errors are ERR_CONFIGURED: the
    /// resource definition itself is wrong, on every node.
    pub fn from_params(p: &Params) -> Result<Settings, OcfError> {
        let config = absolute_path(p, "config")?.unwrap_or_default();
        let hypervisor = p.str("hypervisor").map(String::from);
        if let Some(uri) = &hypervisor {
            if !uri.contains(":/") || uri.chars().any(char::is_whitespace) {
                return Err(configuration_error(format!("hypervisor '{uri}' is not a libvirt URI (like qemu:///system)")));
            }
        }
        let shutdown_mode = p.str("shutdown_mode").map(String::from);
        if let Some(modes) = &shutdown_mode {
            if let Some(m) = modes.split(',').find(|m| !SHUTDOWN_MODES.contains(&m.trim())) {
                return Err(configuration_error(format!("shutdown_mode '{m}' is not one of {}", SHUTDOWN_MODES.join(", "))));
            }
        }
        let force_stop = p.bool("force_stop");
        let snapshot_dir = p.str("snapshot").map(PathBuf::from);
        if snapshot_dir.is_some() && force_stop {
            return Err(configuration_error("snapshot and force_stop exclude each other: a destroyed guest cannot be saved".into()));
        }
        let backing_file = p.str("backingfile").map(PathBuf::from);
        let stateless = p.bool("stateless");
        if stateless && backing_file.is_none() {
            return Err(configuration_error("stateless=true needs a backingfile to recreate the disk from".into()));
        }
        let copy_in_dirs = words(p.str("copyindirs"));
        if !copy_in_dirs.is_empty() && !stateless {
            return Err(configuration_error("copyindirs applies only to stateless guests (stateless=true)".into()));
        }
        let sync_config_on_stop = p.bool("sync_config_on_stop");
        let migration = MigrationSettings::from_params(p)?;
        let io_errors = IoErrorPolicy::parse(p.str("io_error_policy").unwrap_or("fail"))?;
        let guest_agent_silence = Silence::parse(p.str("guest_agent_silence").unwrap_or("fail"))?;
        let guest_agent_timeout = match p.int("guest_agent_timeout").unwrap_or(5) {
            t @ 1..=300 => std::time::Duration::from_secs(t as u64),
            t => return Err(configuration_error(format!("guest_agent_timeout {t} is not between 1 and 300 seconds"))),
        };
        let guest_agent_boot_grace = match p.int("guest_agent_boot_grace").unwrap_or(180) {
            t @ 0..=3600 => std::time::Duration::from_secs(t as u64),
            t => return Err(configuration_error(format!("guest_agent_boot_grace {t} is not between 0 and 3600 seconds"))),
        };
        Ok(Settings {
            config,
            hypervisor,
            force_stop,
            shutdown_mode,
            monitor_scripts: words(p.str("monitor_scripts")),
            utilization: [
                ("cpu", utilization_policy(p, "cpu")),
                ("host_memory", utilization_policy(p, "host_memory")),
                ("hv_memory", utilization_policy(p, "hv_memory")),
            ],
            save_config_on_stop: p.bool("save_config_on_stop") || sync_config_on_stop,
            sync_config_on_stop,
            snapshot_dir,
            backing_file,
            stateless,
            copy_in_dirs,
            start_resources: p.bool("start_resources"),
            migration,
            io_errors,
            guest_agent_silence,
            guest_agent_timeout,
            guest_agent_boot_grace,
        })
    }

    /// Where stop saves and start restores the guest's memory, with `snapshot`.
    pub fn state_file(&self, domain: &str) -> Option<PathBuf> {
        self.snapshot_dir.as_ref().map(|d| d.join(format!("{domain}.state")))
    }

    /// Where a `save` migration keeps the guest's memory in flight, in any
    /// mode: a start restores a leftover image whatever the mode is now.
    pub fn migration_image(&self, domain: &str) -> Option<PathBuf> {
        self.migration.state_dir.as_ref().map(|d| d.join(format!("{domain}.migrating")))
    }

    /// The copy-on-write disk for `backingfile`: the config path, ending .qcow2.
    pub fn overlay_disk(&self) -> PathBuf {
        self.config.with_extension("qcow2")
    }
}

/// The transports of libvirt's remote driver that reach another node
/// (remote_open: "should be tls|unix|ssh|ext|tcp|libssh2|libssh").
const REMOTE_TRANSPORTS: [&str; 6] = ["ssh", "tls", "tcp", "libssh", "libssh2", "ext"];

impl MigrationSettings {
    /// In save mode, where the guest's memory waits on shared storage
    /// between migrate_to and migrate_from; `None` for a push migration.
    pub fn image(&self, domain: &str) -> Option<PathBuf> {
        (self.mode == MigrationMode::Save).then(|| self.state_dir.as_ref().map(|d| d.join(format!("{domain}.migrating")))).flatten()
    }

    fn from_params(p: &Params) -> Result<MigrationSettings, OcfError> {
        // Lower case, as libvirt reads it, so that "TLS" is tls everywhere
        // ferry asks which transport it is.
        let transport = p.str("migration_transport").map(|t| t.to_ascii_lowercase());
        if let Some(t) = &transport {
            // libvirt's remote driver knows these (and unix, which reaches
            // no other node); anything else fails only when a migration is
            // tried, so a typo would wait for the next drain to show.
            if !REMOTE_TRANSPORTS.contains(&t.as_str()) {
                return Err(configuration_error(format!("migration_transport '{t}' is not a URI transport libvirt can reach another node with ({})", REMOTE_TRANSPORTS.join(", "))));
            }
        }
        let user = p.str("migration_user").map(String::from);
        if let Some(u) = &user {
            if !is_user_name(u) {
                return Err(configuration_error(format!("migration_user '{u}' is not a valid user name")));
            }
        }
        let non_negative = |name: &str| -> Result<i64, OcfError> {
            let v = p.int(name).unwrap_or(0);
            if v < 0 {
                return Err(configuration_error(format!("{name} must not be negative ({v})")));
            }
            Ok(v)
        };
        let downtime_ms = non_negative("migration_downtime")?;
        let speed_mib_s = non_negative("migration_speed")?;
        let port = match p.int("migrateport") {
            None => None,
            Some(v @ 1..=65535) => Some(v as u16),
            Some(v) => return Err(configuration_error(format!("migrateport {v} is not a TCP port (1-65535)"))),
        };
        let mode = p.str("migration_mode").unwrap_or("live");
        let mode = MigrationMode::parse(mode, &[MigrationMode::Live, MigrationMode::Pause, MigrationMode::PostCopy, MigrationMode::Save])?;
        let state_dir = absolute_path(p, "migration_state_dir")?;
        if mode == MigrationMode::Save {
            save_migration_dir(state_dir.clone())?;
        }
        let stall = non_negative("migration_stall")?;
        if stall == 0 {
            return Err(configuration_error("migration_stall must be at least 1 second".into()));
        }
        let mut downtime_max_ms = non_negative("migration_downtime_max")? as u64;
        // A default never conflicts with a legal value of another parameter:
        // left at its default, the ceiling rises to the downtime asked for.
        if p.is_default("migration_downtime_max") && downtime_max_ms < downtime_ms as u64 {
            downtime_max_ms = downtime_ms as u64;
        }
        if downtime_max_ms > 0 && downtime_max_ms < downtime_ms as u64 {
            return Err(configuration_error(format!("migration_downtime_max {downtime_max_ms} is below migration_downtime {downtime_ms}")));
        }
        let downtime_steps = non_negative("migration_downtime_steps")?.clamp(1, 100) as u32;
        let slots = match non_negative("migration_slots")? {
            v @ 0..=64 => v as u32,
            v => return Err(configuration_error(format!("migration_slots {v} is more than 64; 0 means no limit"))),
        };
        let remote_uri = p.str("remoteuri").map(String::from);
        let migrate_uri = p.str("migrateuri").map(String::from);
        let options = p.str("migrate_options").map(String::from);
        // libvirt's transport for the connection to the target: remoteuri's,
        // else the one target_uri puts in (a remote URI without one is TLS).
        let target_transport = match &remote_uri {
            Some(uri) => uri.split("://").next().and_then(|scheme| scheme.split_once('+')).map_or("tls", |(_, t)| t).to_string(),
            None => transport.clone().filter(|t| !t.is_empty()).unwrap_or_else(|| "ssh".into()),
        };
        let stream = StreamSettings::check(&Requested {
            encryption: p.str("migration_encryption").unwrap_or("auto"),
            parallel: p.int("migration_parallel").unwrap_or(0),
            mode,
            migrate_options: options.as_deref(),
            transport: &target_transport,
            data_uri_set: migrate_uri.is_some() || port.is_some() || words(options.as_deref()).iter().any(|w| w.starts_with("--migrateuri")),
        })?;
        Ok(MigrationSettings {
            mode,
            state_dir,
            stall: std::time::Duration::from_secs(stall as u64),
            downtime_max_ms,
            downtime_steps,
            auto_converge: p.bool("migration_auto_converge"),
            transport,
            user,
            downtime_ms,
            speed_mib_s,
            network_suffix: p.str("migration_network_suffix").map(String::from),
            migrate_uri,
            options,
            port,
            remote_uri,
            stream,
            slots,
        })
    }
}

#[cfg(test)]
pub(super) mod tests {
    /// The migration settings from these parameters (and a config path).
    pub fn migration_settings(pairs: &[(&str, &str)]) -> MigrationSettings {
        let md = crate::ocf::metadata::Metadata::parse(super::super::METADATA).unwrap();
        let mut given: std::collections::BTreeMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        given.insert("config".into(), "/vm.xml".into());
        Settings::from_params(&md.resolve(&given).unwrap()).unwrap().migration
    }

    use super::*;
    use crate::ocf::metadata::Metadata;
    use crate::ocf::OcfCode;
    use std::collections::BTreeMap;

    fn resolve(pairs: &[(&str, &str)]) -> Params {
        let md = Metadata::parse(super::super::METADATA).unwrap();
        let given: BTreeMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        md.resolve(&given).unwrap()
    }

    fn parse(pairs: &[(&str, &str)]) -> Result<Settings, OcfError> {
        Settings::from_params(&resolve(pairs))
    }

    #[test]
    fn every_declared_parameter_is_read() {
        let params = resolve(&[("config", "/etc/vm.xml")]);
        Settings::from_params(&params).unwrap();
        assert_eq!(params.unread(), Vec::<String>::new());
    }

    #[test]
    fn anchor_defaults_hold() {
        let settings = parse(&[("config", "/etc/vm.xml")]).unwrap();
        assert!(!settings.force_stop && !settings.save_config_on_stop && !settings.start_resources);
        assert_eq!(settings.utilization.map(|(_, p)| p), [UtilizationPolicy::Set; 3]);
        assert_eq!(settings.hypervisor, None);
        assert_eq!(settings.migration.downtime_ms, 0);
        assert_eq!(settings.migration.mode, MigrationMode::Live);
        assert!(settings.migration.auto_converge);
        assert_eq!((settings.migration.downtime_max_ms, settings.migration.downtime_steps), (2000, 3));
    }

    #[test]
    fn a_downtime_above_the_default_ceiling_raises_the_ceiling() {
        let settings = parse(&[("config", "/etc/vm.xml"), ("migration_downtime", "2500")]).unwrap();
        assert_eq!((settings.migration.downtime_ms, settings.migration.downtime_max_ms), (2500, 2500));
    }

    #[test]
    fn sync_implies_save_and_unset_applies_only_without_autoset() {
        let settings = parse(&[
            ("config", "/vm.xml"),
            ("sync_config_on_stop", "true"),
            ("autoset_utilization_cpu", "false"),
            ("unset_utilization_cpu", "true"),
            ("autoset_utilization_hv_memory", "false"),
            ("unset_utilization_host_memory", "true"),
        ])
        .unwrap();
        assert!(settings.save_config_on_stop);
        assert_eq!(settings.utilization[0], ("cpu", UtilizationPolicy::Delete));
        assert_eq!(settings.utilization[1], ("host_memory", UtilizationPolicy::Set));
        assert_eq!(settings.utilization[2], ("hv_memory", UtilizationPolicy::Keep));
    }

    #[test]
    fn conflicting_or_malformed_values_are_err_configured() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("config", "vm.xml")], "absolute path"),
            (&[("config", "/vm.xml"), ("hypervisor", "qemu")], "not a libvirt URI"),
            (&[("config", "/vm.xml"), ("shutdown_mode", "acpi,reboot")], "shutdown_mode 'reboot'"),
            (&[("config", "/vm.xml"), ("snapshot", "/s"), ("force_stop", "1")], "exclude each other"),
            (&[("config", "/vm.xml"), ("stateless", "true")], "needs a backingfile"),
            (&[("config", "/vm.xml"), ("copyindirs", "/a")], "only to stateless"),
            (&[("config", "/vm.xml"), ("migration_user", "Root;rm")], "migration_user"),
            (&[("config", "/vm.xml"), ("migration_transport", "ssh -o x")], "migration_transport"),
            (&[("config", "/vm.xml"), ("migration_transport", "pigeon")], "migration_transport 'pigeon' is not a URI transport"),
            (&[("config", "/vm.xml"), ("migration_transport", "unix")], "migration_transport 'unix'"),
            (&[("config", "/vm.xml"), ("migration_transport", "ssh+tls")], "migration_transport 'ssh+tls'"),
            (&[("config", "/vm.xml"), ("migrateport", "70000")], "migrateport 70000"),
            (&[("config", "/vm.xml"), ("migration_downtime", "-5")], "migration_downtime must not be negative"),
            (&[("config", "/vm.xml"), ("migration_mode", "teleport")], "migration_mode 'teleport'"),
            (&[("config", "/vm.xml"), ("migration_mode", "save")], "needs migration_state_dir"),
            (&[("config", "/vm.xml"), ("migration_state_dir", "shared")], "must be an absolute path"),
            (&[("config", "/vm.xml"), ("migration_stall", "0")], "at least 1 second"),
            (&[("config", "/vm.xml"), ("migration_downtime", "900"), ("migration_downtime_max", "500")], "below migration_downtime"),
            (&[("config", "/vm.xml"), ("migration_downtime", "2500"), ("migration_downtime_max", "1999")], "below migration_downtime"),
        ];
        for (pairs, expected) in cases {
            let e = parse(pairs).unwrap_err();
            assert_eq!(e.code, OcfCode::ErrConfigured, "{pairs:?}");
            assert!(e.reason.contains(expected), "{pairs:?}: {}", e.reason);
        }
    }

    #[test]
    fn every_transport_libvirt_reaches_a_node_with_is_accepted_in_any_case() {
        for t in ["ssh", "tls", "tcp", "libssh", "libssh2", "ext", "TLS", "Ssh"] {
            let settings = parse(&[("config", "/vm.xml"), ("migration_transport", t)]).unwrap_or_else(|e| panic!("{t}: {}", e.reason));
            assert_eq!(settings.migration.transport, Some(t.to_ascii_lowercase()));
        }
    }

    #[test]
    fn shutdown_modes_in_a_list_are_accepted() {
        let settings = parse(&[("config", "/vm.xml"), ("shutdown_mode", "agent,acpi")]).unwrap();
        assert_eq!(settings.shutdown_mode.as_deref(), Some("agent,acpi"));
    }
}
