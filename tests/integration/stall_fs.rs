//! A file system whose one file never answers a read: a FUSE server on
//! /dev/fuse, speaking just enough of the protocol to be mounted, looked
//! up, stat'ed and opened. A READ is held unanswered, as a hard NFS mount
//! whose server is gone holds it, until the reader is interrupted: then it
//! fails with EINTR, as NFS's killable wait lets a dying process go. (A
//! server that ignored interrupts would also hold its reader's exit: the
//! kernel waits without a timeout for an answer to a request it has sent.)
//!
//! Mounted with mount(2), so it needs root and /dev/fuse (the lab has
//! both) and no FUSE package. Unmounted when dropped, which aborts the
//! connection and ends the server's thread.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

const LOOKUP: u32 = 1;
const FORGET: u32 = 2;
const GETATTR: u32 = 3;
const OPEN: u32 = 14;
const READ: u32 = 15;
const RELEASE: u32 = 18;
const FLUSH: u32 = 25;
const INIT: u32 = 26;
const OPENDIR: u32 = 27;
const READDIR: u32 = 28;
const RELEASEDIR: u32 = 29;
const INTERRUPT: u32 = 36;
const DESTROY: u32 = 38;
const BATCH_FORGET: u32 = 42;

const ROOT: u64 = 1;
const FILE: u64 = 2;
/// FOPEN_DIRECT_IO: every read goes to the server, none to the page cache.
const DIRECT_IO: u32 = 1;

pub struct StallFs {
    pub mountpoint: PathBuf,
    /// How many reads reached the server (and were held).
    pub reads: Arc<AtomicU32>,
    server: Option<std::thread::JoinHandle<()>>,
}

impl StallFs {
    /// Mounts it on `mountpoint` (an empty directory) with one file, `name`.
    pub fn mount(mountpoint: &Path, name: &str) -> StallFs {
        let dev = OpenOptions::new().read(true).write(true).open("/dev/fuse").expect("/dev/fuse");
        let options = CString::new(format!("fd={},rootmode=40000,user_id=0,group_id=0", dev.as_raw_fd())).unwrap();
        let target = CString::new(mountpoint.as_os_str().as_bytes()).unwrap();
        let source = CString::new("ferry-stall").unwrap();
        let kind = CString::new("fuse").unwrap();
        // SAFETY: plain C strings that outlive the call.
        let rc = unsafe { libc::mount(source.as_ptr(), target.as_ptr(), kind.as_ptr(), libc::MS_NOSUID | libc::MS_NODEV, options.as_ptr().cast()) };
        assert_eq!(rc, 0, "mount fuse on {}: {}", mountpoint.display(), std::io::Error::last_os_error());
        let reads = Arc::new(AtomicU32::new(0));
        let counter = Arc::clone(&reads);
        let name = name.as_bytes().to_vec();
        let server = std::thread::spawn(move || serve(dev, &name, &counter));
        StallFs { mountpoint: mountpoint.to_path_buf(), reads, server: Some(server) }
    }
}

impl Drop for StallFs {
    fn drop(&mut self) {
        let target = CString::new(self.mountpoint.as_os_str().as_bytes()).unwrap();
        // SAFETY: a C string that outlives the call. Lazy: a reader still
        // inside is let go when the connection aborts.
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
        if let Some(server) = self.server.take() {
            let _ = server.join();
        }
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// struct fuse_attr (88 bytes).
fn attr(node: u64) -> Vec<u8> {
    let (mode, size, nlink): (u32, u64, u32) = if node == ROOT { (0o40755, 0, 2) } else { (0o100644, 4096, 1) };
    let mut a = Vec::with_capacity(88);
    a.extend(node.to_le_bytes()); // ino
    a.extend(size.to_le_bytes());
    a.extend(8u64.to_le_bytes()); // blocks
    a.extend([0u8; 24]); // atime, mtime, ctime
    a.extend([0u8; 12]); // their nanoseconds
    a.extend(mode.to_le_bytes());
    a.extend(nlink.to_le_bytes());
    a.extend([0u8; 12]); // uid, gid, rdev
    a.extend(4096u32.to_le_bytes()); // blksize
    a.extend([0u8; 4]); // flags
    a
}

fn reply(dev: &mut File, unique: u64, error: i32, body: &[u8]) {
    let mut out = Vec::with_capacity(16 + body.len());
    out.extend(((16 + body.len()) as u32).to_le_bytes());
    out.extend(error.to_le_bytes());
    out.extend(unique.to_le_bytes());
    out.extend(body);
    // ENOENT: the request was interrupted and is gone; nothing to do.
    let _ = dev.write_all(&out);
}

fn serve(mut dev: File, name: &[u8], reads: &AtomicU32) {
    let mut buf = vec![0u8; 1 << 20 | 4096];
    // Reads held: their request ids.
    let mut held: Vec<u64> = Vec::new();
    loop {
        let n = match dev.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.raw_os_error() == Some(libc::EINTR) || e.raw_os_error() == Some(libc::ENOENT) => continue,
            // ENODEV: unmounted, the connection is gone.
            Err(_) => return,
        };
        let msg = &buf[..n];
        let (opcode, unique, node) = (u32_at(msg, 4), u64_at(msg, 8), u64_at(msg, 16));
        let body = &msg[40..];
        match opcode {
            INIT => {
                // struct fuse_init_out: 7.31, no flags, small writes.
                let mut out = vec![0u8; 64];
                out[0..4].copy_from_slice(&7u32.to_le_bytes());
                out[4..8].copy_from_slice(&31u32.to_le_bytes());
                out[20..24].copy_from_slice(&4096u32.to_le_bytes()); // max_write
                reply(&mut dev, unique, 0, &out);
            }
            LOOKUP => {
                let asked = body.split(|&b| b == 0).next().unwrap_or_default();
                if node == ROOT && asked == name {
                    // struct fuse_entry_out: nothing cached, so every look asks.
                    let mut out = Vec::new();
                    out.extend(FILE.to_le_bytes());
                    out.extend([0u8; 32]); // generation, entry_valid, attr_valid, their nanoseconds
                    out.extend(attr(FILE));
                    reply(&mut dev, unique, 0, &out);
                } else {
                    reply(&mut dev, unique, -libc::ENOENT, &[]);
                }
            }
            GETATTR => {
                let mut out = vec![0u8; 16]; // attr_valid, its nanoseconds, dummy
                out.extend(attr(node));
                reply(&mut dev, unique, 0, &out);
            }
            OPEN | OPENDIR => {
                let mut out = vec![0u8; 16];
                if opcode == OPEN {
                    out[8..12].copy_from_slice(&DIRECT_IO.to_le_bytes());
                }
                reply(&mut dev, unique, 0, &out);
            }
            READ => {
                reads.fetch_add(1, Ordering::SeqCst);
                held.push(unique);
            }
            INTERRUPT => {
                // struct fuse_interrupt_in: the id of the interrupted request.
                let which = u64_at(body, 0);
                if let Some(i) = held.iter().position(|&u| u == which) {
                    held.remove(i);
                    reply(&mut dev, which, -libc::EINTR, &[]);
                }
            }
            FORGET | BATCH_FORGET => {}
            READDIR | RELEASE | RELEASEDIR | FLUSH => reply(&mut dev, unique, 0, &[]),
            DESTROY => return,
            _ => reply(&mut dev, unique, -libc::ENOSYS, &[]),
        }
    }
}
