//! Hypervisor backends. Each knows its hypervisor's tools and protocols and
//! nothing of OCF: they answer questions ("what state is domain X in?") and carry
//! out orders ("shut X down") within a deadline, and report failures as their
//! own error types. Agents translate those into OCF results.

pub mod libvirt;
pub mod xl;
