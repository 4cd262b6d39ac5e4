//! The boundary between ferry and every program it runs.
//!
//! Commands are argv vectors, never shell lines. Each child gets a null (or
//! given) stdin and `LC_ALL=C` so its messages can be matched; stdout and
//! stderr are drained on their own threads so a noisy child cannot block on
//! a full pipe. At the deadline the child is SIGKILLed and the caller gets
//! `RunError::TimedOut` instead of hanging.
//!
//! Nothing a child starts outlives ferry's action:
//! - children stay in ferry's process group, which Pacemaker kills at a
//!   timeout, and die with ferry alone too (`PR_SET_PDEATHSIG`);
//! - ferry adopts what its children leave behind (`PR_SET_CHILD_SUBREAPER`)
//!   and ends it when the child ends and when the action ends (`end_strays`);
//! - a child is signalled only while it is unreaped, so never by a reused PID;
//! - no read of a child's output waits past the deadline, even when a daemon
//!   it started holds the pipe.
//!
//! `Runner` is a trait so unit tests can script the failures a real daemon will
//! not produce on demand (`RecordingRunner`); integration tests use the real one.

use std::fmt;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::prctl;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitid, waitpid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::{getpid, getppid, Pid};

use crate::deadline::Deadline;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cmd {
    pub argv: Vec<String>,
    pub stdin: Option<Vec<u8>>,
    /// What the command leaves running when it exits is meant to outlive
    /// the action (xl's per-domain daemon), not a stray to end.
    pub leaves_daemons: bool,
}

impl Cmd {
    pub fn new<S: AsRef<str>>(argv: &[S]) -> Cmd {
        Cmd { argv: argv.iter().map(|s| s.as_ref().to_string()).collect(), stdin: None, leaves_daemons: false }
    }
    pub fn leaving_daemons(mut self) -> Cmd {
        self.leaves_daemons = true;
        self
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

/// How long a finished child's pipes may stay open before ferry stops
/// reading them: a daemon the child left behind (`setsid cmd &`) can hold
/// them open for ever, and its output is not the child's answer.
const PIPE_GRACE: Duration = Duration::from_millis(200);
/// How long to wait for the kernel to end a SIGKILLed child. A process in
/// uninterruptible sleep can take longer; ferry then answers without it.
const REAP_GRACE: Duration = Duration::from_millis(100);
/// How long ending the strays may take in all, every round included. At
/// exit it runs inside the margin ferry keeps from the operation's timeout
/// (`deadline::exit_margin`, 0.5 s at least), after a child killed at the
/// deadline has had its `REAP_GRACE` and its pipes their last 20 ms: 100 +
/// 20 + 200 ms leave the log and the exit some 180 ms. A stray still alive
/// then has been SIGKILLed and dies with the process group anyway.
const STRAYS_BUDGET: Duration = Duration::from_millis(200);
/// The longest a wait blocks without looking at the deadline again, so a
/// SIGTERM (which shortens every deadline) is noticed at once.
const TICK: Duration = Duration::from_millis(100);

/// A pipe read on its own thread into a buffer the caller can take at any
/// time, so a child that never closes its end cannot hold the caller.
struct Drain {
    buf: Arc<Mutex<Vec<u8>>>,
    done: mpsc::Receiver<()>,
}

impl Drain {
    fn start(mut pipe: impl Read + Send + 'static) -> Drain {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let (tx, done) = mpsc::channel();
        let sink = Arc::clone(&buf);
        std::thread::spawn(move || {
            let mut chunk = [0u8; 8192];
            while let Ok(n @ 1..) = pipe.read(&mut chunk) {
                lock(&sink).extend_from_slice(&chunk[..n]);
            }
            let _ = tx.send(());
        });
        Drain { buf, done }
    }

    /// What was read by `until` (or by end of file, if sooner).
    fn take(&self, until: Instant) -> String {
        let _ = self.done.recv_timeout(until.saturating_duration_since(Instant::now()));
        String::from_utf8_lossy(&lock(&self.buf)).into_owned()
    }
}

/// A poisoned lock only means another thread panicked while holding it;
/// the data (PIDs, bytes) is still what it was.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The PIDs of the children ferry is waiting on. Every other child of ferry
/// is a stray: something a child left behind, adopted by ferry as its
/// subreaper. Held while spawning, so a sweep never takes a child that is
/// being started for a stray.
static JOBS: Mutex<Vec<i32>> = Mutex::new(Vec::new());
/// Children adopted from a command that `leaves_daemons`: never strays.
static DAEMONS: Mutex<Vec<i32>> = Mutex::new(Vec::new());

/// Makes ferry the reaper of every process its children leave behind, so
/// their leftovers are still ferry's to end (`end_strays`) instead of
/// init's. Called once, at start.
pub fn adopt_orphans() {
    let _ = prctl::set_child_subreaper(true);
}

/// Ends every stray: a child of ferry that no job waits on and that no
/// command left on purpose. They are ferry's children, not yet reaped, so
/// their PIDs are still theirs. Ending one can orphan its own children onto
/// ferry, hence the rounds; all of them together take `STRAYS_BUDGET` at most.
pub fn end_strays() {
    // Only a subreaper has strays to end; any other process (a unit test
    // binary) would take its neighbours' children for strays.
    if !matches!(prctl::get_child_subreaper(), Ok(true)) {
        return;
    }
    sweep(&System);
}

/// What `sweep` does to ferry's children, so a unit test can stand in for
/// the kernel (a stray that will not die, a PID reused mid-sweep).
trait Children {
    /// ferry's children, living or not yet reaped.
    fn list(&self) -> Vec<i32>;
    fn kill(&self, pid: i32);
    /// Reaps `pid` if it has ended; true when it is gone (reaped now, or
    /// not a child of ferry any more).
    fn reap(&self, pid: i32) -> bool;
}

struct System;

impl Children for System {
    fn list(&self) -> Vec<i32> {
        own_children()
    }
    fn kill(&self, pid: i32) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    fn reap(&self, pid: i32) -> bool {
        matches!(waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)), Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) | Err(_))
    }
}

/// Kills the strays and reaps them, round after round, within the budget.
/// Both happen under the JOBS lock, as every reap of ferry's does: a PID
/// that was reaped elsewhere and reused by a new job since the kill would
/// be in JOBS, and is then neither signalled nor reaped (which would steal
/// that job's exit status).
fn sweep(children: &impl Children) {
    let until = Instant::now() + STRAYS_BUDGET;
    for _ in 0..8 {
        let mut strays: Vec<i32> = {
            let jobs = lock(&JOBS);
            let daemons = lock(&DAEMONS);
            let strays: Vec<i32> = children.list().into_iter().filter(|pid| !jobs.contains(pid) && !daemons.contains(pid)).collect();
            for &pid in &strays {
                children.kill(pid);
            }
            strays
        };
        if strays.is_empty() {
            return;
        }
        loop {
            {
                let jobs = lock(&JOBS);
                strays.retain(|pid| !jobs.contains(pid) && !children.reap(*pid));
            }
            if strays.is_empty() || Instant::now() >= until {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        if !strays.is_empty() {
            return;
        }
    }
}

/// Marks every child no job waits on as a daemon to keep: called right
/// after a command that `leaves_daemons` exits, when what it left has just
/// been adopted.
fn keep_daemons() {
    let jobs = lock(&JOBS);
    let mut daemons = lock(&DAEMONS);
    for pid in own_children() {
        if !jobs.contains(&pid) && !daemons.contains(&pid) {
            daemons.push(pid);
        }
    }
}

/// ferry's living children, from /proc/self/task/*/children.
fn own_children() -> Vec<i32> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return Vec::new() };
    let mut pids: Vec<i32> = tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|text| text.split_whitespace().filter_map(|p| p.parse().ok()).collect::<Vec<i32>>())
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// A child killed at most once and never after it is reaped: until then its
/// zombie holds the PID, so a signal cannot reach a process that reused it.
struct Held {
    pid: Pid,
    reaped: Mutex<bool>,
}

impl Held {
    fn kill(&self) {
        self.signal_with(|pid| {
            let _ = kill(pid, Signal::SIGKILL);
        });
    }

    /// Calls `send` with the PID unless the child is reaped. The lock is
    /// held across the call, so the waiter cannot reap the child (and free
    /// its PID for reuse) between the check and the signal.
    fn signal_with(&self, send: impl FnOnce(Pid)) {
        let reaped = lock(&self.reaped);
        if !*reaped {
            send(self.pid);
        }
    }

    /// Reaps the child with `reap` under the same lock.
    fn reap<T>(&self, reap: impl FnOnce() -> T) -> T {
        let mut reaped = lock(&self.reaped);
        let result = reap();
        *reaped = true;
        result
    }
}

struct SystemJob {
    program: String,
    started: Instant,
    deadline: Deadline,
    child: Arc<Held>,
    status: mpsc::Receiver<std::io::Result<std::process::ExitStatus>>,
    out: Drain,
    err: Drain,
    ended: bool,
}

/// A job dropped before it ended is killed: nothing ferry starts outlives
/// the action that started it.
impl Drop for SystemJob {
    fn drop(&mut self) {
        if !self.ended {
            self.child.kill();
        }
    }
}

impl SystemJob {
    fn output(&self, code: Option<i32>) -> Output {
        // What the child left behind is ended with it, so the pipes close
        // unless a daemon of its own session holds them. Read what came.
        let until = Instant::now() + PIPE_GRACE.min(self.deadline.remaining().max(Duration::from_millis(20)));
        Output { code, stdout: self.out.take(until), stderr: self.err.take(until) }
    }

    fn timed_out(&mut self) -> RunError {
        self.ended = true;
        self.child.kill();
        let _ = self.status.recv_timeout(REAP_GRACE);
        let _ = self.output(None);
        RunError::TimedOut { program: self.program.clone(), after: self.started.elapsed() }
    }
}

impl Job for SystemJob {
    fn wait_for(&mut self, wait: Duration) -> Option<Result<Output, RunError>> {
        let until = Instant::now() + wait.min(Duration::from_secs(86_400));
        let status = loop {
            let left = self.deadline.remaining();
            if left.is_zero() {
                return Some(Err(self.timed_out()));
            }
            let now = Instant::now();
            if now >= until {
                return None;
            }
            match self.status.recv_timeout(left.min(until - now).min(TICK)) {
                Ok(status) => break status,
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    self.ended = true;
                    return Some(Err(RunError::Spawn { program: self.program.clone(), error: "lost track of the child".into() }));
                }
            }
        };
        self.ended = true;
        Some(match status {
            Ok(st) => Ok(self.output(st.code())),
            Err(e) => Err(RunError::Spawn { program: self.program.clone(), error: e.to_string() }),
        })
    }
}

impl Runner for SystemRunner {
    /// Children stay in ferry's process group: Pacemaker ends a timed-out
    /// or cancelled operation by SIGKILLing that group, and everything ferry
    /// started must end with it, grandchildren included.
    fn spawn<'a>(&'a self, cmd: &Cmd, deadline: Deadline) -> Result<Box<dyn Job + 'a>, RunError> {
        let program = cmd.program().to_string();
        if deadline.expired() {
            return Err(RunError::TimedOut { program, after: Duration::ZERO });
        }
        let parent = getpid();
        let mut command = Command::new(&program);
        command
            .args(&cmd.argv[1..])
            .env("LC_ALL", "C")
            .stdin(if cmd.stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: the closure runs in the child between fork and exec, where
        // only async-signal-safe calls are allowed: prctl, getppid and raise
        // are plain system calls that allocate nothing and take no locks.
        unsafe {
            command.pre_exec(move || {
                // A child of a ferry killed alone (not with its group) dies
                // with it. The signal follows the thread that forked, so
                // children are only spawned from threads that live as long
                // as the action (the main thread).
                prctl::set_pdeathsig(Signal::SIGKILL)?;
                if getppid() != parent {
                    // ferry died before the line above took effect.
                    let _ = nix::sys::signal::raise(Signal::SIGKILL);
                }
                Ok(())
            });
        }
        let mut jobs = lock(&JOBS);
        let mut child = command.spawn().map_err(|e| RunError::Spawn { program: program.clone(), error: e.to_string() })?;
        let pid = Pid::from_raw(child.id() as i32);
        jobs.push(pid.as_raw());
        drop(jobs);
        let out = Drain::start(child.stdout.take().expect("piped"));
        let err = Drain::start(child.stderr.take().expect("piped"));
        if let (Some(data), Some(mut pipe)) = (cmd.stdin.clone(), child.stdin.take()) {
            std::thread::spawn(move || {
                let _ = pipe.write_all(&data);
            });
        }
        let held = Arc::new(Held { pid, reaped: Mutex::new(false) });
        // The wait runs on its own thread, so the deadline is a channel
        // timeout and not a polling loop that would add latency to every
        // short command. It waits without reaping, ends what the child left
        // behind (its orphans are ferry's now), and only then reaps.
        let (tx, status) = mpsc::channel();
        let waiter_held = Arc::clone(&held);
        let leaves_daemons = cmd.leaves_daemons;
        std::thread::spawn(move || {
            while let Err(Errno::EINTR) = waitid(Id::Pid(pid), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT) {}
            if leaves_daemons {
                keep_daemons();
            } else {
                end_strays();
            }
            // Reaped and struck from JOBS at once, under the JOBS lock: in
            // between, a new job could get the freed PID, and the strike
            // would take it off the list too, making it a stray to end.
            let result = {
                let mut jobs = lock(&JOBS);
                let result = waiter_held.reap(|| child.wait());
                if let Some(i) = jobs.iter().position(|&p| p == pid.as_raw()) {
                    jobs.swap_remove(i);
                }
                result
            };
            let _ = tx.send(result);
        });
        Ok(Box::new(SystemJob { program, started: Instant::now(), deadline, child: held, status, out, err, ended: false }))
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
        fn spawn<'a>(&'a self, cmd: &Cmd, deadline: Deadline) -> Result<Box<dyn Job + 'a>, RunError> {
            self.calls.borrow_mut().push(cmd.clone());
            // As the real runner: nothing starts once its deadline has passed.
            if deadline.expired() {
                return Err(RunError::TimedOut { program: cmd.program().to_string(), after: Duration::ZERO });
            }
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
    fn a_child_past_the_deadline_is_killed() {
        let started = Instant::now();
        let err = run(&["sh", "-c", "sleep 30"], Duration::from_millis(300)).unwrap_err();
        assert!(matches!(err, RunError::TimedOut { .. }), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    }

    #[test]
    fn a_daemon_holding_the_pipes_cannot_hold_the_caller() {
        // The child leaves a daemon in a session of its own, with stdout and
        // stderr still open, and exits at once.
        let started = Instant::now();
        let out = run(&["sh", "-c", "setsid sleep 30 & echo $!"], Duration::from_secs(10)).unwrap();
        let took = started.elapsed();
        let daemon: i32 = out.stdout.trim().parse().expect("the daemon's pid");
        // The test started it, so the test ends it, by that PID.
        let _ = kill(Pid::from_raw(daemon), Signal::SIGKILL);
        assert!(out.success());
        assert!(took < Duration::from_secs(2), "the caller waited {took:?} for a daemon's pipe");
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
    fn a_child_is_never_reaped_between_the_check_and_the_signal() {
        let held = Arc::new(Held { pid: Pid::from_raw(-1), reaped: Mutex::new(false) });
        let order = Arc::new(Mutex::new(Vec::new()));
        let (h, o) = (Arc::clone(&held), Arc::clone(&order));
        let killer = std::thread::spawn(move || {
            h.signal_with(|_| {
                lock(&o).push("signal begins");
                std::thread::sleep(Duration::from_millis(200));
                lock(&o).push("signal ends");
            })
        });
        std::thread::sleep(Duration::from_millis(50));
        // The waiter comes to reap while the signal is on its way.
        held.reap(|| lock(&order).push("reaped"));
        killer.join().unwrap();
        assert_eq!(*lock(&order), ["signal begins", "signal ends", "reaped"], "a reaped PID can be reused before the signal lands");
        held.signal_with(|_| panic!("signalled after the reap"));
    }

    /// Children that never die; `fresh` makes each listing name new ones,
    /// as strays whose death orphans theirs onto ferry.
    struct Undying {
        fresh: bool,
        listed: std::sync::atomic::AtomicI32,
        /// Set by the test, under the JOBS lock, once the stray's PID is a job's.
        reused: std::sync::atomic::AtomicBool,
        reaped_a_job: std::sync::atomic::AtomicBool,
    }

    impl Children for Undying {
        fn list(&self) -> Vec<i32> {
            use std::sync::atomic::Ordering::SeqCst;
            let n = if self.fresh { self.listed.fetch_add(1, SeqCst) } else { 0 };
            vec![-4242 - n]
        }
        fn kill(&self, _: i32) {}
        fn reap(&self, _: i32) -> bool {
            if self.reused.load(std::sync::atomic::Ordering::SeqCst) {
                self.reaped_a_job.store(true, std::sync::atomic::Ordering::SeqCst);
            }
            false
        }
    }

    fn undying(fresh: bool) -> Arc<Undying> {
        Arc::new(Undying { fresh, listed: Default::default(), reused: Default::default(), reaped_a_job: Default::default() })
    }

    #[test]
    fn a_stray_s_pid_taken_by_a_new_job_mid_sweep_is_not_reaped() {
        use std::sync::atomic::Ordering::SeqCst;
        let children = undying(false);
        let sweeper = {
            let c = Arc::clone(&children);
            std::thread::spawn(move || sweep(&*c))
        };
        std::thread::sleep(Duration::from_millis(40));
        {
            // The stray was reaped elsewhere and its PID went to a new job.
            let mut jobs = lock(&JOBS);
            jobs.push(-4242);
            children.reused.store(true, SeqCst);
        }
        sweeper.join().unwrap();
        lock(&JOBS).retain(|&p| p != -4242);
        assert!(!children.reaped_a_job.load(SeqCst), "the sweep reaped a PID that is a job's now, stealing its exit status");
    }

    #[test]
    fn strays_that_will_not_die_hold_the_exit_no_longer_than_its_margin_allows() {
        // What comes after the deadline: a timed-out child's grace and its
        // pipes' 20 ms, the sweep, and some 150 ms to log and exit.
        let smallest_margin = crate::deadline::exit_margin(Duration::ZERO);
        assert!(REAP_GRACE + Duration::from_millis(20) + STRAYS_BUDGET + Duration::from_millis(150) <= smallest_margin);
        let started = Instant::now();
        sweep(&*undying(true));
        let took = started.elapsed();
        assert!(took <= STRAYS_BUDGET + Duration::from_millis(60), "ending the strays took {took:?}, with {smallest_margin:?} kept for the whole exit");
    }

    #[test]
    fn a_noisy_child_does_not_deadlock() {
        let out = run(&["sh", "-c", "head -c 1000000 /dev/zero >&2; echo done"], Duration::from_secs(10)).unwrap();
        assert_eq!(out.stderr.len(), 1_000_000);
        assert_eq!(out.stdout, "done\n");
    }
}
