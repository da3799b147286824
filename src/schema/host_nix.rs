//! The host-nix channel: the guest's nix clients reach a nix-daemon on the
//! host, one per connection, over [`Port::HostNix`](super::ports::Port::HostNix).
//!
//! The guest role listens on [`GUEST_SOCKET`]; for every client that
//! connects it opens a connection on the port ([`Kind::Open`]), and relays
//! the client's bytes ([`Kind::Data`]) until either side closes
//! ([`Kind::Close`]). The CLI starts `nix-daemon --stdio` as the user for
//! every connection and relays its standard streams. The guest role frames
//! what a client sends itself, so a client cannot forge frames: what it
//! sends reaches its own daemon only, and a daemon that refuses it (bad
//! protocol bytes) ends that connection alone.
//!
//! A frame is a kind (one byte), a connection (`u32`, big-endian), a
//! payload length (`u32`, big-endian, at most [`MAX_PAYLOAD`]) and the
//! payload.
//!
//! Flow control, so that neither end's memory grows with what a slow
//! reader has not taken: in each direction of each connection, a sender
//! has at most [`WINDOW`] bytes sent and not yet credited ([`Window`]);
//! the receiver queues what it cannot write on at once, and once it has
//! written bytes on (to the daemon's input, to the client) it credits
//! them back ([`Kind::Credit`]). A sender whose window is full stops
//! reading its source (the client, the daemon's output) until credit
//! comes, so the source waits in the kernel's buffers, not in ours. The
//! port's reader never waits on one connection, so a connection that
//! stalls holds up no other. A receiver counts what it holds
//! ([`Backlog`]) and ends a connection whose sender sends past the window.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};

/// Where the guest role serves the host's nix-daemon to the guest's nix
/// clients; `NIX_REMOTE=unix://` + this in root's sessions.
pub const GUEST_SOCKET: &str = "/run/nixos-shell/host-nix.sock";

/// The `NIX_REMOTE` value that points a nix client at [`GUEST_SOCKET`]
/// (nix's `unix://` store, `UDSRemoteStore`: src/libstore/uds-remote-store.cc).
pub const NIX_REMOTE: &str = "unix:///run/nixos-shell/host-nix.sock";

/// The largest payload of a frame.
pub const MAX_PAYLOAD: usize = 64 * 1024;

/// The most bytes of one connection, in one direction, sent and not yet
/// credited. So each end holds at most this much queued per connection and
/// direction (plus one read buffer of [`MAX_PAYLOAD`] per reading thread),
/// however fast the other end writes and however slowly its destination
/// reads; four payloads keep the port busy while credits travel back.
pub const WINDOW: usize = 4 * MAX_PAYLOAD;

/// The size of a frame's header.
pub const HEADER: usize = 9;

/// What a frame says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Guest → host: a client connected; start its daemon.
    Open = 1,
    /// Either way: bytes of the connection.
    Data = 2,
    /// Either way: the sender's end of the connection is gone (the client
    /// closed, or the daemon ended); the receiver ends it too.
    Close = 3,
    /// Either way: the sender has written on this many bytes (payload: a
    /// `u32`, big-endian) of what it received on the connection; the
    /// receiver may send that many more ([`WINDOW`]).
    Credit = 4,
}

/// One frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub kind: Kind,
    pub connection: u32,
    pub payload: Vec<u8>,
}

impl Frame {
    /// The credit for `written` bytes of `connection`.
    pub fn credit(connection: u32, written: usize) -> Frame {
        Frame {
            kind: Kind::Credit,
            connection,
            payload: (written as u32).to_be_bytes().to_vec(),
        }
    }

    /// How many bytes a [`Kind::Credit`] frame credits; 0 for a malformed
    /// one, which frees nothing.
    pub fn credited(&self) -> usize {
        match <[u8; 4]>::try_from(self.payload.as_slice()) {
            Ok(bytes) => u32::from_be_bytes(bytes) as usize,
            Err(_) => 0,
        }
    }

    /// The frame's bytes. A payload longer than [`MAX_PAYLOAD`] is the
    /// caller's mistake: senders chunk their reads to it.
    pub fn encode(&self) -> Vec<u8> {
        debug_assert!(self.payload.len() <= MAX_PAYLOAD);
        let mut bytes = Vec::with_capacity(HEADER + self.payload.len());
        bytes.push(self.kind as u8);
        bytes.extend_from_slice(&self.connection.to_be_bytes());
        bytes.extend_from_slice(&(self.payload.len() as u32).to_be_bytes());
        bytes.extend_from_slice(&self.payload);
        bytes
    }
}

/// What is wrong with the bytes on the port: the stream cannot be read on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Malformed {
    Kind(u8),
    TooLong(usize),
}

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Malformed::Kind(byte) => write!(f, "a frame of unknown kind {byte}"),
            Malformed::TooLong(len) => {
                write!(f, "a frame of {len} bytes (at most {MAX_PAYLOAD})")
            }
        }
    }
}

impl std::error::Error for Malformed {}

/// Reads frames off a blocking stream; `Ok(None)` at its end.
pub fn read_frame(stream: &mut impl std::io::Read) -> std::io::Result<Option<Frame>> {
    let mut header = [0u8; HEADER];
    match stream.read_exact(&mut header) {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(err) => return Err(err),
    }
    let kind = match header[0] {
        1 => Kind::Open,
        2 => Kind::Data,
        3 => Kind::Close,
        4 => Kind::Credit,
        other => return Err(invalid(Malformed::Kind(other))),
    };
    let connection = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
    let len = u32::from_be_bytes([header[5], header[6], header[7], header[8]]) as usize;
    if len > MAX_PAYLOAD {
        return Err(invalid(Malformed::TooLong(len)));
    }
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload)?;
    Ok(Some(Frame {
        kind,
        connection,
        payload,
    }))
}

fn invalid(malformed: Malformed) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, malformed)
}

/// A sender's window on one connection: how much it has sent that the
/// other end has not credited yet, shared by the thread that reads the
/// source (and waits for room) and the port's reader (which hands it the
/// credits).
#[derive(Debug, Default)]
pub struct Window {
    state: Mutex<Sending>,
    freed: Condvar,
}

#[derive(Debug, Default)]
struct Sending {
    in_flight: usize,
    closed: bool,
}

impl Window {
    /// Waits until a full payload fits in the window; `false` once the
    /// connection is closed (no credit will come): stop reading the source.
    pub fn wait_room(&self) -> bool {
        let Ok(mut state) = self.state.lock() else {
            return false;
        };
        while !state.closed && state.in_flight + MAX_PAYLOAD > WINDOW {
            state = match self.freed.wait(state) {
                Ok(state) => state,
                Err(_) => return false,
            };
        }
        !state.closed
    }

    /// Counts `n` bytes sent.
    pub fn sent(&self, n: usize) {
        if let Ok(mut state) = self.state.lock() {
            state.in_flight += n;
        }
    }

    /// The other end has written on `n` bytes: room for as many more.
    pub fn credit(&self, n: usize) {
        if let Ok(mut state) = self.state.lock() {
            state.in_flight = state.in_flight.saturating_sub(n);
            self.freed.notify_all();
        }
    }

    /// The connection is over: a sender waiting for room stops.
    pub fn close(&self) {
        if let Ok(mut state) = self.state.lock() {
            state.closed = true;
            self.freed.notify_all();
        }
    }
}

/// A receiver's count of what it holds for one connection's writer: what
/// came and is not yet written on.
#[derive(Debug, Default)]
pub struct Backlog(AtomicUsize);

impl Backlog {
    /// Takes `n` more bytes into the queue; `false`, taking nothing, when
    /// they would pass [`WINDOW`]: the sender broke the protocol, and the
    /// connection ends.
    pub fn admit(&self, n: usize) -> bool {
        self.0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |held| {
                held.checked_add(n).filter(|&total| total <= WINDOW)
            })
            .is_ok()
    }

    /// `n` bytes of the queue are written on.
    pub fn written(&self, n: usize) {
        let _ = self
            .0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |held| {
                Some(held.saturating_sub(n))
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nix_remote_names_the_guest_socket() {
        assert_eq!(NIX_REMOTE, format!("unix://{GUEST_SOCKET}"));
    }

    #[test]
    fn frames_read_back_as_written_and_bad_ones_are_refused() {
        let frames = [
            Frame {
                kind: Kind::Open,
                connection: 7,
                payload: Vec::new(),
            },
            Frame {
                kind: Kind::Data,
                connection: 7,
                payload: b"bytes".to_vec(),
            },
            Frame {
                kind: Kind::Close,
                connection: 1 << 31,
                payload: Vec::new(),
            },
            Frame::credit(7, MAX_PAYLOAD),
        ];
        let bytes: Vec<u8> = frames.iter().flat_map(Frame::encode).collect();
        let mut reader = bytes.as_slice();
        for frame in &frames {
            assert_eq!(read_frame(&mut reader).unwrap().as_ref(), Some(frame));
        }
        assert_eq!(read_frame(&mut reader).unwrap(), None);

        assert_eq!(frames[3].credited(), MAX_PAYLOAD);

        let mut bad_kind: &[u8] = &[9, 0, 0, 0, 1, 0, 0, 0, 0];
        assert!(read_frame(&mut bad_kind).is_err());
        let mut too_long: &[u8] = &[2, 0, 0, 0, 1, 0, 1, 0, 1];
        assert!(read_frame(&mut too_long).is_err());
    }

    #[test]
    fn a_window_makes_room_as_credit_comes_and_a_backlog_refuses_past_it() {
        let window = std::sync::Arc::new(Window::default());
        for _ in 0..WINDOW / MAX_PAYLOAD {
            assert!(window.wait_room());
            window.sent(MAX_PAYLOAD);
        }
        let waiting = {
            let window = std::sync::Arc::clone(&window);
            std::thread::spawn(move || window.wait_room())
        };
        window.credit(MAX_PAYLOAD);
        assert!(waiting.join().unwrap());
        window.close();
        assert!(!window.wait_room());

        let backlog = Backlog::default();
        assert!(backlog.admit(WINDOW));
        assert!(!backlog.admit(1));
        backlog.written(1);
        assert!(backlog.admit(1));
    }
}
