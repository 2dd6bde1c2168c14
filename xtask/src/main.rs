//! `cargo xtask`: project automation (real test servers, bulk loads, the CI pipeline).

mod install;
mod servers;
mod util;

use anyhow::{Result, bail};

const USAGE: &str = "\
usage: cargo xtask <command>

  servers up|down [--keep-state]|status|env
                     real test servers on loopback (MAILSYNC_SERVERS_ROOT, MAILSYNC_PORT_BASE)
  install [--bench] [--postgres]
                     apt-get install the server packages (root), unpack cyrus imapd";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Err(e) = dispatch(&args) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn dispatch(args: &[String]) -> Result<()> {
    let rest = args.get(1..).unwrap_or(&[]);
    match args.first().map(String::as_str) {
        Some("servers") => servers::cmd(rest),
        Some("install") => install::cmd(rest),
        Some("-h" | "--help" | "help") | None => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => bail!("unknown command `{other}`\n{USAGE}"),
    }
}
