//! Reading and marking libvirt domain XML.
//!
//! The owner mark is how ferry knows a running domain is the one a resource
//! started, without keeping any file on the node: it is an element in the
//! domain's own `<metadata>`, so it lives wherever the domain lives, and travels
//! with it on migration.
//!
//! ```xml
//! <metadata>
//!   <ferry:owner xmlns:ferry="urn:x-ferry:owner:1" agent="VirtualDomain" resource="vm1"/>
//! </metadata>
//! ```

use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;
use quick_xml::Reader;

pub const MARK_NAMESPACE: &str = "urn:x-ferry:owner:1";
/// The target name of the virtio channel QEMU's guest agent speaks on;
/// libvirt talks to an agent only through such a channel.
pub const GUEST_AGENT_CHANNEL: &str = "org.qemu.guest_agent.0";

/// Who owns a domain: the agent and the cluster resource that started it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnerMark {
    pub agent: String,
    pub resource: String,
}

/// The facts about a domain definition that ferry acts on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DomainInfo {
    pub name: String,
    pub uuid: Option<String>,
    /// `<domain type=…>`: kvm, qemu, xen, lxc…
    pub kind: Option<String>,
    pub vcpus: Option<u32>,
    pub memory_mib: Option<u64>,
    /// Storage pools the disks name (`<source pool=…>`).
    pub pools: Vec<String>,
    /// Virtual networks the interfaces name (`<source network=…>`).
    pub networks: Vec<String>,
    /// A `<channel>` whose `<target type='virtio'>` is named
    /// `GUEST_AGENT_CHANNEL`: what libvirt looks for before it talks to a
    /// guest agent ("QEMU guest agent is not configured" without it).
    pub guest_agent_channel: bool,
    /// The files and block devices the disks open (`<disk><source
    /// file=…|dev=…>`): what a disk lease is taken for.
    pub disks: Vec<String>,
}

fn attr(tag: &BytesStart, name: &str) -> Option<String> {
    tag.try_get_attribute(name).ok().flatten().and_then(|a| a.unescape_value().ok().map(|v| v.into_owned()))
}

/// The amount in MiB; `None` for an unknown unit or a size too large to be
/// real (it would overflow, and a wrapped size is a wrong size).
fn to_mib(amount: u64, unit: &str) -> Option<u64> {
    let scale: u64 = match unit {
        "b" | "bytes" => 1,
        "KB" => 1000,
        "k" | "KiB" => 1 << 10,
        "MB" => 1_000_000,
        "M" | "MiB" => 1 << 20,
        "GB" => 1_000_000_000,
        "G" | "GiB" => 1 << 30,
        "TB" => 1_000_000_000_000,
        "T" | "TiB" => 1 << 40,
        _ => return None,
    };
    amount.checked_mul(scale).map(|bytes| bytes >> 20)
}

/// Parses the parts of a domain definition ferry needs. An error means the text
/// is not a domain definition at all.
pub fn parse(xml: &str) -> Result<DomainInfo, String> {
    let mut reader = Reader::from_str(xml);
    let mut info = DomainInfo::default();
    let mut path: Vec<Vec<u8>> = Vec::new();
    let mut memory_unit = String::from("KiB");
    let mut saw_domain = false;
    loop {
        let event = reader.read_event().map_err(|e| format!("not well-formed XML: {e}"))?;
        match event {
            Event::Start(ref tag) | Event::Empty(ref tag) => {
                let name = tag.name().as_ref().to_vec();
                if path.is_empty() {
                    if name != b"domain" {
                        return Err(format!("the root element is <{}>, not <domain>", String::from_utf8_lossy(&name)));
                    }
                    saw_domain = true;
                    info.kind = attr(tag, "type");
                }
                match (path.len(), name.as_slice()) {
                    (1, b"memory") => memory_unit = attr(tag, "unit").unwrap_or_else(|| "KiB".into()),
                    (3, b"target") if path[1] == b"devices" && path[2] == b"channel" => {
                        if attr(tag, "type").as_deref() == Some("virtio") && attr(tag, "name").as_deref() == Some(GUEST_AGENT_CHANNEL) {
                            info.guest_agent_channel = true;
                        }
                    }
                    (3, b"source") if path[1] == b"devices" && path[2] == b"disk" => {
                        if let Some(file) = attr(tag, "file").or_else(|| attr(tag, "dev")) {
                            info.disks.push(file);
                        }
                        if let Some(pool) = attr(tag, "pool") {
                            info.pools.push(pool);
                        }
                    }
                    (_, b"source") if path.iter().any(|p| p == b"devices") => {
                        if let Some(pool) = attr(tag, "pool") {
                            info.pools.push(pool);
                        }
                        if let Some(net) = attr(tag, "network") {
                            info.networks.push(net);
                        }
                    }
                    _ => {}
                }
                if matches!(event, Event::Start(_)) {
                    path.push(name);
                }
            }
            Event::Text(ref text) if path.len() == 2 => {
                let value = text.unescape().map_err(|e| format!("bad text: {e}"))?.trim().to_string();
                match path[1].as_slice() {
                    b"name" => info.name = value,
                    b"uuid" => info.uuid = Some(value),
                    b"vcpu" => info.vcpus = value.parse().ok(),
                    b"memory" => info.memory_mib = value.parse().ok().and_then(|v| to_mib(v, &memory_unit)),
                    _ => {}
                }
            }
            Event::End(_) => {
                path.pop();
            }
            Event::Eof => {
                if let Some(open) = path.last() {
                    return Err(format!("not well-formed XML: <{}> is never closed", String::from_utf8_lossy(open)));
                }
                break;
            }
            _ => {}
        }
    }
    if !saw_domain {
        return Err("no <domain> element".into());
    }
    if info.name.is_empty() {
        return Err("the domain has no <name>".into());
    }
    Ok(info)
}

/// Byte ranges of interest in a domain document, found in one pass.
#[derive(Default)]
struct Layout {
    /// Just after `<metadata>` (a top-level metadata with content).
    metadata_open_end: Option<usize>,
    /// `<metadata/>`, to replace.
    metadata_empty: Option<(usize, usize)>,
    /// An existing ferry mark, to remove.
    mark: Option<(usize, usize)>,
    found_mark: Option<OwnerMark>,
    /// Where `</domain>` starts.
    domain_close: Option<usize>,
}

fn layout(xml: &str) -> Result<Layout, String> {
    let mut reader = NsReader::from_str(xml);
    let mut out = Layout::default();
    let mut depth = 0usize;
    // Depth of <domain>'s children: 1 in a definition, 2 inside libvirt's
    // <domstatus> status files.
    let mut base: Option<usize> = None;
    let mut in_metadata = false;
    let mut mark_start: Option<usize> = None;
    loop {
        let before = reader.buffer_position() as usize;
        let (ns, event) = reader.read_resolved_event().map_err(|e| format!("not well-formed XML: {e}"))?;
        let ours = matches!(ns, ResolveResult::Bound(n) if n.as_ref() == MARK_NAMESPACE.as_bytes());
        let event = event.into_owned();
        let after = reader.buffer_position() as usize;
        let at_top = |d: usize| base == Some(d);
        let in_meta = |d: usize| in_metadata && base.map(|b| b + 1) == Some(d);
        match event {
            Event::Start(ref tag) => {
                let local = tag.local_name();
                if base.is_none() && local.as_ref() == b"domain" {
                    base = Some(depth + 1);
                } else if at_top(depth) && local.as_ref() == b"metadata" {
                    in_metadata = true;
                    out.metadata_open_end = Some(after);
                } else if in_meta(depth) && ours && local.as_ref() == b"owner" {
                    mark_start = Some(before);
                    out.found_mark = mark_of(tag);
                }
                depth += 1;
            }
            Event::Empty(ref tag) => {
                let local = tag.local_name();
                if at_top(depth) && local.as_ref() == b"metadata" {
                    out.metadata_empty = Some((before, after));
                } else if in_meta(depth) && ours && local.as_ref() == b"owner" {
                    out.mark = Some((before, after));
                    out.found_mark = mark_of(tag);
                }
            }
            Event::End(ref tag) => {
                depth = depth.saturating_sub(1);
                let local = tag.local_name();
                if in_meta(depth) && ours && local.as_ref() == b"owner" {
                    out.mark = mark_start.take().map(|s| (s, after));
                } else if at_top(depth) && local.as_ref() == b"metadata" {
                    in_metadata = false;
                } else if base == Some(depth + 1) && local.as_ref() == b"domain" {
                    out.domain_close = Some(before);
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(out)
}

fn mark_of(tag: &BytesStart) -> Option<OwnerMark> {
    Some(OwnerMark { agent: attr(tag, "agent")?, resource: attr(tag, "resource")? })
}

fn escape(value: &str) -> String {
    quick_xml::escape::escape(value).into_owned()
}

fn mark_element(mark: &OwnerMark) -> String {
    format!(
        "<ferry:owner xmlns:ferry=\"{MARK_NAMESPACE}\" agent=\"{}\" resource=\"{}\"/>",
        escape(&mark.agent),
        escape(&mark.resource)
    )
}

/// The mark in the element libvirt returns for ferry's namespace
/// (virDomainGetMetadata, `virsh metadata`): asked for by namespace, so
/// the element's own name and prefix need no checking.
pub fn mark_in_element(element: &str) -> Option<OwnerMark> {
    let mut reader = Reader::from_str(element);
    loop {
        match reader.read_event().ok()? {
            Event::Start(ref tag) | Event::Empty(ref tag) => return mark_of(tag),
            Event::Eof => return None,
            _ => {}
        }
    }
}

/// The mark as `virsh metadata --set` takes it: unprefixed, for libvirt
/// puts it in the namespace given with `--key ferry`.
pub fn mark_for_metadata_set(mark: &OwnerMark) -> String {
    format!("<owner agent=\"{}\" resource=\"{}\"/>", escape(&mark.agent), escape(&mark.resource))
}

/// The owner mark a domain's XML carries, if any.
pub fn read_mark(xml: &str) -> Option<OwnerMark> {
    layout(xml).ok()?.found_mark
}

/// The domain XML with `mark` as its only ferry mark; the rest is untouched.
pub fn with_mark(xml: &str, mark: &OwnerMark) -> Result<String, String> {
    let base = without_mark(xml)?;
    let found = layout(&base)?;
    let element = mark_element(mark);
    let mut out = base.clone();
    if let Some(at) = found.metadata_open_end {
        out.insert_str(at, &element);
    } else if let Some((start, end)) = found.metadata_empty {
        out.replace_range(start..end, &format!("<metadata>{element}</metadata>"));
    } else if let Some(at) = found.domain_close {
        out.insert_str(at, &format!("<metadata>{element}</metadata>\n"));
    } else {
        return Err("no </domain> to mark".into());
    }
    Ok(out)
}

/// The domain XML without any ferry mark (for writing back to the operator's
/// file). A `<metadata>` element left holding nothing at all is the one
/// `with_mark` wrapped the mark in, and goes too, with the line end it added,
/// so the operator's file comes back byte for byte.
pub fn without_mark(xml: &str) -> Result<String, String> {
    let found = layout(xml)?;
    let mut out = xml.to_string();
    if let Some((start, end)) = found.mark {
        out.replace_range(start..end, "");
        const OPEN: &str = "<metadata>";
        const CLOSE: &str = "</metadata>";
        if out[..start].ends_with(OPEN) && out[start..].starts_with(CLOSE) {
            let mut wrapper_end = start + CLOSE.len();
            if out[wrapper_end..].starts_with("\n</domain") {
                wrapper_end += 1;
            }
            out.replace_range(start - OPEN.len()..wrapper_end, "");
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOMAIN: &str = r#"<?xml version="1.0"?>
<!-- an operator's comment -->
<domain type='qemu'>
  <name>guest &amp; co</name>
  <uuid>3e3fce45-4f53-4fa7-bb32-11f34168b82b</uuid>
  <memory unit='MiB'>128</memory>
  <vcpu>2</vcpu>
  <devices>
    <disk type='volume'><source pool='shared' volume='v1'/></disk>
    <interface type='network'><source network='default'/></interface>
  </devices>
</domain>
"#;

    fn mark(r: &str) -> OwnerMark {
        OwnerMark { agent: "VirtualDomain".into(), resource: r.into() }
    }

    #[test]
    fn sizes_too_large_to_be_real_are_unknown_not_wrapped() {
        assert_eq!(to_mib(1 << 20, "KiB"), Some(1024));
        assert_eq!(to_mib(u64::MAX / 1000, "TB"), None);
        assert_eq!(to_mib(1 << 30, "TiB"), None);
        assert_eq!(to_mib(3, "parsecs"), None);
    }

    #[test]
    fn reads_name_uuid_size_and_resources() {
        let info = parse(DOMAIN).unwrap();
        assert_eq!(info.name, "guest & co");
        assert_eq!(info.uuid.as_deref(), Some("3e3fce45-4f53-4fa7-bb32-11f34168b82b"));
        assert_eq!(info.kind.as_deref(), Some("qemu"));
        assert_eq!(info.vcpus, Some(2));
        assert_eq!(info.memory_mib, Some(128));
        assert_eq!(info.pools, vec!["shared"]);
        assert_eq!(info.networks, vec!["default"]);
    }

    #[test]
    fn disks_are_the_files_and_devices_their_sources_name() {
        let xml = "<domain><name>a</name><devices>\
            <disk type='file'><source file='/shared/a.raw'/><target dev='vda'/></disk>\
            <disk type='block'><source dev='/dev/vg/b'/></disk>\
            <disk type='volume'><source pool='p' volume='v'/></disk>\
            <interface type='network'><source network='default'/></interface>\
            <serial type='file'><source path='/var/log/x'/></serial></devices></domain>";
        let info = parse(xml).unwrap();
        assert_eq!(info.disks, ["/shared/a.raw", "/dev/vg/b"]);
        assert_eq!(info.pools, ["p"]);
        assert_eq!(info.networks, ["default"]);
    }

    #[test]
    fn a_guest_agent_channel_is_a_virtio_channel_with_the_agent_s_name() {
        let with = |channels: &str| parse(&format!("<domain><name>a</name><devices>{channels}</devices></domain>")).unwrap().guest_agent_channel;
        assert!(!parse(DOMAIN).unwrap().guest_agent_channel);
        assert!(with("<channel type='unix'><source mode='bind'/><target type='virtio' name='org.qemu.guest_agent.0'/></channel>"));
        assert!(with("<channel type='pty'><target type='virtio' name='org.other'/></channel><channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0' state='disconnected'/></channel>"));
        // Another channel, another target type, a serial port's target.
        assert!(!with("<channel type='spicevmc'><target type='virtio' name='com.redhat.spice.0'/></channel>"));
        assert!(!with("<channel type='unix'><target type='guestfwd' name='org.qemu.guest_agent.0'/></channel>"));
        assert!(!with("<serial type='pty'><target type='isa-serial' name='org.qemu.guest_agent.0'/></serial>"));
    }

    #[test]
    fn memory_defaults_to_kib() {
        let info = parse("<domain><name>a</name><memory>262144</memory></domain>").unwrap();
        assert_eq!(info.memory_mib, Some(256));
    }

    #[test]
    fn rejects_what_is_not_a_domain() {
        assert!(parse("<network><name>x</name></network>").unwrap_err().contains("<network>"));
        assert!(parse("<domain type='kvm'></domain>").unwrap_err().contains("no <name>"));
        assert!(parse("this is not xml <<").is_err());
        assert!(parse("<domain><name>x</name>").unwrap_err().contains("<domain> is never closed"));
        assert!(parse("").unwrap_err().contains("no <domain>"));
    }

    #[test]
    fn a_mark_is_added_read_back_and_removed() {
        let marked = with_mark(DOMAIN, &mark("vm1")).unwrap();
        assert_eq!(read_mark(&marked), Some(mark("vm1")));
        assert_eq!(parse(&marked).unwrap().name, "guest & co");
        assert_eq!(without_mark(&marked).unwrap().replace("<metadata></metadata>\n", ""), DOMAIN);
        assert_eq!(read_mark(DOMAIN), None);
    }

    #[test]
    fn remarking_replaces_the_old_mark_inside_existing_metadata() {
        let xml = "<domain><name>a</name><metadata><app:x xmlns:app='urn:app'/></metadata></domain>";
        let once = with_mark(xml, &mark("old")).unwrap();
        let twice = with_mark(&once, &mark("new<&>")).unwrap();
        assert_eq!(read_mark(&twice), Some(mark("new<&>")));
        assert_eq!(twice.matches("<ferry:owner").count(), 1);
        assert!(twice.contains("<app:x xmlns:app='urn:app'/>"));
        let empty = with_mark("<domain><name>a</name><metadata/></domain>", &mark("r")).unwrap();
        assert_eq!(read_mark(&empty), Some(mark("r")));
    }

    #[test]
    fn the_mark_is_read_from_libvirts_status_files_too() {
        let marked = with_mark(DOMAIN.trim_start_matches(|c| c != '\n'), &mark("vm1")).unwrap();
        let status = format!("<domstatus state='running' reason='booted' pid='42'>\n<monitor path='/x'/>\n{marked}</domstatus>\n");
        assert_eq!(read_mark(&status), Some(mark("vm1")));
    }

    #[test]
    fn a_mark_in_another_namespace_is_not_ours() {
        let xml = "<domain><name>a</name><metadata><x:owner xmlns:x='urn:other' agent='VirtualDomain' resource='r'/></metadata></domain>";
        assert_eq!(read_mark(xml), None);
    }

    #[test]
    fn the_mark_is_read_from_libvirt_s_metadata_element_and_written_for_virsh() {
        let mark = OwnerMark { agent: "VirtualDomain".into(), resource: "r<1>".into() };
        let set = mark_for_metadata_set(&mark);
        assert_eq!(mark_in_element(&set), Some(mark.clone()));
        let stored = format!("<ferry:owner xmlns:ferry=\"{MARK_NAMESPACE}\" agent=\"VirtualDomain\" resource=\"r&lt;1&gt;\"/>\n");
        assert_eq!(mark_in_element(&stored), Some(mark.clone()));
        let domain = format!("<domain><name>a</name><metadata>{stored}</metadata></domain>");
        assert_eq!(read_mark(&domain), Some(mark));
        assert_eq!(mark_in_element("<owner agent='VirtualDomain'/>"), None);
    }
}
