//! Integration tests: the real ferry binary against a real libvirtd and QEMU
//! guests. Run through tests/lab/with-libvirtd.sh (make test), which provides
//! the daemon.

#[path = "../support/mod.rs"]
mod support;

mod bad_input;
mod bounds;
mod cli;
mod health;
mod lifecycle;
mod mark_index;
mod pacemaker_tools;
mod metadata;
mod second_copy;
mod stall_fs;
mod typos;
