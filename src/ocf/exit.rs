//! OCF exit codes and the one error type an action can fail with.
//!
//! Every failure carries the code Pacemaker must see and the one-line reason it
//! shows the operator (`ocf-exit-reason:`). "Not running" is an answer, not an
//! error: it is `OcfCode::NotRunning` in a successful result.

use std::fmt;

/// The OCF 1.1 return codes, with the values Pacemaker interprets.
/// The whole set is here, promotable-only codes included, so the protocol layer
/// is complete for every agent; unused variants are not dead weight.
#[allow(dead_code)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum OcfCode {
    Success = 0,
    /// Soft error; Pacemaker recovers in place (stop, start).
    ErrGeneric = 1,
    /// The agent was called wrongly (bad command line).
    ErrArgs = 2,
    ErrUnimplemented = 3,
    ErrPerm = 4,
    /// Something this node lacks (a file, a binary). Hard: the resource avoids the node.
    ErrInstalled = 5,
    /// The resource's configuration is wrong everywhere. Fatal: no node may run it.
    ErrConfigured = 6,
    NotRunning = 7,
    RunningPromoted = 8,
    FailedPromoted = 9,
    /// Running, but not as well as it should (OCF 1.1); counted as success.
    Degraded = 190,
    DegradedPromoted = 191,
}

impl OcfCode {
    pub fn value(self) -> u8 {
        self as u8
    }

    pub fn name(self) -> &'static str {
        match self {
            OcfCode::Success => "OCF_SUCCESS",
            OcfCode::ErrGeneric => "OCF_ERR_GENERIC",
            OcfCode::ErrArgs => "OCF_ERR_ARGS",
            OcfCode::ErrUnimplemented => "OCF_ERR_UNIMPLEMENTED",
            OcfCode::ErrPerm => "OCF_ERR_PERM",
            OcfCode::ErrInstalled => "OCF_ERR_INSTALLED",
            OcfCode::ErrConfigured => "OCF_ERR_CONFIGURED",
            OcfCode::NotRunning => "OCF_NOT_RUNNING",
            OcfCode::RunningPromoted => "OCF_RUNNING_PROMOTED",
            OcfCode::FailedPromoted => "OCF_FAILED_PROMOTED",
            OcfCode::Degraded => "OCF_DEGRADED",
            OcfCode::DegradedPromoted => "OCF_DEGRADED_PROMOTED",
        }
    }
}

/// A failed action: the code to exit with and the reason to report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OcfError {
    pub code: OcfCode,
    pub reason: String,
}

impl OcfError {
    pub fn new(code: OcfCode, reason: impl Into<String>) -> Self {
        OcfError { code, reason: reason.into() }
    }
    pub fn generic(reason: impl Into<String>) -> Self {
        Self::new(OcfCode::ErrGeneric, reason)
    }
    pub fn unimplemented(reason: impl Into<String>) -> Self {
        Self::new(OcfCode::ErrUnimplemented, reason)
    }
    pub fn perm(reason: impl Into<String>) -> Self {
        Self::new(OcfCode::ErrPerm, reason)
    }
    pub fn installed(reason: impl Into<String>) -> Self {
        Self::new(OcfCode::ErrInstalled, reason)
    }
    pub fn configured(reason: impl Into<String>) -> Self {
        Self::new(OcfCode::ErrConfigured, reason)
    }
}

impl fmt::Display for OcfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.reason, self.code.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_have_the_values_pacemaker_expects() {
        let expected = [
            (OcfCode::Success, 0),
            (OcfCode::ErrGeneric, 1),
            (OcfCode::ErrArgs, 2),
            (OcfCode::ErrUnimplemented, 3),
            (OcfCode::ErrPerm, 4),
            (OcfCode::ErrInstalled, 5),
            (OcfCode::ErrConfigured, 6),
            (OcfCode::NotRunning, 7),
            (OcfCode::RunningPromoted, 8),
            (OcfCode::FailedPromoted, 9),
            (OcfCode::Degraded, 190),
            (OcfCode::DegradedPromoted, 191),
        ];
        for (code, value) in expected {
            assert_eq!(code.value(), value, "{}", code.name());
        }
    }
}
