//! `metadata/<Agent>.xml` is the one truth about an agent's parameters and
//! actions. The binary embeds it, prints it for `meta-data`, and reads it here to
//! fill defaults, check types and find missing required parameters, so the code
//! and the advertised interface cannot drift apart.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::exit::{OcfCode, OcfError};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamType {
    String,
    Integer,
    Boolean,
}

#[derive(Clone, Debug)]
pub struct ParamSpec {
    pub name: String,
    pub kind: ParamType,
    pub default: Option<String>,
    pub required: bool,
    /// OCF 1.1: a change takes effect through reload-agent, without a
    /// restart. Pacemaker restarts the resource for any other change.
    pub reloadable: bool,
    /// OCF 1.1 `<deprecated><replaced-with name=…/>`: still accepted, but
    /// these parameters say the same thing better.
    pub replaced_with: Vec<String>,
    /// OCF 1.1: no two resources may share the values of all parameters in
    /// this group.
    pub unique_group: Option<String>,
    pub shortdesc: String,
    pub longdesc: String,
}

#[derive(Clone, Debug)]
pub struct ActionSpec {
    pub name: String,
    pub timeout: Option<Duration>,
    /// The advertised values as written, for people (the man page).
    pub timeout_text: Option<String>,
    pub interval: Option<String>,
    pub depth: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Metadata {
    /// The agent the XML describes; the tests tie it to the registry.
    #[cfg_attr(not(test), allow(dead_code))]
    pub agent: String,
    pub shortdesc: String,
    pub longdesc: String,
    pub params: Vec<ParamSpec>,
    pub actions: Vec<ActionSpec>,
}

/// Parses "90s", "90", "2m", "500ms", "1h" as the meta-data's time values.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let t = text.trim();
    let (number, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => (&t[..i], &t[i..]),
        None => (t, "s"),
    };
    let n: u64 = number.parse().ok()?;
    match unit {
        "ms" | "msec" => Some(Duration::from_millis(n)),
        "s" | "sec" => Some(Duration::from_secs(n)),
        "m" | "min" => n.checked_mul(60).map(Duration::from_secs),
        "h" | "hr" => n.checked_mul(3600).map(Duration::from_secs),
        _ => None,
    }
}

/// The XML's shape, as serde reads it: only what ferry needs. Everything
/// else in the file (descriptions, versions) is for Pacemaker and people.
mod xml {
    use serde::Deserialize;

    #[derive(Deserialize)]
    pub struct ResourceAgent {
        #[serde(rename = "@name")]
        pub name: String,
        pub shortdesc: Option<Desc>,
        pub longdesc: Option<Desc>,
        #[serde(default)]
        pub parameters: Parameters,
        #[serde(default)]
        pub actions: Actions,
    }

    #[derive(Deserialize)]
    pub struct Desc {
        #[serde(rename = "$text", default)]
        pub text: String,
    }

    #[derive(Deserialize, Default)]
    pub struct Parameters {
        #[serde(default)]
        pub parameter: Vec<Parameter>,
    }

    #[derive(Deserialize)]
    pub struct Parameter {
        #[serde(rename = "@name")]
        pub name: String,
        #[serde(rename = "@required")]
        pub required: Option<String>,
        #[serde(rename = "@reloadable")]
        pub reloadable: Option<String>,
        #[serde(rename = "@unique-group")]
        pub unique_group: Option<String>,
        pub shortdesc: Option<Desc>,
        pub longdesc: Option<Desc>,
        pub deprecated: Option<Deprecated>,
        pub content: Option<Content>,
    }

    #[derive(Deserialize)]
    pub struct Deprecated {
        #[serde(rename = "replaced-with", default)]
        pub replaced_with: Vec<ReplacedWith>,
    }

    #[derive(Deserialize)]
    pub struct ReplacedWith {
        #[serde(rename = "@name")]
        pub name: String,
    }

    #[derive(Deserialize)]
    pub struct Content {
        #[serde(rename = "@type")]
        pub kind: Option<String>,
        #[serde(rename = "@default")]
        pub default: Option<String>,
    }

    #[derive(Deserialize, Default)]
    pub struct Actions {
        #[serde(default)]
        pub action: Vec<Action>,
    }

    #[derive(Deserialize)]
    pub struct Action {
        #[serde(rename = "@name")]
        pub name: String,
        #[serde(rename = "@timeout")]
        pub timeout: Option<String>,
        #[serde(rename = "@interval")]
        pub interval: Option<String>,
        #[serde(rename = "@depth")]
        pub depth: Option<String>,
    }
}

fn desc_text(desc: Option<xml::Desc>) -> String {
    desc.map(|d| d.text.trim().to_string()).unwrap_or_default()
}

impl Metadata {
    /// Parses an agent's meta-data. The embedded XML is tested, so a failure here
    /// is a build defect; the message says where.
    pub fn parse(text: &str) -> Result<Metadata, String> {
        let agent: xml::ResourceAgent = quick_xml::de::from_str(text).map_err(|e| format!("meta-data XML: {e}"))?;
        if agent.name.is_empty() {
            return Err("meta-data has no <resource-agent name=…>".into());
        }
        let params = agent
            .parameters
            .parameter
            .into_iter()
            .map(|p| {
                let (kind, default) = match p.content {
                    Some(c) => (c.kind, c.default),
                    None => (None, None),
                };
                let kind = match kind.as_deref() {
                    Some("integer") => ParamType::Integer,
                    Some("boolean") => ParamType::Boolean,
                    Some("string") | None => ParamType::String,
                    Some(other) => return Err(format!("parameter {}: unsupported type {other}", p.name)),
                };
                let replaced_with = p.deprecated.map(|d| d.replaced_with.into_iter().map(|r| r.name).collect()).unwrap_or_default();
                Ok(ParamSpec {
                    name: p.name,
                    kind,
                    default,
                    required: p.required.as_deref() == Some("1"),
                    reloadable: p.reloadable.as_deref() == Some("1"),
                    replaced_with,
                    unique_group: p.unique_group,
                    shortdesc: desc_text(p.shortdesc),
                    longdesc: desc_text(p.longdesc),
                })
            })
            .collect::<Result<_, String>>()?;
        let actions = agent
            .actions
            .action
            .into_iter()
            .map(|a| ActionSpec { timeout: a.timeout.as_deref().and_then(parse_duration), timeout_text: a.timeout, interval: a.interval, depth: a.depth, name: a.name })
            .collect();
        Ok(Metadata { agent: agent.name, shortdesc: desc_text(agent.shortdesc), longdesc: desc_text(agent.longdesc), params, actions })
    }

    pub fn param(&self, name: &str) -> Option<&ParamSpec> {
        self.params.iter().find(|p| p.name == name)
    }

    pub fn action(&self, name: &str) -> Option<&ActionSpec> {
        self.actions.iter().find(|a| a.name == name)
    }

    /// Resolves the environment's `OCF_RESKEY_*` values against the declared
    /// parameters: defaults filled in, required ones present, booleans and
    /// integers well-formed. Errors are ERR_CONFIGURED: the same CIB is wrong on
    /// every node.
    /// The parameters as given, defaults filled in; ERR_CONFIGURED for the
    /// first value that does not fit its declared type or required
    /// parameter that is unset.
    #[cfg(test)]
    pub fn resolve(&self, given: &BTreeMap<String, String>) -> Result<Params, OcfError> {
        let params = self.resolve_all(given);
        match params.invalid.first() {
            Some((_, why)) => Err(OcfError::configured(why.clone())),
            None => Ok(params),
        }
    }

    /// As `resolve`, but a value that does not fit its declared type, and a
    /// required parameter that is unset, do not fail: each is recorded in
    /// `invalid` (with its default in its place), and the driver decides
    /// what it costs. Start, migrations, validate-all and reload-agent
    /// refuse it (6); stop and monitor go on without it, for a failed stop
    /// fences the node and a monitor's 6 stops the guest everywhere.
    pub fn resolve_all(&self, given: &BTreeMap<String, String>) -> Params {
        let mut values = BTreeMap::new();
        let mut defaults = BTreeMap::new();
        let mut invalid = Vec::new();
        let mut set = BTreeSet::new();
        for spec in &self.params {
            let default = spec.default.clone().filter(|d| !d.is_empty());
            defaults.insert(spec.name.clone(), default.clone());
            let value = given.get(&spec.name).cloned().filter(|v| !v.is_empty());
            if value.is_some() {
                set.insert(spec.name.clone());
            }
            if value.is_none() && spec.required {
                invalid.push((spec.name.clone(), format!("required parameter '{}' is not set", spec.name)));
            }
            let problem = value.as_deref().and_then(|v| match spec.kind {
                ParamType::Boolean if parse_bool(v).is_none() => Some(format!("parameter '{}' must be a boolean (true/false), not '{v}'", spec.name)),
                ParamType::Integer => match v.trim().parse::<i64>() {
                    Ok(n) if (-INTEGER_LIMIT..=INTEGER_LIMIT).contains(&n) => None,
                    Ok(n) => Some(format!("parameter '{}' is {n}, outside the range ferry accepts (-{INTEGER_LIMIT} to {INTEGER_LIMIT})", spec.name)),
                    Err(_) => Some(format!("parameter '{}' must be an integer between -{INTEGER_LIMIT} and {INTEGER_LIMIT}, not '{v}'", spec.name)),
                },
                _ => None,
            });
            let value = match problem {
                Some(why) => {
                    invalid.push((spec.name.clone(), why));
                    default
                }
                None => value.or(default),
            };
            values.insert(spec.name.clone(), value);
        }
        let unknown = given
            .keys()
            .filter(|k| self.param(k).is_none() && k.as_str() != "crm_feature_set")
            .cloned()
            .collect();
        let deprecated = self
            .params
            .iter()
            .filter(|spec| !spec.replaced_with.is_empty() && set.contains(&spec.name))
            .map(|spec| (spec.name.clone(), spec.replaced_with.clone()))
            .collect();
        Params { values, defaults, invalid, lenient: false, unknown, deprecated, given: set, read: RefCell::new(BTreeSet::new()) }
    }
}

/// Whether `reason` names parameter `name` as a word of its own (so that
/// migration_downtime is not found inside migration_downtime_max).
fn names(reason: &str, name: &str) -> bool {
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    reason.match_indices(name).any(|(at, _)| {
        let before = reason[..at].chars().next_back();
        let after = reason[at + name.len()..].chars().next();
        !before.is_some_and(is_word) && !after.is_some_and(is_word)
    })
}

/// The largest integer parameter ferry accepts, either sign. Every integer
/// parameter is a count, a size or a time, and none is meaningful anywhere
/// near this; the bound keeps every later sum, product and `Duration` on
/// them far from overflow.
pub const INTEGER_LIMIT: i64 = 1 << 31;

/// The truth values ocf-shellfuncs' `ocf_is_true` accepts.
pub fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" | "y" => Some(true),
        "0" | "false" | "no" | "off" | "n" => Some(false),
        _ => None,
    }
}

/// Parameter values after resolution. Reading a name the meta-data does not
/// declare is a programming error and panics; the set of names read is kept so a
/// test can prove every declared parameter is used.
#[derive(Debug)]
#[derive(Clone)]
pub struct Params {
    values: BTreeMap<String, Option<String>>,
    /// Each parameter's declared default, for a value that cannot be used.
    defaults: BTreeMap<String, Option<String>>,
    /// (name, why) of each value that does not fit its type, and of each
    /// required parameter that is unset; the default stands in its place.
    pub invalid: Vec<(String, String)>,
    /// Set for stop and monitor: a value their settings cannot use is
    /// replaced by its default with a WARNING, instead of failing them
    /// (see `settings`).
    pub lenient: bool,
    /// `OCF_RESKEY_*` names the meta-data does not declare (likely typos).
    pub unknown: Vec<String>,
    /// Deprecated parameters the CIB sets, each with its replacements.
    pub deprecated: Vec<(String, Vec<String>)>,
    /// Declared parameters the environment set (to a non-empty value).
    given: BTreeSet<String>,
    read: RefCell<BTreeSet<String>>,
}

impl Params {
    fn lookup(&self, name: &str) -> Option<&str> {
        let value = self
            .values
            .get(name)
            .unwrap_or_else(|| panic!("parameter '{name}' is not declared in the meta-data"));
        self.read.borrow_mut().insert(name.to_string());
        value.as_deref()
    }

    /// A string parameter; `None` when unset and without default.
    pub fn str(&self, name: &str) -> Option<&str> {
        self.lookup(name)
    }

    /// A boolean parameter (already checked by `resolve`); unset is false.
    pub fn bool(&self, name: &str) -> bool {
        self.lookup(name).and_then(parse_bool).unwrap_or(false)
    }

    /// An integer parameter (already checked by `resolve`).
    pub fn int(&self, name: &str) -> Option<i64> {
        self.lookup(name).and_then(|v| v.trim().parse().ok())
    }

    /// Reads an agent's settings with `parse`. Strict (start, migrations,
    /// validate-all, reload-agent): its error stands. Lenient (stop,
    /// monitor): a value it refuses is replaced by the parameter's default
    /// with a WARNING, and the settings are read again, until they read or
    /// the error names no parameter the CIB set. Stop must stop and monitor
    /// must tell the truth whatever a mistyped value says: a failed stop
    /// fences the node, and a monitor's 6 stops the guest everywhere.
    pub fn settings<T>(&self, parse: impl Fn(&Params) -> Result<T, OcfError>) -> Result<T, OcfError> {
        if !self.lenient {
            return parse(self);
        }
        let mut params = self.clone();
        let mut replaced: BTreeSet<String> = BTreeSet::new();
        loop {
            let error = match parse(&params) {
                Ok(settings) => return Ok(settings),
                Err(e) if e.code == OcfCode::ErrConfigured => e,
                Err(e) => return Err(e),
            };
            let culprit = params.values.keys().filter(|name| !replaced.contains(*name) && params.differs_from_default(name) && names(&error.reason, name)).max_by_key(|name| name.len()).cloned();
            let Some(name) = culprit else { return Err(error) };
            super::log::warn(&format!("{}; going on with the default of '{name}' ({})", error.reason, params.defaults.get(&name).cloned().flatten().unwrap_or_else(|| "unset".into())));
            params.values.insert(name.clone(), params.defaults.get(&name).cloned().flatten());
            replaced.insert(name);
        }
    }

    fn differs_from_default(&self, name: &str) -> bool {
        self.values.get(name) != self.defaults.get(name)
    }

    /// Whether the environment set the parameter at all. Pacemaker sets
    /// none for the stop of a resource deleted from the CIB whose history
    /// on the node is gone (crm_resource --cleanup drops it).
    pub fn given(&self, name: &str) -> bool {
        self.lookup(name);
        self.given.contains(name)
    }

    /// Whether the parameter has its declared default (unset, or set to it).
    pub fn is_default(&self, name: &str) -> bool {
        self.lookup(name);
        !self.differs_from_default(name)
    }

    /// Declared parameters no code has read yet.
    #[cfg(test)]
    pub fn unread(&self) -> Vec<String> {
        let read = self.read.borrow();
        self.values.keys().filter(|k| !read.contains(*k)).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const XML: &str = r#"<?xml version="1.0"?>
<resource-agent name="Demo" version="1">
<parameters>
<parameter name="config" unique="1" required="1"><content type="string" default=""/></parameter>
<parameter name="force"><content type="boolean" default="false"/></parameter>
<parameter name="count"><content type="integer" default="3"/></parameter>
<parameter name="free" reloadable="1"><content type="string"/></parameter>
<parameter name="old"><deprecated><replaced-with name="free"/></deprecated><content type="string"/></parameter>
</parameters>
<actions><action name="start" timeout="90s"/><action name="monitor" timeout="30s" interval="10s" depth="0"/></actions>
</resource-agent>"#;

    fn given(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn parses_parameters_and_actions() {
        let md = Metadata::parse(XML).unwrap();
        assert_eq!(md.agent, "Demo");
        assert_eq!(md.params.len(), 5);
        assert!(md.param("free").unwrap().reloadable && !md.param("config").unwrap().reloadable);
        assert_eq!(md.param("old").unwrap().replaced_with, vec!["free".to_string()]);
        let config = md.param("config").unwrap();
        assert!(config.required);
        assert!(!md.param("force").unwrap().required);
        assert_eq!(md.param("count").unwrap().kind, ParamType::Integer);
        assert_eq!(md.action("start").unwrap().timeout, Some(Duration::from_secs(90)));
        assert_eq!(md.action("monitor").unwrap().timeout, Some(Duration::from_secs(30)));
    }

    #[test]
    fn fills_defaults_and_keeps_given_values() {
        let md = Metadata::parse(XML).unwrap();
        let p = md.resolve(&given(&[("config", "/x.xml"), ("force", "yes")])).unwrap();
        assert_eq!(p.str("config"), Some("/x.xml"));
        assert!(p.bool("force"));
        assert_eq!(p.int("count"), Some(3));
        assert_eq!(p.str("free"), None);
        assert_eq!(p.str("old"), None);
        assert!(p.unread().is_empty());
    }

    #[test]
    fn a_missing_required_parameter_is_err_configured() {
        let md = Metadata::parse(XML).unwrap();
        let e = md.resolve(&given(&[])).unwrap_err();
        assert_eq!(e.code, super::super::exit::OcfCode::ErrConfigured);
        assert!(e.reason.contains("'config'"), "{}", e.reason);
        let e = md.resolve(&given(&[("config", "")])).unwrap_err();
        assert!(e.reason.contains("not set"));
    }

    #[test]
    fn malformed_booleans_and_integers_are_rejected() {
        let md = Metadata::parse(XML).unwrap();
        let e = md.resolve(&given(&[("config", "x"), ("force", "maybe")])).unwrap_err();
        assert!(e.reason.contains("'force' must be a boolean"), "{}", e.reason);
        let e = md.resolve(&given(&[("config", "x"), ("count", "3x")])).unwrap_err();
        assert!(e.reason.contains("'count' must be an integer"), "{}", e.reason);
        for huge in ["9999999999999999", "-9999999999999999", "99999999999999999999999"] {
            let e = md.resolve(&given(&[("config", "x"), ("count", huge)])).unwrap_err();
            assert_eq!(e.code, super::super::exit::OcfCode::ErrConfigured);
            assert!(e.reason.contains("2147483648"), "{huge}: {}", e.reason);
        }
    }

    #[test]
    fn resolve_all_keeps_bad_values_out_and_names_them() {
        let md = Metadata::parse(XML).unwrap();
        let p = md.resolve_all(&given(&[("force", "maybe"), ("count", "3x")]));
        let names: Vec<&str> = p.invalid.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["config", "force", "count"], "in the order the meta-data declares them");
        assert!(!p.bool("force"), "the default stands in for a bad value");
        assert_eq!(p.int("count"), Some(3));
    }

    /// Stop and monitor read settings leniently: a value the agent's
    /// settings refuse is replaced by its default, one at a time, the
    /// longest name the reason mentions first.
    #[test]
    fn lenient_settings_fall_back_to_defaults_for_the_values_they_refuse() {
        let md = Metadata::parse(XML).unwrap();
        let parse = |p: &Params| -> Result<(Option<String>, Option<i64>), OcfError> {
            if p.str("free") == Some("bad") {
                return Err(OcfError::configured("free 'bad' is not one of a, b"));
            }
            if p.int("count").is_some_and(|c| c > 5) {
                return Err(OcfError::configured("count must not exceed 5 (the count of config)"));
            }
            Ok((p.str("free").map(String::from), p.int("count")))
        };
        let mut p = md.resolve(&given(&[("config", "x"), ("free", "bad"), ("count", "9")])).unwrap();
        assert!(p.settings(parse).is_err(), "strict: the error stands");
        p.lenient = true;
        assert_eq!(p.settings(parse), Ok((None, Some(3))), "count and free go back to their defaults, config stays");
        let never = |_: &Params| -> Result<(), OcfError> { Err(OcfError::configured("the moon is wrong")) };
        assert!(p.settings(never).is_err(), "an error that names no parameter stands");
        let generic = |_: &Params| -> Result<(), OcfError> { Err(OcfError::generic("free is unreadable")) };
        assert_eq!(p.settings(generic).unwrap_err().code, OcfCode::ErrGeneric, "only configuration errors are lenient");
    }

    #[test]
    fn a_name_is_found_only_as_a_word_of_its_own() {
        assert!(names("migration_downtime 2500 exceeds the maximum", "migration_downtime"));
        assert!(!names("migration_downtime_max 100 is too low", "migration_downtime"));
        assert!(names("parameter 'force' must be a boolean", "force"));
        assert!(!names("force_stop and snapshot exclude each other", "force"));
    }

    #[test]
    fn a_deprecated_parameter_is_accepted_and_reported_only_when_set() {
        let md = Metadata::parse(XML).unwrap();
        let p = md.resolve(&given(&[("config", "x"), ("old", "v")])).unwrap();
        assert_eq!(p.str("old"), Some("v"));
        assert_eq!(p.deprecated, vec![("old".to_string(), vec!["free".to_string()])]);
        assert!(md.resolve(&given(&[("config", "x")])).unwrap().deprecated.is_empty());
        assert!(md.resolve(&given(&[("config", "x"), ("old", "")])).unwrap().deprecated.is_empty());
    }

    #[test]
    fn undeclared_names_are_reported_not_fatal() {
        let md = Metadata::parse(XML).unwrap();
        let p = md.resolve(&given(&[("config", "x"), ("confg", "typo"), ("crm_feature_set", "3")])).unwrap();
        assert_eq!(p.unknown, vec!["confg".to_string()]);
    }

    #[test]
    fn durations_in_meta_data_units() {
        assert_eq!(parse_duration("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("90"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("soon"), None);
    }
}
