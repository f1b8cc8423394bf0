//! The command line: its definition ([`args`]), its help text, and the one
//! [`Config`] it resolves to, validated once; `main` only glues.

mod args;
mod config;
mod help;

use std::io;

pub use args::{Cli, Command, Generate, parse_size};
pub use config::{Config, ConfigError, Output, Rings, Size};

/// Exit status of `tcptrace diagnose` with a warning-level finding.
pub const EXIT_WARNING: u8 = 3;
/// Exit status of `tcptrace diagnose` with a critical finding.
pub const EXIT_CRITICAL: u8 = 4;

/// Writes what `--generate` asks for.
pub fn generate(what: Generate, out: &mut dyn io::Write) -> io::Result<()> {
    use clap::CommandFactory as _;
    let mut command = Cli::command();
    let shell = match what {
        Generate::Man => return clap_mangen::Man::new(command).section("8").render(out),
        Generate::Bash => clap_complete::Shell::Bash,
        Generate::Zsh => clap_complete::Shell::Zsh,
        Generate::Fish => clap_complete::Shell::Fish,
    };
    clap_complete::generate(shell, &mut command, "tcptrace", out);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_man_page_and_completions() {
        let text = |what| {
            let mut out = Vec::new();
            generate(what, &mut out).unwrap();
            String::from_utf8(out).unwrap()
        };
        let man = text(Generate::Man);
        assert!(
            man.contains(".TH tcptrace 8"),
            "{}",
            &man[..200.min(man.len())]
        );
        assert!(man.contains(r"metrics\-destinations"));
        assert!(text(Generate::Bash).contains("--metrics"));
        assert!(text(Generate::Zsh).contains("--metrics"));
        assert!(text(Generate::Fish).contains("metrics"));
    }
}
