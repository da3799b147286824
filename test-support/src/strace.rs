//! Whether nixos-shell's own processes sleep on a timer, seen by strace: a
//! test runs a command under [`Sleeps::trace`] and asks [`Sleeps::own`]
//! for the timer sleeps of processes that ran nixos-shell's code (the
//! first process, its threads, and children before they exec another
//! program), leaving out those of the programs it started (nix, QEMU,
//! virtiofsd).
//!
//! A timer sleep is a `nanosleep`/`clock_nanosleep`, or a wait with a
//! finite timeout (`poll`, `ppoll`, `select`, `pselect6`, `epoll_wait`,
//! `epoll_pwait`, `epoll_pwait2`, a waiting `futex`, which is what
//! `recv_timeout` and `park_timeout` come to) that is not a deadline. A
//! deadline is a bound on a wait that something else ends: it is at least
//! [`MIN_DEADLINE`] (the code's deadlines are seconds; a polling loop's
//! period is a fraction of one) and it does not expire in a run that goes
//! well. So a timed wait counts when it expired or, where strace shows
//! its timeout as a span (not a futex's absolute time), when that span is
//! shorter. A zero timeout only looks and never sleeps.
//!
//! strace detaches from a process when it execs another program
//! (`--detach-on=execve`): QEMU, whose main loop waits with timeouts all
//! the time, runs at its usual speed, untraced.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::fs::on_path;

/// The shortest timeout a deadline of nixos-shell's has.
pub const MIN_DEADLINE: Duration = Duration::from_secs(1);

/// The calls a process sleeps on a timer with, or waits with a timeout;
/// `execve`, which tells whose code a process runs; and the calls that
/// make processes and threads, which tell whose a new one is.
const TRACED: &str = "trace=execve,fork,vfork,clone,clone3,nanosleep,clock_nanosleep,\
poll,ppoll,select,pselect6,epoll_wait,epoll_pwait,epoll_pwait2,futex";

/// A trace being written, in a temporary directory of its own.
pub struct Sleeps {
    _dir: tempfile::TempDir,
    log: PathBuf,
}

impl Sleeps {
    /// `command` run under strace, which follows every process it starts
    /// until it execs another program, and logs their sleeps, timed waits
    /// and execs; fails the test when strace is missing.
    pub fn trace(command: &Command) -> (Command, Sleeps) {
        let strace = on_path("strace").unwrap_or_else(|| {
            panic!("strace is missing: install the Debian package strace (apt-get install strace)")
        });
        let dir = tempfile::tempdir().expect("create a directory for the trace");
        let log = dir.path().join("strace.log");
        let mut traced = Command::new(strace);
        traced
            .args(["-f", "--detach-on=execve", "-qq", "-e", TRACED, "-o"])
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

    /// Every timer sleep of nixos-shell's own processes, as strace wrote
    /// it (a call strace cut in two, joined).
    pub fn own(&self) -> Vec<String> {
        parse(&self.text()).own_sleeps
    }
}

#[derive(Debug, Default, PartialEq)]
struct Parsed {
    programs: Vec<String>,
    own_sleeps: Vec<String>,
}

/// One call of a trace, joined when strace cut it in two (written as
/// `call(args <unfinished ...>` and later `<... call resumed>args) = result`).
struct Call<'a> {
    pid: &'a str,
    name: &'a str,
    /// The text between the parentheses.
    args: String,
    result: Option<&'a str>,
    /// The whole call, as written.
    line: String,
}

impl Call<'_> {
    /// The first quoted argument (an exec's program).
    fn program(&self) -> Option<&str> {
        self.args.split('"').nth(1)
    }

    /// Whether this is a timer sleep: a sleep call, or a wait whose finite
    /// timeout is no deadline (see the module's header).
    fn sleeps_on_a_timer(&self) -> bool {
        if self.name.ends_with("sleep") {
            return true;
        }
        let args = top_level(&self.args);
        let (timeout, relative) = match self.name {
            "poll" => (args.get(2), true),
            "ppoll" => (args.get(2), true),
            "select" | "pselect6" => (args.get(4), true),
            "epoll_wait" | "epoll_pwait" | "epoll_pwait2" => (args.get(3), true),
            // FUTEX_WAIT's timeout is a span, FUTEX_WAIT_BITSET's (what Rust's
            // std uses) a point in time; FUTEX_WAKE and the like have none.
            "futex" => match args.get(1) {
                Some(op) if op.starts_with("FUTEX_WAIT_BITSET") => (args.get(3), false),
                Some(op) if op.starts_with("FUTEX_WAIT") => (args.get(3), true),
                _ => return false,
            },
            _ => return false,
        };
        let Some(timeout) = timeout.map(|t| Timeout::parse(t)) else {
            return false;
        };
        let expired = match self.result {
            Some(result) if self.name == "futex" => result.contains("ETIMEDOUT"),
            Some(result) => result.starts_with("0"),
            None => false,
        };
        match timeout {
            Timeout::Infinite | Timeout::Zero => false,
            Timeout::Finite(span) => expired || (relative && span < MIN_DEADLINE),
        }
    }
}

/// A wait's timeout as strace writes it.
enum Timeout {
    Infinite,
    Zero,
    Finite(Duration),
}

impl Timeout {
    /// `-1` or `NULL` (none), milliseconds, or `{tv_sec=S, tv_nsec=N}` (or
    /// `tv_usec`).
    fn parse(text: &str) -> Timeout {
        let text = text.trim();
        if text == "NULL" || text.starts_with('-') {
            return Timeout::Infinite;
        }
        let span = if let Ok(ms) = text.parse::<u64>() {
            Duration::from_millis(ms)
        } else {
            let field = |name: &str| -> u64 {
                text.split(['{', '}', ','])
                    .filter_map(|f| f.trim().strip_prefix(name))
                    .find_map(|v| v.strip_prefix('=').and_then(|v| v.parse().ok()))
                    .unwrap_or(0)
            };
            Duration::from_secs(field("tv_sec"))
                + Duration::from_nanos(field("tv_nsec"))
                + Duration::from_micros(field("tv_usec"))
        };
        if span.is_zero() {
            Timeout::Zero
        } else {
            Timeout::Finite(span)
        }
    }
}

/// A call's arguments, split at the commas outside brackets and quotes.
fn top_level(args: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut quoted, mut escaped, mut from) = (0i32, false, false, 0);
    for (at, c) in args.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '(' | '[' | '{' if !quoted => depth += 1,
            ')' | ']' | '}' if !quoted => depth -= 1,
            ',' if !quoted && depth == 0 => {
                parts.push(args[from..at].trim());
                from = at + 1;
            }
            _ => {}
        }
    }
    parts.push(args[from..].trim());
    parts
}

/// The calls of a trace in the order they began, each cut call joined
/// with its resumption (one never resumed, as a killed process leaves it,
/// has no result).
fn calls(trace: &str) -> Vec<Call<'_>> {
    let mut calls: Vec<Call> = Vec::new();
    // Calls cut in two: their process, name and place in `calls`.
    let mut unfinished: Vec<(&str, &str, usize)> = Vec::new();
    for line in trace.lines() {
        let Some((pid, rest)) = line.split_once(' ') else {
            continue;
        };
        let rest = rest.trim_start();
        let (name, tail, resumes) = match rest.strip_prefix("<... ") {
            Some(resumed) => {
                let Some((name, tail)) = resumed.split_once(" resumed>") else {
                    continue;
                };
                let Some(at) = unfinished
                    .iter()
                    .position(|(p, n, _)| *p == pid && *n == name)
                else {
                    continue;
                };
                (name, tail, Some(unfinished.remove(at).2))
            }
            None => match rest.split_once('(') {
                Some((name, tail)) if !rest.starts_with("---") => (name, tail, None),
                _ => continue,
            },
        };
        let (tail, cut) = match tail.strip_suffix(" <unfinished ...>") {
            Some(head) => (head, true),
            None => (tail, false),
        };
        let detached = tail.ends_with("<detached ...>");
        let (args, result) = match tail.rsplit_once(" = ") {
            Some((args, result)) if !detached && !cut => (args.trim_end(), Some(result.trim())),
            _ => (tail.trim_end_matches("<detached ...>").trim_end(), None),
        };
        let args = args.strip_suffix(')').unwrap_or(args);
        let at = match resumes {
            Some(at) => {
                let call = &mut calls[at];
                call.args.push_str(args);
                call.result = result;
                at
            }
            None => {
                calls.push(Call {
                    pid,
                    name,
                    args: args.to_owned(),
                    result,
                    line: String::new(),
                });
                calls.len() - 1
            }
        };
        if cut {
            unfinished.push((pid, name, at));
        }
        let call = &mut calls[at];
        call.line = format!(
            "{pid} {name}({}){}",
            call.args,
            call.result.map(|r| format!(" = {r}")).unwrap_or_default()
        );
    }
    calls
}

/// Reads a trace of `strace -f -o`. A process runs nixos-shell's code
/// until it execs another program (the first process's first exec is
/// nixos-shell's own start); a new process or thread runs what its maker
/// ran when it was made.
fn parse(trace: &str) -> Parsed {
    let calls = calls(trace);
    let first = calls.first().map(|call| call.pid);
    let mut parsed = Parsed::default();
    // When each process exec'd another program, and who made it, when.
    let mut execed: Vec<(&str, usize)> = Vec::new();
    let mut made_by: Vec<(&str, &str, usize)> = Vec::new();
    for (at, call) in calls.iter().enumerate() {
        if call.name == "execve" {
            // strace detaches as an exec begins: its line ends so, or,
            // when another process's call cut it in two, is never resumed.
            if call.result == Some("0") || call.result.is_none() {
                let own_start = Some(call.pid) == first && parsed.programs.is_empty();
                parsed
                    .programs
                    .push(call.program().unwrap_or_default().to_owned());
                if !own_start {
                    execed.push((call.pid, at));
                }
            }
        } else if matches!(call.name, "fork" | "vfork" | "clone" | "clone3") {
            if let Some(child) = call.result.filter(|r| r.parse::<u32>().is_ok()) {
                made_by.push((child, call.pid, at));
            }
        }
    }
    // Whether `pid` ran another program's code at call `at`.
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
    for (at, call) in calls.iter().enumerate() {
        if call.sleeps_on_a_timer() && !other(call.pid, at, &execed, &made_by) {
            parsed.own_sleeps.push(call.line.clone());
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

    #[test]
    fn waits_that_expire_or_poll_faster_than_a_deadline_are_timer_sleeps() {
        let trace = "\
10 execve(\"/bin/nixos-shell\", [\"nixos-shell\"], 0x1 /* 3 vars */) = 0
10 poll([{fd=3, events=POLLIN}, {fd=4, events=POLLIN}], 2, -1) = 1 ([{fd=3, revents=POLLIN}])
10 poll([{fd=3, events=POLLIN}], 1, 0) = 0 (Timeout)
10 poll([{fd=3, events=POLLIN}], 1, 50) = 0 (Timeout)
10 poll([{fd=3, events=POLLIN}], 1, 100) = 1 ([{fd=3, revents=POLLIN}])
10 ppoll([{fd=3, events=POLLIN}], 1, {tv_sec=4, tv_nsec=999000000}, NULL, 8) = 1 ([{fd=3, revents=POLLIN}])
10 ppoll([{fd=3, events=POLLIN}], 1, {tv_sec=4, tv_nsec=0}, NULL, 8 <unfinished ...>
10 <... ppoll resumed>) = 0 (Timeout)
10 pselect6(4, [3], NULL, NULL, {tv_sec=0, tv_nsec=50000000}, NULL) = 1 (in [3])
10 futex(0x1, FUTEX_WAKE_PRIVATE, 1) = 0
10 futex(0x1, FUTEX_WAIT_PRIVATE, 2, NULL) = 0
10 futex(0x1, FUTEX_WAIT_BITSET_PRIVATE|FUTEX_CLOCK_REALTIME, 0, {tv_sec=373, tv_nsec=1}, FUTEX_BITSET_MATCH_ANY) = 0
10 futex(0x2, FUTEX_WAIT_BITSET_PRIVATE, 0, {tv_sec=373, tv_nsec=1}, FUTEX_BITSET_MATCH_ANY) = -1 ETIMEDOUT (Connection timed out)
10 epoll_wait(5, [], 8, 10) = 0
10 clone(child_stack=NULL, flags=SIGCHLD, child_tidptr=0x1) = 11
11 execve(\"/x/qemu\", [\"qemu\"], 0x1 /* 3 vars */ <detached ...>
10 clone(child_stack=NULL, flags=SIGCHLD, child_tidptr=0x1) = 12
12 execve(\"/x/virtiofsd\", [\"virtiofsd\"], 0x1 /* 3 vars */ <unfinished ...>
11 ppoll([{fd=3, events=POLLIN}], 1, {tv_sec=0, tv_nsec=1000}, NULL, 8) = 0 (Timeout)
";
        let parsed = parse(trace);
        assert_eq!(
            parsed.programs,
            ["/bin/nixos-shell", "/x/qemu", "/x/virtiofsd"]
        );
        assert_eq!(
            parsed.own_sleeps,
            [
                "10 poll([{fd=3, events=POLLIN}], 1, 50) = 0 (Timeout)",
                "10 poll([{fd=3, events=POLLIN}], 1, 100) = 1 ([{fd=3, revents=POLLIN}])",
                "10 ppoll([{fd=3, events=POLLIN}], 1, {tv_sec=4, tv_nsec=0}, NULL, 8) = 0 (Timeout)",
                "10 pselect6(4, [3], NULL, NULL, {tv_sec=0, tv_nsec=50000000}, NULL) = 1 (in [3])",
                "10 futex(0x2, FUTEX_WAIT_BITSET_PRIVATE, 0, {tv_sec=373, tv_nsec=1}, \
                 FUTEX_BITSET_MATCH_ANY) = -1 ETIMEDOUT (Connection timed out)",
                "10 epoll_wait(5, [], 8, 10) = 0",
            ]
        );
    }
}
