//! Priority-900 defaults, the user's settings over them, and assertions.

use serde_json::json;

use super::standin;
use crate::support::vm::Era;

/// What the module sets for a throwaway development VM.
const DEFAULTS: &str = "{
  memorySize = config.virtualisation.memorySize;
  graphics = config.virtualisation.graphics;
  firewall = config.networking.firewall.enable;
  autologin = config.services.getty.autologinUser;
  rootPassword = config.users.users.root.initialHashedPassword;
  safeDirectory = (builtins.head config.programs.git.config).safe.directory;
  consoles = config.virtualisation.qemu.consoles;
  consoleDevice = config.nixos-shell.console.device;
  msize = config.nixos-shell.mounts.msize;
}";

#[test]
fn the_defaults_hold_in_both_eras_without_touching_virtualisation_msize() {
    for era in Era::ALL {
        let (_dir, standin) = standin(era);
        let got = standin.eval("{ }", DEFAULTS).unwrap_or_else(|err| {
            panic!(
                "the module does not evaluate in the {} era:\n{err}",
                era.name()
            )
        });
        assert_eq!(
            got,
            json!({
                "memorySize": 500, "graphics": false, "firewall": false,
                "autologin": "root", "rootPassword": "",
                "safeDirectory": "*", "consoles": ["tty0", "hvc0"],
                "consoleDevice": "/dev/hvc0", "msize": 512000,
            }),
            "{} era",
            era.name()
        );
    }
}

#[test]
fn a_users_plain_setting_wins_over_every_default() {
    for era in Era::ALL {
        let (_dir, standin) = standin(era);
        let got = standin
            .eval(
                r#"{
                  virtualisation.memorySize = 2048;
                  virtualisation.graphics = true;
                  networking.firewall.enable = true;
                  services.getty.autologinUser = "alice";
                  users.users.root.initialHashedPassword = "!";
                  programs.git.config.safe.directory = "/src";
                  virtualisation.qemu.consoles = [ "ttyS0" ];
                  nixos-shell.mounts.msize = 262144;
                }"#,
                DEFAULTS,
            )
            .unwrap();
        assert_eq!(
            got,
            json!({
                "memorySize": 2048, "graphics": true, "firewall": true,
                "autologin": "alice", "rootPassword": "!",
                "safeDirectory": "/src", "consoles": ["ttyS0"],
                "consoleDevice": "/dev/tty1", "msize": 262144,
            }),
            "{} era",
            era.name()
        );
    }
}

/// The graphical console has no hvc0 and qemu-vm.nix's consoles stand; a
/// boot loader reads the consoles from the kernel parameters, not -append.
#[test]
fn the_console_follows_graphics_and_reaches_a_boot_loaders_kernel_parameters() {
    let (_dir, standin) = standin(Era::Virtiofs);
    let expr = "{
      enable = config.nixos-shell.console.enable;
      device = config.nixos-shell.console.device;
      params = config.boot.kernelParams;
      consoleOptions = builtins.filter (o: builtins.match \".*virtconsole.*\" o != null) config.virtualisation.qemu.options;
    }";
    let graphical = standin
        .eval("{ virtualisation.graphics = true; }", expr)
        .unwrap();
    assert_eq!(
        graphical,
        json!({"enable": false, "device": "/dev/tty1", "params": [], "consoleOptions": []})
    );
    let boot_loader = standin
        .eval("{ virtualisation.useBootLoader = true; }", expr)
        .unwrap();
    assert_eq!(
        boot_loader["params"],
        json!(["console=tty0", "console=hvc0"])
    );
    assert_eq!(boot_loader["device"], "/dev/hvc0");
    let direct = standin.eval("{ }", expr).unwrap();
    assert_eq!(direct["params"], json!([]));
}

/// Ordering the guest unit before sshd.socket is a cycle under socket
/// activation: sockets come before basic.target, which comes before it.
#[test]
fn the_guest_unit_orders_itself_before_logins_but_not_before_sockets() {
    let (_dir, standin) = standin(Era::NineP);
    let unit = standin
        .eval(
            "{ services.openssh.startWhenNeeded = true; }",
            "config.systemd.services.nixos-shell-guest",
        )
        .unwrap();
    let before: Vec<&str> = unit["before"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(before.contains(&"getty@tty1.service"), "{before:?}");
    assert!(before.contains(&"sshd.service"), "{before:?}");
    assert!(!before.iter().any(|u| u.ends_with(".socket")), "{before:?}");
    // The bare binary of the package's guest output, not the host command
    // with its references to nixpkgs.
    assert!(
        unit["serviceConfig"]["ExecStart"]
            .as_str()
            .unwrap()
            .ends_with("-guest/bin/nixos-shell-guest --console /dev/hvc0"),
        "{unit}"
    );
}

/// The resize follower serves the console in nixos-shell's terminal, so it
/// exists only with that console.
#[test]
fn the_resize_follower_runs_for_the_terminal_console_only() {
    let (_dir, standin) = standin(Era::NineP);
    let expr = "let units = config.systemd.services; in \
                if units ? nixos-shell-resize then units.nixos-shell-resize.serviceConfig.ExecStart else null";
    let with_console = standin.eval("{ }", expr).unwrap();
    assert!(
        with_console
            .as_str()
            .unwrap()
            .ends_with("-guest/bin/nixos-shell-guest --console /dev/hvc0 --follow-resizes"),
        "{with_console}"
    );
    let without = standin
        .eval("{ nixos-shell.console.enable = false; }", expr)
        .unwrap();
    assert_eq!(without, serde_json::Value::Null);
}

#[test]
fn setting_virtualisation_msize_in_the_virtiofs_era_fails_as_nixpkgs_says() {
    // The module itself never sets it (the defaults test above); a user who
    // does gets nixpkgs' own message, not one of ours.
    let (_dir, standin) = standin(Era::Virtiofs);
    let err = standin
        .build("{ virtualisation.msize = 104857600; }")
        .unwrap_err();
    assert!(err.contains("virtualisation.msize"), "{err}");
    assert!(err.contains("no longer has any effect"), "{err}");
}

#[test]
fn an_extra_mount_at_a_relative_path_or_at_the_root_fails_the_build_with_its_name() {
    let (_dir, standin) = standin(Era::NineP);
    for guest in ["relative/dir", "/"] {
        let err = standin
            .build(&format!(
                r#"{{ nixos-shell.mounts.extraMounts."{guest}" = "/srv"; }}"#
            ))
            .unwrap_err();
        assert!(err.contains("Failed assertions"), "{err}");
        assert!(
            err.contains(&format!("nixos-shell.mounts.extraMounts.\"{guest}\"")),
            "{err}"
        );
        assert!(
            err.contains("must be an absolute path other than \"/\""),
            "{err}"
        );
    }
}

/// The guest paths are written once on each side: Rust's constants (which
/// the guest role writes to) and the module's lib.nix (which sshd and the
/// login shells read from) must agree.
#[test]
fn the_module_reads_the_guest_paths_the_guest_role_writes() {
    use nixos_shell::schema::facts::{GUEST_AUTHORIZED_KEYS_DIR, GUEST_DIR, GUEST_LOGIN_ENV};
    let (_dir, standin) = standin(Era::NineP);
    let lib = crate::PATHS
        .checkout()
        .join("nixosModules/nixos-shell/lib.nix");
    let expr = format!(
        "{{
          keys = config.services.openssh.authorizedKeysFiles;
          init = config.environment.loginShellInit;
          paths = (import {}).guestPaths;
        }}",
        lib.display()
    );
    let got = standin.eval("{ }", &expr).unwrap();
    assert_eq!(
        got["keys"],
        json!([format!("{GUEST_AUTHORIZED_KEYS_DIR}/%u")])
    );
    assert!(
        got["init"]
            .as_str()
            .unwrap()
            .contains(&format!(". {GUEST_LOGIN_ENV}")),
        "{got}"
    );
    assert_eq!(
        got["paths"],
        json!({"loginEnv": GUEST_LOGIN_ENV, "authorizedKeysDir": GUEST_AUTHORIZED_KEYS_DIR})
    );
    assert!(
        GUEST_LOGIN_ENV.starts_with(GUEST_DIR) && GUEST_AUTHORIZED_KEYS_DIR.starts_with(GUEST_DIR)
    );
}
