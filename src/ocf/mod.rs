//! The OCF resource-agent protocol, as Pacemaker speaks it. Nothing here knows
//! about hypervisors: agents plug in through the `Agent` trait.

pub mod action;
pub mod agent;
pub mod answers;
pub mod env;
pub mod exit;
pub mod lock;
pub mod log;
pub mod manpage;
pub mod metadata;

pub use agent::{Agent, Context, Health, OwnedGuest};
pub use crate::deadline::Deadline;
pub use exit::{OcfCode, OcfError};
