//! The attach server (`nixos-shell-guest serve-attach`, the module's
//! `nixos-shell-attach.service`): the guest's end of `nixos-shell
//! --attach`. It serves every attached session over the one attach port
//! (`schema::attach`): starts each session's program ([`spawn`]) when its
//! client opens it, passes its input and output under the protocol's
//! windows, its terminal's resizes and the signals the client forwards,
//! and reports how it ended. A client that goes away hangs its session up.
//!
//! One poll(2) loop; every stream non-blocking, so one session whose
//! program stops reading or whose client stops taking output never holds
//! up another.

mod spawn;

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::Child;

use rustix::event::{poll, PollFd, PollFlags};
use rustix::io::Errno;
use rustix::process::{kill_process_group, Pid, Signal};
use signal_hook::consts::SIGCHLD;

use super::report::Reporter;
use super::{command, ports, session};
use crate::schema::attach::{
    Decoder, Exit, Frame, FrameRef, Kind, Outbox, Request, ACK_EVERY, MAX_PAYLOAD, WINDOW,
};
use crate::schema::facts::HostFacts;
use crate::schema::ports::{Port, TerminalSize};
use spawn::{Io, Started};

/// Serves attaches until the host's end of the port is gone.
pub fn serve(reporter: &Reporter) -> u8 {
    let Ok(facts) = session::read_facts() else {
        reporter.say("no host facts; nothing to attach to");
        return 0;
    };
    if !facts.ports.contains(&Port::Attach) {
        reporter.say("the host offers no attach port");
        return 0;
    }
    let Some(device) = ports::wait_for(Port::Attach) else {
        reporter.warn("the host offers an attach port the guest does not have");
        return 0;
    };
    run_as_batch();
    match Server::start(facts, &device) {
        Ok(mut server) => server.run(),
        Err(err) => reporter.warn(&format!("{err:#}")),
    }
    0
}

/// Makes the server a batch task (sched(7), `SCHED_BATCH`): woken by the
/// port or by a session's program, it does not preempt the program that
/// runs, which goes on until it blocks or its slice ends, so each wake-up
/// of the server finds more to pass on (under an emulated CPU a stream
/// cost a wake-up, a poll and a read or write per page or two otherwise).
/// The sessions' programs start as ordinary tasks
/// (`command::spawn_in_new_session`); on an idle CPU the server still runs
/// at once. A kernel that refuses leaves the server as it was.
fn run_as_batch() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: sched_setscheduler(2) on this process, with a valid
    // parameter; it changes nothing else.
    unsafe {
        libc::sched_setscheduler(0, libc::SCHED_BATCH, &param);
    }
}

/// One attached session.
struct Attached {
    child: Child,
    io: Io,
    dir: Option<camino::Utf8PathBuf>,
    /// Input not yet written to the program (up to a window of it, taken
    /// from the front as the program reads).
    input: VecDeque<u8>,
    input_ended: bool,
    /// Input written to the program that the host has not been told of.
    input_taken: usize,
    /// Output sent that the host has not acknowledged yet.
    output_unacked: usize,
    /// The program's exit status, once it ended.
    exited: Option<i32>,
    /// The client went away: nothing more is sent.
    closed: bool,
}

struct Server {
    facts: HostFacts,
    guest_path: String,
    port: File,
    decoder: Decoder,
    outbox: Outbox,
    sessions: BTreeMap<u32, Attached>,
    /// The programs of sessions that are over but had not ended yet, to
    /// reap.
    orphans: Vec<Child>,
    children: UnixStream,
    /// Where a session's output is read, [`MAX_PAYLOAD`] bytes, allocated
    /// once.
    chunk: Vec<u8>,
}

/// A stream of a session to read or write, by its index in the poll set.
#[derive(Clone, Copy)]
enum Stream {
    Output,
    Error,
    Input,
}

impl Server {
    fn start(facts: HostFacts, device: &camino::Utf8Path) -> anyhow::Result<Server> {
        use anyhow::Context;
        let mut port = File::options()
            .read(true)
            .write(true)
            .open(device)
            .with_context(|| format!("cannot open the attach port {device}"))?;
        // Blocking, this write waits until the host's end is connected.
        port.write_all(&Frame::new(Kind::Hello, 0, Vec::new()).encode())
            .context("cannot reach the host on the attach port")?;
        rustix::io::ioctl_fionbio(&port, true).context("cannot set up the attach port")?;
        let (children, wake) = UnixStream::pair().context("cannot create a socket pair")?;
        children
            .set_nonblocking(true)
            .context("cannot set up a socket pair")?;
        signal_hook::low_level::pipe::register(SIGCHLD, wake)
            .context("cannot listen for the sessions' ends")?;
        let own_path = std::env::var("PATH").ok();
        Ok(Server {
            guest_path: command::guest_path(own_path.as_deref(), |dir| {
                camino::Utf8Path::new(dir).is_dir()
            }),
            facts,
            port,
            decoder: Decoder::default(),
            outbox: Outbox::default(),
            sessions: BTreeMap::new(),
            orphans: Vec::new(),
            children,
            chunk: vec![0; MAX_PAYLOAD],
        })
    }

    /// Serves until the host's end is gone.
    fn run(&mut self) {
        while self.turn() {}
        for (_, attached) in std::mem::take(&mut self.sessions) {
            let _ = hang_up(attached);
        }
    }

    /// One wait and what it found; `false` once the host's end is gone.
    fn turn(&mut self) -> bool {
        let port_events = if self.outbox.is_empty() {
            PollFlags::IN
        } else {
            PollFlags::IN | PollFlags::OUT
        };
        let mut fds = vec![
            PollFd::new(&self.port, port_events),
            PollFd::new(&self.children, PollFlags::IN),
        ];
        let mut streams: Vec<(u32, Stream)> = Vec::new();
        for (&id, attached) in &self.sessions {
            let reading = attached.output_unacked < WINDOW && !attached.closed;
            for (stream, fd, events) in attached.polled(reading) {
                fds.push(PollFd::new(fd, events));
                streams.push((id, stream));
            }
        }
        match poll(&mut fds, None) {
            Ok(_) | Err(Errno::INTR) => {}
            Err(_) => return false,
        }
        let revents: Vec<PollFlags> = fds.iter().map(PollFd::revents).collect();
        drop(fds);
        if revents[0].intersects(PollFlags::IN) && !self.read_port() {
            return false;
        }
        if revents[0].contains(PollFlags::HUP) && !revents[0].contains(PollFlags::IN) {
            return false;
        }
        if !revents[1].is_empty() {
            self.reap();
        }
        for (&(id, stream), events) in streams.iter().zip(&revents[2..]) {
            if !events.is_empty() {
                self.serve_stream(id, stream);
            }
        }
        self.finish_ended();
        self.flush_port()
    }

    /// Reads what the host sent and acts on it; `false` once it is gone.
    ///
    /// The port hands out a page per read; it is read until it has nothing
    /// more, so a stream of input costs one wait, not one per page. Each
    /// frame is acted on where it lies in the decoder (the decoder is set
    /// aside meanwhile, so the frame can borrow it). The input that came
    /// for each session then goes to its program in one write, not one
    /// per frame: a client sends a frame per read of its standard input,
    /// often a page, and under an emulated CPU each write (and the wake-up
    /// of the program it brings) costs far more than the copy into the
    /// queue.
    fn read_port(&mut self) -> bool {
        let mut decoder = std::mem::take(&mut self.decoder);
        let open = self.read_port_into(&mut decoder);
        self.decoder = decoder;
        for (&id, attached) in &mut self.sessions {
            if !attached.input.is_empty() {
                let taken = attached.write_input();
                attached.count_taken(id, taken, &mut self.outbox);
            }
        }
        open
    }

    fn read_port_into(&mut self, decoder: &mut Decoder) -> bool {
        loop {
            match decoder.read_from(&self.port) {
                Ok(0) => return false,
                Ok(_) => {}
                Err(Errno::INTR) => continue,
                Err(Errno::AGAIN) => return true,
                Err(_) => return false,
            }
            loop {
                match decoder.next_frame_ref() {
                    Ok(Some(frame)) => self.on_frame(frame),
                    Ok(None) => break,
                    Err(_) => return false,
                }
            }
        }
    }

    fn on_frame(&mut self, frame: FrameRef) {
        let id = frame.session;
        if frame.kind == Kind::Open {
            self.open(id, frame);
            return;
        }
        let Some(attached) = self.sessions.get_mut(&id) else {
            return;
        };
        match frame.kind {
            Kind::Input => attached.input.extend(frame.payload),
            Kind::InputEnd => attached.input_ended = true,
            Kind::Resize => {
                if let (Io::Terminal { master }, Some(size)) =
                    (&attached.io, frame.parse::<TerminalSize>().ok())
                {
                    spawn::set_size(master, size);
                }
            }
            Kind::Signal => {
                if let Some(signal) = frame.parse::<i32>().ok().and_then(Signal::from_named_raw) {
                    attached.signal(signal);
                }
            }
            Kind::OutputClosed => {
                if let Io::Pipes { stdout, .. } = &mut attached.io {
                    // The program's next write gets SIGPIPE.
                    *stdout = None;
                }
            }
            Kind::OutputAck => {
                // The host's relay writes every count; one that does not
                // read acknowledges nothing.
                let acked = frame.read_count().unwrap_or(0);
                attached.output_unacked = attached.output_unacked.saturating_sub(acked);
            }
            Kind::Close => {
                attached.closed = true;
                attached.signal(Signal::HUP);
                attached.io = Io::Pipes {
                    stdin: None,
                    stdout: None,
                    stderr: None,
                };
            }
            _ => {}
        }
    }

    /// Starts session `id`, or says why it cannot start.
    fn open(&mut self, id: u32, frame: FrameRef) {
        if self.sessions.contains_key(&id) {
            return;
        }
        let request = match frame.parse::<Request>() {
            Ok(request) => request,
            Err(err) => {
                let message = format!("this VM's nixos-shell cannot read the request ({err}); use the same nixos-shell on host and guest");
                self.outbox
                    .push(&Frame::new(Kind::Refused, id, message.into_bytes()));
                return;
            }
        };
        match spawn::start(id, &request, &self.facts, &self.guest_path) {
            Ok(Started { child, io, dir }) => {
                self.sessions.insert(
                    id,
                    Attached {
                        child,
                        io,
                        dir,
                        input: VecDeque::new(),
                        input_ended: false,
                        input_taken: 0,
                        output_unacked: 0,
                        exited: None,
                        closed: false,
                    },
                );
            }
            Err(err) => {
                let message = format!("the VM could not start the session: {err:#}");
                self.outbox
                    .push(&Frame::new(Kind::Refused, id, message.into_bytes()));
            }
        }
    }

    /// Notes the sessions whose program ended.
    fn reap(&mut self) {
        let mut buf = [0u8; 64];
        while matches!(rustix::io::read(&self.children, &mut buf), Ok(n) if n > 0) {}
        for attached in self.sessions.values_mut() {
            if attached.exited.is_none() {
                if let Ok(Some(status)) = attached.child.try_wait() {
                    attached.exited = Some(command::exit_code(status));
                }
            }
        }
        self.orphans
            .retain_mut(|child| matches!(child.try_wait(), Ok(None)));
    }

    /// Reads from or writes to one stream of session `id`.
    fn serve_stream(&mut self, id: u32, stream: Stream) {
        let Some(attached) = self.sessions.get_mut(&id) else {
            return;
        };
        match stream {
            Stream::Input => {
                let taken = attached.write_input();
                attached.count_taken(id, taken, &mut self.outbox);
            }
            Stream::Output | Stream::Error => {
                if let Some((kind, n)) = attached.read_output(stream, &mut self.chunk) {
                    attached.output_unacked += n;
                    self.outbox.push_data(kind, id, &self.chunk[..n]);
                }
            }
        }
    }

    /// Reports the sessions whose program ended and whose output is out
    /// (what it wrote before it ended is in its streams at once; a process
    /// it left behind is hung up), and forgets them.
    fn finish_ended(&mut self) {
        let mut done = Vec::new();
        for (&id, attached) in &mut self.sessions {
            let Some(exit_code) = attached.exited else {
                continue;
            };
            if attached.closed {
                done.push(id);
                continue;
            }
            while attached.output_unacked < WINDOW {
                let mut read = false;
                for stream in [Stream::Output, Stream::Error] {
                    if let Some((kind, n)) = attached.read_output(stream, &mut self.chunk) {
                        attached.output_unacked += n;
                        self.outbox.push_data(kind, id, &self.chunk[..n]);
                        read = true;
                    }
                }
                if !read {
                    break;
                }
            }
            if attached.output_unacked < WINDOW {
                self.outbox
                    .push(&Frame::json(Kind::Exit, id, &Exit { exit_code }));
                done.push(id);
            }
        }
        for id in done {
            if let Some(orphan) = self.sessions.remove(&id).and_then(hang_up) {
                self.orphans.push(orphan);
            }
        }
    }

    /// Writes what the port takes now; `false` once the host is gone.
    fn flush_port(&mut self) -> bool {
        self.outbox.write_to(&self.port).is_ok()
    }
}

impl Attached {
    /// The streams to poll: output while the window is open (`reading`),
    /// input while some waits.
    fn polled(&self, reading: bool) -> Vec<(Stream, &OwnedFd, PollFlags)> {
        let mut polled = Vec::new();
        match &self.io {
            Io::Terminal { master } => {
                if reading && self.exited.is_none() {
                    polled.push((Stream::Output, master, PollFlags::IN));
                }
                if !self.input.is_empty() {
                    polled.push((Stream::Input, master, PollFlags::OUT));
                }
            }
            Io::Pipes {
                stdin,
                stdout,
                stderr,
            } => {
                if reading && self.exited.is_none() {
                    if let Some(fd) = stdout {
                        polled.push((Stream::Output, fd, PollFlags::IN));
                    }
                    if let Some(fd) = stderr {
                        polled.push((Stream::Error, fd, PollFlags::IN));
                    }
                }
                if let Some(fd) = stdin {
                    if !self.input.is_empty() || self.input_ended {
                        polled.push((Stream::Input, fd, PollFlags::OUT));
                    }
                }
            }
        }
        polled
    }

    /// Reads one chunk of `stream` into `chunk`: its frame's kind and
    /// length, or `None` when nothing is there now (the stream is closed at
    /// its end).
    fn read_output(&mut self, stream: Stream, chunk: &mut [u8]) -> Option<(Kind, usize)> {
        let (fd, kind) = match (&mut self.io, stream) {
            (Io::Terminal { master }, Stream::Output) => (Some(&*master), Kind::Output),
            (Io::Pipes { stdout, .. }, Stream::Output) => (stdout.as_ref(), Kind::Output),
            (Io::Pipes { stderr, .. }, Stream::Error) => (stderr.as_ref(), Kind::Error),
            _ => (None, Kind::Output),
        };
        let fd = fd?;
        match rustix::io::read(fd, chunk) {
            Ok(n) if n > 0 => Some((kind, n)),
            Err(Errno::INTR | Errno::AGAIN) => None,
            // Its end (a terminal's reads as EIO once its last process has
            // gone): nothing more comes.
            _ => {
                self.close(stream);
                None
            }
        }
    }

    /// Counts `n` bytes of input the program took, and acknowledges them
    /// to the host in `outbox` once they make [`ACK_EVERY`].
    fn count_taken(&mut self, id: u32, n: usize, outbox: &mut Outbox) {
        self.input_taken += n;
        if self.input_taken >= ACK_EVERY {
            let taken = std::mem::take(&mut self.input_taken);
            outbox.push(&Frame::count(Kind::InputAck, id, taken));
        }
    }

    /// Writes what queued input the program takes now: how much.
    fn write_input(&mut self) -> usize {
        let fd = input_fd(&self.io);
        let mut written = 0;
        let mut refused = fd.is_none();
        if let Some(fd) = fd {
            while !self.input.is_empty() {
                let front = self.input.as_slices().0;
                let (n, gone) = write_now(fd.as_fd(), front);
                let whole = n == front.len();
                self.input.drain(..n);
                written += n;
                if gone {
                    refused = true;
                }
                if gone || !whole {
                    break;
                }
            }
        }
        // The program closed its input: what is left is dropped, and
        // counts as taken.
        if refused {
            written += self.input.len();
            self.input.clear();
            self.close(Stream::Input);
        }
        if self.input.is_empty() && self.input_ended {
            self.close(Stream::Input);
        }
        written
    }

    fn close(&mut self, stream: Stream) {
        match (&mut self.io, stream) {
            (Io::Pipes { stdin, .. }, Stream::Input) => *stdin = None,
            (Io::Pipes { stdout, .. }, Stream::Output) => *stdout = None,
            (Io::Pipes { stderr, .. }, Stream::Error) => *stderr = None,
            // A terminal has one end for both, closed with the session.
            (Io::Terminal { .. }, _) => {}
        }
    }

    /// Sends `signal` to the session's processes (its program leads a
    /// process group of its own).
    fn signal(&self, signal: Signal) {
        if let Some(pid) = i32::try_from(self.child.id()).ok().and_then(Pid::from_raw) {
            let _ = kill_process_group(pid, signal);
        }
    }
}

/// Where a session's program reads its input, while it does.
fn input_fd(io: &Io) -> Option<&OwnedFd> {
    match io {
        Io::Terminal { master } => Some(master),
        Io::Pipes { stdin, .. } => stdin.as_ref(),
    }
}

/// Writes what of `bytes` the non-blocking `fd` takes now: how much, and
/// whether it takes nothing more ever (its reader is gone).
fn write_now(fd: BorrowedFd, bytes: &[u8]) -> (usize, bool) {
    let mut written = 0;
    while written < bytes.len() {
        match rustix::io::write(fd, &bytes[written..]) {
            Ok(n) => written += n,
            Err(Errno::INTR) => {}
            Err(Errno::AGAIN) => break,
            Err(_) => return (written, true),
        }
    }
    (written, false)
}

/// Ends what is left of a session: a process it left behind is hung up,
/// its directory removed; its program, when it has not ended yet, to reap
/// later.
fn hang_up(mut attached: Attached) -> Option<Child> {
    attached.signal(Signal::HUP);
    drop(attached.io);
    if let Some(dir) = &attached.dir {
        let _ = std::fs::remove_dir_all(dir);
    }
    match attached.child.try_wait() {
        Ok(None) => Some(attached.child),
        _ => None,
    }
}
