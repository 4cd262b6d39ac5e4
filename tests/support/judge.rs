//! The chaos harness's judge (issue 25), for any lab whose guests print
//! `ferry-tick N` every second to a console file of each node's own: it
//! trusts nothing an agent or a cluster manager says, only what the guests
//! write. tests/chaos uses it in the libvirt cluster lab; a Xen lab whose
//! dom0s keep their guests' consoles in files can use it as it is.
//!
//! Every second it notes which nodes' files of each guest grew a tick line.
//! A live migration hands a guest over once: the target's vCPUs run only
//! after the source's stopped, so both files grow in the same second at
//! most once per hand-over, and two hand-overs (there and back) take more
//! than five seconds. Both growing in three of any five consecutive seconds
//! is a **double run** (two copies that both run grow both files nearly
//! every second). So is a boot ("ferry-guest: up") on one node in a second
//! when the other node's copy ticked in that second or the one before: a
//! migrated guest never boots, and a restart boots seconds after the old
//! copy stopped. That catches a second copy ended within seconds of its
//! boot, which ticks too few times for the first rule (seen when Pacemaker,
//! without fencing, started guests elsewhere for 8-9 s after its executor
//! was killed). It also keeps each guest's longest time without a tick on
//! any node (**unavailability**).

use std::collections::VecDeque;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the judge found.
#[derive(Default)]
pub struct Findings {
    pub seconds: u64,
    /// (guest, second of the run): each second that ended a window of five
    /// in which both nodes' copies ran in three.
    pub double_runs: Vec<(String, u64)>,
    /// Per guest: the longest time with no tick on any node, and when it began.
    pub longest_gap: Vec<(u64, u64)>,
    pub ticks: Vec<[usize; 2]>,
}

pub struct Judge {
    stop: Arc<AtomicBool>,
    findings: Arc<Mutex<Findings>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// What a console file grew since `offset`: its tick lines, and whether
/// the guest booted there ("ferry-guest: up"). Moves `offset` on.
fn new_ticks(path: &PathBuf, offset: &mut u64) -> (usize, bool) {
    let Ok(mut f) = std::fs::File::open(path) else { return (0, false) };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    if len < *offset {
        // A new file (the guest's first start on this node after a removal).
        *offset = 0;
    }
    let mut text = String::new();
    if f.seek(SeekFrom::Start(*offset)).is_err() || f.read_to_string(&mut text).is_err() {
        return (0, false);
    }
    // Only whole lines: a tick half written is counted the next second.
    let whole = text.rfind('\n').map_or(0, |i| i + 1);
    *offset += whole as u64;
    let lines = &text[..whole];
    (lines.lines().filter(|l| l.contains("ferry-tick")).count(), lines.contains("ferry-guest: up"))
}

impl Judge {
    /// Starts watching each guest (its name, and its console file on each
    /// of the two nodes), from what the files hold now on.
    pub fn start(guests: &[(String, [PathBuf; 2])]) -> Judge {
        let stop = Arc::new(AtomicBool::new(false));
        let findings = Arc::new(Mutex::new(Findings { longest_gap: vec![(0, 0); guests.len()], ticks: vec![[0; 2]; guests.len()], ..Findings::default() }));
        let (flag, shared) = (stop.clone(), findings.clone());
        let guests = guests.to_vec();
        let thread = std::thread::spawn(move || {
            let started = Instant::now();
            let mut offsets = vec![[0u64; 2]; guests.len()];
            // Skip what the consoles held before the judge began.
            for (i, (_, files)) in guests.iter().enumerate() {
                for n in 0..2 {
                    new_ticks(&files[n], &mut offsets[i][n]);
                }
            }
            let mut both: Vec<VecDeque<bool>> = vec![VecDeque::new(); guests.len()];
            let mut ticked_before = vec![[false; 2]; guests.len()];
            let mut last_tick = vec![0u64; guests.len()];
            let mut second = 0u64;
            while !flag.load(Ordering::Relaxed) {
                second += 1;
                let next = started + Duration::from_secs(second);
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
                let mut f = shared.lock().unwrap();
                f.seconds = second;
                for (i, (name, files)) in guests.iter().enumerate() {
                    let ((a, a_booted), (b, b_booted)) = (new_ticks(&files[0], &mut offsets[i][0]), new_ticks(&files[1], &mut offsets[i][1]));
                    let (grew, booted) = ([a, b], [a_booted, b_booted]);
                    // A boot on one node while the other node's copy ticks
                    // (this second or the last) is a second copy however
                    // short its life: a migrated guest never boots, and a
                    // restart boots only seconds after the old copy stopped.
                    let second_copy_booted = (0..2).any(|n| booted[n] && (grew[1 - n] > 0 || ticked_before[i][1 - n]));
                    ticked_before[i] = [grew[0] > 0, grew[1] > 0];
                    f.ticks[i][0] += grew[0];
                    f.ticks[i][1] += grew[1];
                    let window = &mut both[i];
                    window.push_back(grew[0] > 0 && grew[1] > 0);
                    if window.len() > 5 {
                        window.pop_front();
                    }
                    if second_copy_booted || (window.iter().filter(|b| **b).count() >= 3 && window.back() == Some(&true)) {
                        f.double_runs.push((name.clone(), second));
                    }
                    if grew[0] + grew[1] > 0 {
                        let gap = second - last_tick[i];
                        if gap > f.longest_gap[i].0 {
                            f.longest_gap[i] = (gap, last_tick[i]);
                        }
                        last_tick[i] = second;
                    }
                }
            }
            // A guest that ended the run without ticking was unavailable to the end.
            let mut f = shared.lock().unwrap();
            for i in 0..guests.len() {
                let gap = second - last_tick[i];
                if gap > f.longest_gap[i].0 {
                    f.longest_gap[i] = (gap, last_tick[i]);
                }
            }
        });
        Judge { stop, findings, thread: Some(thread) }
    }

    pub fn double_runs(&self) -> Vec<(String, u64)> {
        self.findings.lock().unwrap().double_runs.clone()
    }

    pub fn now(&self) -> u64 {
        self.findings.lock().unwrap().seconds
    }

    pub fn finish(mut self) -> Findings {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        std::mem::take(&mut *self.findings.lock().unwrap())
    }
}

impl Drop for Judge {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
