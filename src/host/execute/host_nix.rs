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

use crate::schema::host_nix::{read_frame, Frame, Kind, MAX_PAYLOAD};

/// One connection's daemon: a channel to the thread that writes its
/// input, and the process to reap.
struct Daemon {
    input: Option<mpsc::Sender<Vec<u8>>>,
    child: Child,
}

/// Relays the port `stream` until it ends: every [`Kind::Open`] starts
/// `daemon --stdio`; the guest's data goes to its input, its output comes
/// back, and either end closing closes the other. Daemons still running
/// when the port ends are stopped. Each daemon's input is written by a
/// thread of its own, so one that stops reading holds up no other
/// connection (what it has not read waits in memory: only the guest's
/// root can send it, and it could as well fill the user's disk).
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
                    None => send(&writer, Kind::Close, connection, &[]),
                }
            }
            Kind::Data => {
                // A daemon that takes no more has ended or is ending: its
                // output's end tells the guest.
                if let Some(input) = daemons
                    .get_mut(&connection)
                    .and_then(|daemon| daemon.input.as_ref())
                {
                    let _ = input.send(frame.payload);
                }
            }
            Kind::Close => {
                if let Some(mut daemon) = daemons.remove(&connection) {
                    // End of input once what came is written: the daemon
                    // finishes what it was asked and exits; reaped in the
                    // background.
                    daemon.input = None;
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
/// and one that sends its output to the guest and, at its end,
/// [`Kind::Close`].
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
    thread::spawn(move || {
        for bytes in inputs {
            if stdin.write_all(&bytes).is_err() {
                break;
            }
        }
    });
    thread::spawn(move || {
        let mut buffer = vec![0u8; MAX_PAYLOAD];
        loop {
            match stdout.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => send(&writer, Kind::Data, connection, &buffer[..n]),
            }
        }
        send(&writer, Kind::Close, connection, &[]);
    });
    Some(Daemon {
        input: Some(input),
        child,
    })
}

/// Kills and reaps a daemon whose connection is gone.
fn stop(mut daemon: Daemon) {
    drop(daemon.input.take());
    let _ = daemon.child.kill();
    let _ = daemon.child.wait();
}

/// Writes one frame to the port; a port that takes no more means the VM is
/// ending, and the reader sees it end.
fn send(writer: &Mutex<UnixStream>, kind: Kind, connection: u32, payload: &[u8]) {
    let frame = Frame {
        kind,
        connection,
        payload: payload.to_vec(),
    };
    if let Ok(mut stream) = writer.lock() {
        let _ = stream.write_all(&frame.encode());
    }
}

/// The relay end to end on this machine, the port a socket pair: the
/// host's own nix client, through the guest role's relay and this one, to
/// the host's own `nix-daemon --stdio`.
#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;
    use std::process::Output;

    use camino::Utf8PathBuf;

    use crate::guest::linux::host_nix as guest;
    use crate::host::gather;

    /// Both relays, joined by a socket pair, serving a socket in a
    /// temporary directory.
    struct Relayed {
        _dir: tempfile::TempDir,
        socket: Utf8PathBuf,
    }

    fn relayed() -> Relayed {
        let dir = tempfile::tempdir().unwrap();
        let socket = Utf8PathBuf::from_path_buf(dir.path().join("host-nix.sock")).unwrap();
        let env: std::collections::BTreeMap<String, String> = std::env::vars().collect();
        let daemon = gather::nix_daemon(&env).expect("the tests need nix-daemon on PATH");
        let (guest_end, host_end) = UnixStream::pair().unwrap();
        let listener: UnixListener = guest::listen(&socket).unwrap();
        let from_port = guest_end.try_clone().unwrap();
        thread::spawn(move || guest::relay(from_port, guest_end, listener));
        thread::spawn(move || relay(host_end, &daemon));
        Relayed { _dir: dir, socket }
    }

    /// A derivation no store has yet: its output holds `word` and a
    /// nonce of this run.
    fn fresh_derivation(word: &str) -> String {
        let nonce = format!(
            "{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        );
        format!(
            r#"derivation {{ name = "host-nix-{word}"; system = builtins.currentSystem; builder = "/bin/sh"; args = [ "-c" "echo {word} {nonce} > $out" ]; }}"#
        )
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
        let expression = fresh_derivation("once");
        let first = build(&relayed, &expression);
        let path = built_path(&first);
        assert!(
            String::from_utf8_lossy(&first.stderr).contains("will be built"),
            "{}",
            String::from_utf8_lossy(&first.stderr)
        );
        assert!(std::fs::read_to_string(&path).unwrap().starts_with("once "));
        // The daemon's store, not the client's, says it is valid.
        let valid = Command::new("nix-store")
            .args(["--check-validity", &path])
            .env_remove("NIX_REMOTE")
            .status()
            .unwrap();
        assert!(valid.success());

        let again = build(&relayed, &expression);
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
                    let path = built_path(&build(&relayed, &fresh_derivation(word)));
                    (word, path)
                })
            })
            .collect();
        for handle in builds {
            let (word, path) = handle.join().unwrap();
            let content = std::fs::read_to_string(&path).unwrap();
            assert!(content.starts_with(&format!("{word} ")), "{content}");
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
            .set_read_timeout(Some(std::time::Duration::from_secs(60)))
            .unwrap();
        let mut rest = Vec::new();
        garbage.read_to_end(&mut rest).unwrap();

        // The other connection still speaks the protocol: nix's client
        // greeting (WORKER_MAGIC_1, worker-protocol.hh) is answered with
        // WORKER_MAGIC_2.
        waiting.write_all(&0x6e69_7863u64.to_le_bytes()).unwrap();
        waiting
            .set_read_timeout(Some(std::time::Duration::from_secs(60)))
            .unwrap();
        let mut magic = [0u8; 8];
        waiting.read_exact(&mut magic).unwrap();
        assert_eq!(u64::from_le_bytes(magic), 0x6478_696f);

        // And a new client builds.
        let path = built_path(&build(&relayed, &fresh_derivation("after")));
        assert!(std::fs::read_to_string(path).unwrap().starts_with("after "));
    }
}
