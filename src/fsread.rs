//! Reading a small file without letting the file system hold ferry.
//!
//! ferry reads files where a read can block for ever: the guest's config on
//! shared storage (a hard-mounted NFS whose server is gone blocks in the
//! kernel until it comes back), libvirt's status files, /proc/PID/cmdline
//! (the kernel takes the process's memory-map lock, which a process stuck in
//! a page fault on such a mount holds), an xmfile. A plain read there hangs
//! monitor and stop until Pacemaker kills them, where a fall-back (the
//! owner mark, "unknown") would have answered in time. So:
//! - the open is `O_NONBLOCK | O_NOCTTY`: a FIFO opens at once instead of
//!   waiting for a writer, and a terminal never becomes ferry's;
//! - only a regular file is read; a FIFO, device, socket or directory is
//!   refused, as none of them is a file ferry was told to read;
//! - the open and the read run on a thread of their own, and the caller
//!   waits for it only until the deadline.
//!
//! A read stuck in the kernel cannot be cancelled, so its thread is left
//! behind, blocked. ferry lives for one action and exits soon after, and
//! the exit is not held by it: NFS and FUSE wait killably, and exit kills
//! every thread. A leaked thread costs one stack until then.
//!
//! Neutral: used by every layer, knows none of them.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::deadline::Deadline;

/// More than any file ferry reads (a domain XML, a status file, a command
/// line): a larger one is not what ferry was meant to read, and reading it
/// whole would only cost memory.
const LIMIT: u64 = 16 << 20;

/// The longest a wait blocks without looking at the deadline again, so a
/// SIGTERM (which shortens every deadline) is noticed at once.
const TICK: Duration = Duration::from_millis(100);

/// Reads the regular file at `path` whole, or fails by `deadline`: an
/// `io::ErrorKind::TimedOut` error when the file system did not answer.
pub fn read(path: &Path, deadline: Deadline) -> io::Result<Vec<u8>> {
    let path = path.to_path_buf();
    within(deadline, move || read_now(&path))
}

/// As `read`, for a text file: invalid UTF-8 is `InvalidData`, as for
/// `std::fs::read_to_string`.
pub fn read_to_string(path: &Path, deadline: Deadline) -> io::Result<String> {
    String::from_utf8(read(path, deadline)?).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8 text"))
}

/// The read itself, on the calling thread: it may block.
fn read_now(path: &PathBuf) -> io::Result<Vec<u8>> {
    let file = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY).open(path)?;
    let kind = file.metadata()?.file_type();
    if !kind.is_file() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"));
    }
    // The flag was for the open; a file system that honours it on reads
    // (FUSE passes it on) could answer EAGAIN instead of the data.
    blocking(&file)?;
    let mut data = Vec::new();
    file.take(LIMIT + 1).read_to_end(&mut data)?;
    if data.len() as u64 > LIMIT {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("larger than {} MiB", LIMIT >> 20)));
    }
    Ok(data)
}

fn blocking(file: &File) -> io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = OFlag::from_bits_truncate(fcntl(file.as_raw_fd(), FcntlArg::F_GETFL).map_err(io::Error::from)?);
    fcntl(file.as_raw_fd(), FcntlArg::F_SETFL(flags - OFlag::O_NONBLOCK)).map_err(io::Error::from)?;
    Ok(())
}

/// Runs `work` on a thread of its own and waits for it until `deadline`.
/// Past it, the thread is left to finish (or block) alone.
fn within<T: Send + 'static>(deadline: Deadline, work: impl FnOnce() -> io::Result<T> + Send + 'static) -> io::Result<T> {
    let started = Instant::now();
    if deadline.expired() {
        return Err(io::Error::new(io::ErrorKind::TimedOut, "no time left to read"));
    }
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new().name("fsread".into()).spawn(move || {
        let _ = tx.send(work());
    })?;
    loop {
        let left = deadline.remaining();
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, format!("no answer within {:.1}s", started.elapsed().as_secs_f64())));
        }
        match rx.recv_timeout(left.min(TICK)) {
            Ok(result) => return result,
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => return Err(io::Error::other("the reading thread ended without an answer")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ferry-fsread-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn soon() -> Deadline {
        Deadline::after(Duration::from_secs(2))
    }

    #[test]
    fn a_regular_file_is_read_whole() {
        let d = scratch("regular");
        std::fs::write(d.join("f"), "<domain/>\n").unwrap();
        assert_eq!(read_to_string(&d.join("f"), soon()).unwrap(), "<domain/>\n");
        assert_eq!(read(&d.join("missing"), soon()).unwrap_err().kind(), io::ErrorKind::NotFound, "NotFound stays NotFound");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn proc_files_count_as_regular() {
        let cmdline = read(Path::new("/proc/self/cmdline"), soon()).unwrap();
        assert!(!cmdline.is_empty());
    }

    #[test]
    fn a_fifo_with_no_writer_is_refused_at_once_not_waited_on() {
        let d = scratch("fifo");
        let fifo = d.join("config.xml");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let started = Instant::now();
        let e = read(&fifo, Deadline::after(Duration::from_secs(3))).unwrap_err();
        let took = started.elapsed();
        // A blocking open would wait for a writer until the deadline.
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
        assert_eq!(e.to_string(), "not a regular file");
        assert!(took < Duration::from_millis(500), "{took:?}");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn devices_and_directories_are_refused() {
        for path in ["/dev/null", "/dev/zero", "/"] {
            let e = read(Path::new(path), soon()).unwrap_err();
            assert_eq!(e.to_string(), "not a regular file", "{path}");
        }
    }

    #[test]
    fn a_read_that_does_not_return_is_abandoned_at_the_deadline() {
        // A stand-in for a read stuck in the kernel: the thread never answers
        // in time, and is left behind.
        let started = Instant::now();
        let e = within(Deadline::after(Duration::from_millis(300)), || -> io::Result<()> {
            std::thread::sleep(Duration::from_secs(30));
            Ok(())
        })
        .unwrap_err();
        let took = started.elapsed();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(e.to_string().starts_with("no answer within 0.3s"), "{e}");
        assert!(took >= Duration::from_millis(300) && took < Duration::from_millis(700), "{took:?}");
    }

    #[test]
    fn an_oversized_file_is_refused() {
        let d = scratch("big");
        let f = File::create(d.join("big")).unwrap();
        f.set_len(LIMIT + 1).unwrap();
        assert_eq!(read(&d.join("big"), soon()).unwrap_err().to_string(), "larger than 16 MiB");
        let _ = std::fs::remove_dir_all(&d);
    }
}
