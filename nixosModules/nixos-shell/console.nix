# The console: no graphical window; the guest's virtio console (hvc0) and the
# QEMU monitor share QEMU's standard input and output, so the VM lives in the
# terminal nixos-shell was started from. Root is logged in there at once.
{
  config,
  lib,
  ...
}:
let
  mkVMDefault = lib.mkOverride (import ./lib.nix).defaultPriority;
in
{
  config = lib.mkMerge [
    {
      virtualisation.graphics = mkVMDefault false;

      # Root logs in on the console without a password, unless the user
      # gives root one: NixOS warns about a user with more than one of its
      # password options set, whatever their priorities ("has multiple of
      # the options", nixos/modules/config/users-groups.nix, `warnings`),
      # so the empty one is set only while the others are all null. With
      # mutable users (NixOS's default) it is the initial password; with
      # immutable ones NixOS turns initialHashedPassword into a mkDefault
      # hashedPassword (same file, the user submodule's config), which
      # would outrank a user's initialPassword and depend on the option
      # being decided here, so the empty password is hashedPassword itself
      # there. Except with systemd-sysusers: it refuses a system user's
      # hashedPassword unless it equals initialHashedPassword ("only
      # supports initial passwords", nixos/modules/system/boot/systemd/
      # sysusers.nix, `assertions`), so there the empty password is the
      # initial one, which immutable users copy into hashedPassword. Each
      # condition reads only options the other modes define.
      users.users.root =
        let
          root = config.users.users.root;
          mutable = config.users.mutableUsers;
          # Older nixpkgs have no systemd-sysusers module.
          sysusers = config.systemd.sysusers.enable or false;
          noneOf = names: lib.all (name: root.${name} == null) names;
        in
        {
          initialHashedPassword = lib.mkMerge [
            (lib.mkIf (
              mutable
              && noneOf [
                "hashedPassword"
                "hashedPasswordFile"
                "password"
                "initialPassword"
              ]
            ) (mkVMDefault ""))
            # Immutable: `password` carries a user's initialPassword.
            (lib.mkIf (
              !mutable
              && sysusers
              && noneOf [
                "hashedPasswordFile"
                "password"
              ]
            ) (mkVMDefault ""))
          ];
          hashedPassword = lib.mkIf (
            !mutable
            && !sysusers
            && noneOf [
              "hashedPasswordFile"
              "password"
              "initialHashedPassword"
            ]
          ) (mkVMDefault "");
        };
      services.getty.autologinUser = mkVMDefault "root";
      services.getty.helpLine = ''
        nixos-shell: type Ctrl-a x to quit the VM (or run `poweroff`),
        Ctrl-a c to switch between this console and the QEMU monitor.
      '';
    }

    (lib.mkIf config.nixos-shell.console.enable {
      # The last console is the one /dev/console and the login use.
      virtualisation.qemu.consoles = mkVMDefault [
        "tty0"
        "hvc0"
      ];
      # qemu-vm.nix puts the consoles on QEMU's -append, which only a direct
      # kernel boot reads; a VM booted by its boot loader gets them from the
      # kernel parameters the boot loader writes.
      boot.kernelParams = lib.mkIf config.virtualisation.useBootLoader (
        map (console: "console=${console}") config.virtualisation.qemu.consoles
      );
      virtualisation.qemu.options = [
        # No serial port: its output would be mixed into the terminal too.
        "-serial null"
        "-device virtio-serial"
        # signal=off: Ctrl-C goes to the guest, not to QEMU.
        "-chardev stdio,mux=on,id=char0,signal=off"
        "-mon chardev=char0,mode=readline"
        "-device virtconsole,chardev=char0,nr=0"
      ];
    })
  ];
}
