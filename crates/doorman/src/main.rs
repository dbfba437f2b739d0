//! The `doorman` command: parse the command line and dispatch; nothing else.

fn main() -> std::process::ExitCode {
    doorman::cli::main()
}
