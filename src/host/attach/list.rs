//! `nixos-shell --list [--json]`: the user's running VMs, from the
//! registry alone (what each run wrote beside its entry), in a table for
//! people or as JSON for scripts. Entries of nixos-shells that are gone
//! are removed, not shown.

use anyhow::{Context, Result};
use camino::Utf8Path;
use serde::Serialize;

use super::registry::{self, VmInfo};

/// One VM as `--json` gives it: what its run wrote, and its holder.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Listed<'a> {
    #[serde(flatten)]
    info: &'a VmInfo,
    /// The nixos-shell that holds the VM.
    pid: u32,
    /// The build result the VM runs now (after a `--switch`, the new one).
    build: Option<camino::Utf8PathBuf>,
}

/// Prints the running VMs of the registry `dir`; 0.
pub fn run(dir: &Utf8Path, json: bool) -> Result<u8> {
    let vms = registry::list(dir)?;
    if json {
        let listed: Vec<Listed> = vms
            .iter()
            .map(|(entry, info)| Listed {
                info,
                pid: entry.pid,
                build: registry::build_of(entry),
            })
            .collect();
        let text = serde_json::to_string_pretty(&listed).context("could not encode the list")?;
        println!("{text}");
    } else if vms.is_empty() {
        eprintln!("nixos-shell: no VM is running");
    } else {
        print!("{}", table(vms.iter().map(|(_, info)| info)));
    }
    Ok(0)
}

/// The table people read: a header, then a row per VM, columns aligned.
fn table<'a>(vms: impl Iterator<Item = &'a VmInfo>) -> String {
    let list = |items: &[String]| match items.join(", ") {
        none if none.is_empty() => "-".to_owned(),
        some => some,
    };
    let mut rows = vec![[
        "NAME", "CONFIG", "STARTED", "DETACHED", "DISK", "FORWARDS", "SHARES", "SESSIONS",
    ]
    .map(str::to_owned)];
    for info in vms {
        rows.push([
            info.name.clone(),
            info.config.clone(),
            utc(info.started),
            if info.detached { "yes" } else { "no" }.to_owned(),
            info.disk_image
                .as_ref()
                .map_or_else(|| "-".to_owned(), ToString::to_string),
            list(&info.forwards),
            list(&info.shares),
            info.sessions.to_string(),
        ]);
    }
    let widths: Vec<usize> = (0..8)
        .map(|column| {
            rows.iter()
                .map(|row| row[column].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut text = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        text.push_str(cells.join("  ").trim_end());
        text.push('\n');
    }
    text
}

/// `seconds` since the epoch as a UTC date and time (RFC 3339).
fn utc(seconds: u64) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(seconds);
    humantime::format_rfc3339_seconds(time).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc_dates() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        // `date -u -d @1796676029`
        assert_eq!(utc(1_796_676_029), "2026-12-07T20:40:29Z");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn the_table_aligns_its_columns_and_marks_what_is_missing() {
        let vm = VmInfo {
            name: "vm".to_owned(),
            config: ".#vm".to_owned(),
            started: 0,
            detached: true,
            disk_image: Some("/s/vm-1.qcow2".into()),
            forwards: vec!["127.0.0.1:8080:80/tcp".to_owned()],
            shares: vec!["/h:/h".to_owned(), "/d:/d:ro".to_owned()],
            console_log: None,
            sessions: 2,
        };
        let other = VmInfo {
            name: "longer-name".to_owned(),
            detached: false,
            disk_image: None,
            forwards: Vec::new(),
            sessions: 0,
            ..vm.clone()
        };
        assert_eq!(
            table([&vm, &other].into_iter()),
            "NAME         CONFIG  STARTED               DETACHED  DISK           FORWARDS               SHARES           SESSIONS\n\
             vm           .#vm    1970-01-01T00:00:00Z  yes       /s/vm-1.qcow2  127.0.0.1:8080:80/tcp  /h:/h, /d:/d:ro  2\n\
             longer-name  .#vm    1970-01-01T00:00:00Z  no        -              -                      /h:/h, /d:/d:ro  0\n"
        );
    }
}
