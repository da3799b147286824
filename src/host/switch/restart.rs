//! What a switch cannot change in a running VM, found by comparing the
//! build it runs with the new one, from what the builds carry: the
//! system's kernel, initrd and kernel parameters (files of the toplevel),
//! and QEMU's command line (the run script). Each difference is one
//! "needs a restart" line; the rest is still switched.

use camino::Utf8Path;

/// What a build carries that a switch compares.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Boot {
    /// The system's toplevel, as the run script names it.
    pub toplevel: String,
    /// Where `TOPLEVEL/kernel` and `TOPLEVEL/initrd` link to.
    pub kernel: Option<String>,
    pub initrd: Option<String>,
    /// `TOPLEVEL/kernel-params`, the bytes.
    pub kernel_params: Option<String>,
    /// The run script's text.
    pub run_script: String,
}

impl Boot {
    /// Reads what the build of `toplevel` and `run_script` carries. NixOS's
    /// run script boots `-kernel ${toplevel}/kernel` with `-append "$(cat
    /// ${toplevel}/kernel-params) init=${toplevel}/init
    /// regInfo=${regInfo}/registration ..."` and `-initrd
    /// ${cfg.directBoot.initrd}`, the initial ramdisk the toplevel's
    /// `initrd` links to (nixos/modules/virtualisation/qemu-vm.nix, rev
    /// 00008e8e); nixos/modules/system/activation/top-level.nix makes those
    /// links and `kernel-params` (`boot.kernelParams`). A new initrd thus
    /// also changes the run script.
    pub fn read(toplevel: &Utf8Path, run_script: &Utf8Path) -> Boot {
        let link = |name: &str| {
            std::fs::read_link(toplevel.join(name))
                .ok()
                .map(|p| p.to_string_lossy().into_owned())
        };
        Boot {
            toplevel: toplevel.to_string(),
            kernel: link("kernel"),
            initrd: link("initrd"),
            kernel_params: std::fs::read_to_string(toplevel.join("kernel-params")).ok(),
            run_script: std::fs::read_to_string(run_script).unwrap_or_default(),
        }
    }
}

/// The lines saying what needs a restart to go from `old` to `new`; pure.
pub fn needed(old: &Boot, new: &Boot) -> Vec<String> {
    let mut lines = Vec::new();
    if old.kernel != new.kernel {
        lines.push("the kernel changed (boot.kernelPackages)");
    }
    if old.initrd != new.initrd {
        lines.push("the initrd changed (boot.initrd)");
    }
    if old.kernel_params != new.kernel_params {
        lines.push("the kernel parameters changed (boot.kernelParams)");
    }
    if comparable_script(old) != comparable_script(new) {
        lines.push("QEMU's command line changed (memory, cores, shares or its options)");
    }
    lines
        .into_iter()
        .map(|what| format!("needs a restart: {what}"))
        .collect()
}

/// The run script with what names the system itself masked: the toplevel
/// and the `regInfo=` closure NixOS's script passes on the kernel command
/// line (qemu-vm.nix: `regInfo=${regInfo}/registration`, where regInfo is
/// the closure info of the toplevel), which differ whenever the system
/// does and a switch brings.
fn comparable_script(boot: &Boot) -> String {
    let text = boot.run_script.replace(&boot.toplevel, "<toplevel>");
    match reg_info(&text) {
        Some(path) => text.replace(&path, "<regInfo>"),
        None => text,
    }
}

/// The closure info's store path in `regInfo=<path>/registration`.
fn reg_info(text: &str) -> Option<String> {
    let start = text.find("regInfo=")? + "regInfo=".len();
    let rest = &text[start..];
    let end = rest
        .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | ')'))
        .unwrap_or(rest.len());
    let (path, _registration) = rest[..end].rsplit_once('/')?;
    (!path.is_empty()).then(|| path.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boot(toplevel: &str, kernel: &str) -> Boot {
        Boot {
            toplevel: toplevel.to_owned(),
            kernel: Some(format!("/nix/store/{kernel}/bzImage")),
            initrd: Some("/nix/store/i/initrd".to_owned()),
            kernel_params: Some("loglevel=4".to_owned()),
            run_script: format!(
                "exec qemu -m 1024 -kernel {toplevel}/kernel \
                 -append \"$(cat {toplevel}/kernel-params) init={toplevel}/init \
                 regInfo=/nix/store/r-{toplevel_tail}/registration\"",
                toplevel_tail = &toplevel[11..]
            ),
        }
    }

    #[test]
    fn a_new_system_alone_needs_no_restart() {
        let old = boot("/nix/store/aaa-nixos-system", "k1");
        let new = boot("/nix/store/bbb-nixos-system", "k1");
        assert_eq!(needed(&old, &new), Vec::<String>::new());
    }

    #[test]
    fn each_boot_change_is_named_in_its_own_line() {
        let old = boot("/nix/store/aaa-nixos-system", "k1");
        let mut new = boot("/nix/store/bbb-nixos-system", "k2");
        new.kernel_params = Some("loglevel=7".to_owned());
        new.run_script = new.run_script.replace("-m 1024", "-m 2048");
        assert_eq!(
            needed(&old, &new),
            [
                "needs a restart: the kernel changed (boot.kernelPackages)",
                "needs a restart: the kernel parameters changed (boot.kernelParams)",
                "needs a restart: QEMU's command line changed (memory, cores, shares or its options)",
            ]
        );
    }
}
