//! The host-nix relay (`nixos-shell-guest serve-host-nix`, the module's
//! `nixos-shell-host-nix.service`): the guest's end of the host-nix port
//! (`schema::host_nix`). It listens on [`GUEST_SOCKET`] (root's only) and
//! relays each client's connection to a nix-daemon the CLI starts on the
//! host for it. The guest's own nix-daemon and its socket are untouched:
//! only sessions whose `NIX_REMOTE` names this socket use the host's.
//!
//! A thread per client reads it and frames what it sends, while the
//! connection's window has room; another writes what its connection
//! brings, and credits it; one thread reads the port and hands each
//! connection's bytes to its client's writer, and credits to its reader
//! (`schema::host_nix`'s flow control: a client that does not read holds
//! at most a window of the host's answer here, and one that writes faster
//! than its daemon reads is not read on).

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;

use anyhow::Context;
use camino::Utf8Path;

use super::report::Reporter;
use super::{ports, session};
use crate::schema::host_nix::{
    read_frame, Backlog, Frame, Kind, Window, GUEST_SOCKET, MAX_PAYLOAD,
};
use crate::schema::ports::Port;

/// Serves the socket until the host's end of the port is gone.
pub fn serve(reporter: &Reporter) -> u8 {
    let Ok(facts) = session::read_facts() else {
        reporter.say("no host facts; the guest's nix uses its own store");
        return 0;
    };
    if !facts.ports.contains(&Port::HostNix) {
        reporter.say("the host offers no nix-daemon; the guest's nix uses its own store");
        return 0;
    }
    let Some(device) = ports::wait_for(Port::HostNix) else {
        reporter.warn("the host offers a host-nix port the guest does not have");
        return 0;
    };
    reporter.check(open_and_relay(&device, Utf8Path::new(GUEST_SOCKET)));
    0
}

fn open_and_relay(device: &Utf8Path, socket: &Utf8Path) -> anyhow::Result<()> {
    let port = OpenOptions::new()
        .read(true)
        .write(true)
        .open(device)
        .with_context(|| format!("cannot open the host-nix port {device}"))?;
    let reader = port
        .try_clone()
        .with_context(|| format!("cannot open the host-nix port {device}"))?;
    let listener = listen(socket)?;
    relay(reader, port, listener);
    Ok(())
}

/// Binds `socket`, for root only: a connection builds as the host's user.
pub fn listen(socket: &Utf8Path) -> anyhow::Result<UnixListener> {
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {dir}"))?;
    }
    // A socket left by an earlier run of the relay (the unit restarted).
    let _ = std::fs::remove_file(socket);
    let listener =
        UnixListener::bind(socket).with_context(|| format!("cannot listen on {socket}"))?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot restrict {socket} to root"))?;
    Ok(listener)
}

/// One client, for the port's reader: a channel to the thread that
/// writes to it (so that one client that stops reading holds up no other
/// connection on the port) and what that channel holds, and the window of
/// what the client sends.
struct Client {
    output: mpsc::Sender<Vec<u8>>,
    backlog: Arc<Backlog>,
    window: Arc<Window>,
}

/// The clients by connection.
type Clients = Arc<Mutex<HashMap<u32, Client>>>;

/// Relays every client of `listener` over the port (`from_port`,
/// `to_port`) until the port ends; returns then, leaving the listener's
/// later clients unserved.
pub fn relay(
    from_port: impl Read + Send + 'static,
    to_port: impl Write + Send + 'static,
    listener: UnixListener,
) {
    let to_port = Arc::new(Mutex::new(to_port));
    let clients: Clients = Arc::new(Mutex::new(HashMap::new()));
    {
        let to_port = Arc::clone(&to_port);
        let clients = Arc::clone(&clients);
        thread::spawn(move || accept(&listener, &to_port, &clients));
    }
    let mut from_port = from_port;
    while let Ok(Some(frame)) = read_frame(&mut from_port) {
        let Ok(mut clients) = clients.lock() else {
            return;
        };
        let connection = frame.connection;
        match frame.kind {
            Kind::Data => {
                let Some(client) = clients.get(&connection) else {
                    continue;
                };
                if client.backlog.admit(frame.payload.len()) {
                    // A client that went away; its reader closes the
                    // connection.
                    let _ = client.output.send(frame.payload);
                } else {
                    // Past the window: the host broke the protocol; end
                    // this connection.
                    if let Some(client) = clients.remove(&connection) {
                        client.window.close();
                    }
                    send(&*to_port, &closing(connection));
                }
            }
            Kind::Credit => {
                if let Some(client) = clients.get(&connection) {
                    client.window.credit(frame.credited());
                }
            }
            // The host's end is gone: the client reads what came, then
            // the end, and is read no more.
            Kind::Close => {
                if let Some(client) = clients.remove(&connection) {
                    client.window.close();
                }
            }
            // Only the guest opens connections.
            Kind::Open => {}
        }
    }
    // The port is gone: every client's connection with it.
    let Ok(mut clients) = clients.lock() else {
        return;
    };
    for (_, client) in clients.drain() {
        client.window.close();
    }
}

/// Writes what the host sends to `client` until the connection ends,
/// crediting each chunk written, then shuts the client's socket: it reads
/// the end, and its reader thread sees its own and closes the connection
/// (the host ignores the second close).
fn write_client<W: Write>(
    mut client: UnixStream,
    output: mpsc::Receiver<Vec<u8>>,
    backlog: &Backlog,
    connection: u32,
    to_port: &Mutex<W>,
) {
    for bytes in output {
        if client.write_all(&bytes).is_err() {
            break;
        }
        backlog.written(bytes.len());
        if !send(to_port, &Frame::credit(connection, bytes.len())) {
            break;
        }
    }
    let _ = client.shutdown(Shutdown::Both);
}

/// Takes clients, one connection each, numbered from 1.
fn accept<W: Write + Send + 'static>(
    listener: &UnixListener,
    to_port: &Arc<Mutex<W>>,
    clients: &Clients,
) {
    let mut next: u32 = 1;
    for client in listener.incoming() {
        let Ok(client) = client else { continue };
        let Ok(reader) = client.try_clone() else {
            continue;
        };
        let connection = next;
        next = next.wrapping_add(1).max(1);
        let (output, outputs) = mpsc::channel();
        let backlog = Arc::new(Backlog::default());
        let window = Arc::new(Window::default());
        match clients.lock() {
            Ok(mut clients) => {
                clients.insert(
                    connection,
                    Client {
                        output,
                        backlog: Arc::clone(&backlog),
                        window: Arc::clone(&window),
                    },
                );
            }
            Err(_) => return,
        }
        {
            let to_port = Arc::clone(to_port);
            thread::spawn(move || write_client(client, outputs, &backlog, connection, &to_port));
        }
        if !send(
            &**to_port,
            &Frame {
                kind: Kind::Open,
                connection,
                payload: Vec::new(),
            },
        ) {
            return;
        }
        let to_port = Arc::clone(to_port);
        thread::spawn(move || pass_client(reader, connection, &window, &to_port));
    }
}

/// Frames what a client sends, while the window has room, until it closes
/// or the connection ends; then closes its connection.
fn pass_client<W: Write>(
    mut client: UnixStream,
    connection: u32,
    window: &Window,
    to_port: &Mutex<W>,
) {
    let mut buffer = vec![0u8; MAX_PAYLOAD];
    while window.wait_room() {
        match client.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                window.sent(n);
                let frame = Frame {
                    kind: Kind::Data,
                    connection,
                    payload: buffer[..n].to_vec(),
                };
                if !send(to_port, &frame) {
                    return;
                }
            }
        }
    }
    send(to_port, &closing(connection));
}

fn closing(connection: u32) -> Frame {
    Frame {
        kind: Kind::Close,
        connection,
        payload: Vec::new(),
    }
}

/// Writes one frame to the port; `false` once the port takes no more.
fn send<W: Write>(to_port: &Mutex<W>, frame: &Frame) -> bool {
    match to_port.lock() {
        Ok(mut port) => port
            .write_all(&frame.encode())
            .and_then(|()| port.flush())
            .is_ok(),
        Err(_) => false,
    }
}
