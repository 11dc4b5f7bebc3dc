use clap::Parser;

fn main() -> std::process::ExitCode {
    limit_malloc_arenas();
    match kura::cli::run(kura::cli::Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kura: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// glibc gives every thread that allocates its own malloc arena; with the blocking pool's
/// threads handing blob buffers around, that multiplies resident memory for no speed gain.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn limit_malloc_arenas() {
    // SAFETY: mallopt only tunes the allocator; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas() {}
