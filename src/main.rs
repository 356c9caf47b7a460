//! `ddpm-codec`: the command-line face. Argument parsing, progress bars and exit codes only;
//! the work is done by the library.

mod cli;

fn main() {
    if let Err(e) = cli::run() {
        eprintln!("error: {e}");
        std::process::exit(cli::exit_code(&e));
    }
}
