//! The running VM's side of `nixos-shell --attach`: a socket in the private
//! session directory that its clients connect to (this user's only: the
//! directory is theirs alone, and a peer of another uid is refused), and a
//! relay between them and the guest's attach server on
//! [`Port::Attach`](crate::schema::ports::Port::Attach) (`schema::attach`).
//!
//! One poll(2) loop on its own thread, every stream non-blocking with an
//! [`Outbox`]: a client that stops reading, or a session whose program
//! stops reading, never holds up the others. The relay numbers the
//! sessions and stamps every frame a client sends with its own number.

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::Duration;

use anyhow::{Context, Result};
use camino::Utf8Path;
use rustix::event::{poll, PollFd, PollFlags};
use rustix::io::Errno;

use crate::schema::attach::{Decoder, Frame, Kind, Outbox, ACK_EVERY, WINDOW};

/// How long the relay tries to tell its clients that the VM ended.
const FAREWELL_TIMEOUT: Duration = Duration::from_millis(200);

/// The clients' socket, bound before QEMU starts.
pub struct Clients {
    listener: UnixListener,
}

/// Binds the clients' socket at `socket`.
pub fn listen(socket: &Utf8Path) -> Result<Clients> {
    let listener = UnixListener::bind(socket)
        .with_context(|| format!("could not create the socket {socket}"))?;
    listener
        .set_nonblocking(true)
        .with_context(|| format!("could not set up the socket {socket}"))?;
    Ok(Clients { listener })
}

/// One client's connection and session.
struct Client {
    stream: UnixStream,
    decoder: Decoder,
    outbox: Outbox,
    /// Input sent to the guest that it has not acknowledged yet.
    input_unacked: usize,
    /// Output written to the client that the guest has not been told of.
    output_delivered: usize,
    /// The session ended: the client is dropped once its outbox is out.
    ending: bool,
}

/// Relays between the clients of `clients` and the guest on `port` (QEMU's
/// connection to the attach port) until the VM ends: QEMU closes `port`,
/// or `ended` (the read end of a pipe the VM's run holds) reads as closed.
pub fn relay(port: UnixStream, clients: Clients, ended: &OwnedFd) {
    if port.set_nonblocking(true).is_err() {
        return;
    }
    let mut relay = Relay {
        port,
        port_decoder: Decoder::default(),
        port_outbox: Outbox::default(),
        clients: BTreeMap::new(),
        next: 1,
        served: false,
    };
    while relay.turn(&clients.listener, ended) {}
    relay.farewell();
}

struct Relay {
    port: UnixStream,
    port_decoder: Decoder,
    port_outbox: Outbox,
    clients: BTreeMap<u32, Client>,
    next: u32,
    /// The guest's attach server has said hello.
    served: bool,
}

impl Relay {
    /// One wait and what it found; `false` once the VM has ended.
    fn turn(&mut self, listener: &UnixListener, ended: &OwnedFd) -> bool {
        let port_events = if self.port_outbox.is_empty() {
            PollFlags::IN
        } else {
            PollFlags::IN | PollFlags::OUT
        };
        let ids: Vec<u32> = self.clients.keys().copied().collect();
        let mut fds = vec![
            PollFd::new(listener, PollFlags::IN),
            PollFd::new(ended, PollFlags::IN),
            PollFd::new(&self.port, port_events),
        ];
        for id in &ids {
            let client = &self.clients[id];
            let mut events = PollFlags::empty();
            if client.input_unacked < WINDOW && !client.ending {
                events |= PollFlags::IN;
            }
            if !client.outbox.is_empty() {
                events |= PollFlags::OUT;
            }
            fds.push(PollFd::new(&client.stream, events));
        }
        match poll(&mut fds, None) {
            Ok(_) | Err(Errno::INTR) => {}
            Err(_) => return false,
        }
        let revents: Vec<PollFlags> = fds.iter().map(PollFd::revents).collect();
        drop(fds);
        if !revents[1].is_empty() {
            return false;
        }
        if !revents[0].is_empty() {
            self.accept(listener);
        }
        if revents[2].intersects(PollFlags::IN | PollFlags::HUP | PollFlags::ERR)
            && !self.read_port()
        {
            return false;
        }
        for (id, events) in ids.iter().zip(&revents[3..]) {
            if events.intersects(PollFlags::IN | PollFlags::HUP | PollFlags::ERR) {
                self.read_client(*id);
            }
        }
        self.flush_clients();
        self.flush_port()
    }

    /// Takes the connections that wait; a peer of another user is refused.
    fn accept(&mut self, listener: &UnixListener) {
        while let Ok((stream, _)) = listener.accept() {
            let ours = rustix::net::sockopt::socket_peercred(&stream)
                .is_ok_and(|peer| peer.uid == rustix::process::geteuid());
            if !ours || stream.set_nonblocking(true).is_err() {
                continue;
            }
            let id = self.next;
            self.next = self.next.wrapping_add(1).max(1);
            self.clients.insert(
                id,
                Client {
                    stream,
                    decoder: Decoder::default(),
                    outbox: Outbox::default(),
                    input_unacked: 0,
                    output_delivered: 0,
                    ending: false,
                },
            );
        }
    }

    /// Reads what the guest sent and routes it; `false` once QEMU is gone.
    fn read_port(&mut self) -> bool {
        match self.port_decoder.read_from(&self.port) {
            Ok(0) => return false,
            Ok(_) => {}
            Err(Errno::INTR | Errno::AGAIN) => return true,
            Err(_) => return false,
        }
        loop {
            match self.port_decoder.next_frame() {
                Ok(Some(frame)) => self.route(frame),
                Ok(None) => return true,
                // Not the guest role's protocol: nothing more can be read.
                Err(err) => {
                    self.end_all(&format!(
                        "the VM's attach server sent {err}; attach no longer works in this VM"
                    ));
                    return false;
                }
            }
        }
    }

    /// A frame of the guest's, to its session's client.
    fn route(&mut self, frame: Frame) {
        if frame.kind == Kind::Hello {
            self.on_hello();
            return;
        }
        let id = frame.session;
        let Some(client) = self.clients.get_mut(&id) else {
            // The client is gone: the output counts as delivered, so the
            // guest's window never stays full, and the session is closed
            // (again: a guest ignores the Close of a session it has not,
            // and one a restarted server opened for an ended client ends).
            if matches!(frame.kind, Kind::Output | Kind::Error) {
                let ack = Frame::count(Kind::OutputAck, id, frame.payload.len());
                self.port_outbox.push(&ack);
                self.port_outbox
                    .push(&Frame::new(Kind::Close, id, Vec::new()));
            }
            return;
        };
        match frame.kind {
            Kind::Output | Kind::Error => {
                let counted = frame.payload.len();
                client.outbox.push_counted(&frame, id, counted);
            }
            Kind::Exit | Kind::Refused => {
                client.outbox.push(&frame);
                client.ending = true;
            }
            Kind::InputAck => match frame.read_count() {
                Ok(n) => client.input_unacked = client.input_unacked.saturating_sub(n),
                Err(err) => {
                    let message = format!("the VM's attach server sent {err}; ending this session");
                    client
                        .outbox
                        .push(&Frame::new(Kind::Refused, id, message.into_bytes()));
                    client.ending = true;
                    self.port_outbox
                        .push(&Frame::new(Kind::Close, id, Vec::new()));
                }
            },
            _ => {}
        }
    }

    /// The guest's attach server is up. Its first hello finds the sessions
    /// opened while the VM booted (their requests wait in the port for it);
    /// a later one is a server that restarted (the module's unit restarts
    /// it on failure) and knows none of the sessions it had: they end, each
    /// with one line, rather than wait for a server that forgot them.
    fn on_hello(&mut self) {
        if !std::mem::replace(&mut self.served, true) {
            return;
        }
        self.end_all("the VM's attach server restarted, ending this session; attach again");
    }

    /// Ends every session with `message`, its one line.
    fn end_all(&mut self, message: &str) {
        for client in self.clients.values_mut() {
            client
                .outbox
                .push(&Frame::new(Kind::Refused, 0, message.as_bytes().to_vec()));
            client.ending = true;
        }
    }

    /// Reads what a client sent and passes it on, stamped with its
    /// session; a client that went away closes its session.
    fn read_client(&mut self, id: u32) {
        let Some(client) = self.clients.get_mut(&id) else {
            return;
        };
        let gone = match client.decoder.read_from(&client.stream) {
            Ok(0) => true,
            Ok(_) | Err(Errno::INTR | Errno::AGAIN) => false,
            Err(_) => true,
        };
        let mut malformed = false;
        loop {
            match client.decoder.next_frame() {
                Ok(Some(frame)) => {
                    let allowed = matches!(
                        frame.kind,
                        Kind::Open
                            | Kind::Input
                            | Kind::InputEnd
                            | Kind::Resize
                            | Kind::Signal
                            | Kind::OutputClosed
                    );
                    if !allowed {
                        malformed = true;
                        break;
                    }
                    if frame.kind == Kind::Input {
                        client.input_unacked += frame.payload.len();
                    }
                    self.port_outbox
                        .push(&Frame::new(frame.kind, id, frame.payload));
                }
                Ok(None) => break,
                Err(_) => {
                    malformed = true;
                    break;
                }
            }
        }
        if gone || malformed {
            self.clients.remove(&id);
            self.port_outbox
                .push(&Frame::new(Kind::Close, id, Vec::new()));
        }
    }

    /// Writes what each client takes now, acknowledging the output it got;
    /// drops the clients whose session ended and whose outbox is out.
    fn flush_clients(&mut self) {
        let mut done = Vec::new();
        for (&id, client) in &mut self.clients {
            match client.outbox.write_to(&client.stream) {
                Ok(acked) => {
                    client.output_delivered += acked.iter().map(|(_, n)| n).sum::<usize>();
                    if client.output_delivered >= ACK_EVERY {
                        let delivered = std::mem::take(&mut client.output_delivered);
                        self.port_outbox
                            .push(&Frame::count(Kind::OutputAck, id, delivered));
                    }
                }
                Err(_) => {
                    client.ending = true;
                    client.outbox = Outbox::default();
                    self.port_outbox
                        .push(&Frame::new(Kind::Close, id, Vec::new()));
                }
            }
            if client.ending && client.outbox.is_empty() {
                done.push(id);
            }
        }
        for id in done {
            self.clients.remove(&id);
        }
    }

    /// Writes what the port takes now; `false` once QEMU is gone.
    fn flush_port(&mut self) -> bool {
        self.port_outbox.write_to(&self.port).is_ok()
    }

    /// Tells every client that the VM ended, as far as each takes it at
    /// once; dropping them closes their sockets.
    fn farewell(&mut self) {
        for client in self.clients.values_mut() {
            client
                .outbox
                .push(&Frame::new(Kind::VmEnded, 0, Vec::new()));
            let _ = client.stream.set_nonblocking(false);
            let _ = client.stream.set_write_timeout(Some(FAREWELL_TIMEOUT));
            let _ = std::io::Write::write_all(&mut client.stream, client.outbox.pending());
        }
        self.clients.clear();
    }
}
