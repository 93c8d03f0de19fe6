//! `device-sim`: simulated Anxin devices (device contract v1). The command lives in
//! [`device_sim::cli`].

fn main() -> std::process::ExitCode {
    device_sim::cli::main()
}
