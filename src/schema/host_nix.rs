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

/// Where the guest role serves the host's nix-daemon to the guest's nix
/// clients; `NIX_REMOTE=unix://` + this in root's sessions.
pub const GUEST_SOCKET: &str = "/run/nixos-shell/host-nix.sock";

/// The `NIX_REMOTE` value that points a nix client at [`GUEST_SOCKET`]
/// (nix's `unix://` store, `UDSRemoteStore`: src/libstore/uds-remote-store.cc).
pub const NIX_REMOTE: &str = "unix:///run/nixos-shell/host-nix.sock";

/// The largest payload of a frame.
pub const MAX_PAYLOAD: usize = 64 * 1024;

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
}

/// One frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub kind: Kind,
    pub connection: u32,
    pub payload: Vec<u8>,
}

impl Frame {
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
        ];
        let bytes: Vec<u8> = frames.iter().flat_map(Frame::encode).collect();
        let mut reader = bytes.as_slice();
        for frame in &frames {
            assert_eq!(read_frame(&mut reader).unwrap().as_ref(), Some(frame));
        }
        assert_eq!(read_frame(&mut reader).unwrap(), None);

        let mut bad_kind: &[u8] = &[9, 0, 0, 0, 1, 0, 0, 0, 0];
        assert!(read_frame(&mut bad_kind).is_err());
        let mut too_long: &[u8] = &[2, 0, 0, 0, 1, 0, 1, 0, 1];
        assert!(read_frame(&mut too_long).is_err());
    }
}
