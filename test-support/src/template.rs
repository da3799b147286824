//! The fixtures' shell and Nix text lives in `.sh` and `.nix` files beside
//! the code, with `@name@` placeholders (the syntax of nixpkgs'
//! `substituteAll`) that [`fill`] replaces, so a reader sees each file as
//! the shell or nix will.

/// `template` with every `@name@` replaced by its value, in one pass (a
/// value is never searched for placeholders). Panics on a placeholder that
/// has no value and on a value whose placeholder is missing: either is a
/// mistake in the harness, not in the code under test.
pub fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len());
    let mut used = vec![false; values.len()];
    let mut rest = template;
    while let Some(at) = rest.find('@') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let name_len = after
            .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
            .unwrap_or(after.len());
        if name_len > 0 && after[name_len..].starts_with('@') {
            let name = &after[..name_len];
            let index = values
                .iter()
                .position(|(key, _)| *key == name)
                .unwrap_or_else(|| panic!("the template has @{name}@ but no value for it"));
            used[index] = true;
            out.push_str(values[index].1);
            rest = &after[name_len + 1..];
        } else {
            out.push('@');
            rest = after;
        }
    }
    out.push_str(rest);
    for ((key, _), used) in values.iter().zip(used) {
        assert!(
            used,
            "a value for @{key}@, which the template does not have"
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::fill;

    #[test]
    fn templates_fill_each_placeholder_and_leave_other_at_signs_alone() {
        assert_eq!(
            fill(
                "exec @cmd@ \"$@\" user@host @cmd@@x@",
                &[("cmd", "qemu @x@"), ("x", "!")]
            ),
            "exec qemu @x@ \"$@\" user@host qemu @x@!"
        );
    }

    #[test]
    #[should_panic(expected = "no value for it")]
    fn a_template_placeholder_without_a_value_is_a_harness_error() {
        fill("@missing@", &[]);
    }
}
