//! The `sluice` binary: `sluice serve` runs the broker; `sluice topic`,
//! `sluice produce` and `sluice consume` are clients of a running one.

use clap::Parser;
use mimalloc::MiMalloc;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "A Kafka-model streaming broker, thread-per-core on io_uring"
)]
enum Command {
    /// Run a broker node (defaults: 127.0.0.1:9192, data under ./data).
    Serve(sluice::config::ServeArgs),
    #[command(flatten)]
    Client(sluice::cli::ClientCommand),
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let code = match Command::parse() {
        Command::Serve(args) => match sluice::config::ServeConfig::load(&args).and_then(sluice::server::run) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("sluice serve: {e}");
                1
            }
        },
        Command::Client(cmd) => sluice::cli::run(cmd),
    };
    std::process::exit(code);
}
