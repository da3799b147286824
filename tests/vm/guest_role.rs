//! The guest role in a real VM, without the CLI: each test writes a session
//! directory by hand and passes the `-virtfs` arguments the CLI would. The
//! run script is the 9p era's: the CLI passes its shares as `-virtfs` in
//! both eras, and the CLI tests cover the virtiofs era.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;

use crate::support::vm::{self, Console, Era, RunScript, BOOT_TIMEOUT};
use crate::PATHS;

/// A host side for one VM: a home with a project directory, a read-only
/// share and the session directory.
struct Host {
    base: tempfile::TempDir,
}

impl Host {
    fn new() -> Host {
        let base = tempfile::tempdir().expect("create a temp dir");
        for dir in ["home/project", "ro", "session", "tmp"] {
            std::fs::create_dir_all(base.path().join(dir)).expect("create a host dir");
        }
        Host { base }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.base.path().join(rel)
    }

    fn facts(&self, command: Option<&str>) -> serde_json::Value {
        json!({
            "version": 1,
            "user": "tester",
            "home": self.path("home"),
            "cwd": self.path("home/project"),
            "term": "xterm-nixos-shell-test",
            "path": "/host/bin",
            "authorizedKeys": ["ssh-ed25519 AAAAtest tester@host"],
            "mounts": [
                {"tag": "home", "guestPath": self.path("home"), "cache": "none",
                 "msize": 262144},
                {"tag": "ro1", "guestPath": "/srv/ro", "cache": "loose",
                 "readOnly": true, "msize": 262144},
            ],
            "command": command,
        })
    }

    fn write_facts(&self, text: &str) {
        std::fs::write(self.path("session/facts.json"), text).expect("write facts");
    }

    /// Boots the fixture run script with the shares; `session` adds the
    /// session share.
    fn boot(&self, session: bool) -> Console {
        let script = self.path("run-vm");
        RunScript::new(PATHS, Era::NineP, "vm").write(&script);
        let mut command = Command::new(&script);
        command
            .current_dir(self.base.path())
            .env("NIX_DISK_IMAGE", self.path("vm.qcow2"))
            // Without USE_TMPDIR the script makes a directory of its own,
            // as when started by hand: here, not in the machine's /tmp.
            .env("TMPDIR", self.path("tmp"))
            .env_remove("USE_TMPDIR");
        if session {
            command.args(vm::virtfs(&self.path("session"), "nixos-shell", false));
        }
        command
            .args(vm::virtfs(&self.path("home"), "home", false))
            .args(vm::virtfs(&self.path("ro"), "ro1", true));
        Console::spawn(command, 24, 80)
    }
}

fn path_str(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

#[test]
fn guest_role_mounts_shares_and_writes_the_login_environment() {
    let host = Host::new();
    host.write_facts(&host.facts(None).to_string());
    std::fs::write(host.path("home/from-host"), "written on the host\n").unwrap();
    std::fs::write(host.path("ro/file"), "kept on the host\n").unwrap();
    let mut vm = host.boot(true);
    vm.wait_for_shell();

    let (out, _) = vm.sh("pwd");
    assert!(out.contains(&path_str(&host.path("home/project"))), "{out}");
    let (out, _) = vm.sh("echo \"term=$TERM home=$HOME user=$USER\"");
    assert!(
        out.contains(&format!(
            "term=xterm-nixos-shell-test home={} user=tester",
            path_str(&host.path("home"))
        )),
        "{out}"
    );
    let (out, _) = vm.sh("echo \"path=$PATH\"");
    assert!(out.contains("path=/host/bin:/"), "{out}");

    let (out, status) = vm.sh("cat ../from-host");
    assert_eq!(status, 0, "{out}");
    assert!(out.contains("written on the host"), "{out}");
    let (_, status) = vm.sh("echo written in the guest > ../from-guest");
    assert_eq!(status, 0);
    assert_eq!(
        std::fs::read_to_string(host.path("home/from-guest")).unwrap(),
        "written in the guest\n"
    );

    let (out, status) = vm.sh("cat /srv/ro/file");
    assert_eq!(status, 0, "{out}");
    assert!(out.contains("kept on the host"), "{out}");
    let (out, status) = vm.sh("touch /srv/ro/new");
    assert_ne!(status, 0, "a write to the read-only share succeeded: {out}");
    assert!(!host.path("ro/new").exists());

    let (out, _) = vm.sh("cat /run/nixos-shell/authorized-keys/root");
    assert!(out.contains("ssh-ed25519 AAAAtest tester@host"), "{out}");

    vm.send("exit\n");
    assert!(vm.wait(BOOT_TIMEOUT).success());
}

#[test]
fn guest_role_runs_the_command_on_the_console_and_reports_its_status() {
    let host = Host::new();
    let facts = host.facts(Some("echo \"command ran in $(pwd)\"; exit 7"));
    host.write_facts(&facts.to_string());
    let mut vm = host.boot(true);
    vm.expect(
        &format!("command ran in {}", path_str(&host.path("home/project"))),
        BOOT_TIMEOUT,
    );
    assert!(vm.wait(BOOT_TIMEOUT).success());
    let result = std::fs::read_to_string(host.path("session/result.json")).unwrap();
    assert_eq!(result, r#"{"version":1,"exitCode":7}"#);
}

#[test]
fn guest_role_without_a_session_share_does_nothing() {
    let host = Host::new();
    let mut vm = host.boot(false);
    vm.expect("no host facts", BOOT_TIMEOUT);
    vm.wait_for_shell();
    assert!(!vm.transcript().contains("warning"), "{}", vm.transcript());
}
