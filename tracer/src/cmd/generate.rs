//! `tracer __generate man|completions DIR`: the man pages (tracer(1) and one per
//! subcommand) and the bash, zsh and fish completions, made from the command line
//! definition itself ([`crate::cli::Cli`]); `cargo xtask dist` packages them.
//!
//! It is parsed apart from [`crate::cli::Cli`] (see [`from_args`]) so that neither
//! the pages nor the completions know of it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{CommandFactory, Parser, ValueEnum};
use clap_complete::Shell;

use crate::cli::Cli;

/// The first argument that asks for this command.
pub const NAME: &str = "__generate";

#[derive(Parser, Debug)]
#[command(name = "tracer __generate", about = "Write tracer's man pages or shell completions into DIR")]
struct GenerateCli {
    /// What to write.
    what: What,
    /// Where (created when missing).
    dir: PathBuf,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum What {
    /// tracer.1 and tracer-SUBCOMMAND.1.
    Man,
    /// tracer.bash, _tracer (zsh) and tracer.fish.
    Completions,
}

/// Runs `tracer __generate ...` when the arguments ask for it: `Some(exit code)`
/// then, else `None` (the arguments are the normal command line's).
pub fn from_args() -> Option<ExitCode> {
    let mut args = std::env::args_os();
    let argv0 = args.next()?;
    if args.next()? != NAME {
        return None;
    }
    let cli = GenerateCli::parse_from(std::iter::once(argv0).chain(args));
    Some(match generate(cli.what, &cli.dir) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tracer: error: {e:#}");
            ExitCode::FAILURE
        }
    })
}

/// The command line as the pages and completions show it: with the version, for
/// the pages' footer.
fn command() -> clap::Command {
    Cli::command().version(env!("CARGO_PKG_VERSION"))
}

fn generate(what: What, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let written = match what {
        What::Man => clap_mangen::generate_to(command(), dir)
            .with_context(|| format!("writing man pages into {}", dir.display())),
        What::Completions => [Shell::Bash, Shell::Zsh, Shell::Fish].into_iter().try_for_each(|shell| {
            clap_complete::generate_to(shell, &mut command(), "tracer", dir)
                .map(|_| ())
                .with_context(|| format!("writing the {shell} completion into {}", dir.display()))
        }),
    };
    written.with_context(|| "pass a writable directory")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_and_completions_cover_every_subcommand() {
        let dir = std::env::temp_dir().join(format!("tracer-generate-{}", std::process::id()));
        generate(What::Man, &dir).unwrap();
        generate(What::Completions, &dir).unwrap();
        for sub in Cli::command().get_subcommands().filter(|s| !s.is_hide_set() && s.get_name() != "help") {
            let page = std::fs::read_to_string(dir.join(format!("tracer-{}.1", sub.get_name()))).unwrap();
            assert!(page.contains(".TH tracer-"), "{page}");
        }
        let ps = std::fs::read_to_string(dir.join("tracer-ps.1")).unwrap();
        assert!(ps.contains("\\-\\-json"), "{ps}");
        let bash = std::fs::read_to_string(dir.join("tracer.bash")).unwrap();
        assert!(bash.contains("complete -F _tracer"), "{bash}");
        assert!(!bash.contains(NAME));
        assert!(dir.join("_tracer").is_file() && dir.join("tracer.fish").is_file());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
