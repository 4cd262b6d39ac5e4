//! Which running domain carries which owner mark, remembered on this node
//! between invocations, so that finding a resource's guest by its mark asks
//! libvirt about new domains only, not about every domain every time (a node
//! joining a cluster of 500 guests is probed 500 times).
//!
//! It is safe to trust because of how marks change. A running domain's live
//! mark is set when it is created (by ferry, or carried in by a migration) and
//! afterwards only by ferry's adoption of an unmarked guest; it never passes
//! from one resource to another. So:
//! - an entry is keyed by the daemon (its PID and start time, from the
//!   socket's peer credentials) and the domain's id and UUID: ids are unique
//!   within one daemon's life, and a restarted daemon starts a new index;
//! - an entry that says "another resource's mark" is trusted; one that says
//!   "this resource's mark" is confirmed with libvirt before it is used;
//! - an adoption deletes the index after marking (`forget`). Every scanner
//!   opens the index file before it lists the domains and writes only to the
//!   file it opened: a "no mark" it wrote was read after the file existed, so
//!   a file that outlives an adoption was created after it, and read the
//!   mark.
//!
//! Anything wrong with the index (missing, unreadable, a line that does not
//! parse) only costs libvirt questions: the domain is asked about live.
//! Nothing here decides "not running" on its own.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::domxml::OwnerMark;

/// The index file's name starts with this; the daemon's key follows.
const PREFIX: &str = "libvirt-marks-";
/// An index with this many more lines than live domains (dead domains' lines
/// accumulate over a daemon's life) is deleted; the next scanner rebuilds it.
const SLACK: usize = 256;

/// What the index knows of one domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Known {
    Unmarked,
    Marked(OwnerMark),
}

pub type Key = (i32, [u8; 16]);

pub struct MarkIndex {
    file: Option<File>,
    path: Option<PathBuf>,
    known: HashMap<Key, Known>,
    lines: usize,
}

impl MarkIndex {
    /// Opens (or creates) the index of the daemon `daemon` in `dir`. Call it
    /// before listing the domains (see the module's comment). Without a
    /// daemon key, or with any error, the index is empty and writes nothing.
    pub fn open(dir: &Path, daemon: Option<&str>) -> MarkIndex {
        let mut index = MarkIndex { file: None, path: None, known: HashMap::new(), lines: 0 };
        let Some(daemon) = daemon else { return index };
        let path = dir.join(format!("{PREFIX}{daemon}"));
        let opened = OpenOptions::new().read(true).append(true).open(&path).or_else(|_| {
            std::fs::create_dir_all(dir)?;
            // A new daemon: the indexes of earlier ones are of no use.
            remove_other_indexes(dir, &path);
            OpenOptions::new().read(true).append(true).create(true).mode(0o600).open(&path)
        });
        let Ok(mut file) = opened else { return index };
        let mut text = String::new();
        if file.read_to_string(&mut text).is_err() {
            return index;
        }
        for line in text.lines() {
            index.lines += 1;
            if let Some((key, known)) = parse_line(line) {
                // A mark recorded by an adoption wins over a "no mark" read
                // before it.
                if known != Known::Unmarked || !index.known.contains_key(&key) {
                    index.known.insert(key, known);
                }
            }
        }
        index.file = Some(file);
        index.path = Some(path);
        index
    }

    pub fn get(&self, key: &Key) -> Option<&Known> {
        self.known.get(key)
    }

    /// Appends what was read live of these domains. A domain whose mark
    /// cannot be written on one line is not recorded (asked live each time).
    pub fn record(&mut self, read: &[(Key, Known)], live_domains: usize) {
        let Some(file) = self.file.as_mut() else { return };
        let text: String = read.iter().filter_map(|(key, known)| format_line(key, known)).collect();
        if !text.is_empty() {
            // One write: appends of other invocations do not interleave in it.
            let _ = file.write_all(text.as_bytes());
            self.lines += read.len();
        }
        if self.lines > live_domains * 2 + SLACK {
            if let Some(path) = &self.path {
                let _ = std::fs::remove_file(path);
            }
        }
    }

    /// Deletes the index of every daemon: called after a mark was added to
    /// a running domain. `Err` says the index may still say "no mark" of it.
    pub fn forget(dir: &Path) -> std::io::Result<()> {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            if entry.file_name().to_string_lossy().starts_with(PREFIX) {
                match std::fs::remove_file(entry.path()) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

fn remove_other_indexes(dir: &Path, keep: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(PREFIX) && entry.path() != keep {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// The daemon's key: its PID and start time (clock ticks since boot), so a
/// restarted daemon, even under a reused PID, is another daemon.
pub fn daemon_key(pid: i32, proc_root: &Path) -> Option<String> {
    let stat = std::fs::read_to_string(proc_root.join(pid.to_string()).join("stat")).ok()?;
    // The command may hold spaces and parentheses; fields follow the last ')'.
    let after = &stat[stat.rfind(')')? + 1..];
    let start = after.split_whitespace().nth(19)?;
    start.parse::<u64>().ok()?;
    Some(format!("{pid}-{start}"))
}

fn hex(uuid: &[u8; 16]) -> String {
    uuid.iter().map(|b| format!("{b:02x}")).collect()
}

/// `ID UUID -` or `ID UUID AGENT RESOURCE`, one domain a line.
fn format_line((id, uuid): &Key, known: &Known) -> Option<String> {
    let plain = |s: &str| !s.is_empty() && s != "-" && !s.chars().any(char::is_whitespace);
    match known {
        Known::Unmarked => Some(format!("{id} {} -\n", hex(uuid))),
        Known::Marked(m) if plain(&m.agent) && plain(&m.resource) => Some(format!("{id} {} {} {}\n", hex(uuid), m.agent, m.resource)),
        Known::Marked(_) => None,
    }
}

fn parse_line(line: &str) -> Option<(Key, Known)> {
    let mut words = line.split(' ');
    let id: i32 = words.next()?.parse().ok()?;
    let hex = words.next()?;
    if hex.len() != 32 {
        return None;
    }
    let mut uuid = [0u8; 16];
    for (i, byte) in uuid.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    let known = match (words.next()?, words.next(), words.next()) {
        ("-", None, None) => Known::Unmarked,
        (agent, Some(resource), None) if agent != "-" && !resource.is_empty() => Known::Marked(OwnerMark { agent: agent.into(), resource: resource.into() }),
        _ => return None,
    };
    Some(((id, uuid), known))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ferry-markindex-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn mark(r: &str) -> Known {
        Known::Marked(OwnerMark { agent: "VirtualDomain".into(), resource: r.into() })
    }

    #[test]
    fn what_one_invocation_records_the_next_knows() {
        let d = dir("roundtrip");
        let mut first = MarkIndex::open(&d, Some("10-99"));
        assert!(first.get(&(1, [1; 16])).is_none());
        first.record(&[((1, [1; 16]), Known::Unmarked), ((2, [2; 16]), mark("vm2"))], 2);
        let second = MarkIndex::open(&d, Some("10-99"));
        assert_eq!(second.get(&(1, [1; 16])), Some(&Known::Unmarked));
        assert_eq!(second.get(&(2, [2; 16])), Some(&mark("vm2")));
        // Another id with the same UUID is another domain.
        assert!(second.get(&(3, [2; 16])).is_none());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn another_daemon_starts_from_nothing_and_removes_the_old_index() {
        let d = dir("daemon");
        MarkIndex::open(&d, Some("10-99")).record(&[((1, [1; 16]), Known::Unmarked)], 1);
        let restarted = MarkIndex::open(&d, Some("11-150"));
        assert!(restarted.get(&(1, [1; 16])).is_none());
        assert!(!d.join(format!("{PREFIX}10-99")).exists());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn an_adoption_read_before_a_stale_no_mark_still_wins() {
        let d = dir("adopt");
        let mut index = MarkIndex::open(&d, Some("1-1"));
        // An adoption's mark, then a scanner's "no mark" read before it.
        index.record(&[((5, [5; 16]), mark("vm5"))], 1);
        index.record(&[((5, [5; 16]), Known::Unmarked)], 1);
        assert_eq!(MarkIndex::open(&d, Some("1-1")).get(&(5, [5; 16])), Some(&mark("vm5")));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_scanner_that_opened_the_index_before_forget_writes_into_nothing() {
        let d = dir("forget");
        let mut scanner = MarkIndex::open(&d, Some("1-1"));
        // The adoption marks the domain and forgets the index...
        MarkIndex::forget(&d).unwrap();
        // ...and the scanner, which read "no mark" before that, records it.
        scanner.record(&[((5, [5; 16]), Known::Unmarked)], 1);
        assert!(MarkIndex::open(&d, Some("1-1")).get(&(5, [5; 16])).is_none());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn garbage_and_unwritable_marks_are_asked_live() {
        let d = dir("garbage");
        std::fs::create_dir_all(&d).unwrap();
        let good = format!("7 {} VirtualDomain vm7\n", "ab".repeat(16));
        std::fs::write(d.join(format!("{PREFIX}1-1")), format!("x y z\n7 short -\n{good}8 {} a b c\n\n", "cd".repeat(16))).unwrap();
        let mut index = MarkIndex::open(&d, Some("1-1"));
        assert_eq!(index.known.len(), 1);
        assert_eq!(index.get(&(7, [0xab; 16])), Some(&mark("vm7")));
        // A resource name with a space cannot be a line: not recorded.
        index.record(&[((9, [9; 16]), mark("a b"))], 2);
        assert!(MarkIndex::open(&d, Some("1-1")).get(&(9, [9; 16])).is_none());
        // No daemon key: nothing is read or written.
        assert!(MarkIndex::open(&d, None).file.is_none());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn an_index_grown_far_past_the_live_domains_is_dropped() {
        let d = dir("grow");
        let mut index = MarkIndex::open(&d, Some("1-1"));
        let many: Vec<_> = (0..300).map(|i| ((i, [1; 16]), Known::Unmarked)).collect();
        index.record(&many, 10);
        assert!(!d.join(format!("{PREFIX}1-1")).exists());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn the_daemon_key_reads_the_start_time_past_a_command_with_spaces() {
        let d = dir("proc");
        std::fs::create_dir_all(d.join("42")).unwrap();
        let mut fields = vec!["S"];
        fields.extend(std::iter::repeat("0").take(18));
        fields.push("123456");
        std::fs::write(d.join("42/stat"), format!("42 (lib virt) d) {} 7 8\n", fields.join(" "))).unwrap();
        assert_eq!(daemon_key(42, &d).as_deref(), Some("42-123456"));
        assert_eq!(daemon_key(43, &d), None);
        let _ = std::fs::remove_dir_all(&d);
    }
}
