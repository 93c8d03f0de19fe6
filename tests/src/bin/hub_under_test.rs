//! The `hub` command built with the `failpoints` feature, for kill/restart tests.
fn main() -> std::process::ExitCode {
    hub::cli::main()
}
