# Port forwarding: the VM's ssh server is reachable on the host's port 2222.
#   nixos-shell examples/vm-forward.nix
#   ssh -p 2222 root@localhost       # from another terminal
# Your public keys (~/.ssh/*.pub and ssh-agent's) are root's authorized keys.
# Without rebuilding, `nixos-shell --forward 2222:22` or
# QEMU_NET_OPTS="hostfwd=tcp:127.0.0.1:2222-:22" do the same for one run.
{
  # sshd is off unless you turn it on.
  services.openssh.enable = true;

  virtualisation.forwardPorts = [
    {
      from = "host";
      # Only this machine may connect; drop it to listen on every address.
      host.address = "127.0.0.1";
      host.port = 2222;
      guest.port = 22;
    }
  ];
}
