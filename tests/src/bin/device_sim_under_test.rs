//! The `device-sim` command, built here so that the end-to-end tests run it as a user
//! does (`CARGO_BIN_EXE_device-sim-under-test`; another package's binaries are not
//! visible to a test).
fn main() -> std::process::ExitCode {
    device_sim::cli::main()
}
