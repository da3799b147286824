//! The session share: the host facts in, the command's result out.

use anyhow::Context;
use camino::{Utf8Path, Utf8PathBuf};

use super::mount;
use crate::schema::facts::{
    GuestResult, HostFacts, FACTS_FILE, FACTS_VERSION, GUEST_SESSION_DIR, RESULT_FILE, SESSION_TAG,
};
use crate::schema::manifest::CacheMode;

/// 9p `msize` for the session share: it only carries two small files.
const SESSION_MSIZE: u64 = 262144;

/// Mounts the session share at [`GUEST_SESSION_DIR`], uncached so that the
/// result reaches the host at once.
pub fn mount() -> anyhow::Result<()> {
    mount::mount_9p(
        SESSION_TAG,
        Utf8Path::new(GUEST_SESSION_DIR),
        &mount::options(SESSION_MSIZE, CacheMode::None),
        false,
    )
}

/// Reads and parses the facts file in the mounted session share; the error
/// is one line for the console saying why the facts cannot be used.
pub fn read_facts() -> Result<HostFacts, String> {
    let path = Utf8Path::new(GUEST_SESSION_DIR).join(FACTS_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => parse_facts(&bytes, &path),
        Err(err) => Err(format!(
            "cannot read host facts {path}: {err}; the VM boots without them"
        )),
    }
}

/// Parses a facts document; `path` only names it in messages.
pub fn parse_facts(bytes: &[u8], path: &Utf8Path) -> Result<HostFacts, String> {
    match serde_json::from_slice::<HostFacts>(bytes) {
        Ok(facts) if facts.version == FACTS_VERSION => Ok(facts),
        Ok(facts) => Err(format!(
            "host facts {path} have version {}, this guest reads version {FACTS_VERSION}; \
             the VM boots without them (use the same nixos-shell on host and guest)",
            facts.version
        )),
        Err(err) => Err(format!(
            "host facts {path} are malformed ({err}); the VM boots without them"
        )),
    }
}

/// Where the guest finds the host's terminfo entry for `TERM`, when the
/// facts carry one: its directory in the mounted session share.
pub fn terminfo_dir(facts: &HostFacts) -> Option<Utf8PathBuf> {
    facts
        .terminfo_dir
        .as_deref()
        .filter(|dir| dir.is_relative())
        .map(|dir| Utf8Path::new(GUEST_SESSION_DIR).join(dir))
}

/// Writes the command's result next to the facts and flushes it to the host.
pub fn write_result(exit_code: i32) -> anyhow::Result<()> {
    let path = Utf8Path::new(GUEST_SESSION_DIR).join(RESULT_FILE);
    let json = result_json(exit_code)?;
    std::fs::write(&path, json).with_context(|| format!("cannot write the result {path}"))?;
    Ok(())
}

/// The result document for `exit_code`.
pub fn result_json(exit_code: i32) -> anyhow::Result<String> {
    let result = GuestResult {
        version: FACTS_VERSION,
        exit_code,
    };
    serde_json::to_string(&result).context("cannot serialize the result")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<HostFacts, String> {
        parse_facts(json.as_bytes(), Utf8Path::new("/s/facts.json"))
    }

    #[test]
    fn valid_facts_are_read() {
        let Ok(facts) = parse(r#"{"version":1,"user":"a","home":"/home/a","cwd":"/home/a"}"#)
        else {
            panic!("expected valid facts");
        };
        assert_eq!(facts.user, "a");
    }

    #[test]
    fn malformed_facts_give_one_line_naming_the_file() {
        let Err(message) = parse("{not json") else {
            panic!("expected invalid facts");
        };
        assert!(message.starts_with("host facts /s/facts.json are malformed ("));
        assert!(message.ends_with("the VM boots without them"));
        assert!(!message.contains('\n'));
    }

    #[test]
    fn another_version_is_refused() {
        let Err(message) = parse(r#"{"version":2,"user":"a","home":"/home/a","cwd":"/home/a"}"#)
        else {
            panic!("expected invalid facts");
        };
        assert!(message.contains("version 2, this guest reads version 1"));
    }

    #[test]
    fn the_result_is_camel_case_json() {
        assert_eq!(result_json(7).unwrap(), r#"{"version":1,"exitCode":7}"#);
    }
}
