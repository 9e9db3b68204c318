fn main() -> std::process::ExitCode {
    radhub::cli::main()
}
