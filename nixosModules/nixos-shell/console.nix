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

      # Root logs in on the console without a password.
      services.getty.autologinUser = mkVMDefault "root";
      users.users.root.initialHashedPassword = mkVMDefault "";
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
