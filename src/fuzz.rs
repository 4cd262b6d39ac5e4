//! Property tests of every parser ferry feeds with text it did not write:
//! libvirt's RPC frames and XDR, domain XML and the owner mark, the
//! meta-data and the parameters resolved against it, `xl list`, virsh's
//! words, /proc command lines. Inputs are mutations of valid samples (far
//! more revealing than noise) from a seeded generator, so a failure prints
//! the seed and case that reproduce it.
//!
//! `cargo test` runs a short pass (FERRY_FUZZ_CASES, 2000 by default);
//! `make fuzz` runs a million cases per parser.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::backend::libvirt::domxml::{self, OwnerMark};
use crate::backend::libvirt::migration::JobStats;
use crate::backend::libvirt::rpc::{self, Client};
use crate::backend::libvirt::xdr::{Decoder, Encoder};
use crate::backend::libvirt::{classify_virsh_failure, default_uri, local_socket, procscan, DomainState};
use crate::backend::xl::{config_name, parse_list};
use crate::deadline::Deadline;
use crate::ocf::metadata::Metadata;
use crate::ocf::OcfCode;
use crate::process::Output;

/// SplitMix64: small, fast, and the same sequence for the same seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Bytes that make parsers take unusual turns.
const INTERESTING: &[&[u8]] = &[
    b"<", b">", b"/>", b"&", b"&amp;", b"\"", b"'", b"=", b"\0", b"\n", b" ", b"\xff", b"\xc3", b"-", b"9999999999999999999999",
    b"-1", b"0", b"<![CDATA[", b"]]>", b"<!--", b"-->", b"<metadata>", b"</metadata>", b"<ferry:owner", b"xmlns:ferry=\"urn:x-ferry:owner:1\"",
    b"unit='TB'", b"unit='b'", b"r-----", b"--p---", b",", b",,", b"guest=", b"-name", b"%n", b"://", b"?socket=",
];

/// One to eight random edits of `seed`.
fn mutate(rng: &mut Rng, seed: &[u8], other: &[u8]) -> Vec<u8> {
    let mut data = seed.to_vec();
    for _ in 0..=rng.below(8) {
        let at = rng.below(data.len() + 1);
        match rng.below(7) {
            0 if !data.is_empty() => {
                let end = (at + 1 + rng.below(16)).min(data.len());
                data.drain(at.min(end)..end);
            }
            1 => {
                let piece = rng.pick(INTERESTING).to_vec();
                data.splice(at..at, piece);
            }
            2 if at < data.len() => data[at] ^= 1 << rng.below(8),
            3 if at < data.len() => data[at] = rng.next() as u8,
            4 if !data.is_empty() => {
                let start = rng.below(data.len());
                let end = (start + 1 + rng.below(32)).min(data.len());
                let piece = data[start..end].to_vec();
                data.splice(at..at, piece);
            }
            5 => data.truncate(at),
            _ if !other.is_empty() => {
                let start = rng.below(other.len());
                let end = (start + 1 + rng.below(64)).min(other.len());
                data.splice(at..at, other[start..end].to_vec());
            }
            _ => {}
        }
    }
    data
}

fn cases() -> usize {
    std::env::var("FERRY_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2000)
}

/// Costly targets (a socket pair and a thread a case) run a fraction of the
/// count in the short pass; FERRY_FUZZ_FULL=1 runs the full count for all.
fn scaled(scale: usize) -> usize {
    if std::env::var_os("FERRY_FUZZ_FULL").is_some() {
        1
    } else {
        scale
    }
}

/// Runs `property` on `cases()` mutations of the samples; panics with the
/// seed, case and input of the first failure.
fn fuzz(name: &str, samples: &[&[u8]], scale: usize, mut property: impl FnMut(&[u8]) -> Result<(), String>) {
    let seed = name.bytes().fold(0xF3_44u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64));
    let mut rng = Rng(seed);
    let total = (cases() / scaled(scale)).max(1);
    for case in 0..total {
        let base = rng.pick(samples);
        let other = rng.pick(samples);
        let input = mutate(&mut rng, base, other);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| property(&input)));
        let failure = match outcome {
            Ok(Ok(())) => continue,
            Ok(Err(why)) => why,
            Err(_) => "panicked".to_string(),
        };
        panic!("{name}: case {case} of seed {seed:#x} fails ({failure}) on {:?}", String::from_utf8_lossy(&input));
    }
}

fn text(input: &[u8]) -> String {
    String::from_utf8_lossy(input).into_owned()
}

const DOMAIN: &str = "<domain type='kvm'>\n  <name>vm1</name>\n  <memory unit='KiB'>131072</memory>\n  <vcpu placement='static'>2</vcpu>\n  <metadata>\n    <other:x xmlns:other='urn:o'/>\n  </metadata>\n  <devices>\n    <disk type='volume'><source pool='p1' volume='v'/></disk>\n    <interface type='network'><source network='n1'/></interface>\n  </devices>\n</domain>\n";
const DOMAIN_BARE: &str = "<domain type=\"qemu\"><name>a&amp;b</name><memory unit=\"GiB\">1</memory></domain>";

#[test]
fn xdr_decoding_never_panics_and_encoding_round_trips() {
    let mut valid = Encoder::default();
    valid.u32(7).string("guest").optional_string(Some("x")).optional_string(None).opaque_fixed(&[1; 16]).i32(-3);
    fuzz("xdr", &[&valid.buf, &[0, 0, 0, 255, 1], &[]], 1, |input| {
        let mut d = Decoder::new(input);
        let _ = (d.u32(), d.string(), d.optional_string(), d.opaque_fixed(16), d.i32(), d.string());
        // Whatever decodes as a string encodes back to the same bytes.
        if let Ok(s) = Decoder::new(input).string() {
            let mut e = Encoder::default();
            e.string(&s);
            let back = Decoder::new(&e.buf).string().map_err(|_| "re-encoded string does not decode")?;
            if back != s {
                return Err(format!("{s:?} came back as {back:?}"));
            }
        }
        Ok(())
    });
}

#[test]
fn rpc_replies_of_any_shape_end_in_an_answer_or_an_error() {
    use std::io::{Read, Write};
    let frame = |status: u32, payload: &[u8]| {
        let mut e = Encoder::default();
        e.u32(0).u32(0x2000_8086).u32(1).i32(rpc::PROC_DOMAIN_GET_STATE).u32(1).u32(1).u32(status);
        e.buf.extend_from_slice(payload);
        let len = e.buf.len() as u32;
        e.buf[..4].copy_from_slice(&len.to_be_bytes());
        e.buf
    };
    let mut error = Encoder::default();
    error.i32(42).i32(10).optional_string(Some("Domain not found"));
    let ok = frame(0, &[0, 0, 0, 1, 0, 0, 0, 1]);
    let err = frame(1, &error.buf);
    // Each case costs a socket pair and a thread: a tenth of the count.
    fuzz("rpc-frames", &[&ok, &err, &[ok.clone(), ok.clone()].concat()], 10, |input| {
        let (ours, mut theirs) = std::os::unix::net::UnixStream::pair().map_err(|e| e.to_string())?;
        let answer = input.to_vec();
        let peer = std::thread::spawn(move || {
            let mut request = [0u8; 28];
            let _ = theirs.read_exact(&mut request);
            let _ = theirs.write_all(&answer);
        });
        let started = std::time::Instant::now();
        let result = Client::over(ours, Deadline::after(Duration::from_millis(300))).call(rpc::PROC_DOMAIN_GET_STATE, &Encoder::default());
        let _ = peer.join();
        if started.elapsed() > Duration::from_secs(2) {
            return Err(format!("took {:?}", started.elapsed()));
        }
        if let Ok(payload) = result {
            if input.len() < 28 {
                return Err(format!("an answer ({payload:?}) from a frame too short to hold one"));
            }
        }
        Ok(())
    });
}

#[test]
fn domain_xml_never_panics_and_the_mark_keeps_the_operators_bytes() {
    let mark = OwnerMark { agent: "VirtualDomain".into(), resource: "r&1<".into() };
    fuzz("domxml", &[DOMAIN.as_bytes(), DOMAIN_BARE.as_bytes()], 1, |input| {
        let xml = text(input);
        let _ = domxml::parse(&xml);
        let _ = domxml::read_mark(&xml);
        // An empty <metadata> of the operator's carries nothing and is not
        // kept through a mark and its removal; every other byte is.
        let empty_metadata = xml.contains("<metadata/>") || xml.contains("<metadata></metadata>");
        let marked = domxml::with_mark(&xml, &mark).ok().filter(|_| !empty_metadata);
        if let Some(marked) = marked {
            if domxml::read_mark(&marked).as_ref() != Some(&mark) {
                return Err(format!("the mark does not read back from {marked:?}"));
            }
            match domxml::without_mark(&marked) {
                Ok(unmarked) if unmarked == xml => {}
                Ok(unmarked) => return Err(format!("removing the mark changed the operator's text: {unmarked:?}")),
                Err(e) => return Err(format!("a marked definition cannot be unmarked: {e}")),
            }
        }
        Ok(())
    });
}

#[test]
fn meta_data_and_parameters_never_panic_and_bad_input_is_err_configured() {
    let agents = [crate::agents::virtual_domain::METADATA, crate::agents::xen::METADATA];
    let samples: Vec<&[u8]> = agents.iter().map(|m| m.as_bytes()).collect();
    fuzz("metadata-xml", &samples, 20, |input| {
        let _ = Metadata::parse(&text(input));
        Ok(())
    });
    let parsed: Vec<Metadata> = agents.iter().map(|m| Metadata::parse(m).unwrap()).collect();
    let names: Vec<String> = parsed.iter().flat_map(|m| m.params.iter().map(|p| p.name.clone())).collect();
    let values: &[&[u8]] = &[b"1", b"true", b"/etc/vm.xml", b"live", b"save", b"-5", b"9999999999999999", b"2147483648", b"acpi,agent", b"qemu:///system", b""];
    let mut rng = Rng(7);
    fuzz("parameters", values, 1, |input| {
        let mut given = BTreeMap::new();
        for _ in 0..=rng.below(6) {
            given.insert(rng.pick(&names).clone(), text(input));
        }
        for md in &parsed {
            match md.resolve(&given) {
                Ok(_) => {}
                Err(e) if e.code == OcfCode::ErrConfigured => {}
                Err(e) => return Err(format!("{e:?}")),
            }
        }
        Ok(())
    });
}

#[test]
fn every_agent_reads_any_parameters_without_panicking() {
    use crate::ocf::env::OcfEnv;
    use crate::ocf::Context;
    let names = ["config", "xmfile", "name", "migration_stall", "migration_downtime", "migration_downtime_max", "migration_downtime_steps", "migration_speed", "migrateport",
        "migration_mode", "migration_state_dir", "migration_transport", "migration_user", "shutdown_mode", "shutdown_timeout", "reserved_Dom0_memory", "hypervisor", "snapshot",
        "force_stop", "stateless", "backingfile", "copyindirs", "monitor_scripts", "migrate_options", "remoteuri", "migrateuri", "migration_network_suffix"];
    let values: &[&[u8]] = &[b"/nonexistent/vm.xml", b"save", b"postcopy", b"-1", b"99999999999999999999", b"0", b"acpi,bogus", b"ssh;reboot", b"qemu+tcp://%n/system", b"rel/path", b"true"];
    let mut rng = Rng(11);
    // validate-all only reads settings, the node's tools and the config path.
    fuzz("agent-settings", values, 20, |input| {
        for entry in crate::agents::ALL.iter() {
            let agent = (entry.make)();
            let md = Metadata::parse(agent.metadata_xml()).unwrap();
            let mut vars = vec![("OCF_RESKEY_config".to_string(), "/nonexistent/vm.xml".to_string()), ("OCF_RESKEY_xmfile".to_string(), "/nonexistent/vm.cfg".to_string())];
            for _ in 0..=rng.below(5) {
                vars.push((format!("OCF_RESKEY_{}", rng.pick(&names)), text(input)));
            }
            let env = OcfEnv::from_vars(vars);
            let Ok(params) = md.resolve(&env.params) else { continue };
            let ctx = Context { env: &env, params: &params, deadline: Deadline::after(Duration::from_secs(1)) };
            let _ = agent.validate(&ctx);
        }
        Ok(())
    });
}

#[test]
fn xl_output_never_panics_and_valid_rows_round_trip() {
    let list = b"Name                                        ID   Mem VCPUs\tState\tTime(s)\nDomain-0                                     0  1024     2     r-----      12.3\nguest1                                       3   256     1     -b----       0.9\n";
    fuzz("xl-list", &[list, b"name = \"vm\"\nmemory = 128\n"], 1, |input| {
        let out = text(input);
        let _ = config_name(&out);
        if let Ok(list) = parse_list(&out) {
            for d in list.domains {
                let row = format!("Name ID Mem VCPUs State Time(s)\n{} {} {} {} {} 0.0\n", d.name, d.id, d.memory_mib, d.vcpus, d.flags);
                match parse_list(&row) {
                    Ok(again) if again.domains == [d.clone()] && again.unreadable.is_empty() => {}
                    other => return Err(format!("{d:?} read back as {other:?}")),
                }
            }
        }
        Ok(())
    });
}

#[test]
fn virsh_words_and_proc_command_lines_never_panic() {
    let samples: &[&[u8]] = &[
        b"Job type: 2\n\noperation: 5\ntime_elapsed: 8019\ndata_remaining: 6324224\nmemory_iteration: 4\n",
        b"running (booted)\n",
        b"error: failed to get domain 'x'\n",
        b"/usr/bin/qemu-system-x86_64\0-name\0guest=vm1,,x,debug-threads=on\0",
        b"qemu+unix:///system?socket=/run/x&y=1",
        b"uri_default = \"qemu+tcp://h/system\"\n",
    ];
    fuzz("virsh-and-proc", samples, 1, |input| {
        let words = text(input);
        let _ = JobStats::parse(&words);
        let _ = DomainState::from_virsh(&words);
        let _ = classify_virsh_failure(&Output { code: Some(1), stdout: String::new(), stderr: words.clone() });
        let _ = local_socket(&words, std::path::Path::new("/nonexistent"));
        let _ = default_uri(Some(&words));
        let argv: Vec<&str> = words.split('\0').collect();
        let _ = procscan::guest_name(&argv);
        Ok(())
    });
}
