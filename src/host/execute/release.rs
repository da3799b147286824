//! The NixOS release a persistent disk image was made with, kept beside
//! it (`<image>.state-version`): NixOS keys stateful defaults on
//! `system.stateVersion` (a database's data format, say), which follows
//! the release unless the configuration sets it, while the image keeps
//! the data made under the old one. A run that finds another release than
//! the image's says so in one line and boots anyway; deleting the image
//! (`nixos-shell --reset CONFIG` for one in the state directory) starts
//! afresh.

use camino::{Utf8Path, Utf8PathBuf};

/// Where the release of `image` is kept.
pub fn record_path(image: &Utf8Path) -> Utf8PathBuf {
    Utf8PathBuf::from(format!("{image}.state-version"))
}

/// What a run does about the record; pure.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A new image (the run script creates it): record this release.
    Record,
    /// Nothing to say: the same release, or one side unknown (an image
    /// from before records were kept, a manifest without the release).
    Quiet,
    /// The image was made with `recorded`, this build has another.
    Differs { recorded: String },
}

/// Compares the image's record (`recorded`, when there is one) with this
/// build's `current` release; `image_exists` before the run.
pub fn compare(image_exists: bool, recorded: Option<&str>, current: Option<&str>) -> Verdict {
    match (image_exists, recorded, current) {
        (_, _, None) => Verdict::Quiet,
        (false, _, Some(_)) => Verdict::Record,
        (true, Some(recorded), Some(current)) if recorded.trim() != current => Verdict::Differs {
            recorded: recorded.trim().to_owned(),
        },
        (true, _, Some(_)) => Verdict::Quiet,
    }
}

/// The line for an image made with `recorded` and a build of `current`;
/// `reset` is the `nixos-shell --reset` that deletes it, for an image in
/// the state directory (the user's own `--disk` they delete themselves).
pub fn differs_line(
    image: &Utf8Path,
    recorded: &str,
    current: &str,
    reset: Option<&str>,
) -> String {
    let afresh = match reset {
        Some(reset) => format!("start afresh with `{reset}`"),
        None => "delete the image to start afresh".to_owned(),
    };
    format!(
        "the disk image {image} was created with system.stateVersion {recorded}, this build has \
         {current}; stateful services may find data of the older release. Booting it anyway; \
         {afresh}"
    )
}

/// Before a run of `image` built with release `current`: records it beside
/// a new image, or returns the line to say when the image's differs. A
/// record that cannot be written is not worth stopping the run for.
pub fn check(image: &Utf8Path, current: Option<&str>, reset: Option<&str>) -> Option<String> {
    let record = record_path(image);
    let recorded = std::fs::read_to_string(&record).ok();
    match compare(image.exists(), recorded.as_deref(), current) {
        Verdict::Record => {
            let _ = std::fs::write(&record, format!("{}\n", current.unwrap_or_default()));
            None
        }
        Verdict::Quiet => None,
        Verdict::Differs { recorded } => Some(differs_line(
            image,
            &recorded,
            current.unwrap_or_default(),
            reset,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_image_is_recorded_and_an_old_one_compared() {
        assert_eq!(compare(false, None, Some("26.11")), Verdict::Record);
        assert_eq!(
            compare(false, Some("25.05\n"), Some("26.11")),
            Verdict::Record
        );
        assert_eq!(
            compare(true, Some("26.11\n"), Some("26.11")),
            Verdict::Quiet
        );
        assert_eq!(
            compare(true, Some("25.05\n"), Some("26.11")),
            Verdict::Differs {
                recorded: "25.05".to_owned()
            }
        );
        // Unknown on either side: nothing said, nothing written.
        assert_eq!(compare(true, None, Some("26.11")), Verdict::Quiet);
        assert_eq!(compare(false, None, None), Verdict::Quiet);
        assert_eq!(compare(true, Some("25.05"), None), Verdict::Quiet);
    }

    #[test]
    fn the_record_is_written_beside_a_new_image_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let image = Utf8Path::from_path(dir.path()).unwrap().join("vm.qcow2");
        assert_eq!(check(&image, Some("25.05"), None), None);
        assert_eq!(
            std::fs::read_to_string(record_path(&image)).unwrap(),
            "25.05\n"
        );
        std::fs::write(&image, b"QFI\xfb").unwrap();
        assert_eq!(check(&image, Some("25.05"), None), None);
        let line = check(&image, Some("26.11"), None).expect("a line");
        assert!(
            line.starts_with(&format!(
                "the disk image {image} was created with system.stateVersion 25.05, this build has 26.11;"
            )),
            "{line}"
        );
        assert!(line.contains("delete the image"), "{line}");
        let line = check(&image, Some("26.11"), Some("nixos-shell --reset '.#vm'")).unwrap();
        assert!(
            line.ends_with("start afresh with `nixos-shell --reset '.#vm'`"),
            "{line}"
        );
        // Said, not rewritten: the image keeps its release.
        assert_eq!(
            std::fs::read_to_string(record_path(&image)).unwrap(),
            "25.05\n"
        );
    }
}
