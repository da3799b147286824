//! `--memory`: a size in MiB or GiB, kept in the unit it was given so that
//! QEMU's `-m` and a memory backend's `size=` read as the user wrote it.

use anyhow::{bail, Result};

/// The largest `--memory`, in MiB: 4 PiB, the most an x86-64 guest's
/// 52-bit physical addresses reach.
const MAX_MIB: u64 = 4 << 30;

/// A memory size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Memory {
    MiB(u64),
    GiB(u64),
}

impl Memory {
    /// `2048` (MiB), `512M`, `2G` (case-insensitive unit, `MiB`/`GiB`/`MB`/`GB`
    /// too); one line saying what to write instead.
    pub fn parse(spec: &str) -> Result<Memory> {
        let bad = || {
            anyhow::anyhow!(
                "--memory {spec:?} is not a memory size; write MiB (2048) or a number with M or G (512M, 2G)"
            )
        };
        let (digits, unit) = match spec.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
            Some((at, _)) => (&spec[..at], &spec[at..]),
            None => (spec, "M"),
        };
        let number: u64 = digits.parse().map_err(|_| bad())?;
        let memory = match unit {
            "M" | "m" | "MiB" | "MB" => Memory::MiB(number),
            "G" | "g" | "GiB" | "GB" => Memory::GiB(number),
            _ => return Err(bad()),
        };
        if number == 0 {
            bail!("--memory {spec:?} is zero; give the VM some memory, e.g. 2G");
        }
        // QEMU takes sizes in bytes as 64-bit numbers; far below that, no
        // machine it emulates addresses more than a few PiB.
        if memory.mib().is_none_or(|mib| mib > MAX_MIB) {
            bail!("--memory {spec:?} is more memory than a VM can have; write e.g. 2G");
        }
        Ok(memory)
    }

    /// The size in MiB, if it fits.
    pub fn mib(self) -> Option<u64> {
        match self {
            Memory::MiB(mib) => Some(mib),
            Memory::GiB(gib) => gib.checked_mul(1024),
        }
    }

    /// As QEMU writes sizes: `2048M`, `2G`.
    pub fn to_qemu(self) -> String {
        match self {
            Memory::MiB(mib) => format!("{mib}M"),
            Memory::GiB(gib) => format!("{gib}G"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(spec: &str) -> String {
        format!("{:#}", Memory::parse(spec).unwrap_err())
    }

    #[test]
    fn sizes_keep_their_unit() {
        let qemu = |spec| Memory::parse(spec).unwrap().to_qemu();
        assert_eq!(qemu("2048"), "2048M");
        assert_eq!(qemu("512M"), "512M");
        assert_eq!(qemu("2g"), "2G");
        assert_eq!(qemu("4GiB"), "4G");
        assert_eq!(Memory::parse("2G").unwrap().mib(), Some(2048));
    }

    #[test]
    fn what_is_not_a_size_says_what_to_write() {
        assert_eq!(
            err("lots"),
            "--memory \"lots\" is not a memory size; write MiB (2048) or a number with M or G (512M, 2G)"
        );
        assert!(err("2T").contains("not a memory size"));
        assert!(err("G").contains("not a memory size"));
        assert!(err("0").contains("is zero"));
    }

    #[test]
    fn absurd_sizes_are_refused() {
        assert!(err("18446744073709551615G").contains("more memory than a VM can have"));
        assert!(err("99999999999999999999").contains("not a memory size"));
        assert_eq!(Memory::parse("4096G").unwrap(), Memory::GiB(4096));
    }
}
