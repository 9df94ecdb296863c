//! `devctl`: the command line for DevServers.

use clap::Parser;

fn main() {
    let cli = devctl::cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            std::process::exit(1);
        }
    };
    // Not locked for the whole run: ssh-proxy writes to stdout from
    // tokio's blocking pool, which would wait forever for this lock.
    let mut stdout = std::io::stdout();
    let code = match runtime.block_on(devctl::cli::run(cli, &mut stdout)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    };
    // Exit without dropping the runtime: a blocked stdin read (ssh-proxy)
    // cannot be cancelled and would hold the shutdown.
    std::process::exit(code);
}
