//! `sh` words: [`quote`] makes one from any text, for the scripts the
//! fixtures write; [`split`] reads a line of them back, for the command
//! lines `nixos-shell --dry-run` prints.

use anyhow::{bail, Result};

/// `value` as one single-quoted `sh` word.
pub fn quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

/// The words of one line of `sh` input: single quotes, double quotes (with
/// `\"`, `\\`, `\$` and `` \` `` escapes) and backslashes outside quotes.
/// Expansions are not performed; a `$` is kept as it is.
pub fn split(line: &str) -> Result<Vec<String>> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => bail!("unterminated single quote in {line:?}"),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => word.push(c),
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => bail!("unterminated double quote in {line:?}"),
                        },
                        Some(c) => word.push(c),
                        None => bail!("unterminated double quote in {line:?}"),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(c) => word.push(c),
                    None => bail!("a trailing backslash continues {line:?}"),
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    /// Texts that need quoting in every way `sh` can trip on.
    const AWKWARD: [&str; 6] = ["", "it's", "a b", "$HOME `x` \\", "''", "\"q\" ; *"];

    #[test]
    fn splits_like_sh() {
        assert_eq!(
            super::split(r#"nix build 'a b' "c \"d\" \$e" f\ g 'it'\''s' '' x"#).unwrap(),
            ["nix", "build", "a b", r#"c "d" $e"#, "f g", "it's", "", "x"]
        );
        assert!(super::split("'open").is_err());
        assert!(super::split("\"open").is_err());
    }

    #[test]
    fn a_quoted_word_is_the_text_itself_to_sh_and_to_split() {
        assert_eq!(super::quote("it's"), r"'it'\''s'");
        for text in AWKWARD {
            let word = super::quote(text);
            assert_eq!(super::split(&word).unwrap(), [text], "{word}");
            let out = std::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(format!("printf %s {word}"))
                .output()
                .expect("run /bin/sh");
            assert_eq!(String::from_utf8_lossy(&out.stdout), text, "{word}");
        }
    }
}
