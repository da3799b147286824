//! The virtio-serial ports between the CLI and the guest role: byte streams
//! that QEMU's console cannot carry.
//!
//! QEMU's console is one terminal for the boot messages, the login and the
//! monitor; it has no window size and turns `\n` into `\r\n`. So the CLI adds
//! a virtio-serial device of its own with named ports, each backed on the
//! host by a Unix socket the CLI listens on before QEMU starts (QEMU
//! connects as a client, so nothing races its start):
//!
//! - [`Port::Resize`]: the host terminal's size. The guest role's resize
//!   follower asks for it ([`SIZE_REQUEST`]) whenever it opens the port; the
//!   host answers with the size it has then, one JSON [`TerminalSize`] per
//!   line (`null` when its terminal has none), and, once asked, sends the
//!   new size after every SIGWINCH. Every line is the size at the moment it
//!   was sent and the port keeps their order, so the last one applied is
//!   always the latest; the follower applies each to the console, which
//!   sends SIGWINCH to its foreground program. The answer, not the size at
//!   QEMU's start, is what the follower waits for before the login or the
//!   command may start: a terminal resized while nix built or the VM booted
//!   is already at its new size then. (A follower of an older nixos-shell
//!   never asks and gets sizes on resizes only; an older host never
//!   answers, but sends a size when QEMU connects, which the follower takes
//!   as the answer.)
//! - [`Port::Attach`]: every `nixos-shell --attach` session in the running
//!   VM, multiplexed ([`super::attach`]), when the build's guest serves
//!   them.
//! - [`Port::HostNix`]: the guest's nix clients' connections to a
//!   nix-daemon on the host, multiplexed ([`super::host_nix`]), when the
//!   guest's store is the host's and the run relays it.
//! - [`Port::Stdin`], [`Port::Stdout`], [`Port::Stderr`]: `--command`'s
//!   standard streams when nixos-shell's own are not both a terminal
//!   ([`super::facts::CommandIo::Ports`]). QEMU holds what the host sends
//!   until the guest opens the port, so input given before the command
//!   starts is kept; the host closing its end reads as end of file in the
//!   guest, and the guest sees the host stop reading as a hang-up.
//!
//! The guest finds a port by its name in `/sys/class/virtio-ports/*/name`.

use serde::{Deserialize, Serialize};

/// One named port; in the host facts by its short name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Port {
    Resize,
    Attach,
    HostNix,
    Stdin,
    Stdout,
    Stderr,
}

impl Port {
    /// The port's name, as `virtserialport,name=` gives it to the guest.
    pub const fn name(self) -> &'static str {
        match self {
            Port::Resize => "org.nixos-shell.resize",
            Port::Attach => "org.nixos-shell.attach",
            Port::HostNix => "org.nixos-shell.host-nix",
            Port::Stdin => "org.nixos-shell.stdin",
            Port::Stdout => "org.nixos-shell.stdout",
            Port::Stderr => "org.nixos-shell.stderr",
        }
    }

    /// A short name for the port's socket file and QEMU ids.
    pub const fn short(self) -> &'static str {
        match self {
            Port::Resize => "resize",
            Port::Attach => "attach",
            Port::HostNix => "host-nix",
            Port::Stdin => "stdin",
            Port::Stdout => "stdout",
            Port::Stderr => "stderr",
        }
    }

    /// The ports `--command`'s streams take.
    pub const STDIO: [Port; 3] = [Port::Stdin, Port::Stdout, Port::Stderr];
}

/// What the follower sends on [`Port::Resize`] to ask for the current size.
pub const SIZE_REQUEST: &[u8] = b"size\n";

/// The longest line either side sends on [`Port::Resize`], its `\n`
/// included: a size is at most `{"rows":65535,"cols":65535}` and a newline
/// (28 bytes). A reader of the port holds no more than this, whatever the
/// other side writes.
pub const MAX_LINE: usize = 64;

/// What is wrong with what came on [`Port::Resize`]; the port cannot be
/// read on after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadLine {
    /// A line longer than [`MAX_LINE`].
    TooLong,
    /// A line of the follower's that is not [`SIZE_REQUEST`] (its start).
    NotARequest(String),
    /// A line of the host's that is not a size (its start).
    NotASize(String),
}

impl std::fmt::Display for BadLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BadLine::TooLong => write!(f, "a line longer than {MAX_LINE} bytes"),
            BadLine::NotARequest(line) => write!(f, "{line:?}, not a size request"),
            BadLine::NotASize(line) => write!(f, "{line:?}, not a terminal size"),
        }
    }
}

impl std::error::Error for BadLine {}

/// Lines out of a byte stream that arrives in pieces, none longer than
/// [`MAX_LINE`]: what the two sides of [`Port::Resize`] read.
#[derive(Debug, Default)]
struct Lines {
    /// The start of a line whose `\n` has not come.
    partial: Vec<u8>,
    /// Set once a line was too long: where the next one starts is unknown.
    broken: bool,
}

impl Lines {
    /// The whole lines `bytes` ends (after what came before), each without
    /// its `\n`, each checked by `line`; the first error ends the stream.
    fn read<T>(
        &mut self,
        bytes: &[u8],
        mut line: impl FnMut(&[u8]) -> Result<T, BadLine>,
    ) -> Result<Vec<T>, BadLine> {
        if self.broken {
            return Err(BadLine::TooLong);
        }
        if self.partial.capacity() < MAX_LINE {
            // Once, at its full size: it never grows past it.
            self.partial.reserve_exact(MAX_LINE);
        }
        let mut lines = Vec::new();
        for piece in bytes.split_inclusive(|&byte| byte == b'\n') {
            if self.partial.len() + piece.len() > MAX_LINE {
                self.broken = true;
                self.partial = Vec::new();
                return Err(BadLine::TooLong);
            }
            self.partial.extend_from_slice(piece);
            if let Some(whole) = self.partial.strip_suffix(b"\n") {
                lines.push(line(whole)?);
                self.partial.clear();
            }
        }
        Ok(lines)
    }
}

/// A line's start, for a message: printable and short.
fn shown(line: &[u8]) -> String {
    String::from_utf8_lossy(&line[..line.len().min(32)]).into_owned()
}

/// The host's reader of [`Port::Resize`]: the follower's requests.
#[derive(Debug, Default)]
pub struct SizeRequests(Lines);

impl SizeRequests {
    /// How many requests `bytes` completes; anything but [`SIZE_REQUEST`]
    /// is an error.
    pub fn read(&mut self, bytes: &[u8]) -> Result<usize, BadLine> {
        let request = &SIZE_REQUEST[..SIZE_REQUEST.len() - 1];
        let lines = self.0.read(bytes, |line| {
            if line == request {
                Ok(())
            } else {
                Err(BadLine::NotARequest(shown(line)))
            }
        })?;
        Ok(lines.len())
    }
}

/// The guest's reader of [`Port::Resize`]: the host's sizes.
#[derive(Debug, Default)]
pub struct SizeLines(Lines);

impl SizeLines {
    /// The sizes whose lines `bytes` completes, in order: `None` for the
    /// host's [`UNKNOWN_SIZE_LINE`]; anything else is an error.
    pub fn read(&mut self, bytes: &[u8]) -> Result<Vec<Option<TerminalSize>>, BadLine> {
        self.0.read(bytes, TerminalSize::from_line)
    }
}

/// The host's answer when its terminal has no size to give.
pub const UNKNOWN_SIZE_LINE: &str = "null\n";

/// The host terminal's size in character cells, as [`Port::Resize`]
/// carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TerminalSize {
    pub rows: u16,
    pub cols: u16,
}

impl TerminalSize {
    /// The line [`Port::Resize`] carries for this size.
    pub fn to_line(self) -> String {
        // Two integers always serialize.
        let mut line = serde_json::to_string(&self).unwrap_or_default();
        line.push('\n');
        line
    }

    /// A line of the host's on [`Port::Resize`], without its `\n`: a
    /// size of at least one cell each way, or `None` for
    /// [`UNKNOWN_SIZE_LINE`]; anything else is an error.
    pub fn from_line(line: &[u8]) -> Result<Option<TerminalSize>, BadLine> {
        serde_json::from_slice::<Option<TerminalSize>>(line)
            .ok()
            .filter(|size| size.is_none_or(|size| size.rows > 0 && size.cols > 0))
            .ok_or_else(|| BadLine::NotASize(shown(line)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_size_is_one_json_line_and_reads_back() {
        let size = TerminalSize {
            rows: 40,
            cols: 100,
        };
        assert_eq!(size.to_line(), "{\"rows\":40,\"cols\":100}\n");
        assert_eq!(
            SizeLines::default().read(size.to_line().as_bytes()),
            Ok(vec![Some(size)])
        );
        let largest = TerminalSize {
            rows: u16::MAX,
            cols: u16::MAX,
        };
        assert!(largest.to_line().len() <= MAX_LINE);
    }

    #[test]
    fn anything_else_from_the_host_is_an_error_that_shows_it() {
        for line in [
            "",
            "garbage",
            "{\"rows\":0,\"cols\":80}",
            "{\"rows\":-1,\"cols\":80}",
        ] {
            assert_eq!(
                TerminalSize::from_line(line.as_bytes()),
                Err(BadLine::NotASize(line.to_owned())),
                "{line:?}"
            );
        }
        assert_eq!(
            BadLine::NotASize("garbage".into()).to_string(),
            "\"garbage\", not a terminal size"
        );
    }

    #[test]
    fn the_unknown_size_is_a_line_that_sets_nothing() {
        assert!(UNKNOWN_SIZE_LINE.ends_with('\n'));
        assert_eq!(
            SizeLines::default().read(UNKNOWN_SIZE_LINE.as_bytes()),
            Ok(vec![None])
        );
    }

    #[test]
    fn only_a_size_request_is_one_and_a_line_without_end_is_refused_at_the_limit() {
        let mut requests = SizeRequests::default();
        assert_eq!(requests.read(b"si"), Ok(0));
        assert_eq!(requests.read(b"ze\nsize\nsi"), Ok(2));
        assert_eq!(
            SizeRequests::default().read(b"garbage\n"),
            Err(BadLine::NotARequest("garbage".into()))
        );
        // Before, any line was a request, and a guest's stream without a
        // newline was read for as long as it wrote.
        let mut requests = SizeRequests::default();
        assert_eq!(requests.read(&[b'x'; MAX_LINE]), Ok(0));
        assert_eq!(requests.read(b"x"), Err(BadLine::TooLong));
        assert_eq!(requests.read(b"\nsize\n"), Err(BadLine::TooLong));
    }

    /// Generated streams on the resize port: no panic, never more than
    /// [`MAX_LINE`] held, every valid line read back in pieces of any
    /// size, anything else refused with the line it was.
    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// `bytes` fed in pieces of `size` (at least 1): what `read` made of
        /// each piece, up to the first error.
        fn fed<T>(
            bytes: &[u8],
            size: usize,
            mut read: impl FnMut(&[u8]) -> Result<Vec<T>, BadLine>,
        ) -> Result<Vec<T>, BadLine> {
            let mut all = Vec::new();
            for piece in bytes.chunks(size.max(1)) {
                all.extend(read(piece)?);
            }
            Ok(all)
        }

        fn size() -> impl Strategy<Value = Option<TerminalSize>> {
            proptest::option::of(
                (1..=u16::MAX, 1..=u16::MAX).prop_map(|(rows, cols)| TerminalSize { rows, cols }),
            )
        }

        /// The whole lines `bytes` really has, up to the first one too
        /// long, and whether there was one.
        fn whole_lines(bytes: &[u8]) -> (Vec<&[u8]>, bool) {
            let mut whole = Vec::new();
            for line in bytes.split_inclusive(|&b| b == b'\n') {
                if line.len() > MAX_LINE {
                    return (whole, true);
                }
                if let Some(line) = line.strip_suffix(b"\n") {
                    whole.push(line);
                }
            }
            (whole, false)
        }

        proptest! {
            #![proptest_config(crate::schema::proptest_config())]

            #[test]
            fn sizes_come_back_as_the_host_sent_them(
                sizes in prop::collection::vec(size(), 0..20),
                piece in 1..40usize,
            ) {
                let bytes: String = sizes
                    .iter()
                    .map(|size| size.map_or_else(|| UNKNOWN_SIZE_LINE.to_owned(), TerminalSize::to_line))
                    .collect();
                let mut lines = SizeLines::default();
                prop_assert_eq!(fed(bytes.as_bytes(), piece, |b| lines.read(b)), Ok(sizes));
                prop_assert!(lines.0.partial.capacity() <= MAX_LINE);
            }

            #[test]
            fn requests_are_counted_however_they_arrive(
                n in 0..50usize,
                piece in 1..12usize,
            ) {
                let bytes = SIZE_REQUEST.repeat(n);
                let mut requests = SizeRequests::default();
                let counts = fed(&bytes, piece, |b| requests.read(b).map(|n| vec![n]));
                prop_assert_eq!(counts.map(|c| c.iter().sum::<usize>()), Ok(n));
            }

            #[test]
            fn any_stream_is_lines_up_to_the_first_bad_one_within_the_bound(
                bytes in prop::collection::vec(
                    prop_oneof![
                        Just(b'\n'),
                        Just(b'{'),
                        any::<u8>(),
                    ],
                    0..400,
                ),
                valid in prop::collection::vec(size(), 0..3),
                piece in 1..100usize,
            ) {
                let valid: String = valid
                    .iter()
                    .map(|size| size.map_or_else(|| UNKNOWN_SIZE_LINE.to_owned(), TerminalSize::to_line))
                    .collect();
                let bytes = [valid.as_bytes(), &bytes].concat();
                let mut lines = SizeLines::default();
                let mut requests = SizeRequests::default();
                let sizes = fed(&bytes, piece, |b| {
                    let read = lines.read(b);
                    assert!(lines.0.partial.capacity() <= MAX_LINE, "holds {}", lines.0.partial.capacity());
                    read
                });
                let asked = fed(&bytes, piece, |b| {
                    let read = requests.read(b).map(|n| vec![n]);
                    assert!(requests.0.partial.capacity() <= MAX_LINE);
                    read
                });
                let (whole, too_long) = whole_lines(&bytes);
                let expected: Result<Vec<_>, BadLine> = whole
                    .iter()
                    .map(|line| TerminalSize::from_line(line))
                    .collect();
                match (sizes, expected) {
                    (Ok(sizes), Ok(expected)) => {
                        prop_assert!(!too_long);
                        prop_assert_eq!(sizes, expected);
                    }
                    (Err(err), Err(expected)) => prop_assert_eq!(err, expected),
                    (Err(BadLine::TooLong), Ok(_)) => prop_assert!(too_long),
                    (got, expected) => prop_assert!(false, "{:?} for {:?}", got, expected),
                }
                let requests_expected = whole.iter().all(|line| *line == b"size");
                match asked {
                    Ok(counts) => {
                        prop_assert!(requests_expected && !too_long);
                        prop_assert_eq!(counts.iter().sum::<usize>(), whole.len());
                    }
                    Err(BadLine::TooLong) => prop_assert!(too_long),
                    Err(BadLine::NotARequest(line)) => {
                        prop_assert!(!requests_expected);
                        prop_assert!(line.len() <= 4 * 32);
                    }
                    Err(other) => prop_assert!(false, "{}", other),
                }
            }
        }
    }

    #[test]
    fn a_port_is_named_in_the_facts_by_its_short_name() {
        for port in [
            Port::Resize,
            Port::Attach,
            Port::Stdin,
            Port::Stdout,
            Port::Stderr,
        ] {
            assert_eq!(serde_json::to_value(port).unwrap(), port.short());
        }
    }

    #[test]
    fn port_names_are_distinct_and_namespaced() {
        let all = [
            Port::Resize,
            Port::Attach,
            Port::Stdin,
            Port::Stdout,
            Port::Stderr,
        ];
        for (n, port) in all.iter().enumerate() {
            assert!(port.name().starts_with("org.nixos-shell."));
            assert!(port.name().ends_with(port.short()));
            assert!(all[..n].iter().all(|other| other.name() != port.name()));
        }
    }
}
