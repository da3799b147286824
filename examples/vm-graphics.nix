# Graphics: a QEMU window with an X11 session instead of the console in the
# terminal. With graphics on, nixos-shell leaves QEMU's standard input and
# output alone (nixos-shell.console.enable follows virtualisation.graphics).
{
  virtualisation.graphics = true;

  services.xserver.enable = true;
  # A light session to log in to; pick any desktop NixOS offers.
  services.xserver.windowManager.icewm.enable = true;
}
