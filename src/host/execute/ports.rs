//! The CLI's end of the virtio-serial ports (`schema::ports`), served.
//!
//! Which ports a run needs, on which sockets, and QEMU's device for them
//! are composed in `compose::ports`. [`listen`] binds the sockets before
//! QEMU starts; [`Listening::serve`] then runs one thread per port while
//! the VM runs:
//!
//! - resize: the terminal's size now, each time the guest asks for it (its
//!   follower does whenever it opens the port), and, once asked, after
//!   every SIGWINCH;
//! - attach: the relay of `nixos-shell --attach` sessions (`attach::relay`);
//! - host-nix: a `nix-daemon --stdio` per connection of the guest's nix
//!   (`execute::host_nix`);
//! - stdin: nixos-shell's standard input, then a half-close (end of file in
//!   the guest); the socket stays open until QEMU closes it, since a full
//!   close would be a hang-up that drops what QEMU has not read yet;
//! - stdout, stderr: to nixos-shell's own, until QEMU closes the socket. When
//!   writing fails (a reader that went away, as `head` does), the socket is
//!   closed: the guest sees the hang-up and the command's next write fails,
//!   as it would in a pipeline on the host.
//!
//! [`Serving::finish`] waits, once the VM has ended, until the output
//! threads have written everything QEMU passed on.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use camino::Utf8PathBuf;
use rustix::event::{poll, PollFd, PollFlags};
use rustix::io::Errno;
use rustix::pipe::PipeFlags;
use signal_hook::iterator::backend::SignalDelivery;
use signal_hook::iterator::exfiltrator::SignalOnly;

use crate::host::attach::relay;
use crate::host::compose::ports::PortSocket;
use crate::host::execute::host_nix;
use crate::host::signals;
use crate::host::terminal;
use crate::schema::ports::{Port, SizeRequests, TerminalSize, UNKNOWN_SIZE_LINE};

/// How long [`Serving::finish`] waits for output once the VM has ended: QEMU
/// is gone by then, so its sockets read as closed at once; a process that
/// kept one open must not keep nixos-shell waiting.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The bound sockets, waiting for QEMU.
pub struct Listening {
    listeners: Vec<(Port, UnixListener)>,
}

/// Binds a socket per port. Before QEMU starts: QEMU fails on a socket that
/// is not there.
pub fn listen(ports: &[PortSocket]) -> Result<Listening> {
    let mut listeners = Vec::new();
    for PortSocket { port, socket } in ports {
        let listener = UnixListener::bind(socket)
            .with_context(|| format!("could not create the socket {socket}"))?;
        // Non-blocking: a thread polls it beside the VM's end, and a
        // connection that went away between the two must not block it.
        listener
            .set_nonblocking(true)
            .with_context(|| format!("could not set up the socket {socket}"))?;
        listeners.push((*port, listener));
    }
    Ok(Listening { listeners })
}

/// The ports being served while the VM runs.
pub struct Serving {
    /// The write end of a pipe whose read end each port thread polls
    /// beside its listener: closed once the VM has ended, it reads as hung
    /// up, and a thread still waiting for QEMU's connection stops.
    ended: OwnedFd,
    /// One message per output thread when it is done.
    outputs_done: mpsc::Receiver<()>,
    outputs: usize,
}

impl Listening {
    /// Serves each port on a thread of its own; the attach port relays for
    /// `clients`.
    pub fn serve(
        self,
        mut clients: Option<relay::Clients>,
        host_nix: Option<Utf8PathBuf>,
    ) -> Result<Serving> {
        let (vm_ended, ended) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC)
            .context("could not create a pipe for the ports")?;
        let vm_ended = Arc::new(vm_ended);
        let (done, outputs_done) = mpsc::channel();
        let mut outputs = 0;
        for (port, listener) in self.listeners {
            let ended = Arc::clone(&vm_ended);
            match port {
                Port::Resize => {
                    let resizes = signals::resizes()
                        .context("could not listen for the terminal's resizes")?;
                    thread::spawn(move || {
                        if let Some(stream) = accept(&listener, &ended) {
                            answer_sizes(stream, resizes);
                        }
                    });
                }
                Port::Attach => {
                    let Some(clients) = clients.take() else {
                        continue;
                    };
                    thread::spawn(move || {
                        if let Some(stream) = accept(&listener, &ended) {
                            relay::relay(stream, clients, &ended);
                        }
                    });
                }
                Port::HostNix => {
                    let Some(daemon) = host_nix.clone() else {
                        continue;
                    };
                    thread::spawn(move || {
                        if let Some(stream) = accept(&listener, &ended) {
                            host_nix::relay(stream, &daemon);
                        }
                    });
                }
                Port::Stdin => {
                    thread::spawn(move || {
                        if let Some(stream) = accept(&listener, &ended) {
                            send_input(stream);
                        }
                    });
                }
                Port::Stdout | Port::Stderr => {
                    outputs += 1;
                    let done = done.clone();
                    thread::spawn(move || {
                        if let Some(stream) = accept(&listener, &ended) {
                            // Locked per write, not for good: nixos-shell
                            // still says things on stderr after the VM.
                            if port == Port::Stdout {
                                pass_output(stream, std::io::stdout());
                            } else {
                                pass_output(stream, std::io::stderr());
                            }
                        }
                        let _ = done.send(());
                    });
                }
            }
        }
        Ok(Serving {
            ended,
            outputs_done,
            outputs,
        })
    }
}

impl Serving {
    /// Once the VM has ended: waits until the command's output is written.
    pub fn finish(self) {
        drop(self.ended);
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        for _ in 0..self.outputs {
            let left = deadline.saturating_duration_since(Instant::now());
            if self.outputs_done.recv_timeout(left).is_err() {
                break;
            }
        }
    }
}

/// QEMU's connection to `listener`; `None` once `ended` (the read end of
/// [`Serving::ended`]) reads as hung up while none came.
fn accept(listener: &UnixListener, ended: &OwnedFd) -> Option<UnixStream> {
    loop {
        let mut ready = [
            PollFd::new(listener, PollFlags::IN),
            PollFd::new(ended, PollFlags::IN),
        ];
        match poll(&mut ready, None) {
            Ok(_) | Err(Errno::INTR) => {}
            Err(_) => return None,
        }
        // A connection that came before the end is still taken: QEMU may
        // have connected, written and exited in between.
        if ready[0].revents().is_empty() && !ready[1].revents().is_empty() {
            return None;
        }
        match listener.accept() {
            Ok((stream, _)) => return stream.set_nonblocking(false).ok().map(|()| stream),
            Err(err)
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
                ) => {}
            Err(_) => return None,
        }
    }
}

/// The line of the terminal's size now.
fn size_line() -> String {
    terminal::size().map_or_else(|| UNKNOWN_SIZE_LINE.to_owned(), TerminalSize::to_line)
}

/// Answers each request of the guest's with the terminal's size now and,
/// once asked, sends the new size after every resize, until QEMU closes
/// the socket (or the guest's end stops taking them, or sends what is not
/// a request: then with one line). Sleeps in poll(2) on the socket and the
/// resizes' self-pipe.
fn answer_sizes(mut stream: UnixStream, mut resizes: SignalDelivery<UnixStream, SignalOnly>) {
    let mut asked = false;
    let mut requests = SizeRequests::default();
    let mut request = [0u8; 64];
    loop {
        let mut ready = [
            PollFd::new(&stream, PollFlags::IN),
            PollFd::new(resizes.get_read(), PollFlags::IN),
        ];
        match poll(&mut ready, None) {
            Ok(_) | Err(Errno::INTR) => {}
            Err(_) => return,
        }
        let (requested, resized) = (
            !ready[0].revents().is_empty(),
            !ready[1].revents().is_empty(),
        );
        let mut send = false;
        if requested {
            match stream.read(&mut request) {
                Ok(0) | Err(_) => return,
                Ok(n) => match requests.read(&request[..n]) {
                    Ok(count) => send = count > 0,
                    Err(err) => {
                        eprintln!("nixos-shell: the guest sent {err} on the resize port; the console no longer follows this terminal's size");
                        return;
                    }
                },
            }
            asked |= send;
        }
        if resized {
            send |= resizes.pending().count() > 0 && asked;
        }
        if send && stream.write_all(size_line().as_bytes()).is_err() {
            return;
        }
    }
}

/// nixos-shell's standard input, then end of file; then holds the socket
/// until QEMU closes it.
fn send_input(mut stream: UnixStream) {
    let copied = std::io::copy(&mut std::io::stdin().lock(), &mut stream);
    let _ = stream.shutdown(std::net::Shutdown::Write);
    if copied.is_ok() {
        let mut rest = [0u8; 64];
        while matches!(stream.read(&mut rest), Ok(n) if n > 0) {}
    }
}

/// What QEMU passes on, to `out`, until QEMU closes the socket; closes it
/// when `out` refuses more.
fn pass_output(mut stream: UnixStream, mut out: impl Write) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if out.write_all(&buf[..n]).and_then(|()| out.flush()).is_err() {
            let _ = stream.shutdown(std::net::Shutdown::Both);
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use camino::Utf8Path;

    #[test]
    fn a_guest_that_asked_gets_the_size_now_and_after_each_resize() {
        use crate::schema::ports::SIZE_REQUEST;
        use std::io::{BufRead, BufReader};
        let (mut guest, host) = UnixStream::pair().unwrap();
        let resizes = signals::resizes().unwrap();
        let server = thread::spawn(move || answer_sizes(host, resizes));
        // Unasked, a resize sends nothing.
        signal_hook::low_level::raise(signal_hook::consts::SIGWINCH).unwrap();
        guest
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut nothing = [0u8; 1];
        assert!(guest.read(&mut nothing).is_err(), "a size came unasked");
        guest.set_read_timeout(None).unwrap();
        guest.write_all(SIZE_REQUEST).unwrap();
        let mut lines = BufReader::new(guest.try_clone().unwrap());
        let mut line = String::new();
        lines.read_line(&mut line).unwrap();
        assert_eq!(line, size_line());
        signal_hook::low_level::raise(signal_hook::consts::SIGWINCH).unwrap();
        line.clear();
        lines.read_line(&mut line).unwrap();
        assert_eq!(line, size_line());
        // The guest's end gone, the thread ends.
        drop((guest, lines));
        server.join().unwrap();
    }

    #[test]
    fn output_is_passed_byte_for_byte_and_a_closed_reader_closes_the_socket() {
        let (mut qemu, ours) = UnixStream::pair().unwrap();
        let writer = thread::spawn(move || {
            qemu.write_all(b"a\nb\r\n\0").unwrap();
            qemu.shutdown(std::net::Shutdown::Write).unwrap();
        });
        let mut out = Vec::new();
        pass_output(ours, &mut out);
        writer.join().unwrap();
        assert_eq!(out, b"a\nb\r\n\0");

        struct Closed;
        impl Write for Closed {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let (mut qemu, ours) = UnixStream::pair().unwrap();
        qemu.write_all(b"x").unwrap();
        pass_output(ours, Closed);
        let mut rest = Vec::new();
        assert_eq!(
            qemu.read_to_end(&mut rest).unwrap(),
            0,
            "the socket is closed"
        );
    }

    #[test]
    fn a_vm_that_never_connects_ends_the_wait() {
        let dir = tempfile::tempdir().unwrap();
        let socket = Utf8Path::from_path(dir.path()).unwrap().join("x.port");
        let listening = listen(&[PortSocket {
            port: Port::Stdout,
            socket,
        }])
        .unwrap();
        let serving = listening.serve(None, None).unwrap();
        let start = Instant::now();
        serving.finish();
        assert!(
            start.elapsed() < DRAIN_TIMEOUT,
            "finish waited for a VM that never connected"
        );
    }
}
