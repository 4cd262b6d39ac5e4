//! Finding a QEMU guest's process without libvirtd.
//!
//! When libvirtd is down or hung, its guests keep running. A monitor that then
//! answered "not running" would let Pacemaker start a second copy elsewhere and
//! corrupt the guest's disks. libvirt names every QEMU process after its guest
//! (`-name guest=NAME,…`, or `-name NAME` from older versions), so /proc can
//! still tell whether the guest runs on this node.

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;

use crate::deadline::Deadline;
use crate::fsread;

#[derive(Debug, PartialEq, Eq)]
pub enum Scan {
    Found(u32),
    Absent,
    /// /proc could not be read well enough to say "absent".
    Undecided(String),
}

/// The guest name a QEMU command line declares, if it is one.
pub fn guest_name(argv: &[&str]) -> Option<String> {
    let program = Path::new(argv.first()?).file_name()?.to_string_lossy().into_owned();
    if !program.contains("qemu") && !program.contains("kvm") {
        return None;
    }
    let value = argv.windows(2).find(|w| w[0] == "-name").map(|w| w[1])?;
    // QEMU option syntax: key=value pairs split by ',', a literal comma doubled.
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ',' {
            if chars.peek() == Some(&',') {
                chars.next();
                field.push(',');
            } else {
                fields.push(std::mem::take(&mut field));
            }
        } else {
            field.push(c);
        }
    }
    fields.push(field);
    let first = fields.first()?;
    Some(first.strip_prefix("guest=").unwrap_or(first).to_string())
}

/// How long one process's command line may take to read. The kernel reads
/// it from the process's memory under its memory-map lock, which a process
/// stuck in a page fault on a hung mount holds: the scan moves on to the
/// others, and that process counts as unread.
const CMDLINE_READ: Duration = Duration::from_millis(250);

/// Looks through `proc_root` (normally /proc) for the QEMU process of
/// `name`, by `deadline`. A command line not read in time may be the
/// guest's: the answer is then `Undecided`, unless the guest is found.
pub fn find_qemu_guest(proc_root: &Path, name: &str, deadline: Deadline) -> Scan {
    let entries = match std::fs::read_dir(proc_root) {
        Ok(e) => e,
        Err(e) => return Scan::Undecided(format!("cannot read {}: {e}", proc_root.display())),
    };
    // Only processes in this node's network namespace are this node's. On a
    // real host that is every process; in a lab of namespaced nodes that share
    // one kernel it keeps another node's guest from looking like ours.
    let own_net = std::fs::read_link(proc_root.join("self/ns/net")).ok();
    let mut unread = Vec::new();
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        if let (Some(own), Ok(theirs)) = (&own_net, std::fs::read_link(entry.path().join("ns/net"))) {
            if &theirs != own {
                continue;
            }
        }
        let raw = match fsread::read(&entry.path().join("cmdline"), deadline.within(CMDLINE_READ)) {
            Ok(raw) => raw,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                unread.push(pid);
                continue;
            }
            // A process may exit between readdir and read: that is not a failure.
            Err(_) => continue,
        };
        let text = String::from_utf8_lossy(&raw);
        let argv: Vec<&str> = text.split('\0').filter(|a| !a.is_empty()).collect();
        if guest_name(&argv).as_deref() == Some(name) {
            return Scan::Found(pid);
        }
    }
    unread.sort_unstable();
    match unread.as_slice() {
        [] => Scan::Absent,
        pids => Scan::Undecided(format!("the command line of process {} could not be read in time", pids.iter().map(u32::to_string).collect::<Vec<_>>().join(", "))),
    }
}

/// How long process `pid` has run: its start time (in clock ticks since
/// boot, /proc/PID/stat's 22nd field) against the system's uptime.
pub fn age(proc_root: &Path, pid: u32) -> Option<std::time::Duration> {
    let stat = std::fs::read_to_string(proc_root.join(pid.to_string()).join("stat")).ok()?;
    // The command name may hold spaces and parentheses; fields follow the last ')'.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let start_ticks: f64 = after_name.split_whitespace().nth(19)?.parse().ok()?;
    let uptime: f64 = std::fs::read_to_string(proc_root.join("uptime")).ok()?.split_whitespace().next()?.parse().ok()?;
    // SAFETY: sysconf only reads a system constant.
    let ticks_per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks_per_second <= 0 {
        return None;
    }
    Some(std::time::Duration::from_secs_f64((uptime - start_ticks / ticks_per_second as f64).max(0.0)))
}

/// A process held by a pidfd: signals reach the process that was opened,
/// never one that reused its PID later.
struct Process {
    fd: OwnedFd,
}

impl Process {
    fn open(pid: u32) -> Result<Process, String> {
        // SAFETY: pidfd_open takes a PID and flags and returns a new file
        // descriptor or -1; no memory is passed. std and nix have no wrapper.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error().to_string());
        }
        // SAFETY: the kernel just returned this descriptor, and only this owns it.
        Ok(Process { fd: unsafe { OwnedFd::from_raw_fd(fd as i32) } })
    }

    fn signal(&self, signal: Signal) -> Result<(), String> {
        // SAFETY: pidfd_send_signal with a pidfd we own, a signal number, a
        // null siginfo (the kernel fills one as kill(2) would) and no flags.
        let rc = unsafe { libc::syscall(libc::SYS_pidfd_send_signal, self.fd.as_raw_fd(), signal as libc::c_int, std::ptr::null::<libc::siginfo_t>(), 0) };
        match rc {
            0 => Ok(()),
            _ => match std::io::Error::last_os_error() {
                e if e.raw_os_error() == Some(libc::ESRCH) => Ok(()), // already gone
                e => Err(e.to_string()),
            },
        }
    }

    /// Whether it has exited by `until`. A pidfd turns readable when its
    /// process exits, also when it stays a zombie because its parent (a
    /// stopped libvirtd) does not reap it: a zombie runs nothing and holds
    /// no disk.
    fn exited_by(&self, until: Deadline) -> bool {
        loop {
            let left = until.remaining();
            let wait = PollTimeout::try_from(left.min(Duration::from_millis(100))).unwrap_or(PollTimeout::ZERO);
            let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
            if let Ok(n @ 1..) = poll(&mut fds, wait) {
                return n > 0;
            }
            if left.is_zero() {
                return false;
            }
        }
    }
}

/// Ends the QEMU process `pid` of guest `name`: SIGTERM (QEMU closes its
/// disks cleanly), then SIGKILL once two thirds of the time are spent. Ok
/// once it has exited. The process is checked to still be `name`'s QEMU
/// after it is held, so a PID reused since the scan is never signalled.
pub fn end_qemu_guest(proc_root: &Path, pid: u32, name: &str, deadline: Deadline) -> Result<(), String> {
    let process = match Process::open(pid) {
        Ok(p) => p,
        Err(_) if !proc_root.join(pid.to_string()).exists() => return Ok(()), // already gone
        Err(e) => return Err(format!("cannot hold process {pid}: {e}")),
    };
    // A process in the middle of exec shows no command line for a moment.
    let looking = deadline.within(Duration::from_millis(100).max(CMDLINE_READ));
    let read_name = || {
        let cmdline = fsread::read(&proc_root.join(pid.to_string()).join("cmdline"), looking).unwrap_or_default();
        let text = String::from_utf8_lossy(&cmdline);
        let argv: Vec<&str> = text.split('\0').filter(|a| !a.is_empty()).collect();
        guest_name(&argv)
    };
    let identity = looking.wait_until(Duration::from_millis(10), || {
        read_name().map(Some).or_else(|| process.exited_by(Deadline::after(Duration::ZERO)).then_some(None))
    });
    match identity {
        Some(Some(found)) if found == name => {}
        // Exited since the scan: a zombie has no command line.
        Some(None) => return Ok(()),
        _ => return Err(format!("process {pid} is no longer {name}'s QEMU")),
    }
    process.signal(Signal::SIGTERM)?;
    if process.exited_by(deadline.leaving(deadline.remaining() / 3)) {
        return Ok(());
    }
    process.signal(Signal::SIGKILL)?;
    if process.exited_by(deadline) {
        return Ok(());
    }
    Err(format!("QEMU process {pid} of {name} survived SIGKILL"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_name_syntaxes_and_escaped_commas() {
        assert_eq!(
            guest_name(&["/usr/bin/qemu-system-x86_64", "-name", "guest=vm1,debug-threads=on"]).as_deref(),
            Some("vm1")
        );
        assert_eq!(guest_name(&["/usr/bin/kvm", "-name", "vm2"]).as_deref(), Some("vm2"));
        assert_eq!(guest_name(&["qemu-system-x86_64", "-name", "guest=a,,b,debug-threads=on"]).as_deref(), Some("a,b"));
        assert_eq!(guest_name(&["/bin/sleep", "-name", "vm1"]), None);
        assert_eq!(guest_name(&["/usr/bin/qemu-system-x86_64", "-m", "128"]), None);
    }

    #[test]
    fn a_held_process_is_ended_and_a_zombie_counts_as_ended() {
        use std::os::unix::process::CommandExt;
        // A "QEMU" for guest vm-t: a shell under a name that contains qemu.
        let mut child = std::process::Command::new("/bin/sh")
            .arg0("qemu-system-x86_64")
            .args(["-c", "trap '' TERM; while :; do sleep 1; done", "-name", "guest=vm-t"])
            .spawn()
            .unwrap();
        let pid = child.id();
        std::thread::sleep(Duration::from_millis(100));
        let started = std::time::Instant::now();
        // It ignores SIGTERM, so SIGKILL ends it; it stays a zombie, unreaped.
        assert_eq!(end_qemu_guest(Path::new("/proc"), pid, "vm-t", Deadline::after(Duration::from_secs(3))), Ok(()));
        assert!(started.elapsed() < Duration::from_millis(2900), "{:?}", started.elapsed());
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        assert!(stat.contains(") Z "), "a zombie until reaped: {stat}");
        child.wait().unwrap();
        assert_eq!(end_qemu_guest(Path::new("/proc"), pid, "vm-t", Deadline::after(Duration::from_secs(1))), Ok(()), "gone is ended");
    }

    #[test]
    fn a_pid_that_is_not_the_guest_is_never_signalled() {
        let mut child = std::process::Command::new("sleep").arg("5").spawn().unwrap();
        let err = end_qemu_guest(Path::new("/proc"), child.id(), "vm-t", Deadline::after(Duration::from_secs(1))).unwrap_err();
        assert!(err.contains("no longer"), "{err}");
        assert!(child.try_wait().unwrap().is_none(), "sleep must still run");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[test]
    fn a_process_age_comes_from_its_start_time_and_the_uptime() {
        let mine = age(Path::new("/proc"), std::process::id()).expect("this process has an age");
        assert!(mine < std::time::Duration::from_secs(3600), "{mine:?}");
        let dir = std::env::temp_dir().join(format!("ferry-age-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("42")).unwrap();
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
        // A name with a space and a parenthesis, started 500 s after boot.
        std::fs::write(dir.join("42/stat"), format!("42 (qemu (x) y) S 1 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 {} 0 0", 500 * hz)).unwrap();
        std::fs::write(dir.join("uptime"), "620.50 1000.00\n").unwrap();
        let found = age(&dir, 42).unwrap();
        assert!((found.as_secs_f64() - 120.5).abs() < 0.01, "{found:?}");
        assert_eq!(age(&dir, 43), None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn scans_a_proc_tree() {
        let root = std::env::temp_dir().join(format!("ferry-procscan-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for (pid, argv) in [("10", "bash\0-c\0true\0"), ("42", "/usr/bin/qemu-system-x86_64\0-name\0guest=vm1,debug-threads=on\0")] {
            std::fs::create_dir_all(root.join(pid)).unwrap();
            std::fs::write(root.join(pid).join("cmdline"), argv).unwrap();
        }
        std::fs::create_dir_all(root.join("self")).unwrap();
        let soon = || Deadline::after(Duration::from_secs(2));
        assert_eq!(find_qemu_guest(&root, "vm1", soon()), Scan::Found(42));
        assert_eq!(find_qemu_guest(&root, "vm2", soon()), Scan::Absent);
        assert!(matches!(find_qemu_guest(&root.join("missing"), "vm1", soon()), Scan::Undecided(_)));
        // Command lines that could not be read in time may be the guest's.
        let late = find_qemu_guest(&root, "vm2", Deadline::after(Duration::ZERO));
        assert_eq!(late, Scan::Undecided("the command line of process 10, 42 could not be read in time".into()));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
