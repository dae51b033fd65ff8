//! Writes every target's seeds to `DIR/<target>/seed-<n>`: the starting corpus of
//! `cargo xtask fuzz`.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: obauth-fuzz-seeds DIR");
        return ExitCode::from(2);
    };
    for target in &obauth_fuzz::TARGETS {
        let folder = dir.join(target.name);
        let written =
            std::fs::create_dir_all(&folder).and_then(|()| {
                target.seeds().iter().enumerate().try_for_each(|(n, seed)| {
                    std::fs::write(folder.join(format!("seed-{n}")), seed)
                })
            });
        if let Err(error) = written {
            eprintln!("obauth-fuzz-seeds: {}: {error}", folder.display());
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
