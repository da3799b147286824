//! `--forward [ADDR:]HOSTPORT:GUESTPORT[/udp]`: a port of QEMU's user
//! network, parsed into its parts, and checked against this machine before
//! anything is built.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};

use anyhow::{bail, Context, Result};

/// The protocol of a forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// One `--forward`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    pub protocol: Protocol,
    /// The host address it listens on (QEMU's user network forwards IPv4).
    pub address: Ipv4Addr,
    pub host_port: u16,
    pub guest_port: u16,
}

impl std::fmt::Display for Forward {
    /// As `--forward` takes it, in full: `ADDR:HOSTPORT:GUESTPORT/PROTO`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Forward {
            protocol,
            address,
            host_port,
            guest_port,
        } = self;
        write!(f, "{address}:{host_port}:{guest_port}/{}", protocol.name())
    }
}

impl Forward {
    /// Parses the flag's value; one line saying what to write instead.
    pub fn parse(spec: &str) -> Result<Forward> {
        let usage = "write [ADDR:]HOSTPORT:GUESTPORT[/udp], e.g. --forward 8080:80";
        let (rest, protocol) = match spec.rsplit_once('/') {
            Some((rest, "udp")) => (rest, Protocol::Udp),
            Some((rest, "tcp")) => (rest, Protocol::Tcp),
            Some((_, other)) => {
                bail!("--forward {spec:?}: unknown protocol {other:?}, only tcp and udp; {usage}")
            }
            None => (spec, Protocol::Tcp),
        };
        let mut parts: Vec<&str> = rest.rsplitn(3, ':').collect();
        parts.reverse();
        let (address, host, guest) = match parts.as_slice() {
            [host, guest] => ("127.0.0.1", *host, *guest),
            [address, host, guest] => (*address, *host, *guest),
            _ => bail!("--forward {spec:?} lacks a port; {usage}"),
        };
        let Ok(address) = address.parse::<Ipv4Addr>() else {
            bail!(
                "--forward {spec:?}: {address:?} is not an IPv4 address (QEMU's user network forwards \
                 IPv4 only; names are not resolved); {usage}"
            );
        };
        let port = |text: &str| match text.parse::<u16>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(anyhow::anyhow!(
                "--forward {spec:?}: {text:?} is not a port (1-65535); {usage}"
            )),
        };
        Ok(Forward {
            protocol,
            address,
            host_port: port(host)?,
            guest_port: port(guest)?,
        })
    }

    /// The QEMU user-network option, e.g. `hostfwd=tcp:127.0.0.1:8080-:80`.
    pub fn hostfwd(&self) -> String {
        format!(
            "hostfwd={}:{}:{}-:{}",
            self.protocol.name(),
            self.address,
            self.host_port,
            self.guest_port
        )
    }

    /// Fails with one line if QEMU could not listen on the host side: the
    /// port is taken, or below 1024 for a user who is not root. Tried with
    /// a bind of our own, before anything is built, rather than learnt from
    /// QEMU after the build.
    pub fn check_free(&self) -> Result<()> {
        let address = SocketAddr::from((self.address, self.host_port));
        let bound = match self.protocol {
            Protocol::Udp => UdpSocket::bind(address).map(drop),
            Protocol::Tcp => TcpListener::bind(address).map(drop),
        };
        let proto = self.protocol.name();
        match bound {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == std::io::ErrorKind::AddrInUse => bail!(
                "--forward: {proto} port {} on {} is in use; stop what listens there or pick another port",
                self.host_port,
                self.address
            ),
            Err(err) if err.kind() == std::io::ErrorKind::PermissionDenied => bail!(
                "--forward: {proto} port {} is below 1024 and needs root; pick a port from 1024 up",
                self.host_port
            ),
            Err(err) if err.kind() == std::io::ErrorKind::AddrNotAvailable => bail!(
                "--forward: {} is not an address of this machine; use 127.0.0.1, 0.0.0.0 or one of its own",
                self.address
            ),
            Err(err) => {
                Err(err).with_context(|| format!("--forward: cannot listen on {address} ({proto})"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(spec: &str) -> String {
        format!("{:#}", Forward::parse(spec).unwrap_err())
    }

    #[test]
    fn forwards_become_qemus_hostfwd() {
        let hostfwd = |spec| Forward::parse(spec).unwrap().hostfwd();
        assert_eq!(hostfwd("8080:80"), "hostfwd=tcp:127.0.0.1:8080-:80");
        assert_eq!(hostfwd("0.0.0.0:53:53/udp"), "hostfwd=udp:0.0.0.0:53-:53");
        assert_eq!(hostfwd("2222:22/tcp"), "hostfwd=tcp:127.0.0.1:2222-:22");
    }

    #[test]
    fn a_malformed_forward_says_what_to_write() {
        assert_eq!(
            err("8080"),
            "--forward \"8080\" lacks a port; write [ADDR:]HOSTPORT:GUESTPORT[/udp], e.g. --forward 8080:80"
        );
        assert!(err("80:http").contains("\"http\" is not a port"));
        assert!(err("0:80").contains("\"0\" is not a port"));
        assert!(err("70000:80").contains("is not a port"));
        assert!(err("80:80/sctp").contains("unknown protocol \"sctp\""));
        assert!(err(":80:80").contains("\"\" is not an IPv4 address"));
    }

    /// Regression: names and IPv6 reached QEMU, which failed after the build.
    #[test]
    fn only_ipv4_addresses_are_taken() {
        assert!(err("localhost:80:80").contains("is not an IPv4 address"));
        assert!(err("[::1]:80:80").contains("is not an IPv4 address"));
    }

    #[test]
    fn a_forward_to_a_taken_port_is_refused_before_the_build() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let forward = Forward::parse(&format!("{port}:80")).unwrap();
        assert_eq!(
            format!("{:#}", forward.check_free().unwrap_err()),
            format!("--forward: tcp port {port} on 127.0.0.1 is in use; stop what listens there or pick another port")
        );
        drop(taken);
        forward.check_free().unwrap();
        let elsewhere = Forward::parse("192.0.2.7:8080:80").unwrap();
        assert!(format!("{:#}", elsewhere.check_free().unwrap_err())
            .contains("is not an address of this machine"));
    }
}
