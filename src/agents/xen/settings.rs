//! The Xen agent's parameters: heartbeat:Xen's, read once and checked, plus
//! ferry's migration settings.

use std::path::PathBuf;
use std::time::Duration;

use crate::agents::common::{absolute_path, save_migration_dir};
use crate::agents::lifecycle::MigrationMode;
use crate::backend::xl::config_name;
use crate::ocf::metadata::Params;
use crate::ocf::OcfError;

#[derive(Clone, Debug)]
pub struct Settings {
    pub xmfile: PathBuf,
    /// Whether the CIB set xmfile at all (see `domain_name`).
    pub xmfile_given: bool,
    pub name: Option<String>,
    /// `None`: two thirds of the stop budget.
    pub shutdown_timeout: Option<Duration>,
    pub shutdown_acpi: bool,
    pub balance_memory: bool,
    pub reserved_dom0_mib: u64,
    pub node_ip_attribute: Option<String>,
    pub monitor_scripts: Vec<String>,
    pub utilization_cpu: bool,
    pub utilization_hv_memory: bool,
    pub transport: Option<String>,
    /// Set for `migration_mode=save`: where the image waits, on shared storage.
    pub save_dir: Option<PathBuf>,
}

fn configuration_error(reason: String) -> OcfError {
    OcfError::configured(reason)
}

fn valid_domain_name(name: &str) -> bool {
    !name.is_empty() && !name.contains('%') && !name.chars().any(char::is_whitespace)
}

impl Settings {
    pub fn from_params(p: &Params) -> Result<Settings, OcfError> {
        let xmfile = absolute_path(p, "xmfile")?.unwrap_or_default();
        let xmfile_given = p.given("xmfile");
        let name = p.str("name").map(String::from);
        if let Some(n) = &name {
            if !valid_domain_name(n) {
                return Err(configuration_error(format!("name '{n}' is not a usable domain name (no spaces or %)")));
            }
        }
        let shutdown_timeout = match p.str("shutdown_timeout") {
            None => None,
            Some(v) => Some(Duration::from_secs(
                v.trim().parse::<u64>().map_err(|_| configuration_error(format!("shutdown_timeout '{v}' is not a number of seconds")))?,
            )),
        };
        let reserved = p.str("reserved_Dom0_memory").unwrap_or("512");
        let reserved_dom0_mib = reserved
            .trim()
            .parse::<u64>()
            .map_err(|_| configuration_error(format!("reserved_Dom0_memory '{reserved}' is not a number of MiB")))?;
        let transport = p.str("migration_transport").map(String::from);
        let state_dir = absolute_path(p, "migration_state_dir")?;
        let save_dir = match MigrationMode::parse(p.str("migration_mode").unwrap_or("live"), &[MigrationMode::Live, MigrationMode::Save])? {
            MigrationMode::Save => Some(save_migration_dir(state_dir)?),
            _ => None,
        };
        Ok(Settings {
            xmfile,
            xmfile_given,
            name,
            shutdown_timeout,
            shutdown_acpi: p.bool("shutdown_acpi"),
            balance_memory: p.bool("allow_mem_management"),
            reserved_dom0_mib,
            node_ip_attribute: p.str("node_ip_attribute").map(String::from),
            monitor_scripts: p.str("monitor_scripts").map(|v| v.split_whitespace().map(String::from).collect()).unwrap_or_default(),
            utilization_cpu: p.bool("autoset_utilization_cpu"),
            utilization_hv_memory: p.bool("autoset_utilization_hv_memory"),
            transport,
            save_dir,
        })
    }

    /// Where a save migration keeps `name`'s memory in flight.
    pub fn migration_image(&self, name: &str) -> Option<PathBuf> {
        self.save_dir.as_ref().map(|d| d.join(format!("{name}.migrating")))
    }

    /// The domain name: `name`, else the xmfile's name=, else the resource's
    /// name. The last is only right when the xmfile says no other: with the
    /// xmfile unreadable and no `name`, nothing on this node can say which
    /// domain is the guest, and the answer says why.
    pub fn domain_name(&self, instance: &str, deadline: crate::ocf::Deadline) -> Result<DomainName, OcfError> {
        if let Some(n) = &self.name {
            return Ok(DomainName::Known(n.clone()));
        }
        // Neither file nor name given: the stop Pacemaker runs for a
        // resource deleted from the CIB once the node's history of it is
        // gone (crm_resource --cleanup), which carries no parameters at
        // all. The resource's name is then the only identity left, and
        // heartbeat's rule takes it too. Refusing would fail the stop and
        // fence the node; and no resource is left to start a second copy.
        if !self.xmfile_given {
            crate::ocf::log::warn(&format!(
                "no xmfile or name was given (as for a resource deleted from the CIB); taking the resource's name, {instance}, for the domain's"
            ));
            return Ok(DomainName::Known(instance.to_string()));
        }
        let text = match crate::fsread::read_to_string(&self.xmfile, deadline) {
            Ok(text) => text,
            Err(e) => {
                return Ok(DomainName::Unknowable(format!(
                    "xmfile {} is not readable ({e}) and no name parameter says which domain to look for",
                    self.xmfile.display()
                )))
            }
        };
        match config_name(&text) {
            Some(n) if valid_domain_name(&n) => Ok(DomainName::Known(n)),
            Some(n) => Err(configuration_error(format!("the name '{n}' in {} is not usable (no spaces or %)", self.xmfile.display()))),
            None => Ok(DomainName::Known(instance.to_string())),
        }
    }
}

/// The guest's domain name, or why this node cannot know it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DomainName {
    Known(String),
    Unknowable(String),
}

impl DomainName {
    /// For the actions that need the guest's files here anyway (start,
    /// validate, migrate): a node that cannot read the xmfile lacks it (5).
    /// Never for monitor or stop, where 5 reads as "not running".
    pub fn required(self) -> Result<String, OcfError> {
        match self {
            DomainName::Known(n) => Ok(n),
            DomainName::Unknowable(why) => Err(OcfError::installed(why)),
        }
    }
}
