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
        "NAME", "CONFIG", "STARTED", "DETACHED", "DISK", "FORWARDS", "SHARES",
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
        ]);
    }
    let widths: Vec<usize> = (0..7)
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

/// `seconds` since the epoch as a UTC date and time,
/// `YYYY-MM-DD HH:MM:SS UTC` (the proleptic Gregorian calendar's days
/// from the epoch, by Howard Hinnant's `civil_from_days`).
fn utc(seconds: u64) -> String {
    let days = i64::try_from(seconds / 86_400).unwrap_or(0);
    let time = seconds % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        time / 3600,
        time / 60 % 60,
        time % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        // `date -u -d @1796676029`
        assert_eq!(utc(1_796_676_029), "2026-12-07 20:40:29 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
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
        };
        let other = VmInfo {
            name: "longer-name".to_owned(),
            detached: false,
            disk_image: None,
            forwards: Vec::new(),
            ..vm.clone()
        };
        assert_eq!(
            table([&vm, &other].into_iter()),
            "NAME         CONFIG  STARTED                  DETACHED  DISK           FORWARDS               SHARES\n\
             vm           .#vm    1970-01-01 00:00:00 UTC  yes       /s/vm-1.qcow2  127.0.0.1:8080:80/tcp  /h:/h, /d:/d:ro\n\
             longer-name  .#vm    1970-01-01 00:00:00 UTC  no        -              -                      /h:/h, /d:/d:ro\n"
        );
    }
}
