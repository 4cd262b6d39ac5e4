//! The boundary between ferry and every program it runs.
//!
//! Commands are argv vectors, never shell lines. Each child gets a null (or
//! given) stdin, `LC_ALL=C` so its messages can be matched, and its own process
//! group; stdout and stderr are drained on their own threads so a noisy child
//! cannot block on a full pipe. At the deadline the whole group is SIGKILLed and
//! reaped, and the caller gets `RunError::TimedOut` instead of hanging.
//!
//! `Runner` is a trait so unit tests can script the failures a real daemon will
//! not produce on demand (`RecordingRunner`); integration tests use the real one.

use std::fmt;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::ocf::Deadline;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cmd {
    pub argv: Vec<String>,
    pub stdin: Option<Vec<u8>>,
}

impl Cmd {
    pub fn new<S: AsRef<str>>(argv: &[S]) -> Cmd {
        Cmd { argv: argv.iter().map(|s| s.as_ref().to_string()).collect(), stdin: None }
    }
    pub fn arg(mut self, a: impl Into<String>) -> Cmd {
        self.argv.push(a.into());
        self
    }
    pub fn stdin(mut self, data: Vec<u8>) -> Cmd {
        self.stdin = Some(data);
        self
    }
    /// Whether the argv begins with `prefix`.
    #[cfg(test)]
    pub fn starts_with<S: AsRef<str>>(&self, prefix: &[S]) -> bool {
        self.argv.len() >= prefix.len() && self.argv.iter().zip(prefix).all(|(a, p)| a == p.as_ref())
    }

    pub fn program(&self) -> &str {
        self.argv.first().map(String::as_str).unwrap_or("")
    }
}

impl fmt::Display for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.argv.join(" "))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Output {
    /// The exit code, or `None` when a signal ended the child.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
    /// The child's own words about a failure: trimmed stderr, else stdout.
    pub fn complaint(&self) -> String {
        let text = if self.stderr.trim().is_empty() { &self.stdout } else { &self.stderr };
        text.trim().lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("; ")
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunError {
    /// The program could not be started (usually: not installed).
    Spawn { program: String, error: String },
    /// The deadline came first; the child's process group was killed.
    TimedOut { program: String, after: Duration },
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Spawn { program, error } => write!(f, "cannot run {program}: {error}"),
            RunError::TimedOut { program, after } => {
                write!(f, "{program} did not finish within {:.1}s and was killed", after.as_secs_f64())
            }
        }
    }
}

pub trait Runner {
    /// Runs `cmd` to its end, or kills it at `deadline`.
    fn run(&self, cmd: &Cmd, deadline: Deadline) -> Result<Output, RunError> {
        self.spawn(cmd, deadline)?.finish()
    }
    /// Starts `cmd` and returns at once, for callers that watch a long child
    /// (a migration) while doing other work. The deadline still holds: the
    /// child is killed when it passes, whoever is polling.
    fn spawn<'a>(&'a self, cmd: &Cmd, deadline: Deadline) -> Result<Box<dyn Job + 'a>, RunError>;
}

/// A child started by `Runner::spawn`.
pub trait Job {
    /// Waits up to `wait` for the child to end. `None`: still running.
    fn wait_for(&mut self, wait: Duration) -> Option<Result<Output, RunError>>;
    /// Waits for the end, which the deadline bounds.
    fn finish(mut self: Box<Self>) -> Result<Output, RunError> {
        loop {
            if let Some(result) = self.wait_for(Duration::from_secs(3600)) {
                return result;
            }
        }
    }
}

/// Runs real processes.
pub struct SystemRunner;

fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

struct SystemJob {
    program: String,
    pid: libc::pid_t,
    started: Instant,
    deadline: Deadline,
    status: mpsc::Receiver<std::io::Result<std::process::ExitStatus>>,
    out: Option<std::thread::JoinHandle<String>>,
    err: Option<std::thread::JoinHandle<String>>,
    ended: bool,
}

/// A job dropped before it ended is killed: nothing ferry starts outlives
/// the action that started it.
impl Drop for SystemJob {
    fn drop(&mut self) {
        if !self.ended {
            unsafe { libc::kill(-self.pid, libc::SIGKILL) };
        }
    }
}

impl SystemJob {
    fn collect(&mut self) -> (String, String) {
        let join = |h: Option<std::thread::JoinHandle<String>>| h.and_then(|h| h.join().ok()).unwrap_or_default();
        (join(self.out.take()), join(self.err.take()))
    }
}

impl Job for SystemJob {
    fn wait_for(&mut self, wait: Duration) -> Option<Result<Output, RunError>> {
        let left = self.deadline.remaining();
        let status = match self.status.recv_timeout(wait.min(left)) {
            Ok(status) => status,
            Err(_) if wait < left => return None,
            Err(_) => {
                self.ended = true;
                unsafe { libc::kill(-self.pid, libc::SIGKILL) };
                let _ = self.status.recv_timeout(Duration::from_secs(5));
                // The group is dead, so the pipes close; the readers end.
                self.collect();
                return Some(Err(RunError::TimedOut { program: self.program.clone(), after: self.started.elapsed() }));
            }
        };
        self.ended = true;
        // A child may leave grandchildren holding the pipes open; they belong to
        // its process group, which ends here too.
        unsafe { libc::kill(-self.pid, libc::SIGKILL) };
        let (stdout, stderr) = self.collect();
        Some(
            status
                .map(|st| Output { code: st.code(), stdout, stderr })
                .map_err(|e| RunError::Spawn { program: self.program.clone(), error: e.to_string() }),
        )
    }
}

impl Runner for SystemRunner {
    fn spawn<'a>(&'a self, cmd: &Cmd, deadline: Deadline) -> Result<Box<dyn Job + 'a>, RunError> {
        let program = cmd.program().to_string();
        if deadline.expired() {
            return Err(RunError::TimedOut { program, after: Duration::ZERO });
        }
        let mut child = Command::new(&program)
            .args(&cmd.argv[1..])
            .env("LC_ALL", "C")
            .stdin(if cmd.stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .map_err(|e| RunError::Spawn { program: program.clone(), error: e.to_string() })?;
        let pid = child.id() as libc::pid_t;
        let out = drain(child.stdout.take().expect("piped"));
        let err = drain(child.stderr.take().expect("piped"));
        if let (Some(data), Some(mut pipe)) = (cmd.stdin.clone(), child.stdin.take()) {
            std::thread::spawn(move || {
                let _ = pipe.write_all(&data);
            });
        }
        // wait() on its own thread, so the deadline is a channel timeout and not
        // a polling loop that would add latency to every short command.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        Ok(Box::new(SystemJob { program, pid, started: Instant::now(), deadline, status: rx, out: Some(out), err: Some(err), ended: false }))
    }
}

/// A scripted stand-in for unit tests: answers each command with the first
/// scripted reply whose argv prefix matches, and records every call.
#[cfg(test)]
pub mod recording {
    use super::*;
    use std::cell::RefCell;

    pub struct RecordingRunner {
        replies: Vec<(Vec<String>, Result<Output, RunError>, u32)>,
        /// Replies given by `reply_once` and already used.
        once: Vec<bool>,
        spent: RefCell<Vec<bool>>,
        pub calls: RefCell<Vec<Cmd>>,
    }

    impl RecordingRunner {
        pub fn new() -> Self {
            RecordingRunner { replies: Vec::new(), once: Vec::new(), spent: RefCell::new(Vec::new()), calls: RefCell::new(Vec::new()) }
        }
        pub fn reply(mut self, prefix: &[&str], code: i32, stdout: &str, stderr: &str) -> Self {
            let out = Output { code: Some(code), stdout: stdout.into(), stderr: stderr.into() };
            self.replies.push((prefix.iter().map(|s| s.to_string()).collect(), Ok(out), 0));
            self.once.push(false);
            self
        }
        /// Like `reply`, but answers only the first matching call; later
        /// calls fall through to the next matching script (a state change).
        pub fn reply_once(mut self, prefix: &[&str], code: i32, stdout: &str, stderr: &str) -> Self {
            self = self.reply(prefix, code, stdout, stderr);
            *self.once.last_mut().unwrap() = true;
            self
        }
        /// A spawned command that keeps running for `polls` polls, then replies.
        pub fn reply_after(mut self, polls: u32, prefix: &[&str], code: i32, stdout: &str, stderr: &str) -> Self {
            let out = Output { code: Some(code), stdout: stdout.into(), stderr: stderr.into() };
            self.replies.push((prefix.iter().map(|s| s.to_string()).collect(), Ok(out), polls));
            self.once.push(false);
            self
        }
        pub fn fail(mut self, prefix: &[&str], error: RunError) -> Self {
            self.replies.push((prefix.iter().map(|s| s.to_string()).collect(), Err(error), 0));
            self.once.push(false);
            self
        }
        pub fn called(&self, prefix: &[&str]) -> bool {
            self.calls.borrow().iter().any(|c| c.starts_with(prefix))
        }
    }

    /// Lets a test keep a handle on the runner it gives away.
    impl<T: Runner> Runner for std::rc::Rc<T> {
        fn spawn<'a>(&'a self, cmd: &Cmd, deadline: Deadline) -> Result<Box<dyn Job + 'a>, RunError> {
            (**self).spawn(cmd, deadline)
        }
    }

    impl Runner for RecordingRunner {
        fn spawn<'a>(&'a self, cmd: &Cmd, _deadline: Deadline) -> Result<Box<dyn Job + 'a>, RunError> {
            self.calls.borrow_mut().push(cmd.clone());
            let mut spent = self.spent.borrow_mut();
            spent.resize(self.replies.len(), false);
            let index = (0..self.replies.len())
                .find(|&i| cmd.starts_with(&self.replies[i].0) && !spent[i])
                .unwrap_or_else(|| panic!("unscripted command: {cmd}"));
            if self.once[index] {
                spent[index] = true;
            }
            let (_, reply, polls) = &self.replies[index];
            Ok(Box::new(ScriptedJob { reply: reply.clone(), polls_left: *polls }))
        }
    }

    /// Answers after the scripted number of polls; time is not simulated.
    struct ScriptedJob {
        reply: Result<Output, RunError>,
        polls_left: u32,
    }

    impl Job for ScriptedJob {
        fn wait_for(&mut self, _wait: Duration) -> Option<Result<Output, RunError>> {
            if self.polls_left > 0 {
                self.polls_left -= 1;
                return None;
            }
            Some(self.reply.clone())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(argv: &[&str], within: Duration) -> Result<Output, RunError> {
        SystemRunner.run(&Cmd::new(argv), Deadline::after(within))
    }

    #[test]
    fn captures_exit_code_and_both_streams() {
        let out = run(&["sh", "-c", "echo out; echo err >&2; exit 3"], Duration::from_secs(5)).unwrap();
        assert_eq!(out.code, Some(3));
        assert_eq!(out.stdout, "out\n");
        assert_eq!(out.stderr, "err\n");
        assert_eq!(out.complaint(), "err");
    }

    #[test]
    fn a_child_past_the_deadline_is_killed_with_its_group() {
        let started = Instant::now();
        let err = run(&["sh", "-c", "sleep 30 & sleep 30"], Duration::from_millis(300)).unwrap_err();
        assert!(matches!(err, RunError::TimedOut { .. }), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    }

    #[test]
    fn a_missing_program_is_a_spawn_error() {
        let err = run(&["/nonexistent/ferry-test-binary"], Duration::from_secs(1)).unwrap_err();
        assert!(matches!(err, RunError::Spawn { .. }));
        assert!(err.to_string().starts_with("cannot run /nonexistent/ferry-test-binary"));
    }

    #[test]
    fn stdin_is_fed_and_the_locale_is_c() {
        let cmd = Cmd::new(&["sh", "-c", "cat; echo $LC_ALL"]).stdin(b"hello\n".to_vec());
        let out = SystemRunner.run(&cmd, Deadline::after(Duration::from_secs(5))).unwrap();
        assert_eq!(out.stdout, "hello\nC\n");
    }

    #[test]
    fn a_spawned_child_can_be_polled_and_still_dies_at_the_deadline() {
        let runner = SystemRunner;
        let mut job = runner.spawn(&Cmd::new(&["sh", "-c", "echo hi; sleep 0.3"]), Deadline::after(Duration::from_secs(5))).unwrap();
        assert!(job.wait_for(Duration::from_millis(20)).is_none(), "still running");
        assert_eq!(job.finish().unwrap().stdout, "hi\n");
        let started = Instant::now();
        let mut slow = runner.spawn(&Cmd::new(&["sleep", "30"]), Deadline::after(Duration::from_millis(300))).unwrap();
        let ended = loop {
            if let Some(r) = slow.wait_for(Duration::from_millis(100)) {
                break r;
            }
        };
        assert!(matches!(ended, Err(RunError::TimedOut { .. })), "{ended:?}");
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn a_noisy_child_does_not_deadlock() {
        let out = run(&["sh", "-c", "head -c 1000000 /dev/zero >&2; echo done"], Duration::from_secs(10)).unwrap();
        assert_eq!(out.stderr.len(), 1_000_000);
        assert_eq!(out.stdout, "done\n");
    }
}
