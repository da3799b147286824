//! The attach protocol: `nixos-shell --attach` in another terminal, a
//! session in the VM that is already running.
//!
//! Three parties, one frame format: the client (`nixos-shell --attach`)
//! connects to the Unix socket in the private session directory of the
//! nixos-shell that runs the VM (its owner only); that nixos-shell relays
//! between its clients and the guest role's attach server on
//! [`Port::Attach`](super::ports::Port::Attach), one virtio-serial port for
//! every session. It numbers the sessions, one per client connection, and
//! writes that number into every frame a client sends, whatever the client
//! put there: a client reaches its own session and nothing else.
//!
//! A frame is a kind (one byte), a session (`u32`, big-endian), a payload
//! length (`u32`, big-endian, at most [`MAX_PAYLOAD`]) and the payload.
//! A session opens with [`Kind::Open`] (a JSON [`Request`]) and ends with
//! [`Kind::Exit`] (a JSON [`Exit`]), [`Kind::Refused`] (a message), or, when
//! the VM is gone, [`Kind::VmEnded`].
//!
//! Flow control, so that one session that stops reading never stalls the
//! others sharing the port: each direction of a session has a window of
//! [`WINDOW`] bytes. The guest sends at most that much output unacknowledged
//! and the VM's nixos-shell acknowledges ([`Kind::OutputAck`]) what it has
//! written to the client; the VM's nixos-shell sends at most that much input
//! unacknowledged and the guest acknowledges ([`Kind::InputAck`]) what it
//! has written to the session's program, each once it has taken
//! [`ACK_EVERY`] bytes. Between a client and the VM's
//! nixos-shell, the socket's own buffer is the flow control. The VM's
//! nixos-shell checks the guest against its window ([`Unacked`]): a guest
//! that sends more than [`MAX_UNACKED`] of a session unacknowledged, or
//! acknowledges input it never got, ends that session with one line
//! ([`Malformed`] says what was wrong), rather than being buffered for.

use std::collections::VecDeque;
use std::os::fd::AsFd;

use camino::Utf8PathBuf;
use serde::{Deserialize, Serialize};

use super::ports::TerminalSize;

/// The version of [`Request`] this crate writes and reads.
pub const REQUEST_VERSION: u32 = 1;

/// Unacknowledged bytes per session and direction: several times what
/// a pipe holds, so that a stream is not held up waiting for its
/// acknowledgements under a slow (emulated) guest.
pub const WINDOW: usize = 4 * 1024 * 1024;

/// The bytes a receiver takes before it acknowledges them: one
/// acknowledgement for many frames, since each costs the guest a wake-up;
/// a quarter of [`WINDOW`], so that a sender never waits on one.
pub const ACK_EVERY: usize = WINDOW / 4;

/// The largest payload of a frame; data goes in chunks of at most this.
pub const MAX_PAYLOAD: usize = 64 * 1024;

/// The most data of one session and direction a sender may have sent
/// unacknowledged: the [`WINDOW`], and the reads of the session's two
/// output streams that began below it. What a receiver holds for a
/// session is bounded by it ([`Unacked::received`]).
pub const MAX_UNACKED: usize = WINDOW + 2 * MAX_PAYLOAD;

/// The size of a frame's header.
pub const HEADER: usize = 9;

/// What a frame says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Client → guest: start the session of the JSON [`Request`].
    Open = 1,
    /// Client → guest: bytes for the session's terminal or standard input.
    Input = 2,
    /// Client → guest: the standard input ended.
    InputEnd = 3,
    /// Client → guest: the client's terminal has this JSON [`TerminalSize`].
    Resize = 4,
    /// Client → guest: deliver the signal (JSON number) to the session's
    /// processes.
    Signal = 5,
    /// Client → guest: the client's standard output takes no more (its
    /// reader went away); the session's program gets SIGPIPE, as in a
    /// pipeline.
    OutputClosed = 6,
    /// VM's nixos-shell → guest: the client went away; end the session.
    Close = 7,
    /// VM's nixos-shell → guest: this many output bytes (`u32`) reached
    /// the client.
    OutputAck = 8,
    /// Client → VM's nixos-shell: the JSON [`HolderRequest`], for the
    /// nixos-shell that holds the VM itself, never relayed to the guest.
    Holder = 9,
    /// Guest → client: bytes of the session's terminal or standard output.
    Output = 16,
    /// Guest → client: bytes of the session's standard error.
    Error = 17,
    /// Guest → client: the session's program ended, with this JSON
    /// [`Exit`].
    Exit = 18,
    /// Guest → client: the session could not start; the payload says why.
    Refused = 19,
    /// Guest → VM's nixos-shell: this many input bytes (`u32`) reached
    /// the session's program.
    InputAck = 20,
    /// VM's nixos-shell → client: the VM ended.
    VmEnded = 21,
    /// Guest → VM's nixos-shell: the attach server is up (session 0).
    /// VM's nixos-shell → a client that asked
    /// [`HolderRequest::AwaitServer`]: the same news, passed on.
    Hello = 22,
}

impl Kind {
    fn from_byte(byte: u8) -> Option<Kind> {
        Some(match byte {
            1 => Kind::Open,
            2 => Kind::Input,
            3 => Kind::InputEnd,
            4 => Kind::Resize,
            5 => Kind::Signal,
            6 => Kind::OutputClosed,
            7 => Kind::Close,
            8 => Kind::OutputAck,
            9 => Kind::Holder,
            16 => Kind::Output,
            17 => Kind::Error,
            18 => Kind::Exit,
            19 => Kind::Refused,
            20 => Kind::InputAck,
            21 => Kind::VmEnded,
            22 => Kind::Hello,
            _ => return None,
        })
    }
}

/// One frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub kind: Kind,
    pub session: u32,
    pub payload: Vec<u8>,
}

impl Frame {
    pub fn new(kind: Kind, session: u32, payload: Vec<u8>) -> Frame {
        Frame {
            kind,
            session,
            payload,
        }
    }

    /// A frame whose payload is `value` as JSON.
    pub fn json<T: Serialize>(kind: Kind, session: u32, value: &T) -> Frame {
        // The protocol's values (numbers, strings, plain structs) always
        // serialize.
        Frame::new(kind, session, serde_json::to_vec(value).unwrap_or_default())
    }

    /// A frame whose payload is the count `n`.
    pub fn count(kind: Kind, session: u32, n: usize) -> Frame {
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        Frame::new(kind, session, n.to_be_bytes().to_vec())
    }

    /// The frame as [`Decoder::next_frame_ref`] gives one.
    pub fn borrowed(&self) -> FrameRef<'_> {
        FrameRef {
            kind: self.kind,
            session: self.session,
            payload: &self.payload,
        }
    }

    /// The payload as JSON of `T` ([`FrameRef::parse`]).
    pub fn parse<T: for<'de> Deserialize<'de>>(&self) -> Result<T, Malformed> {
        self.borrowed().parse()
    }

    /// The payload as a count ([`FrameRef::read_count`]).
    pub fn read_count(&self) -> Result<usize, Malformed> {
        self.borrowed().read_count()
    }

    /// The exit status of a [`Kind::Exit`] frame ([`FrameRef::exit_status`]).
    pub fn exit_status(&self) -> Result<u8, Malformed> {
        self.borrowed().exit_status()
    }

    /// The payload as one line a terminal shows as it is
    /// ([`FrameRef::message`]).
    pub fn message(&self) -> String {
        self.borrowed().message()
    }

    /// The [`Kind::Open`] frame of `request`, when it fits a frame.
    pub fn open(request: &Request) -> Result<Frame, Malformed> {
        let frame = Frame::json(Kind::Open, 0, request);
        if frame.payload.len() > MAX_PAYLOAD {
            return Err(Malformed::Oversized(frame.payload.len()));
        }
        Ok(frame)
    }

    /// The frame's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + self.payload.len());
        encode(self.kind, self.session, &self.payload, &mut out);
        out
    }
}

/// A frame where it lies in a [`Decoder`]'s buffer, its payload borrowed:
/// a stream of data is passed on from there, without a copy of each
/// frame's payload of its own (under an emulated guest, every copy of the
/// data is a large part of what a pipe through a session costs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameRef<'a> {
    pub kind: Kind,
    pub session: u32,
    pub payload: &'a [u8],
}

impl FrameRef<'_> {
    /// The frame with a payload of its own.
    pub fn to_frame(self) -> Frame {
        Frame::new(self.kind, self.session, self.payload.to_vec())
    }

    /// The payload as JSON of `T`.
    pub fn parse<T: for<'de> Deserialize<'de>>(self) -> Result<T, Malformed> {
        serde_json::from_slice(self.payload).map_err(|err| Malformed::Json {
            kind: self.kind,
            error: err.to_string(),
        })
    }

    /// The payload as a count: exactly four bytes; anything else would
    /// read as some count, and a window would drift silently.
    pub fn read_count(self) -> Result<usize, Malformed> {
        <[u8; 4]>::try_from(self.payload)
            .map(|bytes| u32::from_be_bytes(bytes) as usize)
            .map_err(|_| Malformed::Count {
                kind: self.kind,
                len: self.payload.len(),
            })
    }

    /// The exit status of a [`Kind::Exit`] frame: its JSON [`Exit`], whose
    /// code must be one a process can end with.
    pub fn exit_status(self) -> Result<u8, Malformed> {
        let Exit { exit_code } = self.parse()?;
        super::exit_status(exit_code).ok_or(Malformed::Status(exit_code))
    }

    /// The payload as one line a terminal shows as it is (a
    /// [`Kind::Refused`] frame's message): what is not printable, a
    /// newline or an escape sequence among them, is written out as an
    /// escape, so the guest cannot move the cursor or change the terminal.
    pub fn message(self) -> String {
        String::from_utf8_lossy(self.payload)
            .chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_default().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect()
    }
}

/// A frame's bytes, appended to `out`.
fn encode(kind: Kind, session: u32, payload: &[u8], out: &mut Vec<u8>) {
    out.push(kind as u8);
    out.extend_from_slice(&session.to_be_bytes());
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
}

/// What is not this protocol: a stream that cannot be read on (its peer
/// is dropped), or a frame whose payload is not what its kind carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Malformed {
    /// A frame's kind byte that no [`Kind`] has.
    UnknownKind(u8),
    /// A payload length over [`MAX_PAYLOAD`].
    Oversized(usize),
    /// A count's payload that is not four bytes.
    Count { kind: Kind, len: usize },
    /// A payload that is not the JSON its kind carries.
    Json { kind: Kind, error: String },
    /// An exit code no process ends with.
    Status(i32),
    /// A data frame without data.
    Empty(Kind),
    /// Data past [`MAX_UNACKED`]: a sender that ignores the window.
    Overrun { unacked: usize },
    /// An acknowledgement of more than was sent.
    Overacked { acked: usize, sent: usize },
    /// A frame of a kind its sender never sends.
    Misdirected(Kind),
}

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Malformed::UnknownKind(byte) => write!(f, "a frame of unknown kind {byte}"),
            Malformed::Oversized(len) => write!(
                f,
                "a frame of {len} bytes, more than the {MAX_PAYLOAD} one may carry"
            ),
            Malformed::Count { kind, len } => {
                write!(f, "a {kind:?} frame of {len} bytes, not a 4-byte count")
            }
            Malformed::Json { kind, error } => {
                write!(f, "a {kind:?} frame that does not read: {error}")
            }
            Malformed::Status(code) => {
                write!(f, "an exit status of {code}, not one of 0 to 255")
            }
            Malformed::Empty(kind) => write!(f, "a {kind:?} frame without data"),
            Malformed::Overrun { unacked } => write!(
                f,
                "{unacked} bytes unacknowledged, more than the {MAX_UNACKED} a window allows"
            ),
            Malformed::Overacked { acked, sent } => write!(
                f,
                "an acknowledgement of {acked} bytes when {sent} were unacknowledged"
            ),
            Malformed::Misdirected(kind) => {
                write!(f, "a {kind:?} frame, which it never sends")
            }
        }
    }
}

impl std::error::Error for Malformed {}

/// Frames out of a byte stream that arrives in pieces.
///
/// A virtio-serial port hands out at most a page per read, so a stream of
/// data is many small reads: the decoder reads straight into its own
/// buffer (no allocation per read) and consumes frames from its front by
/// an offset (no move per frame); what is left is moved to the front only
/// when the buffer runs out of room. The buffer is allocated once, at
/// [`Decoder::CAPACITY`], and never grows, whatever the peer writes: a
/// header that announces more than [`MAX_PAYLOAD`] is refused before its
/// payload is awaited.
///
/// Its reader takes every frame ([`Decoder::next_frame`] until `None`)
/// before it reads again; what is then left is less than one frame, and
/// the next read has room for two frames.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
    /// Where the bytes not yet decoded start in `buf`.
    start: usize,
}

/// How much room a read of [`Decoder::read_from`] has at least.
const READ_ROOM: usize = 2 * (HEADER + MAX_PAYLOAD);

impl Decoder {
    /// The most bytes a decoder holds: room for a read beside the start of
    /// a frame that has not arrived whole.
    pub const CAPACITY: usize = READ_ROOM + HEADER + MAX_PAYLOAD;

    /// Appends what of `bytes` fits, as a read would: how much (the tests'
    /// way in; a stream is read with [`Decoder::read_from`]).
    #[cfg(test)]
    pub fn push(&mut self, bytes: &[u8]) -> usize {
        let n = bytes.len().min(self.make_room());
        self.buf.extend_from_slice(&bytes[..n]);
        n
    }

    /// Reads what `fd` has now into the decoder: how much (0 at its end).
    /// `NOBUFS` when its reader left whole frames in it and it is full.
    pub fn read_from(&mut self, fd: impl AsFd) -> rustix::io::Result<usize> {
        if self.make_room() == 0 {
            return Err(rustix::io::Errno::NOBUFS);
        }
        rustix::io::read(fd, rustix::buffer::spare_capacity(&mut self.buf))
    }

    /// Moves what is left to the front when the room for a read runs
    /// short: the room there is now, never more than [`Decoder::CAPACITY`]
    /// in all.
    fn make_room(&mut self) -> usize {
        if self.buf.capacity() < Decoder::CAPACITY {
            self.buf.reserve_exact(Decoder::CAPACITY - self.buf.len());
        }
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if Decoder::CAPACITY - self.buf.len() < READ_ROOM {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        Decoder::CAPACITY - self.buf.len()
    }

    /// The next whole frame, if one has arrived, with a payload of its
    /// own ([`Decoder::next_frame_ref`]).
    pub fn next_frame(&mut self) -> Result<Option<Frame>, Malformed> {
        Ok(self.next_frame_ref()?.map(FrameRef::to_frame))
    }

    /// The next whole frame, if one has arrived, where it lies in the
    /// decoder: its payload is valid until the decoder reads again. Once
    /// it says a stream is malformed, it says so again: nothing after that
    /// can be read.
    pub fn next_frame_ref(&mut self) -> Result<Option<FrameRef<'_>>, Malformed> {
        let pending = &self.buf[self.start..];
        if pending.len() < HEADER {
            return Ok(None);
        }
        let kind = Kind::from_byte(pending[0]).ok_or(Malformed::UnknownKind(pending[0]))?;
        let word = |at: usize| {
            u32::from_be_bytes([
                pending[at],
                pending[at + 1],
                pending[at + 2],
                pending[at + 3],
            ])
        };
        let session = word(1);
        let len = word(5) as usize;
        if len > MAX_PAYLOAD {
            return Err(Malformed::Oversized(len));
        }
        if pending.len() < HEADER + len {
            return Ok(None);
        }
        let at = self.start + HEADER;
        self.start = at + len;
        Ok(Some(FrameRef {
            kind,
            session,
            payload: &self.buf[at..at + len],
        }))
    }

    /// After a malformed stream: drops what comes before the next
    /// [`HELLO`] (a guest's attach server that starts again says it
    /// first), and whether one has come; [`Decoder::next_frame`] then
    /// reads it. Until it comes, at most `HELLO.len() - 1` bytes are kept:
    /// the start of one that has not arrived whole.
    pub fn skip_to_hello(&mut self) -> bool {
        let pending = &self.buf[self.start..];
        if let Some(at) = pending.windows(HELLO.len()).position(|w| w == HELLO) {
            self.start += at;
            return true;
        }
        self.start += pending.len().saturating_sub(HELLO.len() - 1);
        false
    }
}

/// The bytes of the [`Kind::Hello`] frame: a guest's attach server sends
/// them first, and only then.
pub const HELLO: [u8; HEADER] = [Kind::Hello as u8, 0, 0, 0, 0, 0, 0, 0, 0];

/// The data of one session and direction that was sent and not yet
/// acknowledged, as one end counts it; what the other end says about it is
/// checked against that count, so that a peer that ignores the window is
/// caught rather than buffered for.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Unacked(usize);

impl Unacked {
    pub fn get(self) -> usize {
        self.0
    }

    /// This end sent `n` bytes.
    pub fn sent(&mut self, n: usize) {
        self.0 = self.0.saturating_add(n);
    }

    /// The peer acknowledged `n` bytes: an error when that is more than
    /// this end sent.
    pub fn acked_by_peer(&mut self, n: usize) -> Result<(), Malformed> {
        self.0 = self.0.checked_sub(n).ok_or(Malformed::Overacked {
            acked: n,
            sent: self.0,
        })?;
        Ok(())
    }

    /// The peer sent `n` bytes in a frame of `kind`: an error for a frame
    /// without data, or when the peer now has more than [`MAX_UNACKED`]
    /// unacknowledged.
    pub fn received(&mut self, kind: Kind, n: usize) -> Result<(), Malformed> {
        if n == 0 {
            return Err(Malformed::Empty(kind));
        }
        let unacked = self.0.saturating_add(n);
        if unacked > MAX_UNACKED {
            return Err(Malformed::Overrun { unacked });
        }
        self.0 = unacked;
        Ok(())
    }

    /// This end acknowledged `n` of the bytes it received.
    pub fn acked(&mut self, n: usize) {
        self.0 = self.0.saturating_sub(n);
    }
}

/// What a client asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request {
    pub version: u32,
    /// A command to run (`SHELL -c`), or `None` for a login shell.
    #[serde(default)]
    pub command: Option<String>,
    /// Whether the client's standard input and output are a terminal: the
    /// session then gets a terminal of its own, sized as the client's, and
    /// its output is that terminal's; otherwise the streams are passed
    /// byte for byte.
    pub terminal: bool,
    /// The client's directory; the session starts there when the guest has
    /// it (inside a share), else in the home.
    pub cwd: Utf8PathBuf,
    /// The client's `TERM`.
    #[serde(default)]
    pub term: Option<String>,
    /// The client's compiled terminfo entry for `term`, when its host has
    /// one.
    #[serde(default)]
    pub terminfo: Option<Vec<u8>>,
    /// The client's terminal size, with `terminal`.
    #[serde(default)]
    pub size: Option<TerminalSize>,
    /// `nixos-shell --switch`: instead of `command`, the guest role's own
    /// `switch` step activates this system (a toplevel in the store); a
    /// guest that predates it ignores the field and runs `command`.
    #[serde(default)]
    pub switch: Option<Utf8PathBuf>,
    /// With `switch`: which activation, and how much of its output the
    /// client has, so that a client whose session was lost (the guest's
    /// attach server restarted during the switch) follows the same
    /// activation again from where it was rather than starting another.
    #[serde(default)]
    pub switch_from: Option<SwitchFrom>,
    /// With `switch`: the registration of the system's closure (the
    /// build's manifest's), which the guest's Nix database loads before
    /// the activation.
    #[serde(default)]
    pub switch_registration: Option<Utf8PathBuf>,
}

/// Which activation a `switch` session follows, and from where.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SwitchFrom {
    /// Names the activation (letters, digits and `-`); the client picks it
    /// once per switch. The guest starts it unless it runs or ran already.
    pub id: String,
    /// The bytes of its standard output the client has.
    pub stdout: u64,
    /// The bytes of its standard error the client has.
    pub stderr: u64,
}

/// What a client asks of the nixos-shell that holds the VM (a
/// [`Kind::Holder`] frame), rather than of a session in the guest: one
/// variant per request, so that a later mode adds its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum HolderRequest {
    /// `nixos-shell --stop`: power the guest off, end QEMU if it does not
    /// within the holder's deadline, and end.
    Stop,
    /// `nixos-shell --switch --restart`: power the guest off as `Stop`
    /// does, then start the VM again from `build` (a build result of the
    /// same configuration, which the client built and keeps rooted) with
    /// the same run-time settings, in the same terminal or still detached.
    /// The holder answers on the same connection: the new guest's
    /// [`HELLO`] once it answers, a [`Kind::Refused`] line when it cannot
    /// restart; the connection closing unanswered means the new VM ended
    /// before it answered.
    Restart { build: Utf8PathBuf },
    /// A `--switch` whose session was lost: answer with [`Kind::Hello`]
    /// once the guest's attach server is up (at once if it is), so that
    /// the client opens its session again then. A holder that does not
    /// know this request closes the connection without an answer.
    AwaitServer,
}

/// How a session's program ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Exit {
    /// Its exit status; `128 + N` when signal `N` killed it.
    pub exit_code: i32,
}

/// Bytes waiting to be written to a non-blocking stream, some of which
/// count toward an acknowledgement once written (a session's data, against
/// its window), written with [`Outbox::write_to`]. What is written is consumed
/// from the front by an offset, as in [`Decoder`].
#[derive(Debug, Default)]
pub struct Outbox {
    buf: Vec<u8>,
    /// Where the bytes not yet written start in `buf`.
    start: usize,
    /// Where the counted runs end in `buf`, with their counts and the
    /// session they count for.
    marks: VecDeque<(usize, u32, usize)>,
}

impl Outbox {
    /// The most an empty outbox keeps allocated: a few frames of data.
    pub const KEEP: usize = 4 * (HEADER + MAX_PAYLOAD);

    pub fn push(&mut self, frame: &Frame) {
        self.push_data(frame.kind, frame.session, &frame.payload);
    }

    /// Pushes a frame of `kind` for `session` with `payload`.
    pub fn push_data(&mut self, kind: Kind, session: u32, payload: &[u8]) {
        encode(kind, session, payload, &mut self.buf);
    }

    /// Pushes `frame`, whose `counted` bytes count toward `session`'s
    /// acknowledgement once the whole frame is written.
    pub fn push_counted(&mut self, frame: FrameRef, session: u32, counted: usize) {
        self.push_data(frame.kind, frame.session, frame.payload);
        self.marks.push_back((self.buf.len(), session, counted));
    }

    pub fn pending(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    pub fn is_empty(&self) -> bool {
        self.pending().is_empty()
    }

    pub fn len(&self) -> usize {
        self.pending().len()
    }

    /// Writes what the non-blocking `fd` takes now: the counted bytes now
    /// written in full, per session. An error (but a full stream's or an
    /// interruption) is the stream's.
    pub fn write_to(&mut self, fd: impl AsFd) -> rustix::io::Result<Vec<(u32, usize)>> {
        let mut acked = Vec::new();
        while !self.is_empty() {
            match rustix::io::write(&fd, self.pending()) {
                Ok(n) => acked.extend(self.written(n)),
                Err(rustix::io::Errno::INTR) => {}
                Err(rustix::io::Errno::AGAIN) => break,
                Err(err) => return Err(err),
            }
        }
        Ok(acked)
    }

    /// `n` bytes of [`Outbox::pending`] were written: the counted bytes
    /// now written in full, per session.
    fn written(&mut self, n: usize) -> Vec<(u32, usize)> {
        self.start = (self.start + n).min(self.buf.len());
        let mut acked = Vec::new();
        while let Some(&(end, session, counted)) = self.marks.front() {
            if end > self.start {
                break;
            }
            acked.push((session, counted));
            self.marks.pop_front();
        }
        if self.start == self.buf.len() {
            // Empty: a buffer a window's data once grew is given back, so
            // what a long-lived relay holds between transfers is small.
            if self.buf.capacity() > Outbox::KEEP {
                self.buf = Vec::new();
            } else {
                self.buf.clear();
            }
            self.start = 0;
        } else if self.start >= self.buf.len() / 2 {
            // Most of it is written: move the rest to the front, so the
            // buffer stays at the size of what is pending.
            self.buf.drain(..self.start);
            for mark in &mut self.marks {
                mark.0 -= self.start;
            }
            self.start = 0;
        }
        acked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_arriving_in_pieces_come_out_whole_and_in_order() {
        let frames = [
            Frame::new(Kind::Input, 7, b"a\0\r\nb".to_vec()),
            Frame::count(Kind::OutputAck, 7, 300),
            Frame::json(Kind::Exit, 2, &Exit { exit_code: 3 }),
        ];
        let bytes: Vec<u8> = frames.iter().flat_map(Frame::encode).collect();
        let mut decoder = Decoder::default();
        let mut got = Vec::new();
        for piece in bytes.chunks(4) {
            decoder.push(piece);
            while let Some(frame) = decoder.next_frame().unwrap() {
                got.push(frame);
            }
        }
        assert_eq!(got, frames);
        assert_eq!(got[1].read_count(), Ok(300));
        assert_eq!(got[2].parse::<Exit>(), Ok(Exit { exit_code: 3 }));
        assert_eq!(got[2].exit_status(), Ok(3));
    }

    #[test]
    fn an_unknown_kind_or_an_oversized_payload_is_malformed() {
        let mut decoder = Decoder::default();
        decoder.push(&[99, 0, 0, 0, 1, 0, 0, 0, 0]);
        assert_eq!(decoder.next_frame(), Err(Malformed::UnknownKind(99)));
        let mut decoder = Decoder::default();
        let mut big = Frame::new(Kind::Input, 1, Vec::new()).encode();
        big[5..9].copy_from_slice(&(MAX_PAYLOAD as u32 + 1).to_be_bytes());
        decoder.push(&big);
        assert_eq!(
            decoder.next_frame(),
            Err(Malformed::Oversized(MAX_PAYLOAD + 1))
        );
    }

    #[test]
    fn counted_bytes_are_acknowledged_once_their_frame_is_written() {
        let mut outbox = Outbox::default();
        outbox.push(&Frame::new(Kind::Resize, 1, b"{}".to_vec()));
        let data = Frame::new(Kind::Output, 1, vec![b'x'; 10]);
        outbox.push_counted(data.borrowed(), 1, 10);
        let first = HEADER + 2;
        assert_eq!(outbox.written(first + 5), []);
        assert_eq!(outbox.written(outbox.len()), [(1, 10)]);
        assert!(outbox.is_empty());
    }

    #[test]
    fn an_outbox_that_empties_gives_back_what_a_window_grew() {
        let mut outbox = Outbox::default();
        for _ in 0..WINDOW / MAX_PAYLOAD {
            outbox.push(&Frame::new(Kind::Output, 1, vec![b'x'; MAX_PAYLOAD]));
        }
        assert!(outbox.buf.capacity() > Outbox::KEEP);
        outbox.written(outbox.len());
        assert!(outbox.is_empty());
        assert!(
            outbox.buf.capacity() <= Outbox::KEEP,
            "{}",
            outbox.buf.capacity()
        );
        // A small one keeps its buffer, for the next frames.
        outbox.push(&Frame::new(Kind::Output, 1, vec![b'x'; 100]));
        let kept = outbox.buf.capacity();
        outbox.written(outbox.len());
        assert_eq!(outbox.buf.capacity(), kept);
    }

    #[test]
    fn acknowledgements_stay_right_while_the_outbox_moves_its_rest_to_the_front() {
        let mut outbox = Outbox::default();
        let frames: Vec<Frame> = (0..5u8)
            .map(|i| Frame::new(Kind::Output, u32::from(i), vec![i; 100 + usize::from(i)]))
            .collect();
        for frame in &frames {
            outbox.push_counted(frame.borrowed(), frame.session, frame.payload.len());
        }
        let bytes: Vec<u8> = frames.iter().flat_map(Frame::encode).collect();
        assert_eq!(outbox.pending(), bytes);
        let mut acked = Vec::new();
        let mut written = 0;
        while !outbox.is_empty() {
            // Uneven pieces, so that some end inside a frame and some
            // compactions happen between a frame's start and its end.
            let n = outbox.len().min(37 + written % 50);
            assert_eq!(outbox.pending(), &bytes[written..]);
            acked.extend(outbox.written(n));
            written += n;
        }
        let expected: Vec<(u32, usize)> = frames
            .iter()
            .map(|f| (f.session, f.payload.len()))
            .collect();
        assert_eq!(acked, expected);
    }

    #[test]
    fn a_request_reads_back_and_tolerates_what_it_does_not_know() {
        let request = Request {
            version: REQUEST_VERSION,
            switch: None,
            switch_from: None,
            switch_registration: None,
            command: Some("make test".into()),
            terminal: false,
            cwd: "/home/a/p".into(),
            term: Some("xterm".into()),
            terminfo: None,
            size: None,
        };
        let frame = Frame::json(Kind::Open, 0, &request);
        assert_eq!(frame.parse::<Request>(), Ok(request));
        let newer: Request =
            serde_json::from_str(r#"{"version":1,"terminal":true,"cwd":"/","x":1}"#).unwrap();
        assert_eq!(newer.command, None);
    }

    #[test]
    fn a_request_too_long_for_a_frame_is_refused_before_it_is_sent() {
        let request = Request {
            version: REQUEST_VERSION,
            switch: None,
            switch_from: None,
            switch_registration: None,
            command: Some("x".repeat(MAX_PAYLOAD)),
            terminal: false,
            cwd: "/".into(),
            term: None,
            terminfo: None,
            size: None,
        };
        let Err(Malformed::Oversized(len)) = Frame::open(&request) else {
            panic!("a request of more than {MAX_PAYLOAD} bytes went into a frame");
        };
        assert!(len > MAX_PAYLOAD);
        assert!(
            Malformed::Oversized(len)
                .to_string()
                .contains(&MAX_PAYLOAD.to_string()),
            "the message names the limit"
        );
    }

    #[test]
    fn a_count_or_an_exit_that_does_not_read_is_an_error() {
        assert_eq!(
            Frame::new(Kind::InputAck, 1, vec![0; 3]).read_count(),
            Err(Malformed::Count {
                kind: Kind::InputAck,
                len: 3
            })
        );
        let exit = |code: i32| Frame::json(Kind::Exit, 1, &Exit { exit_code: code });
        assert_eq!(exit(256).exit_status(), Err(Malformed::Status(256)));
        assert_eq!(exit(-1).exit_status(), Err(Malformed::Status(-1)));
        assert!(matches!(
            Frame::new(Kind::Exit, 1, b"{}".to_vec()).exit_status(),
            Err(Malformed::Json {
                kind: Kind::Exit,
                ..
            })
        ));
    }

    /// Generated frames and streams: whatever arrives, the decoder neither
    /// panics nor holds more than [`Decoder::CAPACITY`]; every frame comes
    /// back as it was sent, in pieces of any size; a stream that is not
    /// frames is refused, at its first bad header, with what was wrong.
    mod properties {
        use super::*;
        use proptest::prelude::*;

        const KINDS: [Kind; 16] = [
            Kind::Open,
            Kind::Input,
            Kind::InputEnd,
            Kind::Resize,
            Kind::Signal,
            Kind::OutputClosed,
            Kind::Close,
            Kind::OutputAck,
            Kind::Holder,
            Kind::Output,
            Kind::Error,
            Kind::Exit,
            Kind::Refused,
            Kind::InputAck,
            Kind::VmEnded,
            Kind::Hello,
        ];

        fn kind() -> impl Strategy<Value = Kind> {
            proptest::sample::select(KINDS.to_vec())
        }

        /// Mostly small payloads, sometimes one at the limit.
        fn payload() -> impl Strategy<Value = Vec<u8>> {
            prop_oneof![
                8 => prop::collection::vec(any::<u8>(), 0..300),
                1 => (MAX_PAYLOAD - 16..=MAX_PAYLOAD, any::<u8>())
                    .prop_map(|(len, byte)| vec![byte; len]),
            ]
        }

        fn frame() -> impl Strategy<Value = Frame> {
            (kind(), any::<u32>(), payload())
                .prop_map(|(kind, session, payload)| Frame::new(kind, session, payload))
        }

        /// Frames with garbage between them.
        fn stream() -> impl Strategy<Value = Vec<u8>> {
            prop::collection::vec(
                prop_oneof![
                    3 => frame().prop_map(|frame| frame.encode()),
                    1 => prop::collection::vec(any::<u8>(), 0..40),
                ],
                0..8,
            )
            .prop_map(|parts| parts.concat())
        }

        fn pieces() -> impl Strategy<Value = Vec<usize>> {
            prop::collection::vec(
                prop_oneof![1..16usize, 1..4096usize, 1..=Decoder::CAPACITY],
                1..6,
            )
        }

        /// `bytes` fed in pieces of the sizes `pieces` (over and over), as
        /// reads bring them, taking every frame after each: the frames and
        /// the error that stopped them, if one did.
        fn decode(bytes: &[u8], pieces: &[usize]) -> (Vec<Frame>, Option<Malformed>) {
            let mut decoder = Decoder::default();
            let mut frames = Vec::new();
            let mut rest = bytes;
            for &size in pieces.iter().cycle() {
                let n = decoder.push(&rest[..size.min(rest.len())]);
                assert!(n > 0 || rest.is_empty(), "no room for a read");
                rest = &rest[n..];
                assert!(
                    decoder.buf.capacity() <= Decoder::CAPACITY,
                    "the decoder holds {} bytes",
                    decoder.buf.capacity()
                );
                loop {
                    match decoder.next_frame() {
                        Ok(Some(frame)) => frames.push(frame),
                        Ok(None) => break,
                        Err(err) => {
                            // Once malformed, always: nothing after it
                            // is read as frames.
                            assert_eq!(decoder.next_frame(), Err(err.clone()));
                            return (frames, Some(err));
                        }
                    }
                }
                if rest.is_empty() {
                    break;
                }
            }
            (frames, None)
        }

        proptest! {
            #![proptest_config(crate::schema::proptest_config())]

            #[test]
            fn frames_come_back_as_they_were_sent(
                frames in prop::collection::vec(frame(), 0..6),
                pieces in pieces(),
            ) {
                let bytes: Vec<u8> = frames.iter().flat_map(Frame::encode).collect();
                let (got, error) = decode(&bytes, &pieces);
                prop_assert_eq!(error, None);
                prop_assert_eq!(got, frames);
            }

            #[test]
            fn any_stream_is_frames_up_to_its_first_bad_header(
                bytes in stream(),
                pieces in pieces(),
            ) {
                let (frames, error) = decode(&bytes, &pieces);
                // What came out is exactly what the stream starts with.
                let read: Vec<u8> = frames.iter().flat_map(Frame::encode).collect();
                prop_assert_eq!(&bytes[..read.len()], &read[..]);
                let rest = &bytes[read.len()..];
                match error {
                    Some(Malformed::UnknownKind(byte)) => {
                        prop_assert!(rest.len() >= HEADER);
                        prop_assert_eq!(byte, rest[0]);
                        prop_assert!(Kind::from_byte(byte).is_none());
                    }
                    Some(Malformed::Oversized(len)) => {
                        prop_assert!(rest.len() >= HEADER);
                        prop_assert!(len > MAX_PAYLOAD);
                        prop_assert_eq!(len as u32, u32::from_be_bytes([rest[5], rest[6], rest[7], rest[8]]));
                    }
                    Some(other) => prop_assert!(false, "the stream said {}", other),
                    // The rest is a frame that has not arrived whole.
                    None => prop_assert!(
                        rest.len() < HEADER
                            || rest.len() < HEADER + u32::from_be_bytes([rest[5], rest[6], rest[7], rest[8]]) as usize
                    ),
                }
            }

            #[test]
            fn a_bad_header_is_refused_before_its_payload_is_awaited(
                byte in any::<u8>().prop_filter("not a kind", |b| Kind::from_byte(*b).is_none()),
                kind in kind(),
                session in any::<u32>(),
                len in (MAX_PAYLOAD as u32 + 1)..=u32::MAX,
            ) {
                let mut decoder = Decoder::default();
                decoder.push(&[&[byte][..], &session.to_be_bytes(), &0u32.to_be_bytes()].concat());
                prop_assert_eq!(decoder.next_frame(), Err(Malformed::UnknownKind(byte)));
                let mut decoder = Decoder::default();
                decoder.push(&[&[kind as u8][..], &session.to_be_bytes(), &len.to_be_bytes()].concat());
                prop_assert_eq!(decoder.next_frame(), Err(Malformed::Oversized(len as usize)));
            }

            /// Whatever came before, a restarted server's hello and the
            /// frames after it read as sent, and the garbage waiting for
            /// it is not held.
            #[test]
            fn after_garbage_a_hello_and_what_follows_read_as_sent(
                garbage in prop::collection::vec(any::<u8>(), 0..20_000),
                frames in prop::collection::vec(frame(), 0..4),
                pieces in pieces(),
            ) {
                let after: Vec<u8> = frames.iter().flat_map(Frame::encode).collect();
                let bytes = [&garbage[..], &HELLO[..], &after[..]].concat();
                let mut decoder = Decoder::default();
                let mut rest = &bytes[..];
                let mut found = false;
                for &size in pieces.iter().cycle() {
                    let n = decoder.push(&rest[..size.min(rest.len())]);
                    rest = &rest[n..];
                    if decoder.skip_to_hello() {
                        found = true;
                        break;
                    }
                    prop_assert!(decoder.buf.len() - decoder.start < HELLO.len());
                    prop_assert!(!rest.is_empty(), "no hello found");
                }
                prop_assert!(found);
                let mut got = Vec::new();
                'reading: loop {
                    loop {
                        match decoder.next_frame() {
                            Ok(Some(frame)) => got.push(frame),
                            Ok(None) => break,
                            Err(_) => break 'reading,
                        }
                    }
                    if rest.is_empty() {
                        break;
                    }
                    let n = decoder.push(&rest[..rest.len().min(4096)]);
                    rest = &rest[n..];
                }
                // The first hello in the stream: one in the garbage, or
                // the server's.
                let first = bytes.windows(HELLO.len()).position(|w| w == HELLO).unwrap();
                let expected = decode(&bytes[first..], &[usize::MAX]);
                prop_assert_eq!(got, expected.0);
                if first == garbage.len() {
                    prop_assert_eq!(expected.1, None);
                }
            }

            #[test]
            fn a_count_is_four_bytes_and_reads_back(
                kind in kind(),
                n in any::<u32>(),
                payload in prop::collection::vec(any::<u8>(), 0..12),
            ) {
                prop_assert_eq!(Frame::count(kind, 1, n as usize).read_count(), Ok(n as usize));
                let frame = Frame::new(kind, 1, payload.clone());
                match frame.read_count() {
                    Ok(count) => prop_assert_eq!(payload, (count as u32).to_be_bytes().to_vec()),
                    Err(err) => prop_assert_eq!(err, Malformed::Count { kind, len: payload.len() }),
                }
            }

            #[test]
            fn an_exit_reads_back_only_as_a_status_a_process_can_have(
                code in any::<i32>(),
                small in 0..=255i32,
                garbage in prop::collection::vec(any::<u8>(), 0..40),
            ) {
                let exit = |code| Frame::json(Kind::Exit, 1, &Exit { exit_code: code });
                prop_assert_eq!(exit(small).exit_status(), Ok(small as u8));
                match exit(code).exit_status() {
                    Ok(status) => prop_assert_eq!(i32::from(status), code),
                    Err(err) => {
                        prop_assert!(!(0..=255).contains(&code));
                        prop_assert_eq!(err, Malformed::Status(code));
                    }
                }
                let frame = Frame::new(Kind::Exit, 1, garbage.clone());
                match frame.exit_status() {
                    Ok(status) => prop_assert_eq!(
                        serde_json::from_slice::<Exit>(&garbage).ok(),
                        Some(Exit { exit_code: i32::from(status) })
                    ),
                    Err(Malformed::Json { .. }) => {
                        prop_assert!(serde_json::from_slice::<Exit>(&garbage).is_err());
                    }
                    Err(Malformed::Status(code)) => prop_assert!(!(0..=255).contains(&code)),
                    Err(other) => prop_assert!(false, "{}", other),
                }
            }

            #[test]
            fn a_message_is_one_line_without_control_characters(
                payload in prop::collection::vec(
                    prop_oneof![any::<u8>(), Just(0x1b), Just(b'\n'), Just(b'\r')],
                    0..200,
                ),
                text in "[a-zA-Z ;:.,'()]{0,60}",
            ) {
                let message = Frame::new(Kind::Refused, 1, payload).message();
                prop_assert!(!message.chars().any(char::is_control), "{:?}", message);
                let plain = Frame::new(Kind::Refused, 1, text.clone().into_bytes());
                prop_assert_eq!(plain.message(), text);
            }

            #[test]
            fn a_request_goes_into_a_frame_and_back_or_is_refused_before(
                request in request(),
            ) {
                match Frame::open(&request) {
                    Ok(frame) => {
                        let (frames, error) = decode(&frame.encode(), &[usize::MAX]);
                        prop_assert_eq!(error, None);
                        prop_assert_eq!(frames.len(), 1);
                        prop_assert_eq!(frames[0].parse::<Request>(), Ok(request));
                    }
                    Err(Malformed::Oversized(len)) => {
                        prop_assert!(len > MAX_PAYLOAD);
                        prop_assert_eq!(len, serde_json::to_vec(&request).unwrap().len());
                    }
                    Err(other) => prop_assert!(false, "{}", other),
                }
            }

            #[test]
            fn any_payload_of_an_open_frame_reads_as_a_request_or_says_why_not(
                payload in prop::collection::vec(any::<u8>(), 0..200),
                json in "\\{\"version\":[0-9]{1,3},\"terminal\":(true|false),\"cwd\":\"[a-z/]{0,8}\".{0,20}\\}",
            ) {
                for payload in [payload, json.into_bytes()] {
                    let frame = Frame::new(Kind::Open, 1, payload.clone());
                    match frame.parse::<Request>() {
                        Ok(request) => prop_assert_eq!(
                            serde_json::from_slice::<Request>(&payload).ok(),
                            Some(request)
                        ),
                        Err(Malformed::Json { kind, error }) => {
                            prop_assert_eq!(kind, Kind::Open);
                            prop_assert!(!error.is_empty());
                        }
                        Err(other) => prop_assert!(false, "{}", other),
                    }
                }
            }
        }

        proptest! {
            #![proptest_config(crate::schema::proptest_config())]

            /// A sender as the guest's attach server is (it reads a
            /// session's two streams while less than the window is
            /// unacknowledged) never trips the receiver; one that goes on
            /// past the window is caught at once, so a receiver holds at
            /// most [`MAX_UNACKED`]; an acknowledgement of more than was
            /// sent is refused.
            #[test]
            fn a_window_holds_a_sender_that_keeps_it_and_catches_one_that_does_not(
                steps in prop::collection::vec((1..=MAX_PAYLOAD, 1..=MAX_PAYLOAD, 0..3u8), 1..300),
                overack in 1..1000usize,
            ) {
                let (mut sender, mut receiver) = (0usize, Unacked::default());
                for (out, err, step) in steps {
                    match step {
                        // The receiver acknowledges all it holds.
                        0 => {
                            let all = receiver.get();
                            receiver.acked(all);
                            sender -= all;
                        }
                        // A sender that keeps the window.
                        1 if sender < WINDOW => {
                            for n in [out, err] {
                                prop_assert_eq!(receiver.received(Kind::Output, n), Ok(()));
                                sender += n;
                            }
                        }
                        // One that does not.
                        _ => {
                            let before = receiver;
                            match receiver.received(Kind::Output, out) {
                                Ok(()) => prop_assert!(sender + out <= MAX_UNACKED),
                                Err(err) => {
                                    prop_assert_eq!(err, Malformed::Overrun { unacked: sender + out });
                                    prop_assert_eq!(receiver, before);
                                    continue;
                                }
                            }
                            sender += out;
                        }
                    }
                    prop_assert_eq!(receiver.get(), sender);
                    prop_assert!(receiver.get() <= MAX_UNACKED);
                }
                let mut mine = Unacked::default();
                mine.sent(sender);
                prop_assert_eq!(
                    mine.acked_by_peer(sender + overack),
                    Err(Malformed::Overacked { acked: sender + overack, sent: sender })
                );
                prop_assert_eq!(mine.acked_by_peer(sender), Ok(()));
                prop_assert_eq!(Unacked::default().received(Kind::Error, 0), Err(Malformed::Empty(Kind::Error)));
            }
        }

        fn request() -> impl Strategy<Value = Request> {
            let command = prop_oneof![
                4 => proptest::option::of(any::<String>()),
                1 => (MAX_PAYLOAD - 200..MAX_PAYLOAD + 200).prop_map(|len| Some("x".repeat(len))),
            ];
            (
                command,
                any::<bool>(),
                any::<String>(),
                proptest::option::of(any::<String>()),
                proptest::option::of(prop::collection::vec(any::<u8>(), 0..4096)),
                proptest::option::of((any::<u16>(), any::<u16>())),
            )
                .prop_map(|(command, terminal, cwd, term, terminfo, size)| Request {
                    version: REQUEST_VERSION,
                    switch: None,
                    switch_from: None,
                    switch_registration: None,
                    command,
                    terminal,
                    cwd: cwd.into(),
                    term,
                    terminfo,
                    size: size.map(|(rows, cols)| TerminalSize { rows, cols }),
                })
        }
    }
}
