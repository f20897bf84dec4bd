//! `baton man`: manual pages generated from the command definitions (clap_mangen), so they
//! never disagree with `--help`.

use crate::{exit, Cli, Failure};
use clap::CommandFactory;
use std::path::Path;

/// The command line as users see it: global options given to every command (so that each
/// command's page lists them), hidden internal commands left out.
pub fn visible_command() -> clap::Command {
    let mut full = Cli::command();
    full.build();
    let visible: Vec<clap::Command> = full
        .get_subcommands()
        .filter(|c| !c.is_hide_set())
        .cloned()
        .collect();
    // Rebuild from the parts: `clap::Command` cannot drop a subcommand.
    let mut out = clap::Command::new("baton")
        .version(full.get_version().unwrap_or_default().to_string())
        .about(full.get_about().cloned().unwrap_or_default())
        .long_about(full.get_long_about().cloned().unwrap_or_default())
        .after_help(full.get_after_help().cloned().unwrap_or_default())
        .disable_help_subcommand(true)
        .subcommand_required(true);
    for arg in full.get_arguments() {
        out = out.arg(arg.clone());
    }
    out.subcommands(visible)
}

pub fn run(command: Option<&str>, dir: Option<&Path>) -> Result<(), Failure> {
    let baton = visible_command();
    if let Some(dir) = dir {
        std::fs::create_dir_all(dir).map_err(|e| {
            Failure::new(exit::ERROR, format!("cannot create {}: {e}", dir.display()))
        })?;
        let mut written = vec![write_page(dir, "baton", baton.clone())?];
        for sub in baton.get_subcommands() {
            let page = format!("baton-{}", sub.get_name());
            let cmd = sub.clone().name(page.clone());
            written.push(write_page(dir, &page, cmd)?);
        }
        for w in written {
            println!("wrote {}", w.display());
        }
        return Ok(());
    }
    let cmd = match command {
        None => baton,
        Some(name) => {
            let sub = baton
                .get_subcommands()
                .find(|c| c.get_name() == name)
                .ok_or_else(|| {
                    Failure::new(
                        exit::USAGE,
                        format!("no command {name:?} (see baton --help)"),
                    )
                })?;
            sub.clone().name(format!("baton-{name}"))
        }
    };
    let mut out = std::io::stdout().lock();
    clap_mangen::Man::new(cmd).render(&mut out)?;
    Ok(())
}

fn write_page(dir: &Path, page: &str, cmd: clap::Command) -> Result<std::path::PathBuf, Failure> {
    let path = dir.join(format!("{page}.1"));
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd).render(&mut buf)?;
    std::fs::write(&path, buf)
        .map_err(|e| Failure::new(exit::ERROR, format!("cannot write {}: {e}", path.display())))?;
    Ok(path)
}
