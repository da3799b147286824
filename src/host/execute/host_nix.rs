//! The CLI's end of the host-nix port (`schema::host_nix`): a
//! `nix-daemon --stdio` of the user's for every connection the guest opens,
//! its standard streams relayed to the connection.
//!
//! `--stdio` serves one client on standard input and output over the store
//! nix opens for the user (`NIX_REMOTE`, else `auto`): on a multi-user host
//! the system daemon, which sees the user's uid (the connection forwarded,
//! or in later releases each operation passed on); on a single-user host
//! (or one whose daemon is not running) the user's own store, served
//! in-process to a trusted client (NixOS/nix src/nix/daemon.cc,
//! `runDaemon`'s `stdio` branch: `openUncachedStore()`, then
//! `forwardStdioConnection` or `processStdioConnection(store, Trusted)`;
//! src/libstore/store-api.cc `openFromNonUri` for `auto`). So the guest's
//! root builds as the user, no more. A daemon per connection confines a
//! client that speaks garbage: its daemon refuses it and ends, which closes
//! that connection and no other.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;

use camino::Utf8Path;

use crate::schema::host_nix::{read_frame, Backlog, Frame, Kind, Window, MAX_PAYLOAD};

/// One connection's daemon: a channel to the thread that writes its
/// input and what that channel holds, the window of its output, and the
/// process to reap.
struct Daemon {
    input: Option<mpsc::Sender<Vec<u8>>>,
    backlog: Arc<Backlog>,
    window: Arc<Window>,
    child: Child,
}

/// Relays the port `stream` until it ends: every [`Kind::Open`] starts
/// `daemon --stdio`; the guest's data goes to its input, its output comes
/// back, and either end closing closes the other. Daemons still running
/// when the port ends are stopped. Each daemon's input is written by a
/// thread of its own, so one that stops reading holds up no other
/// connection; what it has not read waits in its queue, at most
/// [`WINDOW`](crate::schema::host_nix::WINDOW) bytes, because the guest
/// sends no more until this end credits what the daemon took (and a guest
/// that does is cut off). Likewise a daemon's output is read only while
/// the guest has room for it: a guest client that does not read leaves
/// its daemon waiting on a full pipe, not this process holding its output.
pub fn relay(stream: UnixStream, daemon: &Utf8Path) {
    let Ok(writer) = stream.try_clone() else {
        return;
    };
    let writer = Arc::new(Mutex::new(writer));
    let mut daemons: HashMap<u32, Daemon> = HashMap::new();
    let mut reader = stream;
    while let Ok(Some(frame)) = read_frame(&mut reader) {
        let connection = frame.connection;
        match frame.kind {
            Kind::Open => {
                // A connection number the guest reuses (its role restarted)
                // ends the old connection's daemon first.
                if let Some(old) = daemons.remove(&connection) {
                    stop(old);
                }
                match start(daemon, connection, Arc::clone(&writer)) {
                    Some(started) => {
                        daemons.insert(connection, started);
                    }
                    None => send(&writer, &closing(connection)),
                }
            }
            Kind::Data => {
                let Some(running) = daemons.get_mut(&connection) else {
                    continue;
                };
                if !running.backlog.admit(frame.payload.len()) {
                    // Past the window: not our guest role; cut it off.
                    if let Some(old) = daemons.remove(&connection) {
                        stop(old);
                    }
                    send(&writer, &closing(connection));
                    continue;
                }
                // A daemon that takes no more has ended or is ending: its
                // output's end tells the guest.
                if let Some(input) = running.input.as_ref() {
                    let _ = input.send(frame.payload);
                }
            }
            Kind::Credit => {
                if let Some(running) = daemons.get(&connection) {
                    running.window.credit(frame.credited());
                }
            }
            Kind::Close => {
                if let Some(mut daemon) = daemons.remove(&connection) {
                    // End of input once what came is written, and no more
                    // output read: the client is gone, so no credit comes.
                    // The daemon ends at its input's end, or at its next
                    // write; reaped in the background.
                    daemon.input = None;
                    daemon.window.close();
                    thread::spawn(move || {
                        let _ = daemon.child.wait();
                    });
                }
            }
        }
    }
    for (_, daemon) in daemons {
        stop(daemon);
    }
}

/// Starts the daemon of `connection`, with a thread that writes its input
/// (crediting each chunk written) and one that sends its output to the
/// guest while the window has room and, at its end, [`Kind::Close`].
fn start(daemon: &Utf8Path, connection: u32, writer: Arc<Mutex<UnixStream>>) -> Option<Daemon> {
    let mut child = Command::new(daemon)
        .arg("--stdio")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        // Its log lines are not the terminal's: the client gets nix's
        // errors through the protocol.
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut stdin = child.stdin.take()?;
    let mut stdout = child.stdout.take()?;
    let (input, inputs) = mpsc::channel::<Vec<u8>>();
    let backlog = Arc::new(Backlog::default());
    let window = Arc::new(Window::default());
    {
        let backlog = Arc::clone(&backlog);
        let writer = Arc::clone(&writer);
        thread::spawn(move || {
            for bytes in inputs {
                if stdin.write_all(&bytes).is_err() {
                    break;
                }
                backlog.written(bytes.len());
                send(&writer, &Frame::credit(connection, bytes.len()));
            }
        });
    }
    {
        let window = Arc::clone(&window);
        thread::spawn(move || {
            let mut buffer = vec![0u8; MAX_PAYLOAD];
            while window.wait_room() {
                match stdout.read(&mut buffer) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        window.sent(n);
                        send(
                            &writer,
                            &Frame {
                                kind: Kind::Data,
                                connection,
                                payload: buffer[..n].to_vec(),
                            },
                        );
                    }
                }
            }
            send(&writer, &closing(connection));
        });
    }
    Some(Daemon {
        input: Some(input),
        backlog,
        window,
        child,
    })
}

/// Kills and reaps a daemon whose connection is gone.
fn stop(mut daemon: Daemon) {
    drop(daemon.input.take());
    daemon.window.close();
    let _ = daemon.child.kill();
    let _ = daemon.child.wait();
}

fn closing(connection: u32) -> Frame {
    Frame {
        kind: Kind::Close,
        connection,
        payload: Vec::new(),
    }
}

/// Writes one frame to the port; a port that takes no more means the VM is
/// ending, and the reader sees it end.
fn send(writer: &Mutex<UnixStream>, frame: &Frame) {
    if let Ok(mut stream) = writer.lock() {
        let _ = stream.write_all(&frame.encode());
    }
}

/// The relay end to end on this machine, the port a socket pair: the
/// host's own nix client, through the guest role's relay and this one, to
/// the host's own `nix-daemon --stdio`; and, for the flow control, a slow
/// reader and a fast writer in the daemon's place (a script whose pace
/// the test sets, which the real daemon's is not).
#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::net::UnixListener;
    use std::process::Output;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use camino::Utf8PathBuf;
    use nixos_shell_test_support::nix::fresh_derivation;

    use crate::guest::linux::host_nix as guest;
    use crate::host::gather;
    use crate::schema::host_nix::WINDOW;

    /// Both relays, joined by a socket pair, serving a socket in a
    /// temporary directory.
    struct Relayed {
        dir: tempfile::TempDir,
        socket: Utf8PathBuf,
    }

    /// The relays to the host's `nix-daemon`.
    fn relayed() -> Relayed {
        let env: std::collections::BTreeMap<String, String> = std::env::vars().collect();
        let daemon = gather::nix_daemon(&env).expect("the tests need nix-daemon on PATH");
        relayed_to(tempfile::tempdir().unwrap(), daemon)
    }

    fn relayed_to(dir: tempfile::TempDir, daemon: Utf8PathBuf) -> Relayed {
        let socket = Utf8PathBuf::from_path_buf(dir.path().join("host-nix.sock")).unwrap();
        let (guest_end, host_end) = UnixStream::pair().unwrap();
        let listener: UnixListener = guest::listen(&socket).unwrap();
        let from_port = guest_end.try_clone().unwrap();
        thread::spawn(move || guest::relay(from_port, guest_end, listener));
        thread::spawn(move || relay(host_end, &daemon));
        Relayed { dir, socket }
    }

    /// `nix-build` of `expression` through the relay's socket. (`timeout`
    /// only turns a relay that loses bytes, which leaves the client waiting
    /// for good, into a failure.)
    fn build(relayed: &Relayed, expression: &str) -> Output {
        Command::new("timeout")
            .args(["300", "nix-build", "--no-out-link", "-E", expression])
            .env("NIX_REMOTE", format!("unix://{}", relayed.socket))
            .output()
            .unwrap()
    }

    fn built_path(output: &Output) -> String {
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout.clone())
            .unwrap()
            .trim()
            .to_owned()
    }

    #[test]
    fn a_build_through_the_relay_lands_in_the_store_and_is_not_built_again() {
        let relayed = relayed();
        let fresh = fresh_derivation("once");
        let first = build(&relayed, &fresh.expression);
        let path = built_path(&first);
        assert!(
            String::from_utf8_lossy(&first.stderr).contains("will be built"),
            "{}",
            String::from_utf8_lossy(&first.stderr)
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), fresh.content);
        // The daemon's store, not the client's, says it is valid.
        let valid = Command::new("nix-store")
            .args(["--check-validity", &path])
            .env_remove("NIX_REMOTE")
            .status()
            .unwrap();
        assert!(valid.success());

        let again = build(&relayed, &fresh.expression);
        assert_eq!(built_path(&again), path);
        assert!(
            !String::from_utf8_lossy(&again.stderr).contains("will be built"),
            "{}",
            String::from_utf8_lossy(&again.stderr)
        );
    }

    #[test]
    fn two_builds_at_once_each_get_their_daemon() {
        let relayed = Arc::new(relayed());
        let builds: Vec<_> = ["left", "right"]
            .into_iter()
            .map(|word| {
                let relayed = Arc::clone(&relayed);
                thread::spawn(move || {
                    let fresh = fresh_derivation(word);
                    let path = built_path(&build(&relayed, &fresh.expression));
                    (fresh, path)
                })
            })
            .collect();
        for handle in builds {
            let (fresh, path) = handle.join().unwrap();
            assert_eq!(std::fs::read_to_string(&path).unwrap(), fresh.content);
        }
    }

    #[test]
    fn garbage_closes_its_connection_and_no_other() {
        let relayed = relayed();
        let mut waiting = UnixStream::connect(&relayed.socket).unwrap();
        let mut garbage = UnixStream::connect(&relayed.socket).unwrap();
        garbage.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        garbage.write_all(&[0xff; 4096]).unwrap();
        // Its daemon refuses the handshake and ends: the connection reads
        // to its end. (The timeout only keeps a broken relay from hanging
        // the test.)
        garbage
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let mut rest = Vec::new();
        garbage.read_to_end(&mut rest).unwrap();

        // The other connection still speaks the protocol: nix's client
        // greeting (WORKER_MAGIC_1, worker-protocol.hh) is answered with
        // WORKER_MAGIC_2.
        waiting.write_all(&0x6e69_7863u64.to_le_bytes()).unwrap();
        waiting
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let mut magic = [0u8; 8];
        waiting.read_exact(&mut magic).unwrap();
        assert_eq!(u64::from_le_bytes(magic), 0x6478_696f);

        // And a new client builds.
        let fresh = fresh_derivation("after");
        let path = built_path(&build(&relayed, &fresh.expression));
        assert_eq!(std::fs::read_to_string(path).unwrap(), fresh.content);
    }

    /// What a stalled connection may hold between a client and its daemon:
    /// the relays' window, and the kernel's buffers on the way (the
    /// client's socket, the port's socket pair, the daemon's pipe), each a
    /// few hundred KiB at most on Linux.
    const STALLED: usize = WINDOW + 2 * 1024 * 1024;

    /// How much the stream runs: far past [`STALLED`], so that a relay
    /// that queues without bound takes it all.
    const STREAM: usize = 32 * 1024 * 1024;

    /// Relays to `script` in the daemon's place (run as `script --stdio`).
    fn relayed_to_script(script: &str) -> Relayed {
        let dir = tempfile::tempdir().unwrap();
        let daemon = Utf8PathBuf::from_path_buf(dir.path().join("daemon")).unwrap();
        let script = script.replace("@dir@", dir.path().to_str().unwrap());
        std::fs::write(&daemon, format!("#!/bin/sh\n{script}\n")).unwrap();
        std::fs::set_permissions(&daemon, std::fs::Permissions::from_mode(0o755)).unwrap();
        relayed_to(dir, daemon)
    }

    /// Waits until `count` stops growing (1.5 s without change) or passes
    /// [`STALLED`], and returns it: a relay with flow control stalls below,
    /// one without takes the whole stream.
    fn settled(count: impl Fn() -> usize) -> usize {
        let mut last = count();
        let mut still = 0;
        while still < 15 && last <= STALLED {
            thread::sleep(Duration::from_millis(100));
            let now = count();
            still = if now == last { still + 1 } else { 0 };
            last = now;
        }
        last
    }

    #[test]
    fn a_client_that_writes_faster_than_its_daemon_reads_is_held_at_the_window() {
        // The daemon reads nothing until the test says so, then counts the
        // stream.
        let relayed = relayed_to_script(&format!(
            "while [ ! -e @dir@/go ]; do sleep 0.05; done; head -c {STREAM} | wc -c"
        ));
        let client = UnixStream::connect(&relayed.socket).unwrap();
        let written = Arc::new(AtomicUsize::new(0));
        let writer = {
            let written = Arc::clone(&written);
            let mut client = client.try_clone().unwrap();
            thread::spawn(move || {
                let chunk = vec![7u8; MAX_PAYLOAD];
                for _ in 0..STREAM / MAX_PAYLOAD {
                    client.write_all(&chunk).unwrap();
                    written.fetch_add(chunk.len(), Ordering::SeqCst);
                }
            })
        };
        let held = settled(|| written.load(Ordering::SeqCst));
        assert!(
            held <= STALLED,
            "the client wrote {held} bytes to a daemon that read none"
        );

        // Once the daemon reads, the whole stream arrives.
        std::fs::write(relayed.dir.path().join("go"), "").unwrap();
        writer.join().unwrap();
        let mut counted = String::new();
        let mut client = client;
        client
            .set_read_timeout(Some(Duration::from_secs(120)))
            .unwrap();
        client.read_to_string(&mut counted).unwrap();
        assert_eq!(counted.trim(), STREAM.to_string());
    }

    #[test]
    fn a_daemon_that_answers_faster_than_its_client_reads_is_held_at_the_window() {
        // The daemon writes the stream in chunks as fast as its output
        // takes them, counting each chunk written.
        let chunks = STREAM / MAX_PAYLOAD;
        let relayed = relayed_to_script(&format!(
            "i=0; while [ $i -lt {chunks} ]; do head -c {MAX_PAYLOAD} /dev/zero || exit; \
             i=$((i+1)); echo $i > @dir@/count.new; mv @dir@/count.new @dir@/count; done"
        ));
        let mut client = UnixStream::connect(&relayed.socket).unwrap();
        let count = relayed.dir.path().join("count");
        let written = || {
            std::fs::read_to_string(&count)
                .ok()
                .and_then(|text| text.trim().parse::<usize>().ok())
                .unwrap_or(0)
                * MAX_PAYLOAD
        };
        let held = settled(written);
        assert!(
            held <= STALLED,
            "the daemon wrote {held} bytes to a client that read none"
        );

        // Once the client reads, it gets the whole stream.
        client
            .set_read_timeout(Some(Duration::from_secs(120)))
            .unwrap();
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).unwrap();
        assert_eq!(answer.len(), STREAM);
    }
}
