//! libvirt's failures sorted into what the caller must decide on: the
//! daemon could not be reached (nothing is known), the domain does not
//! exist (a proven absence), or the request failed. virsh speaks in words
//! (read under LC_ALL=C); the RPC client in codes.

use super::rpc;
use crate::backend::BackendError;
use crate::process::Output;

/// Sorts virsh's failure text (LC_ALL=C) into what the caller must decide on.
///
/// Only libvirt's own "Domain not found" proves an absence. virsh's
/// "failed to get domain 'NAME'" alone does not: virsh clears libvirt's
/// error before it prints that line, so a lookup that failed because the
/// daemon died or restarted after virsh connected (EPIPE, a keepalive
/// timeout, an ACL denial) reads exactly like a missing domain. It is a
/// failure here; `Libvirt` asks the daemon's list before it calls it an
/// absence (see `unexplained_lookup_failure`).
pub fn classify_virsh_failure(out: &Output) -> BackendError {
    let text = out.complaint();
    let lower = text.to_lowercase();
    if lower.contains("failed to connect")
        || lower.contains("unable to connect")
        || lower.contains("cannot recv data")
        || lower.contains("no connection driver available")
        || lower.contains("end of file while reading data")
    {
        BackendError::Unreachable(format!("libvirt unreachable: {text}"))
    } else if lower.contains("domain not found") {
        BackendError::NoSuchGuest
    } else {
        BackendError::Failed(text)
    }
}

/// The domain name of virsh's "failed to get domain 'NAME'" when virsh gave
/// no reason with it: an absence only the daemon's list can confirm.
pub fn unexplained_lookup_failure(out: &Output) -> Option<String> {
    let text = out.complaint();
    if text.to_lowercase().contains("domain not found") {
        return None;
    }
    let line = text.lines().find_map(|l| l.split_once("failed to get domain '").map(|(_, rest)| rest))?;
    let name = line.rsplit_once('\'')?.0;
    (!name.is_empty()).then(|| name.to_string())
}

/// The machine type a QEMU said it lacks ("Emulator '…' does not support
/// machine type 'pc-i440fx-10.0'", libvirt 9 and 11 alike). A guest keeps
/// the machine type it was started with for its whole life, and an older
/// QEMU lacks the newer ones: this is what a move from an upgraded node to
/// one not yet upgraded meets, in the target's Prepare phase, before any
/// memory is sent.
pub fn unsupported_machine_type(message: &str) -> Option<&str> {
    let (_, rest) = message.split_once("does not support machine type '")?;
    let machine = rest.split('\'').next()?;
    (!machine.is_empty()).then_some(machine)
}

/// The RPC client's failures, sorted the same way.
pub fn rpc_error(e: rpc::RpcError) -> BackendError {
    match e {
        rpc::RpcError::Remote { code: rpc::ERR_NO_DOMAIN, .. } => BackendError::NoSuchGuest,
        rpc::RpcError::Remote { message, .. } => BackendError::Failed(message),
        rpc::RpcError::Transport(m) => BackendError::Unreachable(format!("libvirt unreachable: {m}")),
        rpc::RpcError::TimedOut(m) => BackendError::TimedOut(m),
        rpc::RpcError::Protocol(m) => BackendError::Failed(format!("libvirt protocol: {m}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virsh_failures_are_sorted_into_unreachable_missing_and_refused() {
        let out = |e: &str| Output { code: Some(1), stdout: String::new(), stderr: e.into() };
        assert!(matches!(
            classify_virsh_failure(&out("error: failed to connect to the hypervisor\nerror: Failed to connect socket")),
            BackendError::Unreachable(_)
        ));
        assert_eq!(classify_virsh_failure(&out("error: failed to get domain 'x'\nerror: Domain not found: no domain with matching name 'x'")), BackendError::NoSuchGuest);
        // virsh's own line alone is not libvirt's answer: see below.
        assert!(matches!(classify_virsh_failure(&out("error: failed to get domain 'x'")), BackendError::Failed(_)));
        assert!(matches!(classify_virsh_failure(&out("error: internal error: boom")), BackendError::Failed(m) if m.contains("boom")));
    }

    #[test]
    fn a_machine_type_the_emulator_lacks_is_named() {
        let said = "error: unsupported configuration: Emulator '/usr/bin/qemu-system-x86_64' does not support machine type 'pc-i440fx-10.0'";
        assert_eq!(unsupported_machine_type(said), Some("pc-i440fx-10.0"));
        assert_eq!(unsupported_machine_type("error: internal error: machine type went away"), None);
    }

    #[test]
    fn a_lookup_failure_without_a_reason_names_the_domain_to_confirm() {
        let out = |e: &str| Output { code: Some(1), stdout: String::new(), stderr: e.into() };
        assert_eq!(unexplained_lookup_failure(&out("error: failed to get domain 'web 2'\n")), Some("web 2".into()));
        assert_eq!(unexplained_lookup_failure(&out("error: Disconnected from qemu:///system due to end of file\nerror: failed to get domain 'vm'\n")), Some("vm".into()));
        assert_eq!(unexplained_lookup_failure(&out("error: failed to get domain 'vm'\nerror: Domain not found: no domain with matching name 'vm'\n")), None);
        assert_eq!(unexplained_lookup_failure(&out("error: internal error: boom\n")), None);
    }
}
