//! The resize figure: how long after the host terminal changes size the
//! program in front on the guest's console gets SIGWINCH with the new size,
//! through nixos-shell's resize port and the guest's follower.

use std::time::Instant;

use anyhow::Result;

use nixos_shell_test_support::vm::{Console, Era, PRINT_SIZE_ON_WINCH, WAITING_FOR_WINCH};
use nixos_shell_test_support::vm_fixture::{self, Fixture};

use crate::table::{Row, Unit};
use crate::{guarded, Bench, PATHS};

/// Resizes per figure: one VM serves them all.
const RESIZES: usize = 21;

impl Bench {
    pub(crate) fn resize(&self) -> Vec<Row> {
        let labels = ["console resize: host terminal to the guest program's SIGWINCH".to_string()];
        eprintln!("costs: console resize");
        match guarded(&labels, || self.try_resize()) {
            Ok(delays) => {
                vec![Row::measured(labels[0].clone(), Unit::Seconds, &delays)
                    .goal("< 1 s", |v| v < 1.0)]
            }
            Err(rows) => rows,
        }
    }

    fn try_resize(&self) -> Result<Vec<f64>> {
        let fx = Fixture::new(PATHS, Era::NineP);
        let mut cmd = fx.command(&[]);
        cmd.env("NIX_CONFIG", &self.nix_config)
            .env("PATH", self.path_env()?);
        let mut vm = Console::spawn(cmd, vm_fixture::ROWS, vm_fixture::COLS);
        vm.wait_for_shell();
        let mut delays = Vec::new();
        for i in 0..RESIZES {
            vm.send(&format!("{PRINT_SIZE_ON_WINCH}\n"));
            vm.expect(WAITING_FOR_WINCH, crate::BOOT_TIMEOUT);
            let (rows, cols) = (20 + (i % 2) as u16 * 10, 80 + i as u16);
            let start = Instant::now();
            vm.resize(rows, cols);
            vm.expect(&format!("resized-to {rows} {cols}-"), crate::BOOT_TIMEOUT);
            delays.push(start.elapsed().as_secs_f64());
        }
        vm.send("poweroff\n");
        vm.wait(crate::BOOT_TIMEOUT);
        Ok(delays)
    }
}
