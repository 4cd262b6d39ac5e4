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
//!     | CONNECT_CLOSE                 ---->  |   (when the client is dropped)
//!     |                               <----  | done; libvirtd closes its end
//! ```
//!
//! Each message is a 4-byte length (counting itself), a 24-byte header
//! (program, version, procedure, type, serial, status), then the XDR body.
//!
//! Every step is bounded by the caller's deadline, not just each read: the
//! connect (a stopped daemon's full backlog would block it), every read and
//! write, and every turn of the loop that skips events, so neither a hung nor
//! a trickling peer keeps ferry past it. A broken, closed or garbled
//! conversation is an error, never an empty answer: the caller must not read
//! "could not ask" as "not there".

use std::io::{ErrorKind, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};

use super::xdr::{Decoder, Encoder, Truncated};
use crate::deadline::Deadline;

const PROGRAM: u32 = 0x2000_8086;
const VERSION: u32 = 1;
const TYPE_CALL: u32 = 0;
const TYPE_REPLY: u32 = 1;
const STATUS_OK: u32 = 0;
const STATUS_ERROR: u32 = 1;
/// libvirt refuses messages above 32 MiB; anything larger is corrupt.
const MAX_MESSAGE: usize = 32 << 20;
/// The longest one socket call may block before the deadline is looked at
/// again (a SIGTERM shortens it).
const TICK: Duration = Duration::from_millis(100);
/// How often a connect to a daemon whose backlog is full is tried again.
const CONNECT_RETRY: Duration = Duration::from_millis(10);
/// How many calls of one batch may await their reply at once: enough to
/// keep libvirtd's workers busy (it takes 5 of a client's calls at a time by
/// default, max_client_requests), few enough that the replies fit in the
/// socket's buffer while more requests are written.
const PIPELINE: usize = 16;
/// The most a goodbye (CONNECT_CLOSE) may add to an action whose answer is
/// already known. libvirtd runs the procedure on its high-priority workers
/// and answers at once even when its other workers are busy; one that takes
/// longer is hung, and then the goodbye is simply not finished.
const GOODBYE: Duration = Duration::from_secs(1);

pub const PROC_CONNECT_OPEN: i32 = 1;
pub const PROC_CONNECT_CLOSE: i32 = 2;
pub const PROC_DOMAIN_LOOKUP_BY_NAME: i32 = 23;
pub const PROC_AUTH_LIST: i32 = 66;
pub const PROC_AUTH_POLKIT: i32 = 70;
pub const PROC_DOMAIN_GET_METADATA: i32 = 265;
pub const PROC_DOMAIN_GET_STATE: i32 = 212;
pub const PROC_CONNECT_LIST_ALL_DOMAINS: i32 = 273;

const AUTH_NONE: u32 = 0;
const AUTH_POLKIT: u32 = 2;

/// virErrorNumber VIR_ERR_NO_DOMAIN.
pub const ERR_NO_DOMAIN: i32 = 42;
/// VIR_ERR_NO_DOMAIN_METADATA: the domain has no metadata in that namespace.
pub const ERR_NO_DOMAIN_METADATA: i32 = 80;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RpcError {
    /// The socket could not be reached, or the connection broke.
    Transport(String),
    /// The deadline passed before the daemon answered.
    TimedOut(String),
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
    /// CONNECT_OPEN succeeded and no conversation has broken since: the
    /// connection can still be closed the way libvirt expects (see `Drop`).
    in_step: bool,
}

/// Connects to `path` without ever blocking past `deadline`.
fn connect_by(path: &Path, deadline: Deadline) -> Result<UnixStream, RpcError> {
    let transport = |e: Errno| RpcError::Transport(format!("cannot connect to {}: {}", path.display(), e.desc()));
    let addr = UnixAddr::new(path).map_err(transport)?;
    let fd: OwnedFd = socket(AddressFamily::Unix, SockType::Stream, SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC, None).map_err(transport)?;
    loop {
        match connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &addr) {
            Ok(()) => break,
            Err(Errno::EINTR) => continue,
            // A UNIX socket's listener whose backlog is full (a stopped or
            // swamped daemon): try again until the deadline.
            Err(Errno::EAGAIN) | Err(Errno::EINPROGRESS) => {
                if deadline.expired() {
                    return Err(RpcError::TimedOut(format!("{} accepted no connection in time", path.display())));
                }
                std::thread::sleep(CONNECT_RETRY.min(deadline.remaining()));
            }
            Err(e) => return Err(transport(e)),
        }
    }
    let stream = UnixStream::from(fd);
    stream.set_nonblocking(false).map_err(|e| RpcError::Transport(e.to_string()))?;
    Ok(stream)
}

impl Client {
    /// Connects, authenticates and opens the hypervisor connection `uri`.
    pub fn open(socket: &Path, uri: &str, deadline: Deadline) -> Result<Client, RpcError> {
        let mut client = Client::over(connect_by(socket, deadline)?, deadline);
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
        client.in_step = true;
        Ok(client)
    }

    /// A client on an already connected stream (no handshake): the daemon's
    /// socket after `open`, or one end of a pair in the unit tests.
    pub fn over(stream: UnixStream, deadline: Deadline) -> Client {
        Client { stream, serial: 0, deadline, in_step: false }
    }

    /// A connection kept for another question gets that question's deadline.
    pub fn set_deadline(&mut self, deadline: Deadline) {
        self.deadline = deadline;
    }

    /// The daemon's PID, from the socket's peer credentials.
    pub fn peer_pid(&self) -> Option<i32> {
        nix::sys::socket::getsockopt(&self.stream, nix::sys::socket::sockopt::PeerCredentials).ok().map(|c| c.pid())
    }

    fn timed_out(&self, what: &str) -> RpcError {
        RpcError::TimedOut(format!("libvirt did not {what} before the deadline"))
    }

    /// Fills `buf`, or fails at the deadline however slowly the peer sends.
    fn read_exact_by(&mut self, buf: &mut [u8]) -> Result<(), RpcError> {
        let mut filled = 0;
        while filled < buf.len() {
            let left = self.deadline.remaining();
            if left.is_zero() {
                return Err(self.timed_out("answer"));
            }
            self.stream.set_read_timeout(Some(left.min(TICK))).map_err(|e| RpcError::Transport(e.to_string()))?;
            match self.stream.read(&mut buf[filled..]) {
                Ok(0) => return Err(RpcError::Transport("libvirt closed the connection mid-conversation".into())),
                Ok(n) => filled += n,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {}
                Err(e) => return Err(RpcError::Transport(e.to_string())),
            }
        }
        Ok(())
    }

    fn write_all_by(&mut self, mut data: &[u8]) -> Result<(), RpcError> {
        while !data.is_empty() {
            let left = self.deadline.remaining();
            if left.is_zero() {
                return Err(self.timed_out("take the request"));
            }
            self.stream.set_write_timeout(Some(left.min(TICK))).map_err(|e| RpcError::Transport(e.to_string()))?;
            match self.stream.write(data) {
                Ok(0) => return Err(RpcError::Transport("libvirt closed the connection".into())),
                Ok(n) => data = &data[n..],
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {}
                Err(e) => return Err(RpcError::Transport(e.to_string())),
            }
        }
        Ok(())
    }

    /// Sends one call and returns the body of its reply.
    pub fn call(&mut self, procedure: i32, args: &Encoder) -> Result<Vec<u8>, RpcError> {
        let mut answers = self.call_each(procedure, std::slice::from_ref(args), 1)?;
        answers.pop().expect("one call, one answer")
    }

    /// Sends the same procedure once for each of `calls` over this one
    /// connection, with up to `window` of them awaiting their reply at once,
    /// and returns each call's answer in the order of `calls`. Asking about
    /// hundreds of domains then costs the daemon's work, not hundreds of
    /// round trips. The outer error is a broken conversation (nothing can be
    /// trusted); an inner one is the daemon's answer to that call. The
    /// window stays small so that replies never pile up in the socket while
    /// requests are still being written (libvirtd itself works on only a
    /// few of one client's calls at a time).
    pub fn call_each(&mut self, procedure: i32, calls: &[Encoder], window: usize) -> Result<Vec<Result<Vec<u8>, RpcError>>, RpcError> {
        let calls: Vec<(i32, &Encoder)> = calls.iter().map(|args| (procedure, args)).collect();
        self.call_batch(&calls, window)
    }

    /// `call_each` of calls to different procedures: questions that do not
    /// depend on each other's answers (a domain's state and its mark) cost
    /// one round trip's wait together.
    pub fn call_batch(&mut self, calls: &[(i32, &Encoder)], window: usize) -> Result<Vec<Result<Vec<u8>, RpcError>>, RpcError> {
        let answers = self.exchange(calls, window);
        // After a broken, garbled or timed-out conversation a late reply
        // may still be on its way: nothing more is said on this connection.
        if answers.is_err() {
            self.in_step = false;
        }
        answers
    }

    fn exchange(&mut self, calls: &[(i32, &Encoder)], window: usize) -> Result<Vec<Result<Vec<u8>, RpcError>>, RpcError> {
        let first = self.serial.wrapping_add(1);
        let mut answers: Vec<Option<Result<Vec<u8>, RpcError>>> = vec![None; calls.len()];
        let (mut sent, mut answered) = (0, 0);
        while answered < calls.len() {
            while sent < calls.len() && sent - answered < window.max(1) {
                if self.deadline.expired() {
                    return Err(self.timed_out("answer"));
                }
                self.serial = self.serial.wrapping_add(1);
                let (procedure, args) = calls[sent];
                let mut msg = Encoder::default();
                msg.u32(0).u32(PROGRAM).u32(VERSION).i32(procedure).u32(TYPE_CALL).u32(self.serial).u32(STATUS_OK);
                msg.buf.extend_from_slice(&args.buf);
                let len = msg.buf.len() as u32;
                msg.buf[..4].copy_from_slice(&len.to_be_bytes());
                self.write_all_by(&msg.buf)?;
                sent += 1;
            }
            // Each turn reads under the deadline, so a stream of events
            // cannot keep this loop going past it.
            let Some((procedure, serial, answer)) = self.read_reply()? else { continue };
            let index = serial.wrapping_sub(first) as usize;
            match answers.get_mut(index) {
                Some(slot @ None) if index < sent && calls[index].0 == procedure => {
                    *slot = Some(answer);
                    answered += 1;
                }
                // A serial of an earlier conversation on this connection, or
                // one answered twice: not an answer to these calls.
                _ => continue,
            }
        }
        Ok(answers.into_iter().map(|a| a.expect("every call answered")).collect())
    }

    /// Reads one message: `Some((procedure, serial, answer))` for a reply,
    /// `None` for anything else (an event, a keepalive).
    fn read_reply(&mut self) -> Result<Option<(i32, u32, Result<Vec<u8>, RpcError>)>, RpcError> {
        let mut len = [0u8; 4];
        self.read_exact_by(&mut len)?;
        let len = u32::from_be_bytes(len) as usize;
        if !(28..=MAX_MESSAGE).contains(&len) {
            return Err(RpcError::Protocol(format!("bad message length {len}")));
        }
        let mut body = vec![0u8; len - 4];
        self.read_exact_by(&mut body)?;
        let mut d = Decoder::new(&body);
        let (prog, _vers, proc_, kind, serial, status) = (d.u32()?, d.u32()?, d.i32()?, d.u32()?, d.u32()?, d.u32()?);
        if prog != PROGRAM || kind != TYPE_REPLY {
            return Ok(None);
        }
        let payload = body[24..].to_vec();
        let answer = match status {
            STATUS_OK => Ok(payload),
            STATUS_ERROR => {
                let mut d = Decoder::new(&payload);
                let code = d.i32()?;
                let _domain = d.i32()?;
                let message = d.optional_string()?.unwrap_or_default();
                Err(RpcError::Remote { code, message })
            }
            other => return Err(RpcError::Protocol(format!("unexpected reply status {other}"))),
        };
        Ok(Some((proc_, serial, answer)))
    }

    pub fn lookup_by_name(&mut self, name: &str) -> Result<RemoteDomain, RpcError> {
        let mut args = Encoder::default();
        args.string(name);
        let reply = self.call(PROC_DOMAIN_LOOKUP_BY_NAME, &args)?;
        Ok(RemoteDomain::decode(&mut Decoder::new(&reply))?)
    }

    /// virDomainGetState: (state, reason).
    pub fn state(&mut self, dom: &RemoteDomain) -> Result<(i32, i32), RpcError> {
        let reply = self.call(PROC_DOMAIN_GET_STATE, &state_args(dom))?;
        decode_state(&reply)
    }

    /// `state` and `metadata_element` of one domain, asked together.
    pub fn state_and_metadata(&mut self, dom: &RemoteDomain, uri: &str) -> Result<((i32, i32), Result<Option<String>, RpcError>), RpcError> {
        let (state, metadata) = (state_args(dom), metadata_args(dom, uri));
        let mut answers = self.call_batch(&[(PROC_DOMAIN_GET_STATE, &state), (PROC_DOMAIN_GET_METADATA, &metadata)], 2)?.into_iter();
        let state = decode_state(&answers.next().expect("two answers")?)?;
        Ok((state, decode_metadata(answers.next().expect("two answers"))))
    }

    /// virDomainGetMetadata of the element in namespace `uri` (type
    /// VIR_DOMAIN_METADATA_ELEMENT, the live definition of a running
    /// domain) of each of `doms`, asked all at once (see `call_each`), in
    /// the order of `doms`: `None` for a domain that has none. A small
    /// reply each, where a whole definition is tens of kilobytes.
    pub fn metadata_elements(&mut self, doms: &[RemoteDomain], uri: &str) -> Result<Vec<Result<Option<String>, RpcError>>, RpcError> {
        let calls: Vec<Encoder> = doms.iter().map(|dom| metadata_args(dom, uri)).collect();
        let answers = self.call_each(PROC_DOMAIN_GET_METADATA, &calls, PIPELINE)?;
        Ok(answers.into_iter().map(decode_metadata).collect())
    }

    /// Every domain the daemon knows, or (`active_only`) every running one.
    pub fn list_all_domains(&mut self, active_only: bool) -> Result<Vec<RemoteDomain>, RpcError> {
        const VIR_CONNECT_LIST_DOMAINS_ACTIVE: u32 = 1;
        let mut args = Encoder::default();
        args.i32(1).u32(if active_only { VIR_CONNECT_LIST_DOMAINS_ACTIVE } else { 0 });
        let reply = self.call(PROC_CONNECT_LIST_ALL_DOMAINS, &args)?;
        let mut d = Decoder::new(&reply);
        let n = d.u32()?;
        (0..n).map(|_| RemoteDomain::decode(&mut d).map_err(RpcError::from)).collect()
    }
}

/// Ends an open connection with libvirt's close procedure, as virsh does,
/// rather than by closing the socket: libvirtd takes a client that just
/// hangs up for a broken one and logs "End of file while reading data" at
/// error level, for every ferry action, burying real errors. On
/// CONNECT_CLOSE it marks the client to be closed once the (empty) reply is
/// written and stops reading from it, so after reading that reply ferry's
/// close is quiet.
///
/// In `Drop`, not in an explicit `close()`: a client ends on many paths
/// (the backend's kept connection at the end of every action, one dropped
/// after a remote error, an early return), and each one says goodbye
/// without its owner having to remember it. The goodbye runs under the
/// deadline of the client's last question (the action's, or a part of it)
/// and at most `GOODBYE`, so it never holds an action past its time. It is
/// only a courtesy: it is skipped when the connection was never opened or a
/// conversation broke (a late reply could be read as its answer), and a
/// goodbye that fails or times out is dropped without a word, as the
/// action's answer was already decided.
impl Drop for Client {
    fn drop(&mut self) {
        if !self.in_step {
            return;
        }
        self.deadline = self.deadline.within(GOODBYE);
        let _ = self.call(PROC_CONNECT_CLOSE, &Encoder::default());
    }
}

fn state_args(dom: &RemoteDomain) -> Encoder {
    let mut args = Encoder::default();
    dom.encode(&mut args);
    args.u32(0);
    args
}

fn decode_state(reply: &[u8]) -> Result<(i32, i32), RpcError> {
    let mut d = Decoder::new(reply);
    Ok((d.i32()?, d.i32()?))
}

fn metadata_args(dom: &RemoteDomain, uri: &str) -> Encoder {
    const VIR_DOMAIN_METADATA_ELEMENT: i32 = 2;
    let mut args = Encoder::default();
    dom.encode(&mut args);
    args.i32(VIR_DOMAIN_METADATA_ELEMENT).optional_string(Some(uri)).u32(0);
    args
}

fn decode_metadata(answer: Result<Vec<u8>, RpcError>) -> Result<Option<String>, RpcError> {
    match answer {
        Ok(reply) => Ok(Some(Decoder::new(&reply).string()?)),
        Err(RpcError::Remote { code: ERR_NO_DOMAIN_METADATA, .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    //! The client against a scripted peer on a socket pair: each test's peer
    //! reads the request and answers with exactly the bytes it is given.
    use super::*;
    use std::time::Instant;

    /// A reply frame for the first call (serial 1) of `procedure`.
    fn frame(procedure: i32, kind: u32, serial: u32, status: u32, payload: &[u8]) -> Vec<u8> {
        let mut e = Encoder::default();
        e.u32(0).u32(PROGRAM).u32(VERSION).i32(procedure).u32(kind).u32(serial).u32(status);
        e.buf.extend_from_slice(payload);
        let len = e.buf.len() as u32;
        e.buf[..4].copy_from_slice(&len.to_be_bytes());
        e.buf
    }

    /// Runs `call` against a peer that answers with `answer`, byte-paced by `pace`.
    fn against(answer: Vec<u8>, pace: Option<Duration>, within: Duration) -> (Result<Vec<u8>, RpcError>, Duration) {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let peer = std::thread::spawn(move || {
            let mut request = [0u8; 28];
            let _ = theirs.read_exact(&mut request);
            match pace {
                None => {
                    let _ = theirs.write_all(&answer);
                }
                Some(gap) => {
                    for byte in answer {
                        if theirs.write_all(&[byte]).is_err() {
                            break;
                        }
                        std::thread::sleep(gap);
                    }
                }
            }
            // Closing its end ends the conversation.
        });
        let started = Instant::now();
        let mut client = Client::over(ours, Deadline::after(within));
        let result = client.call(PROC_DOMAIN_GET_STATE, &Encoder::default());
        let took = started.elapsed();
        drop(client);
        let _ = peer.join();
        (result, took)
    }

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn a_reply_after_events_and_other_serials_is_found() {
        let mut answer = frame(PROC_DOMAIN_GET_STATE, 2, 0, STATUS_OK, &[0; 8]); // an event (type MESSAGE)
        answer.extend(frame(PROC_DOMAIN_GET_STATE, TYPE_REPLY, 7, STATUS_OK, &[9; 8])); // someone else's serial
        answer.extend(frame(PROC_DOMAIN_GET_STATE, TYPE_REPLY, 1, STATUS_OK, &[0, 0, 0, 1, 0, 0, 0, 5]));
        assert_eq!(against(answer, None, SECOND).0, Ok(vec![0, 0, 0, 1, 0, 0, 0, 5]));
    }

    #[test]
    fn a_remote_error_carries_its_code_and_message() {
        let mut payload = Encoder::default();
        payload.i32(ERR_NO_DOMAIN).i32(10).optional_string(Some("Domain not found"));
        let answer = frame(PROC_DOMAIN_GET_STATE, TYPE_REPLY, 1, STATUS_ERROR, &payload.buf);
        assert_eq!(against(answer, None, SECOND).0, Err(RpcError::Remote { code: ERR_NO_DOMAIN, message: "Domain not found".into() }));
    }

    #[test]
    fn a_truncated_frame_is_a_broken_conversation_not_an_answer() {
        let whole = frame(PROC_DOMAIN_GET_STATE, TYPE_REPLY, 1, STATUS_OK, &[0; 8]);
        for cut in [0, 2, 4, 20, whole.len() - 1] {
            let result = against(whole[..cut].to_vec(), None, SECOND).0;
            assert!(matches!(result, Err(RpcError::Transport(_))), "cut at {cut}: {result:?}");
        }
    }

    #[test]
    fn bad_lengths_and_statuses_are_protocol_errors() {
        for len in [0u32, 27, (MAX_MESSAGE + 1) as u32, u32::MAX] {
            let mut answer = frame(PROC_DOMAIN_GET_STATE, TYPE_REPLY, 1, STATUS_OK, &[0; 8]);
            answer[..4].copy_from_slice(&len.to_be_bytes());
            let result = against(answer, None, SECOND).0;
            assert!(matches!(result, Err(RpcError::Protocol(ref m)) if m.contains("length")), "length {len}: {result:?}");
        }
        let answer = frame(PROC_DOMAIN_GET_STATE, TYPE_REPLY, 1, 9, &[]);
        assert!(matches!(against(answer, None, SECOND).0, Err(RpcError::Protocol(_))));
        // An error reply too short to hold its error.
        let answer = frame(PROC_DOMAIN_GET_STATE, TYPE_REPLY, 1, STATUS_ERROR, &[0, 0]);
        assert!(matches!(against(answer, None, SECOND).0, Err(RpcError::Protocol(_))));
    }

    #[test]
    fn a_peer_that_trickles_cannot_hold_the_client_past_its_deadline() {
        let answer = frame(PROC_DOMAIN_GET_STATE, TYPE_REPLY, 1, STATUS_OK, &[0; 8]);
        let (result, took) = against(answer, Some(Duration::from_millis(150)), Duration::from_millis(700));
        assert!(matches!(result, Err(RpcError::TimedOut(_))), "{result:?}");
        assert!(took < Duration::from_millis(1000), "took {took:?}");
    }

    #[test]
    fn a_peer_that_streams_events_for_ever_cannot_either() {
        let event = frame(PROC_DOMAIN_GET_STATE, 2, 0, STATUS_OK, &[0; 8]);
        let answer: Vec<u8> = std::iter::repeat(event).take(50_000).flatten().collect();
        let (result, took) = against(answer, None, Duration::from_millis(300));
        // Either the deadline or the peer's end comes first; never an answer.
        assert!(matches!(result, Err(RpcError::TimedOut(_)) | Err(RpcError::Transport(_))), "{result:?}");
        assert!(took < Duration::from_millis(800), "took {took:?}");
    }

    /// Reads one request from the client: (serial, its arguments).
    fn read_request(peer: &mut UnixStream) -> Option<(u32, Vec<u8>)> {
        read_call(peer).map(|(_, serial, args)| (serial, args))
    }

    /// Reads one request from the client: (procedure, serial, arguments).
    fn read_call(peer: &mut UnixStream) -> Option<(i32, u32, Vec<u8>)> {
        let mut len = [0u8; 4];
        peer.read_exact(&mut len).ok()?;
        let mut body = vec![0u8; u32::from_be_bytes(len) as usize - 4];
        peer.read_exact(&mut body).ok()?;
        let word = |at: usize| u32::from_be_bytes(body[at..at + 4].try_into().unwrap());
        Some((word(8) as i32, word(16), body[24..].to_vec()))
    }

    #[test]
    fn batched_calls_get_their_own_answers_whatever_order_they_come_in() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let peer = std::thread::spawn(move || {
            // Takes three calls before answering any: they were pipelined.
            let requests: Vec<_> = (0..3).map(|_| read_request(&mut theirs).unwrap()).collect();
            let mut answer = frame(PROC_DOMAIN_GET_STATE, 2, 0, STATUS_OK, &[0; 8]); // an event between
            for (serial, args) in requests.iter().rev() {
                if args == &[0, 0, 0, 2] {
                    let mut error = Encoder::default();
                    error.i32(ERR_NO_DOMAIN).i32(10).optional_string(Some("gone"));
                    answer.extend(frame(PROC_DOMAIN_GET_STATE, TYPE_REPLY, *serial, STATUS_ERROR, &error.buf));
                } else {
                    answer.extend(frame(PROC_DOMAIN_GET_STATE, TYPE_REPLY, *serial, STATUS_OK, args));
                }
            }
            theirs.write_all(&answer).unwrap();
            theirs
        });
        let mut client = Client::over(ours, Deadline::after(SECOND));
        let calls: Vec<Encoder> = (1..=3).map(|n| {
            let mut e = Encoder::default();
            e.i32(n);
            e
        }).collect();
        let answers = client.call_each(PROC_DOMAIN_GET_STATE, &calls, 16).unwrap();
        assert_eq!(answers[0], Ok(vec![0, 0, 0, 1]));
        assert!(matches!(answers[1], Err(RpcError::Remote { code: ERR_NO_DOMAIN, .. })), "{:?}", answers[1]);
        assert_eq!(answers[2], Ok(vec![0, 0, 0, 3]));
        drop(peer.join());
    }

    #[test]
    fn batched_calls_keep_no_more_than_the_window_awaiting_replies() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let peer = std::thread::spawn(move || {
            let mut most = 0;
            let mut waiting = std::collections::VecDeque::new();
            let mut answered = 0;
            while answered < 10 {
                // Reads what has come; a client past its window would have
                // more than 2 calls here before any answer.
                theirs.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
                while let Some(request) = read_request(&mut theirs) {
                    waiting.push_back(request);
                }
                most = most.max(waiting.len());
                if let Some((serial, _)) = waiting.pop_front() {
                    theirs.write_all(&frame(PROC_DOMAIN_GET_STATE, TYPE_REPLY, serial, STATUS_OK, &[])).unwrap();
                    answered += 1;
                }
            }
            most
        });
        let mut client = Client::over(ours, Deadline::after(Duration::from_secs(5)));
        let answers = client.call_each(PROC_DOMAIN_GET_STATE, &vec![Encoder::default(); 10], 2).unwrap();
        assert_eq!(answers.len(), 10);
        assert!(answers.iter().all(|a| a.is_ok()));
        assert_eq!(peer.join().unwrap(), 2);
    }

    #[test]
    fn a_broken_conversation_in_a_batch_fails_the_whole_batch() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let peer = std::thread::spawn(move || {
            let (serial, _) = read_request(&mut theirs).unwrap();
            let _ = read_request(&mut theirs);
            // One answer, then the daemon goes away.
            theirs.write_all(&frame(PROC_DOMAIN_GET_STATE, TYPE_REPLY, serial, STATUS_OK, &[])).unwrap();
        });
        let mut client = Client::over(ours, Deadline::after(SECOND));
        let result = client.call_each(PROC_DOMAIN_GET_STATE, &vec![Encoder::default(); 2], 16);
        assert!(matches!(result, Err(RpcError::Transport(_))), "{result:?}");
        let _ = peer.join();
    }

    #[test]
    fn a_silent_peer_times_out_at_the_deadline() {
        let (ours, _theirs) = UnixStream::pair().unwrap();
        let started = Instant::now();
        let result = Client::over(ours, Deadline::after(Duration::from_millis(300))).call(PROC_DOMAIN_GET_STATE, &Encoder::default());
        assert!(matches!(result, Err(RpcError::TimedOut(_))), "{result:?}");
        assert!(started.elapsed() < Duration::from_millis(600));
    }

    #[test]
    fn connecting_to_a_listener_that_never_accepts_ends_at_the_deadline() {
        let dir = std::env::temp_dir().join(format!("ferry-rpc-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("sock");
        // A listener that never accepts: like a stopped libvirtd. Its backlog
        // fills, and then a blocking connect would wait for ever.
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let mut held = Vec::new();
        let started = Instant::now();
        let outcome = loop {
            match connect_by(&path, Deadline::after(Duration::from_millis(300))) {
                Ok(s) => held.push(s),
                Err(e) => break e,
            }
            assert!(held.len() < 10_000, "the backlog never filled");
        };
        assert!(matches!(outcome, RpcError::TimedOut(_)), "{outcome:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
        drop(listener);
        let _ = std::fs::remove_dir_all(&dir);
        assert!(matches!(connect_by(&dir.join("none"), Deadline::after(SECOND)), Err(RpcError::Transport(_))));
    }

    /// A daemon of the test's own on a real socket path, so that
    /// `Client::open` does its handshake (no authentication, CONNECT_OPEN)
    /// against it; then `then` plays the rest of the conversation.
    fn fake_daemon<T: Send + 'static>(tag: &str, then: impl FnOnce(UnixStream) -> T + Send + 'static) -> (std::path::PathBuf, std::thread::JoinHandle<T>) {
        let dir = std::env::temp_dir().join(format!("ferry-rpc-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let daemon = std::thread::spawn(move || {
            let (mut peer, _) = listener.accept().unwrap();
            let _ = std::fs::remove_dir_all(&dir);
            for (procedure, answer) in [(PROC_AUTH_LIST, &[0u8, 0, 0, 0][..]), (PROC_CONNECT_OPEN, &[][..])] {
                let (asked, serial, _) = read_call(&mut peer).unwrap();
                assert_eq!(asked, procedure);
                peer.write_all(&frame(procedure, TYPE_REPLY, serial, STATUS_OK, answer)).unwrap();
            }
            then(peer)
        });
        (path, daemon)
    }

    /// Whether the client has hung up: the next read sees the end (or a
    /// reset) within `within`, with nothing more sent. `None`: it sent
    /// something instead.
    fn hung_up(peer: &mut UnixStream, within: Duration) -> Option<bool> {
        peer.set_read_timeout(Some(within)).unwrap();
        let mut byte = [0u8; 1];
        match peer.read(&mut byte) {
            Ok(0) => Some(true),
            Ok(_) => None,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Some(false),
            Err(_) => Some(true),
        }
    }

    #[test]
    fn an_open_connection_ends_with_libvirt_s_close_procedure_and_its_reply() {
        let (path, daemon) = fake_daemon("goodbye", |mut peer| {
            let (procedure, serial, _) = read_call(&mut peer).unwrap();
            peer.write_all(&frame(procedure, TYPE_REPLY, serial, STATUS_OK, &[0, 0, 0, 1, 0, 0, 0, 1])).unwrap();
            let (goodbye, serial, args) = read_call(&mut peer).unwrap();
            // The client waits for the reply before it hangs up (libvirtd
            // would otherwise read the end of the stream and log it).
            let waited = hung_up(&mut peer, Duration::from_millis(200)) == Some(false);
            peer.write_all(&frame(goodbye, TYPE_REPLY, serial, STATUS_OK, &[])).unwrap();
            let then_closed = hung_up(&mut peer, SECOND) == Some(true);
            (goodbye, args, waited, then_closed)
        });
        let mut client = Client::open(&path, "qemu:///system", Deadline::after(Duration::from_secs(5))).unwrap();
        client.call(PROC_DOMAIN_GET_STATE, &Encoder::default()).unwrap();
        drop(client);
        let (goodbye, args, waited, then_closed) = daemon.join().unwrap();
        assert_eq!(goodbye, PROC_CONNECT_CLOSE);
        assert!(args.is_empty(), "CONNECT_CLOSE takes no arguments");
        assert!(waited, "the client hung up before libvirt answered its goodbye");
        assert!(then_closed, "the client closed after the reply");
    }

    #[test]
    fn a_goodbye_libvirt_never_answers_holds_the_client_no_longer_than_its_bound() {
        let (path, daemon) = fake_daemon("silent-goodbye", |mut peer| {
            let goodbye = read_call(&mut peer).map(|(procedure, _, _)| procedure);
            // Hold the connection without answering until the client gives up.
            let gave_up = hung_up(&mut peer, Duration::from_secs(5)) == Some(true);
            (goodbye, gave_up)
        });
        let client = Client::open(&path, "qemu:///system", Deadline::after(Duration::from_secs(30))).unwrap();
        let started = Instant::now();
        drop(client);
        let took = started.elapsed();
        assert!(took >= GOODBYE - Duration::from_millis(50) && took < GOODBYE + Duration::from_millis(500), "took {took:?}");
        assert_eq!(daemon.join().unwrap(), (Some(PROC_CONNECT_CLOSE), true));
    }

    #[test]
    fn no_goodbye_on_a_broken_conversation_a_spent_deadline_or_a_connection_never_opened() {
        // A garbled reply: the connection is out of step, so nothing more
        // is said on it.
        let (path, daemon) = fake_daemon("broken", |mut peer| {
            let (procedure, serial, _) = read_call(&mut peer).unwrap();
            let mut garbled = frame(procedure, TYPE_REPLY, serial, STATUS_OK, &[]);
            garbled[..4].copy_from_slice(&3u32.to_be_bytes());
            peer.write_all(&garbled).unwrap();
            hung_up(&mut peer, SECOND)
        });
        let mut client = Client::open(&path, "qemu:///system", Deadline::after(Duration::from_secs(5))).unwrap();
        assert!(matches!(client.call(PROC_DOMAIN_GET_STATE, &Encoder::default()), Err(RpcError::Protocol(_))));
        drop(client);
        assert_eq!(daemon.join().unwrap(), Some(true), "the client sent something after a broken conversation");

        // The action's time is up: it hangs up at once.
        let (path, daemon) = fake_daemon("late", |mut peer| hung_up(&mut peer, SECOND));
        let mut client = Client::open(&path, "qemu:///system", Deadline::after(Duration::from_secs(5))).unwrap();
        client.set_deadline(Deadline::after(Duration::ZERO));
        let started = Instant::now();
        drop(client);
        assert!(started.elapsed() < Duration::from_millis(100));
        assert_eq!(daemon.join().unwrap(), Some(true), "the client said goodbye past its deadline");

        // A stream that never went through CONNECT_OPEN.
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        drop(Client::over(ours, Deadline::after(SECOND)));
        assert_eq!(hung_up(&mut theirs, SECOND), Some(true));
    }
}
