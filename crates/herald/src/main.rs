//! The `herald` binary: a thin shell over [`herald::cli`].

fn main() -> std::process::ExitCode {
    herald::cli::main()
}
