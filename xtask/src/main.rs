//! `cargo xtask`: project automation (real test servers, bulk loads, the CI pipeline).

mod bench;
mod ci;
mod demo;
mod fuzz;
mod install;
mod lint;
mod load;
mod model;
mod servers;
mod util;

use anyhow::{Result, bail};

const USAGE: &str = "\
usage: cargo xtask <command>

  servers up|down [--keep-state]|status|env
                     real test servers on loopback, state in MAILSYNC_SERVERS_ROOT (default
                     /dev/shm/mailsync-servers), ports 10143/10993/10080/10024/10144/10025
                     shifted by MAILSYNC_PORT_BASE - 10000; MAILSYNC_PG=own forces a private
                     PostgreSQL. The default instance writes .state/servers.env; for another
                     root, tests find <root>/servers.env through MAILSYNC_SERVERS_ROOT.
  install [--check] [--bench] [--postgres]
                     apt-get install the server packages (root), unpack cyrus imapd
  load --server dovecot|cyrus --user U [--password P] [--mailbox M] --count N [--seed S]
       [--start I] [--chunk C] [--profile default|small] [--via imap|lmtp|maildir|none]
                     fill a mailbox with generated messages (testkit loaders)
  demo [--keep-servers]
                     the main job: servers up, mail loaded into an IMAP and a JMAP account,
                     `mailsync account add`, `sync --once`, listings, a flag, a send, servers down
  bench [--quick] [--sizes S,M,L] [--runs N] [--bin PATH] [--no-peers] [--no-jmap]
                     mailsync (release binary) against mbsync, offlineimap and a raw IMAP
                     floor; writes docs/benchmarks.md (root, servers up; not part of ci)
  bench search [--messages N] [--backend sqlite|postgres]
                     release build: N (default 100,000) generated messages with known threads
                     written straight into the store on SQLite and PostgreSQL; first-sync time,
                     threading share, index upkeep overhead, exact threads, search median/p99
  model [--seeds N] [--seed-start S] [--seed S] [--ops M] [--backend B] [--replay 'OPS']
        [--shrink-secs T] [--shrink-max K] [--shrink-tries R] [--no-fail] [--release]
                     the model test (random engine + other-client interleavings, oracle:
                     database equals server, no lost intent) beyond the CI seeds; backends
                     dovecot, cyrus-imap, cyrus-jmap; needs `cargo xtask servers up`
  fuzz [--time SECS] [--target NAME]...
                     the cargo-fuzz targets (IMAP responses, MIME, JMAP responses), SECS
                     (30) each from fuzz/seeds; installs cargo-fuzz; prints executions run
  ci [--no-install] [--keep-servers] [install|fmt|lint|clippy|doc|test]...
                     the whole pipeline (or the named steps), with a timed summary";

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
        Some("load") => load::cmd(rest),
        Some("bench") => bench::cmd(rest),
        Some("ci") => ci::cmd(rest),
        Some("demo") => demo::cmd(rest),
        Some("model") => model::cmd(rest),
        Some("fuzz") => fuzz::cmd(rest),
        Some("-h" | "--help" | "help") | None => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => bail!("unknown command `{other}`\n{USAGE}"),
    }
}
