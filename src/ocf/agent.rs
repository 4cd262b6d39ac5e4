//! The contract between the OCF protocol and an agent, and the driver that runs
//! one invocation: argv → action → environment → parameters → lock → agent →
//! exit code. The rules that turn an agent's answer into the code Pacemaker sees
//! live in `settle`, and nowhere else.

use std::path::Path;
use std::time::Duration;

use super::action::Action;
use super::answers::{self, Asked};
use crate::deadline::Deadline;
use super::env::OcfEnv;
use super::exit::{OcfCode, OcfError};
use super::lock::{ResourceLock, LOCK_DIR};
use super::log;
use super::metadata::{Metadata, Params};

/// What a monitor found. Not running is an answer, not an error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    Running,
    NotRunning,
    /// Running, but something the operator should see is wrong.
    Degraded(String),
}

/// A guest on this node that carries an agent's owner mark, for `ferry status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedGuest {
    pub resource: String,
    pub guest: String,
    /// The hypervisor's state with its reason, e.g. "paused (I/O error)".
    pub state: String,
}

/// Everything an action may know about its invocation.
pub struct Context<'a> {
    pub env: &'a OcfEnv,
    pub params: &'a Params,
    pub deadline: Deadline,
}

pub trait Agent {
    /// The agent's name: the file name it is installed (linked) under.
    fn name(&self) -> &'static str;
    /// The agent's meta-data, embedded from metadata/<Agent>.xml.
    fn metadata_xml(&self) -> &'static str;
    fn validate(&self, ctx: &Context) -> Result<(), OcfError>;
    fn start(&self, ctx: &Context) -> Result<(), OcfError>;
    fn stop(&self, ctx: &Context) -> Result<(), OcfError>;
    fn monitor(&self, ctx: &Context) -> Result<Health, OcfError>;
    fn migrate_to(&self, _ctx: &Context) -> Result<(), OcfError> {
        Err(OcfError::unimplemented("migrate_to is not supported by this agent"))
    }
    fn migrate_from(&self, _ctx: &Context) -> Result<(), OcfError> {
        Err(OcfError::unimplemented("migrate_from is not supported by this agent"))
    }
    /// OCF 1.1 reload-agent. ferry keeps no state between actions, so every
    /// action already reads the parameters it is given; a reload checks the
    /// new values and applies what lives outside the agent (utilization),
    /// and never touches the guest.
    fn reload(&self, _ctx: &Context) -> Result<(), OcfError> {
        Err(OcfError::unimplemented("reload-agent is not supported by this agent"))
    }
    /// The guests on this node that carry this agent's owner mark, or `None`
    /// when the hypervisor keeps no mark to find them by.
    fn owned_guests(&self, _deadline: Deadline) -> Option<Result<Vec<OwnedGuest>, String>> {
        None
    }
}

/// When neither Pacemaker nor the meta-data gives a timeout: ocf-tester's value.
const FALLBACK_TIMEOUT: Duration = Duration::from_secs(20);

/// The one place where an action's result becomes an exit code.
///
/// - A monitor's `NotRunning` is 7 and `Degraded` is 190 (counted as success).
/// - Errors keep the code the agent chose, once `answers::guard` held them
///   to the answer table; the agent alone knows whether a guest may be
///   running, so it alone may answer 7 instead of failing. A probe or stop
///   that cannot tell fails with 1: Pacemaker then investigates instead of
///   starting a second copy elsewhere.
pub fn settle(result: Result<Health, OcfError>) -> OcfCode {
    match result {
        Ok(Health::Running) => OcfCode::Success,
        Ok(Health::NotRunning) => OcfCode::NotRunning,
        Ok(Health::Degraded(why)) => {
            // The reason goes to Pacemaker too: crm_mon shows it beside the
            // degraded result, where an operator who must act looks first.
            log::warn(&format!("degraded: {why}"));
            log::exit_reason(&why);
            OcfCode::Degraded
        }
        Err(e) => {
            log::exit_reason(&e.reason);
            e.code
        }
    }
}

pub fn usage(agent: &str) -> String {
    let actions: Vec<&str> = Action::ALL.iter().map(|a| a.as_str()).collect();
    format!("usage: {agent} {{{}}}", actions.join("|"))
}

/// Runs one invocation of `agent`; `args` are the words after the program name.
pub fn run(agent: &dyn Agent, args: &[String]) -> OcfCode {
    let Some(word) = args.first() else {
        log::stderr_line(&usage(agent.name()));
        return OcfCode::ErrArgs;
    };
    // OCF 1.1: words after the action are ignored.
    let metadata = Metadata::parse(agent.metadata_xml()).expect("embedded meta-data is valid (tested)");
    let advertised = |a: Action| metadata.action(a.as_str()).is_some();
    let env = OcfEnv::from_process();
    log::init(agent.name(), &env.instance);
    let action = match Action::parse(word) {
        Some(a) if advertised(a) => a,
        _ => {
            log::exit_reason(&format!("action '{word}' is not implemented by {}", agent.name()));
            return OcfCode::ErrUnimplemented;
        }
    };
    if action == Action::MetaData {
        log::stdout_text(agent.metadata_xml());
        return OcfCode::Success;
    }
    // status is monitor's older name and shares its timeout.
    let timeout_name = if action == Action::Status { "monitor" } else { action.as_str() };
    let timeout = env
        .timeout()
        .or_else(|| metadata.action(timeout_name).and_then(|a| a.timeout))
        .unwrap_or(FALLBACK_TIMEOUT);
    let deadline = Deadline::for_operation(timeout);
    let asked = Asked::of(action, env.is_probe());
    // Every answer, early ones too, is held to the table first.
    let answer = |result: Result<Health, OcfError>| settle(answers::guard(asked, result));
    let kind = if asked == Asked::Probe { " (probe)" } else { "" };
    log::debug(&format!("{action}{kind}: budget {:?} of timeout {timeout:?}", deadline.remaining()));

    let lenient = matches!(asked, Asked::Stop | Asked::Monitor | Asked::Probe);
    if let Some(name) = env.not_utf8.first() {
        // No CIB can hold such a value; stop and monitor go on as if it
        // were unset (a config unset is found by its owner mark).
        if !lenient {
            return answer(Err(OcfError::configured(format!("{name} is not valid UTF-8"))));
        }
        for name in &env.not_utf8 {
            log::warn(&format!("{name} is not valid UTF-8; {action} goes on as if it were unset"));
        }
    }
    let mut params = metadata.resolve_all(&env.params);
    if lenient {
        // A value stop or monitor cannot use must not cost the guest or
        // the node: each is named, and the action goes on without it.
        params.lenient = true;
        for (_, why) in &params.invalid {
            log::warn(&format!("{why}; {action} goes on with its default"));
        }
    } else if let Some((_, why)) = params.invalid.first() {
        return answer(Err(OcfError::configured(why.clone())));
    }
    for name in &params.unknown {
        log::warn(&format!("ignoring parameter '{name}': {} declares no such parameter", agent.name()));
    }
    // Not on every monitor: once per start, reload or validation is enough
    // to be seen, and a log line every 10 s would bury everything else.
    let deprecated = if matches!(action, Action::Monitor | Action::Status) { &[][..] } else { &params.deprecated[..] };
    for (name, replacements) in deprecated {
        log::warn(&format!("parameter '{name}' is deprecated (still honoured); use {} instead", replacements.join(" or ")));
    }
    let _lock = if action.needs_lock() {
        match ResourceLock::acquire(Path::new(LOCK_DIR), agent.name(), &env.instance, deadline) {
            Ok(l) => Some(l),
            Err(e) => return answer(Err(e)),
        }
    } else {
        None
    };
    let ctx = Context { env: &env, params: &params, deadline };
    // An action that is not a monitor reports success as "running", which settles to 0.
    let succeeded = |r: Result<(), OcfError>| r.map(|()| Health::Running);
    let result = match action {
        Action::Start => succeeded(agent.start(&ctx)),
        Action::Stop => succeeded(agent.stop(&ctx)),
        Action::Monitor | Action::Status => agent.monitor(&ctx),
        Action::ValidateAll => succeeded(agent.validate(&ctx)),
        Action::MigrateTo => succeeded(agent.migrate_to(&ctx)),
        Action::MigrateFrom => succeeded(agent.migrate_from(&ctx)),
        Action::ReloadAgent => succeeded(agent.reload(&ctx)),
        Action::MetaData => unreachable!("answered above"),
    };
    // A failure after a SIGTERM is most likely the SIGTERM's doing: say so.
    let result = result.map_err(|mut e| {
        if crate::deadline::terminated() {
            e.reason = format!("{} (ferry received SIGTERM and ended the action early)", e.reason);
        }
        e
    });
    let code = answer(result);
    log::debug(&format!("{action}: exit {} ({})", code.value(), code.name()));
    code
}
