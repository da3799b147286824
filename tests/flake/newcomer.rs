//! `nix flake init -t`, then `nixos-shell`: the newcomer's first minutes,
//! with a real VM, in a directory whose path has a space.

use crate::support::our_flake::OurFlake;
use crate::support::vm::{Console, Era, RunScript, BOOT_TIMEOUT};
use crate::PATHS;

#[test]
fn after_flake_init_plain_nixos_shell_and_dot_vm_run_the_templates_flake_in_a_path_with_a_space() {
    for era in Era::ALL {
        let world = OurFlake::new(PATHS, era, &RunScript::new(PATHS, era, "vm").nix_template());
        let project = world.project("my first vm");
        assert!(project.join("flake.nix").is_file() && project.join("vm.nix").is_file());
        for config in [None, Some(".#vm")] {
            let mut args: Vec<&str> = config.into_iter().collect();
            args.extend(["-c", "echo \"ran-in $(pwd)\"; exit 3"]);
            let mut vm = Console::spawn(world.cli(&args, &project), 30, 100);
            vm.expect(&format!("ran-in {}", project.display()), BOOT_TIMEOUT);
            let status = vm.wait(BOOT_TIMEOUT);
            assert_eq!(
                status.code(),
                Some(3),
                "{} era, {args:?}: the terminal showed:\n{}",
                era.name(),
                vm.transcript()
            );
            // Without CONFIG both files are candidates: one line says the
            // flake (not the vm.nix beside it) ran.
            assert_eq!(
                vm.transcript()
                    .contains("both exist: running the flake's vm"),
                config.is_none(),
                "{}",
                vm.transcript()
            );
        }
    }
}
