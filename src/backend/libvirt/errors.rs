//! libvirt's failures sorted into what the caller must decide on: the
//! daemon could not be reached (nothing is known), the domain does not
//! exist (a proven absence), or the request failed. virsh speaks in words
//! (read under LC_ALL=C); the RPC client in codes.

use super::rpc;
use crate::backend::BackendError;
use crate::process::Output;

/// Sorts virsh's failure text (LC_ALL=C) into what the caller must decide on.
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
    } else if lower.contains("domain not found") || lower.contains("failed to get domain") {
        BackendError::NoSuchGuest
    } else {
        BackendError::Failed(text)
    }
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
        assert_eq!(classify_virsh_failure(&out("error: failed to get domain 'x'")), BackendError::NoSuchGuest);
        assert!(matches!(classify_virsh_failure(&out("error: internal error: boom")), BackendError::Failed(m) if m.contains("boom")));
    }
}
