//! The `sluice` binary. The server lands with the broker issue; the command
//! line is fixed now so that README's run command never changes.

use mimalloc::MiMalloc;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("serve") => {
            eprintln!("sluice serve: not yet — the server is being built (the storage engine is ready: see README.md)");
            std::process::exit(2);
        }
        Some("--version") | Some("-V") => println!("sluice {}", env!("CARGO_PKG_VERSION")),
        _ => {
            eprintln!("usage: sluice serve");
            std::process::exit(2);
        }
    }
}
