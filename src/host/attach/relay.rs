//! The running VM's side of `nixos-shell --attach`: a socket in the private
//! session directory that its clients connect to (this user's only: the
//! directory is theirs alone, and a peer of another uid is refused), and a
//! relay between them and the guest's attach server on
//! [`Port::Attach`](crate::schema::ports::Port::Attach) (`schema::attach`).
//!
//! One poll(2) loop on its own thread, every stream non-blocking with an
//! [`Outbox`]: a client that stops reading, or a session whose program
//! stops reading, never holds up the others. The relay numbers the
//! sessions and stamps every frame a client sends with its own number, and
//! keeps the number of open sessions in the VM's registry entry for
//! `--list` (a client that only asks the holder, as `--stop` does, opens
//! none).
//!
//! The clients' socket outlives one boot of the VM ([`Listener`]): a VM
//! restarted by `--switch --restart` is relayed again on the same socket,
//! by a relay of its own, and the client that asked for the restart is
//! answered by the new relay once the new guest says hello ([`Waiter`]).

use std::collections::BTreeMap;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::io::Errno;

use super::registry::SessionCount;
use crate::host::signals;
use crate::schema::attach::{
    Decoder, Frame, FrameRef, HolderRequest, Kind, Malformed, Outbox, Request, Unacked, ACK_EVERY,
    HELLO, REQUEST_VERSION, WINDOW,
};

/// How long the relay tries to tell its clients that the VM ended.
const FAREWELL_TIMEOUT: Duration = Duration::from_millis(200);

/// How long a guest asked to power off by `--stop` has before QEMU is
/// ended: a NixOS shutdown stops every unit, under TCG too, well within it.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(90);

/// What may wait for the guest before the relay stops reading (its
/// clients and the port) until the guest has taken some: a guest that
/// stops reading must not make the relay buffer without end, for clients
/// that go on typing or for the guest's own frames it answers.
const PORT_BACKLOG: usize = WINDOW;

/// The clients' socket, bound before QEMU first starts, for as long as
/// the VM runs, restarts included.
pub struct Listener(Arc<UnixListener>);

/// The clients' socket as one boot's relay serves it.
pub struct Clients {
    listener: Arc<UnixListener>,
    /// Told once the guest's attach server says hello.
    ready: Option<Waiter>,
    /// Where the number of open sessions is kept ([`Clients::count_in`]).
    count: Option<SessionCount>,
    /// Set once a `--stop` is taken ([`Clients::stopped`]).
    stopped: Arc<AtomicBool>,
    /// Where a `--restart` request is put for the VM's run, which starts
    /// the VM again once this one has ended; `None` when it cannot (the VM
    /// runs a `--command`).
    restarts: Option<RestartSlot>,
}

/// Who waits for the guest's first hello.
pub enum Waiter {
    /// A detaching nixos-shell, on the write end of a pipe: one byte.
    Pipe(OwnedFd),
    /// The `--switch --restart` client that asked for this boot: the
    /// hello frame.
    Client(UnixStream),
}

impl Waiter {
    /// Tells the waiter that the guest answers.
    fn answer(self) {
        match self {
            Waiter::Pipe(ready) => {
                let _ = rustix::io::write(&ready, b"r");
            }
            Waiter::Client(stream) => tell(stream, &HELLO),
        }
    }
}

/// A `--switch --restart` request: the build to start the VM from again,
/// and the client that waits for it to answer.
pub struct Restart {
    pub build: Utf8PathBuf,
    pub client: UnixStream,
}

/// Where a boot's relay leaves a restart request for the VM's run.
pub type RestartSlot = Arc<Mutex<Option<Restart>>>;

/// Writes `bytes` to the client `stream` (one line or a frame), as far as
/// it takes them within [`FAREWELL_TIMEOUT`], and closes it.
fn tell(mut stream: UnixStream, bytes: &[u8]) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_write_timeout(Some(FAREWELL_TIMEOUT));
    let _ = stream.write_all(bytes);
}

/// Refuses what the client on `stream` asked, with `message`, its one
/// line.
pub fn refuse(stream: UnixStream, message: &str) {
    tell(
        stream,
        &Frame::new(Kind::Refused, 0, message.as_bytes().to_vec()).encode(),
    );
}

impl Clients {
    /// Whether a `--stop` asked for the VM's end: the run reads it once
    /// the VM has ended, to end as after a `poweroff` (`execute`).
    pub fn stopped(&self) -> Stopped {
        Stopped(Arc::clone(&self.stopped))
    }

    /// Keeps the number of open attach sessions in `count` (the VM's
    /// registry entry) while the relay runs.
    pub fn count_in(&mut self, count: SessionCount) {
        self.count = Some(count);
    }
}

impl Listener {
    /// The clients as one boot's relay serves them: `ready` is told when
    /// its guest answers; a restart is left in `restarts`, if it may.
    pub fn clients(&self, ready: Option<Waiter>, restarts: Option<RestartSlot>) -> Clients {
        Clients {
            listener: Arc::clone(&self.0),
            ready,
            count: None,
            stopped: Arc::default(),
            restarts,
        }
    }
}

/// Binds the clients' socket at `socket`.
pub fn listen(socket: &Utf8Path) -> Result<Listener> {
    let listener = UnixListener::bind(socket)
        .with_context(|| format!("could not create the socket {socket}"))?;
    listener
        .set_nonblocking(true)
        .with_context(|| format!("could not set up the socket {socket}"))?;
    Ok(Listener(Arc::new(listener)))
}

/// Whether a `--stop` asked the relay of [`Clients::stopped`] for the
/// VM's end.
pub struct Stopped(Arc<AtomicBool>);

impl Stopped {
    /// `true` once a `--stop` was taken.
    pub fn get(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// One client's connection and session.
struct Client {
    stream: UnixStream,
    decoder: Decoder,
    outbox: Outbox,
    /// Input sent to the guest that it has not acknowledged yet.
    input_unacked: Unacked,
    /// Output of the guest's not acknowledged yet (in the outbox, or
    /// written but not yet acknowledged): at most `MAX_UNACKED`.
    output_held: Unacked,
    /// Output written to the client that the guest has not been told of.
    output_delivered: usize,
    /// The session ended: the client is dropped once its outbox is out.
    ending: bool,
    /// The client opened a session in the guest (an attach), rather than
    /// asking the holder alone.
    opened: bool,
    /// The client waits for the guest's attach server to be up
    /// ([`HolderRequest::AwaitServer`]).
    awaits_server: bool,
    /// The client came while the guest's server was lost and was told so
    /// at once: it may still wait for the server; nothing else it sends
    /// is passed on.
    refused: bool,
}

impl Client {
    /// A client on `stream` (non-blocking), with nothing sent or held yet.
    fn new(stream: UnixStream) -> Client {
        Client {
            stream,
            decoder: Decoder::default(),
            outbox: Outbox::default(),
            input_unacked: Unacked::default(),
            output_held: Unacked::default(),
            output_delivered: 0,
            ending: false,
            opened: false,
            awaits_server: false,
            refused: false,
        }
    }

    /// Reads what the client sent into its decoder: whether it went away.
    fn read_more(&mut self) -> bool {
        match self.decoder.read_from(&self.stream) {
            Ok(0) => true,
            Ok(_) | Err(Errno::INTR | Errno::AGAIN) => false,
            Err(_) => true,
        }
    }

    /// Passes the frames read to `port_outbox`, stamped with the session
    /// `id`, up to one for the holder or one the guest may not be sent:
    /// whether one was malformed, and what the holder was asked.
    fn pass_on(
        &mut self,
        id: u32,
        port_outbox: &mut Outbox,
    ) -> (bool, Option<Result<HolderRequest, Malformed>>) {
        let mut malformed = false;
        let mut asked = None;
        loop {
            match self.decoder.next_frame_ref() {
                // For the holder, not the guest: the client's connection
                // ends with it and opened no session.
                Ok(Some(frame)) if frame.kind == Kind::Holder => {
                    asked = Some(frame.parse::<HolderRequest>());
                    break;
                }
                // Told that the server is lost: a session's frames go
                // nowhere, and the connection ends.
                Ok(Some(_)) if self.refused => {
                    self.ending = true;
                    break;
                }
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
                        self.input_unacked.sent(frame.payload.len());
                    }
                    self.opened |= frame.kind == Kind::Open;
                    port_outbox.push_data(frame.kind, id, frame.payload);
                }
                Ok(None) => break,
                Err(_) => {
                    malformed = true;
                    break;
                }
            }
        }
        (malformed, asked)
    }
}

/// Relays between the clients of `clients` and the guest on `port` (QEMU's
/// connection to the attach port) until the VM ends: QEMU closes `port`,
/// or `ended` (the read end of a pipe the VM's run holds) reads as closed.
pub fn relay(port: UnixStream, clients: Clients, ended: &OwnedFd) {
    if port.set_nonblocking(true).is_err() {
        return;
    }
    return_large_buffers();
    let mut relay = Relay {
        port,
        port_decoder: Decoder::default(),
        port_outbox: Outbox::default(),
        clients: BTreeMap::new(),
        next: 1,
        served: false,
        lost: None,
        stopping: None,
        stopping_for: String::new(),
        ready: clients.ready,
        count: clients.count,
        stopped: clients.stopped,
        restarts: clients.restarts,
    };
    while relay.turn(&clients.listener, ended, None) {}
    relay.farewell();
}

/// Has this process give back what a session's buffers held once they
/// are freed. Each client's decoder, and an outbox that a window of data
/// fills, is larger than glibc's threshold for an allocation of its own
/// (`mmap`), which glibc raises to the size of each such block freed
/// (up to 32 MiB): after one large transfer, later ones were served from
/// the heap and kept there, and a VM's nixos-shell grew with every few
/// sessions (the long-life test, `vm::long_life`). A fixed threshold turns
/// that off: a block that large is unmapped when freed.
fn return_large_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt(3) only sets a parameter of the allocator; glibc
    // takes its own lock.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, LARGE_BUFFER as libc::c_int);
    }
}

/// The size from which an allocation has pages of its own: glibc's
/// default, 128 KiB.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const LARGE_BUFFER: usize = 128 * 1024;

struct Relay {
    port: UnixStream,
    port_decoder: Decoder,
    port_outbox: Outbox,
    clients: BTreeMap<u32, Client>,
    next: u32,
    /// The guest's attach server has said hello.
    served: bool,
    /// What the guest sent that is not the protocol, while the relay
    /// waits for a server that starts again ([`Relay::lose`]).
    lost: Option<String>,
    /// A `--stop` (or `--restart`) asked the guest to power off; QEMU
    /// ends at this instant if it has not.
    stopping: Option<Instant>,
    /// The flag that asked, for the messages.
    stopping_for: String,
    /// Who waits for the guest's first hello.
    ready: Option<Waiter>,
    /// Where the number of open sessions is kept, if anywhere.
    count: Option<SessionCount>,
    /// Set once a `--stop` is taken.
    stopped: Arc<AtomicBool>,
    /// Where a restart request goes; `None` when the VM cannot restart.
    restarts: Option<RestartSlot>,
}

impl Relay {
    /// One wait (for at most `timeout`: the tests' way to see that
    /// nothing more comes) and what it found; `false` once the VM has
    /// ended.
    fn turn(
        &mut self,
        listener: &UnixListener,
        ended: &OwnedFd,
        timeout: Option<&rustix::event::Timespec>,
    ) -> bool {
        let backlogged = self.port_outbox.len() >= PORT_BACKLOG;
        let mut port_events = PollFlags::empty();
        if !backlogged {
            port_events |= PollFlags::IN;
        }
        if !self.port_outbox.is_empty() {
            port_events |= PollFlags::OUT;
        }
        let ids: Vec<u32> = self.clients.keys().copied().collect();
        let mut fds = vec![
            PollFd::new(listener, PollFlags::IN),
            PollFd::new(ended, PollFlags::IN),
            PollFd::new(&self.port, port_events),
        ];
        for id in &ids {
            let client = &self.clients[id];
            let mut events = PollFlags::empty();
            if client.input_unacked.get() < WINDOW && !client.ending && !backlogged {
                events |= PollFlags::IN;
            }
            if !client.outbox.is_empty() {
                events |= PollFlags::OUT;
            }
            fds.push(PollFd::new(&client.stream, events));
        }
        // The one deadline: a `--stop` the guest has not obeyed yet (a
        // test's turn may give its own).
        let deadline = self.stopping.map(|deadline| {
            let left = deadline.saturating_duration_since(Instant::now());
            Timespec {
                tv_sec: left.as_secs().try_into().unwrap_or(i64::MAX),
                tv_nsec: left.subsec_nanos().into(),
            }
        });
        match poll(&mut fds, timeout.or(deadline.as_ref())) {
            Ok(_) | Err(Errno::INTR) => {}
            Err(_) => return false,
        }
        let revents: Vec<PollFlags> = fds.iter().map(PollFd::revents).collect();
        drop(fds);
        if self
            .stopping
            .is_some_and(|deadline| Instant::now() >= deadline)
        {
            self.stop_overdue();
        }
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
        // Counted before the clients are written to: a session's end is
        // in the entry before its client hears of it and exits.
        self.count_sessions();
        self.flush_clients();
        self.count_sessions();
        self.flush_port()
    }

    /// The attach sessions open now: clients that opened one that has not
    /// ended. The holder's own (`--stop`'s poweroff) is no client's.
    fn open_sessions(&self) -> usize {
        self.clients
            .values()
            .filter(|client| client.opened && !client.ending)
            .count()
    }

    /// Keeps the number of open sessions in the registry entry.
    fn count_sessions(&mut self) {
        let open = u32::try_from(self.open_sessions()).unwrap_or(u32::MAX);
        if let Some(count) = &mut self.count {
            count.set(open);
        }
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
            let mut client = Client::new(stream);
            if let Some(lost) = &self.lost {
                let message = format!("the VM's attach server sent {lost}; attach again once it restarts (in the VM: systemctl restart nixos-shell-attach)");
                client
                    .outbox
                    .push(&Frame::new(Kind::Refused, 0, message.into_bytes()));
                client.refused = true;
            }
            self.clients.insert(id, client);
        }
    }

    /// Reads what the guest sent and routes it; `false` once QEMU is gone.
    /// Each frame is routed from where it lies in the decoder (set aside
    /// meanwhile, so the frame can borrow it): its data is copied once, into
    /// its client's outbox.
    fn read_port(&mut self) -> bool {
        let mut decoder = std::mem::take(&mut self.port_decoder);
        let open = self.read_port_into(&mut decoder);
        self.port_decoder = decoder;
        open
    }

    fn read_port_into(&mut self, decoder: &mut Decoder) -> bool {
        match decoder.read_from(&self.port) {
            Ok(0) => return false,
            Ok(_) => {}
            Err(Errno::INTR | Errno::AGAIN) => return true,
            Err(_) => return false,
        }
        loop {
            if self.lost.is_some() && !decoder.skip_to_hello() {
                return true;
            }
            match decoder.next_frame_ref() {
                Ok(Some(frame)) => self.route(frame),
                Ok(None) => return true,
                Err(err) => self.lose(&err),
            }
        }
    }

    /// The guest sent `err`, which is not the guest role's protocol: where
    /// its next frame starts is unknown, so every session ends with one
    /// line, and the relay waits for a server that starts again (the
    /// module's unit restarts it on failure) and says hello. Until then a
    /// new client is told so at once.
    fn lose(&mut self, err: &Malformed) {
        self.end_all(&format!(
            "the VM's attach server sent {err}; ending this session; attach again once it restarts"
        ));
        // What waits is for a server that is gone or does not read it.
        self.port_outbox = Outbox::default();
        self.lost = Some(err.to_string());
    }

    /// A frame of the guest's, to its session's client.
    fn route(&mut self, frame: FrameRef) {
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
        let checked = match frame.kind {
            Kind::Output | Kind::Error => {
                let counted = frame.payload.len();
                client.output_held.received(frame.kind, counted).map(|()| {
                    client.outbox.push_counted(frame, id, counted);
                })
            }
            Kind::Exit | Kind::Refused => {
                client
                    .outbox
                    .push_data(frame.kind, frame.session, frame.payload);
                client.ending = true;
                Ok(())
            }
            Kind::InputAck => frame
                .read_count()
                .and_then(|n| client.input_unacked.acked_by_peer(n)),
            kind => Err(Malformed::Misdirected(kind)),
        };
        if let Err(err) = checked {
            self.end_session(id, &err);
        }
    }

    /// Ends session `id`, whose frame from the guest was `err`, with one
    /// line to its client; the guest is told to close it.
    fn end_session(&mut self, id: u32, err: &Malformed) {
        let Some(client) = self.clients.get_mut(&id) else {
            return;
        };
        let message = format!("the VM's attach server sent {err}; ending this session");
        client
            .outbox
            .push(&Frame::new(Kind::Refused, id, message.into_bytes()));
        client.ending = true;
        self.port_outbox
            .push(&Frame::new(Kind::Close, id, Vec::new()));
    }

    /// The guest's attach server is up. Its first hello finds the sessions
    /// opened while the VM booted (their requests wait in the port for it);
    /// a later one is a server that restarted (the module's unit restarts
    /// it on failure) and knows none of the sessions it had: they end, each
    /// with one line, rather than wait for a server that forgot them.
    fn on_hello(&mut self) {
        if let Some(ready) = self.ready.take() {
            ready.answer();
        }
        let restarted = std::mem::replace(&mut self.served, true);
        // After a loss, every session has ended already.
        if self.lost.take().is_none() && restarted {
            self.end_all("the VM's attach server restarted, ending this session; attach again");
        }
        self.answer_awaiting();
    }

    /// Ends every session with `message`, its one line.
    fn end_all(&mut self, message: &str) {
        // Those that wait for a server have no session to end.
        let open = |client: &&mut Client| !client.ending && !client.awaits_server;
        for client in self.clients.values_mut().filter(open) {
            client
                .outbox
                .push(&Frame::new(Kind::Refused, 0, message.as_bytes().to_vec()));
            client.ending = true;
        }
    }

    /// Reads what a client sent and passes it on, stamped with its
    /// session; a client that went away closes its session.
    fn read_client(&mut self, id: u32) {
        let Relay {
            clients,
            port_outbox,
            ..
        } = self;
        let Some(client) = clients.get_mut(&id) else {
            return;
        };
        let gone = client.read_more();
        let (malformed, asked) = client.pass_on(id, port_outbox);
        if let Some(asked) = asked {
            match asked {
                // Kept until the server is up: its answer ends it.
                Ok(HolderRequest::AwaitServer) => {
                    client.awaits_server = true;
                    client.refused = false;
                    self.answer_awaiting();
                }
                Ok(request) => {
                    if let Some(client) = self.clients.remove(&id) {
                        self.on_holder_request(request, client.stream);
                    }
                }
                Err(_) => {
                    self.clients.remove(&id);
                }
            }
        } else if gone && (client.refused || client.awaits_server) {
            // It opened no session in the guest.
            self.clients.remove(&id);
        } else if gone || malformed {
            self.clients.remove(&id);
            self.port_outbox
                .push(&Frame::new(Kind::Close, id, Vec::new()));
        }
    }

    /// Does what a client, on `stream`, asked of this nixos-shell itself.
    fn on_holder_request(&mut self, request: HolderRequest, stream: UnixStream) {
        match request {
            HolderRequest::Stop => {
                // A stop asked for after a restart wins: the VM ends.
                if let Some(restart) = self.take_restart() {
                    refuse(
                        restart.client,
                        "the VM was stopped (nixos-shell --stop) before it restarted",
                    );
                }
                self.stopped.store(true, Ordering::SeqCst);
                self.stop("--stop");
            }
            HolderRequest::Restart { build } => self.restart(build, stream),
            // Kept as a client by `read_client` until the server is up.
            HolderRequest::AwaitServer => self.answer_awaiting(),
        }
    }

    /// Tells the clients that wait for the guest's attach server that it
    /// is up, if it is: it said hello, and nothing it sent since was out
    /// of the protocol ([`Relay::lose`]). Each is dropped once told.
    fn answer_awaiting(&mut self) {
        if !self.served || self.lost.is_some() {
            return;
        }
        for client in self.clients.values_mut().filter(|c| c.awaits_server) {
            client.awaits_server = false;
            client.outbox.push(&Frame::new(Kind::Hello, 0, Vec::new()));
            client.ending = true;
        }
    }

    /// `--switch --restart`: leaves the request for the VM's run, which
    /// starts the VM again from `build` once this one has ended, and powers
    /// the guest off as `--stop` does. Refused with one line to the client
    /// on `stream` when the VM runs a command (it would run again) or is
    /// stopping already.
    fn restart(&mut self, build: Utf8PathBuf, stream: UnixStream) {
        let Some(slot) = &self.restarts else {
            refuse(
                stream,
                "the VM runs a command (-c), which a restart would run again; \
                 switch without --restart, or run the command again yourself",
            );
            return;
        };
        if self.stopping.is_some() {
            refuse(stream, "the VM is stopping or restarting already");
            return;
        }
        if let Ok(mut slot) = slot.lock() {
            *slot = Some(Restart {
                build,
                client: stream,
            });
        }
        self.stop("--restart");
    }

    /// The restart asked for, if any, taken back.
    fn take_restart(&mut self) -> Option<Restart> {
        self.restarts
            .as_ref()
            .and_then(|slot| slot.lock().ok().and_then(|mut slot| slot.take()))
    }

    /// `--stop`: asks the guest to power off, through a session of the
    /// relay's own that runs `poweroff` (the guest's attach server runs it
    /// as root; on NixOS `poweroff` is systemd's, which starts
    /// `poweroff.target`/`systemd-poweroff.service`, both among the
    /// upstream units of nixpkgs' nixos/modules/system/boot/systemd.nix),
    /// and gives it [`STOP_TIMEOUT`]; the VM's end
    /// then ends the relay. A guest whose server has not said hello yet
    /// cannot be asked: QEMU ends at once.
    fn stop(&mut self, why: &str) {
        if self.stopping.is_some() {
            return;
        }
        if !self.served {
            eprintln!(
                "nixos-shell: {why}: the VM has not booted far enough to power off; ending QEMU"
            );
            signals::end_vm();
            return;
        }
        let id = self.next;
        self.next = self.next.wrapping_add(1).max(1);
        let request = Request {
            version: REQUEST_VERSION,
            command: Some("poweroff </dev/null >/dev/null 2>&1".to_owned()),
            terminal: false,
            cwd: "/".into(),
            term: None,
            terminfo: None,
            size: None,
            switch: None,
            switch_from: None,
            switch_registration: None,
        };
        self.port_outbox
            .push(&Frame::json(Kind::Open, id, &request));
        self.port_outbox
            .push(&Frame::new(Kind::InputEnd, id, Vec::new()));
        self.stopping = Some(Instant::now() + STOP_TIMEOUT);
        self.stopping_for = why.to_owned();
    }

    /// Ends QEMU when the guest asked to power off did not within
    /// [`STOP_TIMEOUT`], saying so; once.
    fn stop_overdue(&mut self) {
        if self.stopping.take().is_some() {
            eprintln!(
                "nixos-shell: {}: the VM did not power off within {} s; ending QEMU",
                self.stopping_for,
                STOP_TIMEOUT.as_secs()
            );
            signals::end_vm();
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
                        client.output_held.acked(delivered);
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

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;
    use crate::schema::attach::{HELLO, MAX_PAYLOAD, MAX_UNACKED};

    /// A relay on a socket pair: the relay, and the guest's end.
    fn relay() -> (Relay, UnixStream) {
        let (port, guest) = UnixStream::pair().unwrap();
        port.set_nonblocking(true).unwrap();
        guest.set_nonblocking(true).unwrap();
        let relay = Relay {
            port,
            port_decoder: Decoder::default(),
            port_outbox: Outbox::default(),
            clients: BTreeMap::new(),
            next: 1,
            served: true,
            lost: None,
            stopping: None,
            stopping_for: String::new(),
            ready: None,
            count: None,
            stopped: Arc::default(),
            restarts: None,
        };
        (relay, guest)
    }

    /// A client of session `id` that reads nothing: its end.
    fn client(relay: &mut Relay, id: u32) -> UnixStream {
        let (stream, theirs) = UnixStream::pair().unwrap();
        stream.set_nonblocking(true).unwrap();
        relay.clients.insert(id, Client::new(stream));
        theirs
    }

    /// Writes what of `bytes` the non-blocking `stream` takes now.
    fn write_some(stream: &mut UnixStream, bytes: &[u8]) -> usize {
        match stream.write(bytes) {
            Ok(n) => n,
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => 0,
            Err(err) => panic!("{err}"),
        }
    }

    /// The kinds, sessions and payloads of the frames in `bytes`.
    fn frames(mut bytes: &[u8]) -> Vec<(Kind, u32, Vec<u8>)> {
        let mut frames = Vec::new();
        while !bytes.is_empty() {
            let word = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
            let len = word(5) as usize;
            let kind = [
                Kind::Close,
                Kind::Refused,
                Kind::Output,
                Kind::OutputAck,
                Kind::Input,
                Kind::Hello,
            ]
            .into_iter()
            .find(|kind| *kind as u8 == bytes[0])
            .unwrap();
            frames.push((kind, word(1), bytes[9..9 + len].to_vec()));
            bytes = &bytes[9 + len..];
        }
        frames
    }

    #[test]
    fn a_guest_that_ignores_the_window_ends_its_session_not_the_hosts_memory() {
        let (mut relay, mut guest) = relay();
        let _client = client(&mut relay, 1);
        let data = Frame::new(Kind::Output, 1, vec![b'x'; MAX_PAYLOAD]).encode();
        let stream: Vec<u8> = data.repeat(MAX_UNACKED / MAX_PAYLOAD + 8);
        let mut written = 0;
        while written < stream.len() {
            written += write_some(&mut guest, &stream[written..]);
            assert!(relay.read_port());
        }
        while relay.port_decoder.next_frame().unwrap().is_some() {}
        for _ in 0..8 {
            assert!(relay.read_port());
        }
        let told = frames(relay.port_outbox.pending());
        assert!(
            told.iter().any(|f| f.0 == Kind::Close && f.1 == 1),
            "the guest was not told to close the session"
        );
        let client = &relay.clients[&1];
        assert!(client.ending);
        assert!(client.outbox.len() <= MAX_UNACKED + (MAX_UNACKED / MAX_PAYLOAD + 2) * 64);
        let to_client = frames(client.outbox.pending());
        let last = to_client.last().unwrap();
        assert_eq!(last.0, Kind::Refused);
        let line = String::from_utf8_lossy(&last.2);
        assert!(line.contains("window allows"), "{line}");
    }

    #[test]
    fn a_guest_that_acknowledges_input_never_sent_ends_its_session() {
        let (mut relay, mut guest) = relay();
        let _client = client(&mut relay, 1);
        relay.clients.get_mut(&1).unwrap().input_unacked.sent(10);
        let ack = Frame::count(Kind::InputAck, 1, 11).encode();
        assert_eq!(write_some(&mut guest, &ack), ack.len());
        assert!(relay.read_port());
        let to_client = frames(relay.clients[&1].outbox.pending());
        assert_eq!(to_client[0].0, Kind::Refused);
        assert!(String::from_utf8_lossy(&to_client[0].2).contains("acknowledgement of 11"));
    }

    /// The holder's socket, in a directory of its own, as the relay
    /// serves it, with the pipe that says the VM ended (held open: it has
    /// not).
    struct Socket {
        dir: tempfile::TempDir,
        listener: UnixListener,
        _vm_ended: OwnedFd,
        ended: OwnedFd,
    }

    impl Socket {
        fn new() -> Socket {
            let dir = tempfile::tempdir().unwrap();
            let listener = UnixListener::bind(dir.path().join("s")).unwrap();
            listener.set_nonblocking(true).unwrap();
            let (_vm_ended, ended) = rustix::pipe::pipe().unwrap();
            Socket {
                dir,
                listener,
                _vm_ended,
                ended,
            }
        }

        fn path(&self) -> Utf8PathBuf {
            Utf8PathBuf::from_path_buf(self.dir.path().join("s")).unwrap()
        }

        /// A client of the holder, as `--attach` and `--stop` connect.
        fn connect(&self) -> UnixStream {
            UnixStream::connect(self.path()).unwrap()
        }

        /// A few turns of `relay` that do not wait: what the test wrote is
        /// in the sockets already (they are local), so each finds what
        /// there is.
        fn settle(&self, relay: &mut Relay) {
            let now = rustix::event::Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            for _ in 0..8 {
                assert!(
                    relay.turn(&self.listener, &self.ended, Some(&now)),
                    "the relay ended"
                );
            }
        }
    }

    /// What `stream` has now, read until it would block.
    fn read_now(stream: &mut UnixStream) -> Vec<u8> {
        stream.set_nonblocking(true).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = stream.read(&mut buf) {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        got
    }

    /// A `--switch` whose session was lost asks the holder to say when the
    /// guest's attach server is up: at once while it is; while it is lost,
    /// after the client was told so as every client is, only once a server
    /// says hello again; and a restart's hello ends no such wait.
    #[test]
    fn a_client_waiting_for_the_attach_server_is_told_when_it_says_hello() {
        let (mut relay, mut guest) = relay();
        let socket = Socket::new();
        let await_server = Frame::json(Kind::Holder, 0, &HolderRequest::AwaitServer).encode();

        let mut up = socket.connect();
        up.write_all(&await_server).unwrap();
        socket.settle(&mut relay);
        assert_eq!(frames(&read_now(&mut up)), [(Kind::Hello, 0, Vec::new())]);

        guest.write_all(&[0xff; 64]).unwrap();
        socket.settle(&mut relay);
        let mut waits = socket.connect();
        socket.settle(&mut relay);
        waits.write_all(&await_server).unwrap();
        socket.settle(&mut relay);
        let told = frames(&read_now(&mut waits));
        assert_eq!(told.len(), 1, "{told:?}");
        assert_eq!(told[0].0, Kind::Refused);
        assert!(relay.clients.values().any(|client| client.awaits_server));

        guest.write_all(&HELLO).unwrap();
        socket.settle(&mut relay);
        assert_eq!(
            frames(&read_now(&mut waits)),
            [(Kind::Hello, 0, Vec::new())]
        );
        assert!(relay.clients.is_empty(), "the answered client was kept");
        assert!(
            read_now(&mut guest).is_empty(),
            "the guest was sent {:?}",
            frames(&read_now(&mut guest))
        );
    }

    /// A guest whose attach stream is garbage ends the sessions it had,
    /// each with one line, and refuses attaches with one line while it
    /// does; the relay goes on, and once a server says hello, an attach
    /// reaches it as before.
    #[test]
    fn a_garbled_attach_stream_ends_its_sessions_and_the_next_server_is_served() {
        let (mut relay, mut guest) = relay();
        let socket = Socket::new();
        let mut old = client(&mut relay, 1);
        relay.next = 2;
        let garbage: Vec<u8> = (0..50_000u32)
            .map(|i| (i * 7919 % 251) as u8 | 0x80)
            .collect();
        guest.write_all(&garbage[..4096]).unwrap();
        socket.settle(&mut relay);
        let told = frames(&read_now(&mut old));
        assert_eq!(told.len(), 1, "{told:?}");
        assert_eq!(told[0].0, Kind::Refused);
        let line = String::from_utf8_lossy(&told[0].2);
        assert!(
            line.contains("attach server sent a frame of unknown kind"),
            "{line}"
        );

        // More garbage, and a client meanwhile: told at once, in a line.
        guest.write_all(&garbage[4096..]).unwrap();
        let mut refused = socket.connect();
        socket.settle(&mut relay);
        let told = frames(&read_now(&mut refused));
        assert_eq!(told.len(), 1, "{told:?}");
        assert_eq!(told[0].0, Kind::Refused);
        assert!(String::from_utf8_lossy(&told[0].2).contains("attach again once it restarts"));
        assert!(
            read_now(&mut guest).is_empty(),
            "the guest was sent {:?}",
            frames(&read_now(&mut guest))
        );

        // A server starts again: a new client's session reaches it and
        // back.
        guest.write_all(&HELLO).unwrap();
        socket.settle(&mut relay);
        let mut new = socket.connect();
        new.write_all(&Frame::new(Kind::Input, 0, b"in".to_vec()).encode())
            .unwrap();
        socket.settle(&mut relay);
        let sent = read_now(&mut guest);
        assert_eq!(sent, Frame::new(Kind::Input, 3, b"in".to_vec()).encode());
        guest
            .write_all(&Frame::new(Kind::Output, 3, b"out".to_vec()).encode())
            .unwrap();
        socket.settle(&mut relay);
        assert_eq!(
            frames(&read_now(&mut new)),
            [(Kind::Output, 3, b"out".to_vec())]
        );
    }

    /// The entry says how many attach sessions are open: a client's
    /// session counts from its opening to its end; a client that only asks
    /// the holder (`--stop`), and the holder's own session, do not.
    #[test]
    fn the_entry_counts_the_open_attach_sessions() {
        use super::super::registry;
        let (mut relay, mut guest) = relay();
        let socket = Socket::new();
        let registry_dir = socket.path().with_file_name("registry");
        let info = registry::VmInfo {
            name: "vm".to_owned(),
            config: ".#vm".to_owned(),
            started: 1,
            detached: true,
            disk_image: None,
            forwards: Vec::new(),
            shares: Vec::new(),
            console_log: None,
            sessions: 0,
        };
        let identity = crate::host::nix::Identity::new("/p#vm");
        let entry =
            registry::register(&registry_dir, &identity, &socket.path(), "/b".into(), &info)
                .unwrap();
        relay.count = Some(entry.session_count());
        let sessions = || registry::list(&registry_dir).unwrap()[0].1.sessions;

        let mut attached = socket.connect();
        attached
            .write_all(&Frame::new(Kind::Open, 0, b"{}".to_vec()).encode())
            .unwrap();
        socket.settle(&mut relay);
        assert_eq!(sessions(), 1);
        let mut stop = socket.connect();
        stop.write_all(&Frame::json(Kind::Holder, 0, &HolderRequest::Stop).encode())
            .unwrap();
        socket.settle(&mut relay);
        assert!(relay.stopping.is_some(), "the stop was not taken");
        assert!(relay.stopped.load(Ordering::SeqCst));
        assert_eq!(sessions(), 1);
        // The guest ends the session: counted out before its client hears.
        let id = *relay.clients.keys().next().unwrap();
        guest
            .write_all(&Frame::new(Kind::Exit, id, b"0".to_vec()).encode())
            .unwrap();
        socket.settle(&mut relay);
        assert_eq!(sessions(), 0);
        drop(attached);
        drop(entry);
        // A count after the entry is gone leaves nothing behind.
        relay.count.as_mut().unwrap().set(3);
        assert!(!registry_dir.exists(), "left behind");
    }

    #[test]
    fn a_guest_that_stops_reading_stops_the_relay_reading_it() {
        let (mut relay, mut guest) = relay();
        let socket = Socket::new();
        // Output for a session whose client is gone: the relay answers
        // each frame with more than it (an acknowledgement and a close),
        // while the guest takes no more than the port passes on.
        let frame = Frame::new(Kind::Output, 9, vec![b'x']).encode();
        let stream = frame.repeat(64 * 1024);
        let mut written = 0;
        let mut most = 0;
        let mut taken = vec![0u8; 1 << 20];
        for _ in 0..300 {
            written += write_some(&mut guest, &stream[written % stream.len()..]);
            while guest.read(&mut taken).is_ok_and(|n| n > 0) {}
            assert!(relay.turn(&socket.listener, &socket.ended, None));
            most = most.max(relay.port_outbox.len());
        }
        assert!(written > 2 * WINDOW, "the test did not write enough");
        assert!(
            most <= PORT_BACKLOG + 3 * Decoder::CAPACITY,
            "the relay held {most} bytes for the guest"
        );
    }

    /// The frames a client was sent, read until its stream is closed.
    fn told(stream: &mut UnixStream) -> Vec<Frame> {
        stream.set_nonblocking(false).unwrap();
        let mut decoder = Decoder::default();
        let mut frames = Vec::new();
        while decoder.read_from(&*stream).unwrap() > 0 {
            frames.extend(std::iter::from_fn(|| decoder.next_frame().unwrap()));
        }
        frames
    }

    fn refusal(stream: &mut UnixStream) -> String {
        let frames = told(stream);
        assert_eq!(frames.len(), 1, "{frames:?}");
        assert_eq!(frames[0].kind, Kind::Refused);
        String::from_utf8_lossy(&frames[0].payload).into_owned()
    }

    /// `--switch --restart`: the request is left for the VM's run and the
    /// guest is asked to power off; a second one is refused, and a
    /// `--stop` after it wins, its client told so.
    #[test]
    fn a_restart_is_left_for_the_run_and_a_stop_after_it_wins() {
        let (mut relay, _guest) = relay();
        let slot = RestartSlot::default();
        relay.restarts = Some(Arc::clone(&slot));
        let (asking, mut client) = UnixStream::pair().unwrap();
        let build = Utf8PathBuf::from("/nix/store/b-new");
        relay.on_holder_request(
            HolderRequest::Restart {
                build: build.clone(),
            },
            asking,
        );
        assert!(
            relay.stopping.is_some(),
            "the guest was not asked to power off"
        );
        assert!(!relay.port_outbox.is_empty());
        assert_eq!(slot.lock().unwrap().as_ref().unwrap().build, build);

        let (again, mut second) = UnixStream::pair().unwrap();
        relay.on_holder_request(HolderRequest::Restart { build }, again);
        assert!(refusal(&mut second).contains("restarting already"));

        let (stop, _stopping) = UnixStream::pair().unwrap();
        relay.on_holder_request(HolderRequest::Stop, stop);
        assert!(
            slot.lock().unwrap().is_none(),
            "the restart outlived a --stop"
        );
        assert!(refusal(&mut client).contains("stopped"));
    }

    /// A VM that runs a command would run it again: refused in one line,
    /// and the VM runs on.
    #[test]
    fn a_vm_that_runs_a_command_is_not_restarted() {
        let (mut relay, _guest) = relay();
        let (asking, mut client) = UnixStream::pair().unwrap();
        relay.on_holder_request(
            HolderRequest::Restart {
                build: "/nix/store/b-new".into(),
            },
            asking,
        );
        assert!(refusal(&mut client).contains("runs a command (-c)"));
        assert!(relay.stopping.is_none());
        assert!(relay.port_outbox.is_empty());
    }

    /// The client that asked for a restart is answered by the next boot's
    /// relay with the new guest's hello.
    #[test]
    fn the_restarting_client_hears_the_new_guests_hello() {
        let (mut relay, mut guest) = relay();
        relay.served = false;
        let (waiting, mut client) = UnixStream::pair().unwrap();
        relay.ready = Some(Waiter::Client(waiting));
        guest.write_all(&HELLO).unwrap();
        assert!(relay.read_port());
        let frames = told(&mut client);
        assert_eq!(frames.len(), 1, "{frames:?}");
        assert_eq!(frames[0].kind, Kind::Hello);
    }
}
