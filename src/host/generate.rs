//! `--generate-completions SHELL` and `--generate-man-page`: shell
//! completions and the man page, rendered from the clap definitions in
//! `cli` so they never drift from them. The Nix package runs these after the
//! build to install both; they touch neither nix nor any file.

use std::io::Write;

use anyhow::{Context, Result};
use clap::{Command, CommandFactory};
use clap_complete::Shell;

use crate::cli::HostArgs;

/// What a hidden generation flag asks to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    Completions(Shell),
    ManPage,
}

impl Page {
    /// What `args` asks to print, or `None` for any other mode.
    pub fn requested(args: &HostArgs) -> Option<Page> {
        match (args.generate_completions, args.generate_man_page) {
            (Some(shell), _) => Some(Page::Completions(shell)),
            (None, true) => Some(Page::ManPage),
            (None, false) => None,
        }
    }

    /// Writes the page to standard output.
    pub fn print(self) -> Result<u8> {
        let text = match self {
            Page::Completions(shell) => completions(shell),
            Page::ManPage => man_page()?,
        };
        std::io::stdout()
            .write_all(&text)
            .context("could not write to standard output")?;
        Ok(0)
    }
}

/// The completion script of `nixos-shell` for `shell`.
pub fn completions(shell: Shell) -> Vec<u8> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut visible_command(), "nixos-shell", &mut script);
    script
}

/// The host command line without its hidden flags: clap_complete offers
/// hidden arguments too, and these two are for packagers, not for users.
fn visible_command() -> Command {
    let full = HostArgs::command();
    Command::new("nixos-shell")
        .version(env!("CARGO_PKG_VERSION"))
        .args(
            full.get_arguments()
                .filter(|arg| !arg.is_hide_set())
                .cloned(),
        )
}

/// The man page `nixos-shell(1)`, in roff.
pub fn man_page() -> Result<Vec<u8>> {
    let mut page = Vec::new();
    clap_mangen::Man::new(HostArgs::command())
        .render(&mut page)
        .context("could not render the man page")?;
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Parser, ValueEnum};

    #[test]
    fn every_shell_gets_a_script_with_the_flags() {
        for &shell in Shell::value_variants() {
            let script = String::from_utf8(completions(shell)).unwrap();
            assert!(script.contains("nixos-shell"), "{shell}");
            assert!(script.contains("forward"), "{shell}");
            assert!(!script.contains("generate"), "{shell}");
        }
    }

    #[test]
    fn completions_offer_every_visible_argument() {
        let ids = |command: &Command, hidden: bool| -> Vec<String> {
            command
                .get_arguments()
                .filter(|arg| arg.is_hide_set() == hidden)
                .map(|arg| arg.get_id().to_string())
                .collect()
        };
        let full = HostArgs::command();
        let visible = visible_command();
        assert_eq!(ids(&visible, false), ids(&full, false));
        assert!(ids(&visible, true).is_empty());
        assert_eq!(
            ids(&full, true),
            ["generate_completions", "generate_man_page", "hold"]
        );
    }

    #[test]
    fn an_unknown_shell_is_refused_naming_the_known_ones() {
        let err = HostArgs::try_parse_from(["nixos-shell", "--generate-completions", "tcsh"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("tcsh"), "{err}");
        assert!(err.contains("bash, elvish, fish, powershell, zsh"), "{err}");
    }

    #[test]
    fn the_man_page_is_roff_without_the_hidden_flags() {
        let page = String::from_utf8(man_page().unwrap()).unwrap();
        assert!(page.contains("\n.TH nixos-shell 1 "), "{page}");
        assert!(page.contains("\\-\\-command"));
        assert!(!page.contains("generate"));
    }

    #[test]
    fn only_the_hidden_flags_ask_for_generation() {
        let plain = HostArgs::try_parse_from(["nixos-shell", ".#vm"]).unwrap();
        assert!(Page::requested(&plain).is_none());
        let man = HostArgs::try_parse_from(["nixos-shell", "--generate-man-page"]).unwrap();
        assert!(Page::requested(&man).is_some());
        let both =
            HostArgs::try_parse_from(["nixos-shell", "--generate-completions", "bash", ".#vm"]);
        assert!(both.is_err(), "the flags stand alone");
    }
}
