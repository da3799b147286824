//! One attached session, from the client's side: this terminal (raw, as
//! QEMU's console is) or this process' standard streams, byte for byte, on
//! one side; the socket of the nixos-shell that runs the VM on the other.
//! One poll(2) loop: the socket is non-blocking with an [`Outbox`], so the
//! loop always reads what the session sends while it waits to send input;
//! standard input is read only while less than a window of it waits to go.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;

use anyhow::{bail, Context, Result};
use rustix::event::{poll, PollFd, PollFlags};
use rustix::io::Errno;
use signal_hook::consts::SIGWINCH;
use signal_hook::iterator::backend::SignalDelivery;
use signal_hook::iterator::exfiltrator::SignalOnly;

use crate::host::signals;
use crate::host::terminal::{self, SavedTerminal};
use crate::schema::attach::{Decoder, Frame, Kind, Outbox, Request, MAX_PAYLOAD, WINDOW};

/// Runs the session of `request` on `stream`: its exit status.
pub fn run(stream: UnixStream, request: &Request) -> Result<u8> {
    run_with(stream, request, true)
}

/// What a session's output delivered: the bytes of each stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delivered {
    pub stdout: u64,
    pub stderr: u64,
}

/// The session was lost before it ended: the guest's attach server (or
/// the channel to it) went away, with the line that says so. A `--switch`
/// follows its activation again; every other session ends with the line.
#[derive(Debug)]
pub struct Lost(pub String);

impl std::fmt::Display for Lost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Lost {}

/// [`run`] with standard input left alone when `input` is false: the
/// session's input ends at once (a `--switch`, which reads none, while
/// the terminal stays the user's, e.g. for `--watch`'s Ctrl-C).
pub fn run_with(stream: UnixStream, request: &Request, input: bool) -> Result<u8> {
    run_counting(stream, request, input, &mut Delivered::default())
}

/// [`run_with`], adding what the session's output delivered to
/// `delivered` as it goes, also when the session is lost ([`Lost`]).
pub fn run_counting(
    stream: UnixStream,
    request: &Request,
    input: bool,
    delivered: &mut Delivered,
) -> Result<u8> {
    let open = Frame::open(request).map_err(|err| {
        anyhow::anyhow!(
            "the session's request is {err}; give a shorter command (or a script in the VM)"
        )
    })?;
    // Restored when this returns, before any error is printed.
    let _saved = if request.terminal {
        SavedTerminal::raw()
    } else {
        None
    };
    let mut resizes = signals::resizes().context("could not listen for the terminal's resizes")?;
    let wake = signals::wake_fd();
    let mut client = Client::open(stream, request.terminal, &open, *delivered)?;
    if !input {
        client.stdin_open = false;
        client
            .outbox
            .push(&Frame::new(Kind::InputEnd, 0, Vec::new()));
    }
    let stdin = std::io::stdin();
    loop {
        let ready = client.wait(&mut resizes, wake.as_ref(), stdin.as_fd())?;
        let ended = client.on_ready(ready, stdin.as_fd());
        *delivered = client.delivered;
        if let Some(code) = ended? {
            return Ok(code);
        }
    }
}

/// What one poll found ready.
struct Ready {
    socket: bool,
    /// The terminal was resized.
    resized: bool,
    /// Signals to pass on were caught.
    woke: bool,
    /// Standard input has something.
    typed: bool,
}

struct Client {
    stream: UnixStream,
    outbox: Outbox,
    decoder: Decoder,
    /// Where standard input is read, [`MAX_PAYLOAD`] bytes, allocated once.
    chunk: Vec<u8>,
    stdin_open: bool,
    stdout_open: bool,
    terminal: bool,
    delivered: Delivered,
}

impl Client {
    /// The client of `stream`, its first frame `open` (the request).
    fn open(
        stream: UnixStream,
        terminal: bool,
        open: &Frame,
        delivered: Delivered,
    ) -> Result<Client> {
        stream
            .set_nonblocking(true)
            .context("could not set up the attach socket")?;
        let mut client = Client {
            stream,
            outbox: Outbox::default(),
            decoder: Decoder::default(),
            chunk: vec![0; MAX_PAYLOAD],
            stdin_open: true,
            stdout_open: true,
            terminal,
            delivered,
        };
        client.outbox.push(open);
        Ok(client)
    }

    /// Waits until the socket, a resize, a caught signal (`wake`) or, while
    /// less than a window of input waits to go, standard input has
    /// something.
    fn wait(
        &self,
        resizes: &mut SignalDelivery<UnixStream, SignalOnly>,
        wake: Option<&OwnedFd>,
        stdin: BorrowedFd,
    ) -> Result<Ready> {
        let reading_stdin = self.stdin_open && self.outbox.len() < WINDOW;
        let socket_events = if self.outbox.is_empty() {
            PollFlags::IN
        } else {
            PollFlags::IN | PollFlags::OUT
        };
        let mut fds = vec![
            PollFd::new(&self.stream, socket_events),
            PollFd::new(resizes.get_read(), PollFlags::IN),
        ];
        if let Some(wake) = wake {
            fds.push(PollFd::new(wake, PollFlags::IN));
        }
        if reading_stdin {
            fds.push(PollFd::new(&stdin, PollFlags::IN));
        }
        match poll(&mut fds, None) {
            Ok(_) | Err(Errno::INTR) => {}
            Err(err) => return Err(err).context("could not wait for the session"),
        }
        let ready = |i: usize| fds.get(i).is_some_and(|fd| !fd.revents().is_empty());
        let (socket, resized, woke, typed) = (
            ready(0),
            ready(1),
            wake.is_some() && ready(2),
            reading_stdin && ready(fds.len() - 1),
        );
        drop(fds);
        let resized = resized && resizes.pending().any(|signal| signal == SIGWINCH);
        Ok(Ready {
            socket,
            resized,
            woke,
            typed,
        })
    }

    /// Acts on what is `ready`, then sends what the socket takes: the
    /// session's exit status once it ended.
    fn on_ready(&mut self, ready: Ready, stdin: BorrowedFd) -> Result<Option<u8>> {
        if ready.resized && self.terminal {
            if let Some(size) = terminal::size() {
                self.outbox.push(&Frame::json(Kind::Resize, 0, &size));
            }
        }
        if ready.woke {
            for signal in signals::take() {
                self.outbox.push(&Frame::json(Kind::Signal, 0, &signal));
            }
        }
        if ready.typed {
            self.read_input(stdin)?;
        }
        if ready.socket {
            if let Some(code) = self.read_socket()? {
                return Ok(Some(code));
            }
        }
        self.flush()?;
        Ok(None)
    }

    /// Reads what standard input has; its end ends the session's input.
    fn read_input(&mut self, stdin: BorrowedFd) -> Result<()> {
        match rustix::io::read(stdin, &mut self.chunk) {
            Ok(0) | Err(Errno::IO) => {
                self.stdin_open = false;
                // A terminal that ends (hung up) ends nothing in a
                // terminal's session: the session ends when its shell does.
                if !self.terminal {
                    self.outbox.push(&Frame::new(Kind::InputEnd, 0, Vec::new()));
                }
            }
            Ok(n) => self.outbox.push_data(Kind::Input, 0, &self.chunk[..n]),
            Err(Errno::INTR | Errno::AGAIN) => {}
            Err(err) => return Err(err).context("could not read standard input"),
        }
        Ok(())
    }

    /// Reads what the socket has; the session's exit status once it ended.
    fn read_socket(&mut self) -> Result<Option<u8>> {
        match self.decoder.read_from(&self.stream) {
            Ok(0) => return Err(Lost(WENT_AWAY.to_owned()).into()),
            Ok(_) => {}
            Err(Errno::INTR | Errno::AGAIN) => return Ok(None),
            Err(err) => return Err(err).context("could not read from the VM's nixos-shell"),
        }
        // Each frame is taken where it lies in the decoder: output goes to
        // standard output from there, without a copy of its own.
        while let Some(frame) = self
            .decoder
            .next_frame_ref()
            .map_err(|_| anyhow::anyhow!("the VM's nixos-shell sent what this one cannot read; use the same nixos-shell for both"))?
        {
            match frame.kind {
                Kind::Output => {
                    // Counted when dropped too: a session followed again
                    // would only drop them again.
                    self.delivered.stdout += frame.payload.len() as u64;
                    write_output(&mut self.stdout_open, &mut self.outbox, frame.payload);
                }
                Kind::Error => {
                    self.delivered.stderr += frame.payload.len() as u64;
                    let _ = write_all(std::io::stderr().as_fd(), frame.payload);
                }
                Kind::Exit => {
                    let status = frame.exit_status().map_err(|err| {
                        anyhow::anyhow!("the VM's attach server ended the session with {err}")
                    })?;
                    return Ok(Some(status));
                }
                Kind::Refused => return Err(Lost(frame.message()).into()),
                Kind::VmEnded => bail!("the VM ended; the session with it"),
                _ => {}
            }
        }
        Ok(None)
    }

    /// Writes what the socket takes now.
    fn flush(&mut self) -> Result<()> {
        match self.outbox.write_to(&self.stream) {
            Ok(_) => Ok(()),
            Err(Errno::PIPE | Errno::CONNRESET) => Err(Lost(WENT_AWAY.to_owned()).into()),
            Err(err) => Err(err).context("could not write to the VM's nixos-shell"),
        }
    }
}

/// What a session lost with the VM's nixos-shell says.
const WENT_AWAY: &str = "the nixos-shell that runs the VM went away; the session ended";

/// Writes the session's output to standard output while it is open
/// (`stdout_open`); once that takes no more (its reader went away), says
/// so in `outbox`, once, and drops the rest.
fn write_output(stdout_open: &mut bool, outbox: &mut Outbox, bytes: &[u8]) {
    if !*stdout_open {
        return;
    }
    if write_all(std::io::stdout().as_fd(), bytes).is_err() {
        *stdout_open = false;
        outbox.push(&Frame::new(Kind::OutputClosed, 0, Vec::new()));
    }
}

/// Writes all of `bytes` to `fd`, waiting while it is full.
fn write_all(fd: BorrowedFd, mut bytes: &[u8]) -> std::io::Result<()> {
    while !bytes.is_empty() {
        match rustix::io::write(fd, bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(Errno::INTR) => {}
            Err(Errno::AGAIN) => {
                let mut ready = [PollFd::new(&fd, PollFlags::OUT)];
                let _ = poll(&mut ready, None);
            }
            Err(err) => return Err(err.into()),
        }
    }
    Ok(())
}
