//! Disk leases: libvirt's second line against two copies of one guest.
//!
//! With `lock_manager = "lockd"` in qemu.conf, libvirt has virtlockd take a
//! lease on every disk before QEMU may open it, and holds it while the
//! guest runs. Where the lockspace is shared (a directory on shared
//! storage, or the disk files themselves on a file system with
//! cluster-wide locks), a disk leased on one node cannot be leased on
//! another: a second copy fails to start whatever any agent or operator
//! believed. This module reads what libvirt says when that happens, and
//! whether this node has a lock manager at all.
//!
//! virtlockd names a lease by the disk's path, or, with
//! `file_lockspace_dir` set, by the SHA-256 of that path: libvirt's refusal
//! ("Lockspace resource '…' is locked") then names only the hash, so the
//! disk is found by hashing the guest's own disk paths.

use super::uri::conf_value;

/// A start refused because another holder has a disk's lease.
#[derive(Debug, PartialEq, Eq)]
pub struct LeaseConflict {
    /// The lease as virtlockd names it: a path or a SHA-256.
    pub lease: String,
    /// The guest's disk that lease is for, when it is one of `disks`.
    pub disk: Option<String>,
}

/// The lease conflict in libvirt's error text, if that is what it is.
pub fn conflict(message: &str, disks: &[String]) -> Option<LeaseConflict> {
    let (_, rest) = message.split_once("Lockspace resource '")?;
    let (lease, tail) = rest.split_once('\'')?;
    if !tail.trim_start().starts_with("is locked") {
        return None;
    }
    let disk = disks.iter().find(|d| d.as_str() == lease || sha256_hex(d.as_bytes()) == lease.to_ascii_lowercase()).cloned();
    Some(LeaseConflict { lease: lease.to_string(), disk })
}

/// The lock manager qemu.conf names (`lockd`, `sanlock`), if any.
pub fn lock_manager(qemu_conf: Option<&str>) -> Option<String> {
    qemu_conf.and_then(|text| conf_value(text, "lock_manager"))
}

/// SHA-256 (FIPS 180-4), as virtlockd names file leases. Small enough to
/// keep rather than take a crate for one hash of a few paths.
fn sha256_hex(data: &[u8]) -> String {
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3,
        0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
        0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208,
        0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
    ];
    let mut h: [u32; 8] = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];
    let mut message = data.to_vec();
    message.push(0x80);
    while message.len() % 64 != 56 {
        message.push(0);
    }
    message.extend_from_slice(&((data.len() as u64) * 8).to_be_bytes());
    for block in message.chunks(64) {
        let mut w = [0u32; 64];
        for (i, word) in block.chunks(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16].wrapping_add(s0).wrapping_add(w[i - 7]).wrapping_add(s1);
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut hh] = h;
        for i in 0..64 {
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let ch = (e & f) ^ (!e & g);
            let t1 = hh.wrapping_add(s1).wrapping_add(ch).wrapping_add(K[i]).wrapping_add(w[i]);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let maj = (a & b) ^ (a & c) ^ (b & c);
            let t2 = s0.wrapping_add(maj);
            (hh, g, f, e, d, c, b, a) = (g, f, e, d.wrapping_add(t1), c, b, a, t1.wrapping_add(t2));
        }
        for (state, add) in h.iter_mut().zip([a, b, c, d, e, f, g, hh]) {
            *state = state.wrapping_add(add);
        }
    }
    h.iter().map(|v| format!("{v:08x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_matches_the_standard_s_test_vectors() {
        assert_eq!(sha256_hex(b""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        // Two blocks: 56 bytes of message leave no room for the length.
        assert_eq!(sha256_hex(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    }

    #[test]
    fn a_hashed_lease_is_traced_back_to_the_guest_s_disk() {
        let disks = vec!["/srv/vm/other.raw".to_string(), "/srv/vm/a.raw".to_string()];
        let hash = sha256_hex(b"/srv/vm/a.raw");
        let text = format!("error: Failed to create domain from /dev/stdin\nerror: resource busy: Lockspace resource '{hash}' is locked");
        assert_eq!(conflict(&text, &disks), Some(LeaseConflict { lease: hash.clone(), disk: Some("/srv/vm/a.raw".into()) }));
        // Leases on the files themselves are named by path.
        let text = "error: resource busy: Lockspace resource '/srv/vm/other.raw' is locked";
        assert_eq!(conflict(text, &disks).unwrap().disk.as_deref(), Some("/srv/vm/other.raw"));
        // A lease of no disk of this guest's config is still a conflict.
        let text = "resource busy: Lockspace resource 'deadbeef' is locked";
        assert_eq!(conflict(text, &disks), Some(LeaseConflict { lease: "deadbeef".into(), disk: None }));
        assert_eq!(conflict("error: internal error: process exited while connecting to monitor", &disks), None);
        assert_eq!(conflict("Lockspace resource 'x' is not locked", &disks), None);
    }

    #[test]
    fn the_lock_manager_is_qemu_conf_s_uncommented_setting() {
        assert_eq!(lock_manager(Some("#lock_manager = \"lockd\"\n")), None);
        assert_eq!(lock_manager(Some("lock_manager = \"lockd\"\n")).as_deref(), Some("lockd"));
        assert_eq!(lock_manager(None), None);
    }
}
