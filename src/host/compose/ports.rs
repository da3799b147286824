//! The virtio-serial ports of a run (`schema::ports`), composed: which
//! ports it needs, on which sockets, and QEMU's device for them; pure.
//! `host::execute::ports` serves them.

use camino::{Utf8Path, Utf8PathBuf};

use crate::host::qemu;
use crate::schema::facts::CommandIo;
use crate::schema::ports::Port;

/// QEMU's id of the virtio-serial device the ports are on.
const BUS: &str = "nixos-shell-ports";

/// One port and its socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSocket {
    pub port: Port,
    pub socket: Utf8PathBuf,
}

/// The file name of a port's socket (next to the virtiofsd sockets, whose
/// names end in `.sock`).
pub fn socket_name(port: Port) -> String {
    format!("{}.port", port.short())
}

/// The ports of a run whose command (if any) has its streams on
/// `command_io`, `terminal` telling whether nixos-shell has a controlling
/// terminal and `attach` whether the guest serves attaches: the resize port
/// when the console is that terminal, the stdio ports when the command's
/// streams are nixos-shell's own, the attach port, and the host-nix port
/// when `host_nix` relays the guest's nix; pure.
pub fn needed(
    command_io: Option<CommandIo>,
    terminal: bool,
    attach: bool,
    host_nix: bool,
) -> Vec<Port> {
    let console = match command_io {
        Some(CommandIo::Ports) => Port::STDIO.to_vec(),
        None | Some(CommandIo::Console) if terminal => vec![Port::Resize],
        None | Some(CommandIo::Console) => Vec::new(),
    };
    console
        .into_iter()
        .chain(attach.then_some(Port::Attach))
        .chain(host_nix.then_some(Port::HostNix))
        .collect()
}

/// `ports` with their sockets in `socket_dir`; pure.
pub fn sockets(ports: &[Port], socket_dir: &Utf8Path) -> Vec<PortSocket> {
    ports
        .iter()
        .map(|&port| PortSocket {
            port,
            socket: socket_dir.join(socket_name(port)),
        })
        .collect()
}

/// QEMU's arguments for `ports`: a virtio-serial device of nixos-shell's
/// own (the console's may be absent) with one named port per socket; QEMU
/// connects to each as a client.
pub fn qemu_args(ports: &[PortSocket]) -> Vec<String> {
    if ports.is_empty() {
        return Vec::new();
    }
    let mut args = vec!["-device".to_owned(), format!("virtio-serial,id={BUS}")];
    for PortSocket { port, socket } in ports {
        let id = format!("nixos-shell-{}", port.short());
        args.extend([
            "-chardev".to_owned(),
            format!("socket,id={id},path={}", qemu::escape(socket.as_str())),
            "-device".to_owned(),
            format!(
                "virtserialport,bus={BUS}.0,chardev={id},name={}",
                port.name()
            ),
        ]);
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_console_in_a_terminal_follows_resizes_and_a_piped_command_gets_streams() {
        assert_eq!(needed(None, true, false, false), [Port::Resize]);
        assert_eq!(
            needed(Some(CommandIo::Console), true, false, false),
            [Port::Resize]
        );
        assert_eq!(needed(None, false, false, false), []);
        assert_eq!(
            needed(Some(CommandIo::Ports), true, false, false),
            Port::STDIO
        );
        assert_eq!(
            needed(Some(CommandIo::Ports), false, false, false),
            Port::STDIO
        );
        assert_eq!(needed(None, false, true, false), [Port::Attach]);
        assert_eq!(
            needed(None, true, true, false),
            [Port::Resize, Port::Attach]
        );
        assert_eq!(
            needed(None, false, true, true),
            [Port::Attach, Port::HostNix]
        );
    }

    #[test]
    fn qemu_gets_a_device_and_a_named_port_per_socket() {
        let ports = [PortSocket {
            port: Port::Stdout,
            socket: "/s,1/stdout.port".into(),
        }];
        assert_eq!(
            qemu_args(&ports),
            [
                "-device",
                "virtio-serial,id=nixos-shell-ports",
                "-chardev",
                "socket,id=nixos-shell-stdout,path=/s,,1/stdout.port",
                "-device",
                "virtserialport,bus=nixos-shell-ports.0,chardev=nixos-shell-stdout,name=org.nixos-shell.stdout",
            ]
        );
        assert!(qemu_args(&[]).is_empty());
    }
}
