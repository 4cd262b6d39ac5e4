//! Logging in the resource-agents conventions, so ferry's lines sit beside the
//! shell agents' in the same files and filters:
//! - tag `Agent(instance)[pid]`;
//! - every line to stderr, which Pacemaker's executor records;
//! - `HA_LOGFILE` gets info and above, `HA_DEBUGLOG` everything;
//! - debug lines only with `HA_debug=1` or `OCF_TRACE_RA=1`;
//! - syslog when `HA_LOGFACILITY` names a facility;
//! - the failure reason once, as `ocf-exit-reason:<reason>` on stderr (the
//!   prefix comes from `OCF_EXIT_REASON_PREFIX` when Pacemaker sets it).

use std::ffi::CString;
use std::fs::OpenOptions;
use std::io::Write;
use std::sync::OnceLock;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

impl Level {
    fn word(self) -> &'static str {
        match self {
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warn => "WARNING",
            Level::Error => "ERROR",
        }
    }
    fn syslog_priority(self) -> libc::c_int {
        match self {
            Level::Debug => libc::LOG_DEBUG,
            Level::Info => libc::LOG_INFO,
            Level::Warn => libc::LOG_WARNING,
            Level::Error => libc::LOG_ERR,
        }
    }
}

struct Logger {
    tag: String,
    debug: bool,
    logfile: Option<String>,
    debuglog: Option<String>,
    syslog: bool,
    reason_prefix: String,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

fn facility(name: &str) -> Option<libc::c_int> {
    Some(match name {
        "daemon" => libc::LOG_DAEMON,
        "user" => libc::LOG_USER,
        "local0" => libc::LOG_LOCAL0,
        "local1" => libc::LOG_LOCAL1,
        "local2" => libc::LOG_LOCAL2,
        "local3" => libc::LOG_LOCAL3,
        "local4" => libc::LOG_LOCAL4,
        "local5" => libc::LOG_LOCAL5,
        "local6" => libc::LOG_LOCAL6,
        "local7" => libc::LOG_LOCAL7,
        "authpriv" => libc::LOG_AUTHPRIV,
        _ => return None,
    })
}

fn env_flag(name: &str) -> bool {
    std::env::var(name).map(|v| matches!(v.as_str(), "1" | "yes" | "true" | "on")).unwrap_or(false)
}

/// Writes to stderr without the panic `eprintln!` gives on a closed or
/// broken stream: a lost log line must never abort an action.
pub fn stderr_line(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Writes to stdout, likewise; the caller learns nothing from a failure.
pub fn stdout_text(text: &str) {
    let mut out = std::io::stdout();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Sets the tag and reads the logging environment; call once per process.
pub fn init(agent: &str, instance: &str) {
    let tag = format!("{agent}({instance})[{}]", std::process::id());
    let syslog = match env_nonempty("HA_LOGFACILITY").as_deref().and_then(facility) {
        Some(fac) => {
            // openlog keeps the pointer: the tag must live for the process.
            let ident: &'static CString = Box::leak(Box::new(CString::new(agent).unwrap_or_default()));
            // SAFETY: `ident` is a NUL-terminated string leaked for the life of
            // the process, as openlog requires; the other arguments are flags.
            unsafe { libc::openlog(ident.as_ptr(), libc::LOG_PID, fac) };
            true
        }
        None => false,
    };
    let _ = LOGGER.set(Logger {
        tag,
        debug: env_flag("HA_debug") || env_flag("OCF_TRACE_RA"),
        logfile: env_nonempty("HA_LOGFILE"),
        debuglog: env_nonempty("HA_DEBUGLOG"),
        syslog,
        reason_prefix: env_nonempty("OCF_EXIT_REASON_PREFIX").unwrap_or_else(|| "ocf-exit-reason:".into()),
    });
}

fn timestamp() -> String {
    let mut now: libc::time_t = 0;
    // SAFETY: libc::tm is plain old data, for which all zeroes is valid.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let mut buf = [0u8; 32];
    // SAFETY: every pointer is to a live local of the right type; strftime
    // writes at most buf.len() bytes and returns how many it wrote.
    let n = unsafe {
        libc::time(&mut now);
        libc::localtime_r(&now, &mut tm);
        libc::strftime(buf.as_mut_ptr().cast(), buf.len(), c"%b %d %H:%M:%S".as_ptr(), &tm)
    };
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

fn append(path: &str, line: &str) {
    if let Ok(mut f) = OpenOptions::new().create(true).append(true).open(path) {
        let _ = f.write_all(line.as_bytes());
    }
}

pub fn log(level: Level, message: &str) {
    let Some(logger) = LOGGER.get() else {
        stderr_line(&format!("ferry: {}: {message}", level.word()));
        return;
    };
    if level == Level::Debug && !logger.debug {
        return;
    }
    stderr_line(&format!("{}: {}: {message}", logger.tag, level.word()));
    let file_line = format!("{}:\t{} {}: {message}\n", logger.tag, timestamp(), level.word());
    if level >= Level::Info {
        if let Some(f) = &logger.logfile {
            append(f, &file_line);
        }
    }
    if let Some(f) = &logger.debuglog {
        if logger.logfile.as_deref() != Some(f.as_str()) || level == Level::Debug {
            append(f, &file_line);
        }
    }
    if logger.syslog {
        if let Ok(msg) = CString::new(format!("{}: {message}", level.word())) {
            // SAFETY: a constant "%s" format with one NUL-terminated argument.
            unsafe { libc::syslog(level.syslog_priority(), c"%s".as_ptr(), msg.as_ptr()) };
        }
    }
}

/// Reports why the action failed, once, in the form Pacemaker parses.
pub fn exit_reason(reason: &str) {
    let prefix = LOGGER.get().map(|logger| logger.reason_prefix.as_str()).unwrap_or("ocf-exit-reason:");
    // Pacemaker keeps only the first line of the reason.
    let one_line = reason.lines().next().unwrap_or("");
    stderr_line(&format!("{prefix}{one_line}"));
    log(Level::Error, reason);
}

pub fn debug(message: &str) {
    log(Level::Debug, message)
}
pub fn info(message: &str) {
    log(Level::Info, message)
}
pub fn warn(message: &str) {
    log(Level::Warn, message)
}
