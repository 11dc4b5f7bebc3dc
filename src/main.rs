use clap::Parser;

fn main() -> std::process::ExitCode {
    match kura::cli::run(kura::cli::Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kura: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
