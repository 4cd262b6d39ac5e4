//! What Pacemaker tells an agent through the environment.
//!
//! Resource parameters arrive as `OCF_RESKEY_<name>`, meta attributes as
//! `OCF_RESKEY_CRM_meta_<name>` (with `-` turned into `_`), and the resource's
//! name as `OCF_RESOURCE_INSTANCE`. This reads them once into plain maps so the
//! rest of ferry never touches the process environment.

use std::collections::BTreeMap;
use std::time::Duration;

const RESKEY: &str = "OCF_RESKEY_";
const META: &str = "OCF_RESKEY_CRM_meta_";

#[derive(Debug, Clone, Default)]
pub struct OcfEnv {
    pub instance: String,
    /// `OCF_RESKEY_<name>` without the meta attributes.
    pub params: BTreeMap<String, String>,
    /// `OCF_RESKEY_CRM_meta_<name>`, keyed by `<name>`.
    pub meta: BTreeMap<String, String>,
    /// OCF variables whose name or value is not UTF-8: no CIB can produce
    /// them, so they are refused by name rather than guessed at.
    pub not_utf8: Vec<String>,
    /// OCF_CHECK_LEVEL: how deep a monitor looks (0, or 10 to ask the
    /// guest itself). Unset or unreadable is 0, the cheap check.
    pub check_level: u32,
}

impl OcfEnv {
    /// `std::env::vars` would panic on a variable that is not UTF-8, and
    /// any variable may be: it is read as raw bytes and judged here.
    pub fn from_process() -> OcfEnv {
        Self::from_os_vars(std::env::vars_os())
    }

    pub fn from_os_vars(vars: impl IntoIterator<Item = (std::ffi::OsString, std::ffi::OsString)>) -> OcfEnv {
        let mut not_utf8 = Vec::new();
        let mut usable = Vec::new();
        for (key, value) in vars {
            let key_text = key.to_string_lossy();
            if !key_text.starts_with("OCF_") {
                continue; // not ours to judge
            }
            match (key.to_str(), value.into_string()) {
                (Some(k), Ok(v)) => usable.push((k.to_string(), v)),
                _ => not_utf8.push(key_text.into_owned()),
            }
        }
        let mut env = Self::from_vars(usable);
        env.not_utf8 = not_utf8;
        env
    }

    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> OcfEnv {
        let mut env = OcfEnv::default();
        for (key, value) in vars {
            if let Some(name) = key.strip_prefix(META) {
                env.meta.insert(name.to_string(), value);
            } else if let Some(name) = key.strip_prefix(RESKEY) {
                env.params.insert(name.to_string(), value);
            } else if key == "OCF_RESOURCE_INSTANCE" {
                env.instance = value;
            } else if key == "OCF_CHECK_LEVEL" {
                env.check_level = value.trim().parse().unwrap_or(0);
            }
        }
        if env.instance.is_empty() {
            env.instance = "default".to_string();
        }
        // Pacemaker passes the check level bare, but an op attribute may
        // also arrive with the parameter prefix; it is no parameter.
        if let Some(level) = env.params.remove("OCF_CHECK_LEVEL") {
            env.check_level = env.check_level.max(level.trim().parse().unwrap_or(0));
        }
        env
    }

    fn meta_ms(&self, name: &str) -> Option<u64> {
        self.meta.get(name).and_then(|v| v.trim().parse::<u64>().ok())
    }

    /// The operation's timeout as Pacemaker set it (milliseconds).
    pub fn timeout(&self) -> Option<Duration> {
        self.meta_ms("timeout").filter(|ms| *ms > 0).map(Duration::from_millis)
    }

    /// A probe is a monitor with no interval (unset counts as 0, as in ocf-shellfuncs).
    pub fn is_probe(&self) -> bool {
        self.meta_ms("interval").unwrap_or(0) == 0
    }

    /// Set when the resource is configured as a clone (or a bundle/promotable one).
    pub fn is_clone(&self) -> bool {
        self.meta.contains_key("clone") || self.meta.contains_key("clone_max")
    }

    /// Whether the process runs under a cluster manager (which alone can act on
    /// node attributes such as utilization).
    pub fn under_cluster(&self) -> bool {
        self.params.contains_key("crm_feature_set")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> OcfEnv {
        OcfEnv::from_vars(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn splits_parameters_from_meta_attributes() {
        let e = env(&[
            ("OCF_RESKEY_config", "/etc/vm.xml"),
            ("OCF_RESKEY_CRM_meta_timeout", "20000"),
            ("OCF_RESKEY_CRM_meta_interval", "10000"),
            ("OCF_RESOURCE_INSTANCE", "vm1"),
            ("PATH", "/bin"),
        ]);
        assert_eq!(e.instance, "vm1");
        assert_eq!(e.params.get("config").map(String::as_str), Some("/etc/vm.xml"));
        assert!(!e.params.contains_key("CRM_meta_timeout"));
        assert_eq!(e.timeout(), Some(Duration::from_secs(20)));
        assert!(!e.is_probe());
    }

    #[test]
    fn variables_that_are_not_utf8_are_named_not_fatal() {
        use std::os::unix::ffi::OsStringExt;
        let os = |b: &[u8]| std::ffi::OsString::from_vec(b.to_vec());
        let e = OcfEnv::from_os_vars([
            (os(b"OCF_RESKEY_config"), os(b"/etc/\xff.xml")),
            (os(b"OCF_RESKEY_name"), os(b"good")),
            (os(b"LANG"), os(b"\xfe\xff")),
        ]);
        assert_eq!(e.not_utf8, ["OCF_RESKEY_config"]);
        assert_eq!(e.params.get("name").map(String::as_str), Some("good"));
    }

    #[test]
    fn the_check_level_is_read_bare_or_prefixed_and_is_no_parameter() {
        assert_eq!(env(&[]).check_level, 0);
        assert_eq!(env(&[("OCF_CHECK_LEVEL", "10")]).check_level, 10);
        let prefixed = env(&[("OCF_RESKEY_OCF_CHECK_LEVEL", "10")]);
        assert_eq!(prefixed.check_level, 10);
        assert!(prefixed.params.is_empty());
        assert_eq!(env(&[("OCF_CHECK_LEVEL", "deep")]).check_level, 0, "unreadable is the cheap check");
    }

    #[test]
    fn a_monitor_without_interval_is_a_probe() {
        assert!(env(&[]).is_probe());
        assert!(env(&[("OCF_RESKEY_CRM_meta_interval", "0")]).is_probe());
    }

    #[test]
    fn clone_meta_attributes_mark_a_clone() {
        assert!(env(&[("OCF_RESKEY_CRM_meta_clone", "0")]).is_clone());
        assert!(env(&[("OCF_RESKEY_CRM_meta_clone_max", "2")]).is_clone());
        assert!(!env(&[("OCF_RESKEY_CRM_meta_timeout", "1")]).is_clone());
    }

    #[test]
    fn unset_or_zero_timeout_is_none() {
        assert_eq!(env(&[]).timeout(), None);
        assert_eq!(env(&[("OCF_RESKEY_CRM_meta_timeout", "0")]).timeout(), None);
        assert_eq!(env(&[("OCF_RESKEY_CRM_meta_timeout", "x")]).timeout(), None);
    }
}
