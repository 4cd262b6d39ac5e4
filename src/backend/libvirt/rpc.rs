//! A minimal client for libvirt's own RPC protocol (program 0x20008086) over the
//! daemon's local UNIX socket, for the questions a monitor asks on every
//! interval. `virsh domstate` costs a process, a library load and a full
//! connection handshake (about 23 ms here); the same answer over the socket is
//! three small round trips. Everything that changes a domain still goes through
//! virsh, which speaks every transport libvirt has.
//!
//! ```text
//!   ferry                                  libvirtd / virtqemud
//!     | AUTH_LIST                     ---->  |
//!     |                               <----  | [none] or [polkit]
//!     | (AUTH_POLKIT, if asked)       ---->  |   root is allowed
//!     | CONNECT_OPEN "qemu:///system" ---->  |
//!     | DOMAIN_LOOKUP_BY_NAME name    ---->  |
//!     |                               <----  | domain, or error VIR_ERR_NO_DOMAIN
//!     | DOMAIN_GET_STATE domain       ---->  |
//!     |                               <----  | state, reason
//! ```
//!
//! Each message is a 4-byte length (counting itself), a 24-byte header
//! (program, version, procedure, type, serial, status), then the XDR body.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use super::xdr::{Decoder, Encoder, Truncated};
use crate::ocf::Deadline;

const PROGRAM: u32 = 0x2000_8086;
const VERSION: u32 = 1;
const TYPE_CALL: u32 = 0;
const TYPE_REPLY: u32 = 1;
const STATUS_OK: u32 = 0;
const STATUS_ERROR: u32 = 1;
/// libvirt refuses messages above 32 MiB; anything larger is corrupt.
const MAX_MESSAGE: usize = 32 << 20;

pub const PROC_CONNECT_OPEN: i32 = 1;
pub const PROC_DOMAIN_GET_XML_DESC: i32 = 14;
pub const PROC_DOMAIN_LOOKUP_BY_NAME: i32 = 23;
pub const PROC_AUTH_LIST: i32 = 66;
pub const PROC_AUTH_POLKIT: i32 = 70;
pub const PROC_DOMAIN_GET_STATE: i32 = 212;
pub const PROC_CONNECT_LIST_ALL_DOMAINS: i32 = 273;

const AUTH_NONE: u32 = 0;
const AUTH_POLKIT: u32 = 2;

/// virErrorNumber VIR_ERR_NO_DOMAIN.
pub const ERR_NO_DOMAIN: i32 = 42;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RpcError {
    /// The socket could not be reached, or the connection broke.
    Transport(String),
    /// The daemon answered with an error.
    Remote { code: i32, message: String },
    /// The answer did not parse.
    Protocol(String),
}

impl From<Truncated> for RpcError {
    fn from(_: Truncated) -> Self {
        RpcError::Protocol("truncated reply".into())
    }
}

/// A domain handle as the protocol passes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteDomain {
    pub name: String,
    pub uuid: [u8; 16],
    pub id: i32,
}

impl RemoteDomain {
    fn decode(d: &mut Decoder) -> Result<RemoteDomain, Truncated> {
        let name = d.string()?;
        let uuid = d.opaque_fixed(16)?.try_into().expect("16 bytes");
        let id = d.i32()?;
        Ok(RemoteDomain { name, uuid, id })
    }
    fn encode(&self, e: &mut Encoder) {
        e.string(&self.name).opaque_fixed(&self.uuid).i32(self.id);
    }
}

pub struct Client {
    stream: UnixStream,
    serial: u32,
    deadline: Deadline,
}

impl Client {
    /// Connects, authenticates and opens the hypervisor connection `uri`.
    pub fn open(socket: &Path, uri: &str, deadline: Deadline) -> Result<Client, RpcError> {
        let stream = UnixStream::connect(socket)
            .map_err(|e| RpcError::Transport(format!("cannot connect to {}: {e}", socket.display())))?;
        let mut client = Client { stream, serial: 0, deadline };
        let reply = client.call(PROC_AUTH_LIST, &Encoder::default())?;
        let mut d = Decoder::new(&reply);
        let n = d.u32()?;
        let methods: Vec<u32> = (0..n).map(|_| d.u32()).collect::<Result<_, _>>()?;
        if !methods.is_empty() && !methods.contains(&AUTH_NONE) {
            if methods.contains(&AUTH_POLKIT) {
                client.call(PROC_AUTH_POLKIT, &Encoder::default())?;
            } else {
                return Err(RpcError::Protocol(format!("unsupported authentication methods {methods:?}")));
            }
        }
        let mut args = Encoder::default();
        args.optional_string(Some(uri)).u32(0);
        client.call(PROC_CONNECT_OPEN, &args)?;
        Ok(client)
    }

    fn arm_timeouts(&self) -> Result<(), RpcError> {
        let left = self.deadline.remaining().max(Duration::from_millis(1));
        self.stream
            .set_read_timeout(Some(left))
            .and_then(|()| self.stream.set_write_timeout(Some(left)))
            .map_err(|e| RpcError::Transport(e.to_string()))
    }

    /// Sends one call and returns the body of its reply.
    pub fn call(&mut self, procedure: i32, args: &Encoder) -> Result<Vec<u8>, RpcError> {
        if self.deadline.expired() {
            return Err(RpcError::Transport("deadline passed".into()));
        }
        self.arm_timeouts()?;
        self.serial += 1;
        let mut msg = Encoder::default();
        msg.u32(0).u32(PROGRAM).u32(VERSION).i32(procedure).u32(TYPE_CALL).u32(self.serial).u32(STATUS_OK);
        msg.buf.extend_from_slice(&args.buf);
        let len = msg.buf.len() as u32;
        msg.buf[..4].copy_from_slice(&len.to_be_bytes());
        let io = |e: std::io::Error| RpcError::Transport(e.to_string());
        self.stream.write_all(&msg.buf).map_err(io)?;
        loop {
            let mut len = [0u8; 4];
            self.stream.read_exact(&mut len).map_err(io)?;
            let len = u32::from_be_bytes(len) as usize;
            if !(28..=MAX_MESSAGE).contains(&len) {
                return Err(RpcError::Protocol(format!("bad message length {len}")));
            }
            let mut body = vec![0u8; len - 4];
            self.stream.read_exact(&mut body).map_err(io)?;
            let mut d = Decoder::new(&body);
            let (prog, _vers, proc_, kind, serial, status) = (d.u32()?, d.u32()?, d.i32()?, d.u32()?, d.u32()?, d.u32()?);
            // Anything else (an event, a keepalive) is not ours to answer.
            if prog != PROGRAM || kind != TYPE_REPLY || serial != self.serial || proc_ != procedure {
                continue;
            }
            let payload = body[24..].to_vec();
            return match status {
                STATUS_OK => Ok(payload),
                STATUS_ERROR => {
                    let mut d = Decoder::new(&payload);
                    let code = d.i32()?;
                    let _domain = d.i32()?;
                    let message = d.optional_string()?.unwrap_or_default();
                    Err(RpcError::Remote { code, message })
                }
                other => Err(RpcError::Protocol(format!("unexpected reply status {other}"))),
            };
        }
    }

    pub fn lookup_by_name(&mut self, name: &str) -> Result<RemoteDomain, RpcError> {
        let mut args = Encoder::default();
        args.string(name);
        let reply = self.call(PROC_DOMAIN_LOOKUP_BY_NAME, &args)?;
        Ok(RemoteDomain::decode(&mut Decoder::new(&reply))?)
    }

    /// virDomainGetState: (state, reason).
    pub fn state(&mut self, dom: &RemoteDomain) -> Result<(i32, i32), RpcError> {
        let mut args = Encoder::default();
        dom.encode(&mut args);
        args.u32(0);
        let reply = self.call(PROC_DOMAIN_GET_STATE, &args)?;
        let mut d = Decoder::new(&reply);
        Ok((d.i32()?, d.i32()?))
    }

    pub fn xml_desc(&mut self, dom: &RemoteDomain, flags: u32) -> Result<String, RpcError> {
        let mut args = Encoder::default();
        dom.encode(&mut args);
        args.u32(flags);
        let reply = self.call(PROC_DOMAIN_GET_XML_DESC, &args)?;
        Ok(Decoder::new(&reply).string()?)
    }

    pub fn list_all_domains(&mut self) -> Result<Vec<RemoteDomain>, RpcError> {
        let mut args = Encoder::default();
        args.i32(1).u32(0);
        let reply = self.call(PROC_CONNECT_LIST_ALL_DOMAINS, &args)?;
        let mut d = Decoder::new(&reply);
        let n = d.u32()?;
        (0..n).map(|_| RemoteDomain::decode(&mut d).map_err(RpcError::from)).collect()
    }
}
