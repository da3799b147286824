//! Which sleeps nixos-shell's own processes make, seen by strace: a test
//! runs a command under [`Sleeps::trace`] and asks [`Sleeps::own`] for
//! the sleep calls of processes that ran nixos-shell's code (the first
//! process, its threads, and children before they exec another program),
//! leaving out those of the programs it started (nix, QEMU, virtiofsd).
//!
//! strace filters with seccomp-bpf (`--seccomp-bpf`), so only the traced
//! calls stop a process: a VM under it runs at nearly its usual speed.

use std::path::PathBuf;
use std::process::Command;

use crate::fs::on_path;

/// The calls a process sleeps on a timer with; `execve`, which tells
/// whose code a process runs; and the calls that make processes and
/// threads, which tell whose a new one is (a thread of QEMU is QEMU's).
const TRACED: &str = "trace=execve,fork,vfork,clone,clone3,nanosleep,clock_nanosleep";

/// A trace being written, in a temporary directory of its own.
pub struct Sleeps {
    _dir: tempfile::TempDir,
    log: PathBuf,
}

impl Sleeps {
    /// `command` run under strace, which follows every process it starts
    /// and logs their sleeps and execs; fails the test when strace is
    /// missing.
    pub fn trace(command: &Command) -> (Command, Sleeps) {
        let strace = on_path("strace").unwrap_or_else(|| {
            panic!("strace is missing: install the Debian package strace (apt-get install strace)")
        });
        let dir = tempfile::tempdir().expect("create a directory for the trace");
        let log = dir.path().join("strace.log");
        let mut traced = Command::new(strace);
        traced
            .args(["-f", "--seccomp-bpf", "-qq", "-e", TRACED, "-o"])
            .arg(&log)
            .arg("--")
            .arg(command.get_program())
            .args(command.get_args());
        traced.env_clear();
        for (name, value) in command.get_envs() {
            if let Some(value) = value {
                traced.env(name, value);
            }
        }
        if let Some(dir) = command.get_current_dir() {
            traced.current_dir(dir);
        }
        (traced, Sleeps { _dir: dir, log })
    }

    /// The trace, once the command has ended.
    fn text(&self) -> String {
        std::fs::read_to_string(&self.log)
            .unwrap_or_else(|err| panic!("cannot read the trace {}: {err}", self.log.display()))
    }

    /// The programs the traced processes started, in order.
    pub fn programs(&self) -> Vec<String> {
        parse(&self.text()).programs
    }

    /// Every sleep call of nixos-shell's own processes, as strace wrote it.
    pub fn own(&self) -> Vec<String> {
        parse(&self.text()).own_sleeps
    }
}

#[derive(Debug, Default, PartialEq)]
struct Parsed {
    programs: Vec<String>,
    own_sleeps: Vec<String>,
}

/// One line of a trace: its process, its call and where the call's
/// result is (a call cut in two by another process's is written as
/// `call(... <unfinished ...>` and later `<... call resumed>...) = result`).
struct Call<'a> {
    pid: &'a str,
    name: &'a str,
    /// The first quoted argument (an exec's program), if on this line.
    program: Option<&'a str>,
    result: Option<&'a str>,
}

impl<'a> Call<'a> {
    fn parse(line: &'a str) -> Option<Call<'a>> {
        let (pid, rest) = line.split_once(' ')?;
        let rest = rest.trim_start();
        let (name, resumed) = match rest.strip_prefix("<... ") {
            Some(resumed) => (resumed.split(' ').next()?, true),
            None => (rest.split('(').next()?, false),
        };
        // strace pads a resumed call's result: `<... x resumed>)   = 0`.
        let result = (!rest.ends_with("<unfinished ...>"))
            .then(|| rest.rsplit_once(" = ").map(|(_, result)| result))
            .flatten();
        let program = (!resumed).then(|| rest.split('"').nth(1)).flatten();
        Some(Call {
            pid,
            name,
            program,
            result,
        })
    }
}

/// Reads a trace of `strace -f -o`. A process runs nixos-shell's code
/// until it execs another program (the first process's first exec is
/// nixos-shell's own start); a new process or thread runs what its maker
/// ran when it was made.
fn parse(trace: &str) -> Parsed {
    let calls: Vec<(usize, &str, Call)> = trace
        .lines()
        .enumerate()
        .filter_map(|(at, line)| Call::parse(line).map(|call| (at, line, call)))
        .collect();
    let first = calls.first().map(|(_, _, call)| call.pid);
    let mut parsed = Parsed::default();
    // When each process exec'd another program, and who made it, when.
    let mut execed: Vec<(&str, usize)> = Vec::new();
    let mut made_by: Vec<(&str, &str, usize)> = Vec::new();
    let mut pending_program: Vec<(&str, &str)> = Vec::new();
    for (at, _, call) in &calls {
        if call.name == "execve" {
            if let Some(program) = call.program {
                pending_program.retain(|(pid, _)| *pid != call.pid);
                pending_program.push((call.pid, program));
            }
            if call.result == Some("0") {
                let program = pending_program
                    .iter()
                    .find(|(pid, _)| *pid == call.pid)
                    .map_or("", |(_, program)| program);
                let own_start = Some(call.pid) == first && parsed.programs.is_empty();
                parsed.programs.push(program.to_owned());
                if !own_start {
                    execed.push((call.pid, *at));
                }
            }
        } else if matches!(call.name, "fork" | "vfork" | "clone" | "clone3") {
            if let Some(child) = call.result.filter(|r| r.parse::<u32>().is_ok()) {
                made_by.push((child, call.pid, *at));
            }
        }
    }
    // Whether `pid` ran another program's code at line `at`.
    fn other(
        pid: &str,
        at: usize,
        execed: &[(&str, usize)],
        made_by: &[(&str, &str, usize)],
    ) -> bool {
        if execed.iter().any(|(p, when)| *p == pid && *when < at) {
            return true;
        }
        match made_by.iter().find(|(child, _, _)| *child == pid) {
            Some((_, parent, when)) => other(parent, *when, execed, made_by),
            None => false,
        }
    }
    for (at, line, call) in &calls {
        if call.name.ends_with("sleep") && !other(call.pid, *at, &execed, &made_by) {
            parsed.own_sleeps.push((*line).to_owned());
        }
    }
    parsed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleeps_of_programs_started_and_of_their_threads_are_not_our_own() {
        let trace = "\
10 execve(\"/bin/nixos-shell\", [\"nixos-shell\"], 0x1 /* 3 vars */) = 0
10 clone(child_stack=NULL, flags=SIGCHLD, child_tidptr=0x1) = 11
11 execve(\"/x/qemu\", [\"qemu\"], 0x1 /* 3 vars */ <unfinished ...>
10 clock_nanosleep(CLOCK_REALTIME, 0, {tv_sec=0, tv_nsec=20000000},  <unfinished ...>
11 <... execve resumed>)             = 0
11 clone3({flags=CLONE_VM|CLONE_THREAD, child_tid=0x2} <unfinished ...>
14 clock_nanosleep(CLOCK_REALTIME, 0, {tv_sec=0, tv_nsec=10000000}, 0x3) = 0
11 <... clone3 resumed> => {parent_tid=[14]}, 88) = 14
11 clock_nanosleep(CLOCK_MONOTONIC, 0, {tv_sec=1, tv_nsec=0}, NULL) = 0
10 clone3({flags=CLONE_VM|CLONE_THREAD, child_tid=0x4} => {parent_tid=[12]}, 88) = 12
12 nanosleep({tv_sec=0, tv_nsec=1000}, NULL) = 0
10 clone(child_stack=NULL, flags=SIGCHLD, child_tidptr=0x1) = 13
13 execve(\"/nowhere/qemu\", [\"qemu\"], 0x1 /* 3 vars */) = -1 ENOENT (No such file or directory)
13 nanosleep({tv_sec=0, tv_nsec=1}, NULL) = 0
";
        let parsed = parse(trace);
        assert_eq!(parsed.programs, ["/bin/nixos-shell", "/x/qemu"]);
        let own: Vec<&str> = parsed
            .own_sleeps
            .iter()
            .map(|line| line.split_once(' ').unwrap().0)
            .collect();
        assert_eq!(own, ["10", "12", "13"], "{:?}", parsed.own_sleeps);
    }
}
