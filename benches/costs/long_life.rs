//! The long life in full (`long_life::Counts::FULL`): one VM, a thousand
//! attaches, a hundred interactive ones, resizes at 100 per second for a
//! minute, 256 MiB each way through an attached pipe; what the host's
//! nixos-shell holds at the end against the start. The VM tests run the
//! same life short (`vm::long_life`).

use nixos_shell_test_support::long_life::{self, Counts};
use nixos_shell_test_support::vm::Era;
use nixos_shell_test_support::vm_fixture::Fixture;

use crate::table::{Row, Unit};
use crate::{guarded, Bench, PATHS};

impl Bench {
    pub(crate) fn long_life(&self) -> Vec<Row> {
        let counts = Counts::FULL;
        let labels = [
            format!(
                "long life: {} attaches, {} interactive, {} resizes, {} MiB each way",
                counts.attaches,
                counts.interactive,
                counts.resizes,
                counts.piped / (1024 * 1024)
            ),
            "long life: host's open descriptors, end - start".to_string(),
            "long life: host's RSS, end / start (after warm-up)".to_string(),
        ];
        eprintln!("costs: long-life");
        let report = match guarded(&labels, || {
            let fx = Fixture::new(PATHS, Era::NineP);
            let adjust = self.vm_env()?;
            let mut vm = long_life::boot(&fx, &adjust);
            let report = long_life::live(&fx, &mut vm, &counts, &adjust);
            long_life::power_off(vm);
            Ok(report)
        }) {
            Ok(report) => report,
            Err(rows) => return rows,
        };
        let fds = report.fds_end as f64 - report.fds_start as f64;
        let rss = report.rss_end_kib as f64 / report.rss_start_kib as f64;
        vec![
            Row::measured(
                labels[0].clone(),
                Unit::Seconds,
                &[report.elapsed.as_secs_f64()],
            )
            .goal(">= 15 min", |v| v >= 15.0 * 60.0),
            Row::measured(labels[1].clone(), Unit::Count, &[fds]).goal("0", |v| v == 0.0),
            Row::measured(labels[2].clone(), Unit::Ratio, &[rss]).goal("<= 1.1", |v| v <= 1.1),
        ]
    }
}
