# Your VM: any NixOS options. nixos-shell already puts the console in your
# terminal, logs root in, mounts your home at the same path and leaves the
# firewall off. Quit with Ctrl-a x or `poweroff`.
{ pkgs, ... }:
{
  environment.systemPackages = [ pkgs.git ];

  # Reach the VM's ssh on localhost:2222 with your own keys:
  # services.openssh.enable = true;
  # virtualisation.forwardPorts = [
  #   { from = "host"; host.address = "127.0.0.1"; host.port = 2222; guest.port = 22; }
  # ];

  # More memory and CPUs (or `nixos-shell --memory 2G --cores 2`):
  # virtualisation.memorySize = 2048;
  # virtualisation.cores = 2;
}
