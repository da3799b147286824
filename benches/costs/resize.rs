//! The console's size figures: how long after the host terminal changes
//! size the program in front on the guest's console gets SIGWINCH with the
//! new size, through nixos-shell's resize port and the guest's follower;
//! and how long after QEMU's start the guest applies its first size (the
//! host's answer to the follower's request), against when the command,
//! which starts only after it, prints that size.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};

use nixos_shell_test_support::fs::{on_path, write_executable};
use nixos_shell_test_support::sh::quote;
use nixos_shell_test_support::vm::{Console, Era, PRINT_SIZE_ON_WINCH, WAITING_FOR_WINCH};
use nixos_shell_test_support::vm_fixture::{self, Fixture};

use crate::table::{Row, Unit};
use crate::{guarded, Bench, BOOT_TIMEOUT, PATHS};

/// Resizes per figure: one VM serves them all.
const RESIZES: usize = 21;

impl Bench {
    pub(crate) fn resize(&self) -> Vec<Row> {
        let labels = ["console resize: host terminal to the guest program's SIGWINCH".to_string()];
        eprintln!("costs: console resize");
        match guarded(&labels, || self.try_resize()) {
            Ok(delays) => {
                vec![Row::measured(labels[0].clone(), Unit::Seconds, &delays)
                    .goal("< 1 s", |v| v < 1.0)]
            }
            Err(rows) => rows,
        }
        .into_iter()
        .chain(self.first_size())
        .collect()
    }

    fn first_size(&self) -> Vec<Row> {
        let labels = [
            "console size: QEMU's start to the guest's first size (the host's answer)".to_string(),
            "console size: QEMU's start to the command's `stty size` output".to_string(),
        ];
        eprintln!("costs: the console's first size");
        match guarded(&labels, || self.try_first_size()) {
            Ok(series) => vec![
                Row::measured(labels[0].clone(), Unit::Seconds, &series.answered),
                Row::measured(labels[1].clone(), Unit::Seconds, &series.command),
            ],
            Err(rows) => rows,
        }
    }

    /// Boots `--command 'stty size'` with QEMU's resize socket behind a
    /// relay that notes when the host's answer passes; the terminal is
    /// resized as nixos-shell starts, so the answer is the new size, which
    /// the command must print.
    fn try_first_size(&self) -> Result<FirstSizes> {
        let fx = Fixture::new(PATHS, Era::NineP);
        let files = RelayFiles::under(&fx.path("tmp"));
        let path = std::env::join_paths(
            std::iter::once(self.relaying_qemu()?).chain(std::env::split_paths(&self.path_env()?)),
        )?;
        let run = || -> Result<(f64, f64)> {
            let _ = std::fs::remove_file(&files.relay);
            let listener = UnixListener::bind(&files.relay).context("bind the relay's socket")?;
            let real = files.real.clone();
            let relay = std::thread::spawn(move || relay_until_answered(&listener, &real));
            let mut cmd = fx.command(&["--command", "stty size"]);
            cmd.env("NIX_CONFIG", &self.nix_config)
                .env("PATH", &path)
                .env(QEMU_START_ENV, &files.qemu_start)
                .env(REAL_SOCKET_ENV, &files.real)
                .env(RELAY_SOCKET_ENV, &files.relay);
            let mut console = Console::spawn(cmd, vm_fixture::ROWS, vm_fixture::COLS);
            console.resize(41, 123);
            console.expect("41 123", BOOT_TIMEOUT);
            let printed = epoch_now()?;
            let status = console.wait(BOOT_TIMEOUT);
            if !status.success() {
                bail!(
                    "nixos-shell exited with {status}:\n{}",
                    console.transcript()
                );
            }
            let answered = relay
                .join()
                .map_err(|_| anyhow::anyhow!("the relay panicked"))??;
            let started: f64 = std::fs::read_to_string(&files.qemu_start)?.trim().parse()?;
            Ok((answered - started, printed - started))
        };
        run()?;
        let mut series = FirstSizes::default();
        for i in 0..self.boot_runs {
            eprintln!("costs:   run {}/{}", i + 1, self.boot_runs);
            let (answered, command) = run()?;
            series.answered.push(answered);
            series.command.push(command);
        }
        Ok(series)
    }

    /// A directory holding `qemu-system-x86_64`: the real one, started with
    /// its resize port's socket swapped for the relay's, after writing down
    /// when it started (bash's `$EPOCHREALTIME`) and the real socket's path.
    fn relaying_qemu(&self) -> Result<PathBuf> {
        let real = on_path("qemu-system-x86_64")
            .context("qemu-system-x86_64 is not on PATH (Debian package qemu-system-x86)")?;
        let dir = self.root.path().join("relaying-qemu");
        std::fs::create_dir_all(&dir)?;
        let chardev = "socket,id=nixos-shell-resize,path=";
        write_executable(
            &dir.join("qemu-system-x86_64"),
            &format!(
                "#!/bin/bash\n\
                 echo \"$EPOCHREALTIME\" > \"${QEMU_START_ENV}\"\n\
                 args=()\n\
                 for arg in \"$@\"; do\n\
                 \x20 case \"$arg\" in\n\
                 \x20   {chardev}*) printf '%s' \"${{arg#{chardev}}}\" > \"${REAL_SOCKET_ENV}\"; arg=\"{chardev}${RELAY_SOCKET_ENV}\" ;;\n\
                 \x20 esac\n\
                 \x20 args+=(\"$arg\")\n\
                 done\n\
                 exec {} \"${{args[@]}}\"\n",
                quote(&real.to_string_lossy())
            ),
        );
        Ok(dir)
    }

    fn try_resize(&self) -> Result<Vec<f64>> {
        let fx = Fixture::new(PATHS, Era::NineP);
        let cmd = self.vm_env()?(fx.command(&[]));
        let mut vm = Console::spawn(cmd, vm_fixture::ROWS, vm_fixture::COLS);
        vm.wait_for_shell();
        let mut delays = Vec::new();
        for i in 0..RESIZES {
            vm.send(&format!("{PRINT_SIZE_ON_WINCH}\n"));
            vm.expect(WAITING_FOR_WINCH, crate::BOOT_TIMEOUT);
            let (rows, cols) = (20 + (i % 2) as u16 * 10, 80 + i as u16);
            let start = Instant::now();
            vm.resize(rows, cols);
            vm.expect(&format!("resized-to {rows} {cols}-"), crate::BOOT_TIMEOUT);
            delays.push(start.elapsed().as_secs_f64());
        }
        vm.send("poweroff\n");
        vm.wait(crate::BOOT_TIMEOUT);
        Ok(delays)
    }
}

/// The variables the relaying QEMU reads: where to write its start, where
/// to write the real socket's path, and the relay's socket.
const QEMU_START_ENV: &str = "NIXOS_SHELL_BENCH_QEMU_START";
const REAL_SOCKET_ENV: &str = "NIXOS_SHELL_BENCH_REAL_RESIZE_SOCKET";
const RELAY_SOCKET_ENV: &str = "NIXOS_SHELL_BENCH_RELAY_SOCKET";

/// The relay's files.
struct RelayFiles {
    qemu_start: PathBuf,
    /// Holds the path of nixos-shell's resize socket, once QEMU started.
    real: PathBuf,
    relay: PathBuf,
}

impl RelayFiles {
    fn under(dir: &Path) -> RelayFiles {
        RelayFiles {
            qemu_start: dir.join("qemu-start"),
            real: dir.join("real-resize-socket"),
            relay: dir.join("relay.sock"),
        }
    }
}

#[derive(Default)]
struct FirstSizes {
    answered: Vec<f64>,
    command: Vec<f64>,
}

fn epoch_now() -> Result<f64> {
    Ok(SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs_f64())
}

/// Takes QEMU's connection on `listener`, connects it to nixos-shell's
/// socket (whose path the file `real` holds by then) and passes bytes both
/// ways until either end closes; when the first bytes from nixos-shell
/// passed, as seconds since the epoch.
fn relay_until_answered(listener: &UnixListener, real: &Path) -> Result<f64> {
    let (qemu, _) = listener
        .accept()
        .context("QEMU did not connect to the relay")?;
    let socket = std::fs::read_to_string(real).context("the relaying QEMU wrote no socket path")?;
    let host = UnixStream::connect(socket.trim()).context("connect to nixos-shell's socket")?;
    let (mut qemu_in, mut host_out) = (qemu.try_clone()?, host.try_clone()?);
    std::thread::spawn(move || std::io::copy(&mut qemu_in, &mut host_out));
    let (mut host_in, mut qemu_out) = (host, qemu);
    let mut buf = [0u8; 256];
    let mut answered = None;
    loop {
        let n = host_in.read(&mut buf)?;
        if n == 0 {
            break;
        }
        answered.get_or_insert(epoch_now()?);
        if qemu_out.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    answered.context("nixos-shell never answered the guest's request")
}
