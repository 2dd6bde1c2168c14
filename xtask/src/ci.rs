//! `cargo xtask ci`: install, fmt, lint, clippy, doc, and every test against freshly started
//! real servers, with a timed summary; each step also runs alone (`cargo xtask ci clippy`).

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::servers::{self, Instance};
use crate::util::{self, secs};
use crate::{install, lint};

const STEPS: &[&str] = &["install", "fmt", "lint", "clippy", "doc", "test"];

/// Steps run only when named: the coverage-guided fuzz run builds its own instrumented
/// workspace (several minutes the first time). Every `test` step already runs the
/// uninstrumented mutation smoke (`fuzz_smoke_mutations_do_not_panic`, 10 s per target).
const OPT_IN_STEPS: &[&str] = &["fuzz"];

const USAGE: &str = "usage: cargo xtask ci [--no-install] [--keep-servers] \
     [install|fmt|lint|clippy|doc|test|fuzz]...\n  fuzz (only when named): 10 s per fuzz target";

struct Options {
    steps: Vec<&'static str>,
    keep_servers: bool,
}

fn parse(args: &[String]) -> Result<Options> {
    let mut steps = Vec::new();
    let (mut no_install, mut keep_servers) = (false, false);
    for a in args {
        match a.as_str() {
            "--no-install" => no_install = true,
            "--keep-servers" => keep_servers = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            s => match STEPS.iter().chain(OPT_IN_STEPS).find(|x| **x == s) {
                Some(step) => steps.push(*step),
                None => bail!("unknown ci step or option `{s}`\n{USAGE}"),
            },
        }
    }
    if steps.is_empty() {
        steps = STEPS.to_vec();
    }
    if no_install {
        steps.retain(|s| *s != "install");
    }
    Ok(Options {
        steps,
        keep_servers,
    })
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(util::workspace_root())
        .env("CARGO_INCREMENTAL", "0");
    c
}

/// `cargo clippy --workspace ...`: program name and arguments, without env and cwd.
fn describe(cmd: &Command) -> String {
    let program = std::path::Path::new(cmd.get_program())
        .file_name()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let args: Vec<String> = cmd
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    format!("{program} {}", args.join(" "))
}

fn status(cmd: &mut Command) -> Result<()> {
    println!("$ {cmd:?}");
    let st = cmd
        .status()
        .with_context(|| format!("cannot run {}", describe(cmd)))?;
    if !st.success() {
        bail!("`{}` failed ({st})", describe(cmd));
    }
    Ok(())
}

/// Runs cargo test, echoing its output, and fails if any test was ignored (nothing may be
/// skipped silently).
fn cargo_test(cmd: &mut Command) -> Result<()> {
    println!("$ {cmd:?}");
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {}", describe(cmd)))?;
    let (tx, rx) = mpsc::channel::<String>();
    let mut readers = Vec::new();
    if let Some(out) = child.stdout.take() {
        let tx = tx.clone();
        readers.push(thread::spawn(move || pump(out, |l| println!("{l}"), &tx)));
    }
    if let Some(err) = child.stderr.take() {
        let tx = tx.clone();
        readers.push(thread::spawn(move || pump(err, |l| eprintln!("{l}"), &tx)));
    }
    drop(tx);
    let mut ignored = 0u64;
    for line in rx {
        ignored += ignored_in(&line);
    }
    for r in readers {
        let _ = r.join();
    }
    let st = child.wait()?;
    if !st.success() {
        bail!("`{}` failed ({st})", describe(cmd));
    }
    if ignored > 0 {
        bail!("{ignored} test(s) were ignored; nothing may be skipped");
    }
    Ok(())
}

/// Echoes a child's output line by line and forwards each line. Reads bytes, not `lines()`:
/// one non-UTF-8 line must not stop the reader (the child would block on a full pipe).
fn pump(r: impl Read, echo: fn(&str), tx: &mpsc::Sender<String>) {
    let mut r = BufReader::new(r);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match r.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let line = String::from_utf8_lossy(&buf);
        let line = line.trim_end_matches(['\n', '\r']);
        echo(line);
        let _ = tx.send(line.to_string());
    }
}

/// The ignored count of a libtest summary line
/// (`test result: ok. 3 passed; 0 failed; 1 ignored; ...`), 0 for any other line.
fn ignored_in(line: &str) -> u64 {
    let Some(rest) = line.strip_prefix("test result: ") else {
        return 0;
    };
    rest.split(';')
        .filter_map(|part| part.trim().strip_suffix(" ignored"))
        .map(|n| n.trim().parse::<u64>().unwrap_or(0))
        .sum()
}

fn step_install() -> Result<()> {
    let mut pkgs = install::SERVER_PACKAGES.to_vec();
    if !crate::servers::postgres_available() {
        pkgs.extend_from_slice(install::POSTGRES_PACKAGES);
    }
    install::ensure_packages(&pkgs)?;
    install::cyrus_bin_dir()?;
    Ok(())
}

/// Starts the servers (or reuses a running instance), runs all tests with the connection
/// details exported, and stops the servers again if this run started them.
fn step_test(keep_servers: bool) -> Result<()> {
    let inst = Instance::from_env()?;
    let report = servers::up(&inst).context("servers up")?;
    let owned = report.fresh && !keep_servers;
    let guard = if owned { spawn_guard(&inst) } else { None };
    if !report.fresh {
        println!(
            "note: reusing the running instance in {}; it is left running afterwards",
            inst.root.display()
        );
    }
    let result = run_tests(&servers::env_pairs(&inst));
    if owned {
        // keep the logs of a failed run; the next `servers up` wipes them
        if let Err(e) = servers::down(&inst, result.is_err()) {
            eprintln!("stopping the servers failed: {e:#}");
        }
    }
    if let Some(mut g) = guard {
        let _ = g.kill();
        let _ = g.wait();
    }
    result
}

/// `cargo test` for all targets, then doc tests, both with the connection details exported.
fn run_tests(env: &[(String, String)]) -> Result<()> {
    let mut unit = cargo();
    unit.args(["test", "--workspace", "--all-targets", "--no-fail-fast"])
        .envs(env.iter().cloned());
    let a = cargo_test(&mut unit);
    let mut doc = cargo();
    doc.args(["test", "--workspace", "--doc"])
        .envs(env.iter().cloned());
    let b = cargo_test(&mut doc);
    match (a, b) {
        (Ok(()), Ok(())) => Ok(()),
        (Err(e), Ok(())) | (Ok(()), Err(e)) => Err(e),
        (Err(e1), Err(e2)) => Err(anyhow::anyhow!("{e1:#}; {e2:#}")),
    }
}

/// A watchdog in its own process group: if this process dies (Ctrl-C, kill), it stops the
/// servers this run started.
fn spawn_guard(inst: &Instance) -> Option<std::process::Child> {
    let exe = std::env::current_exe().ok()?;
    Command::new(exe)
        .args(["servers", "__guard", &std::process::id().to_string()])
        .env("MAILSYNC_SERVERS_ROOT", &inst.root)
        .env("MAILSYNC_PORT_BASE", inst.base.to_string())
        .stdin(Stdio::null())
        .process_group(0)
        .spawn()
        .ok()
}

/// `cargo xtask ci ...`.
pub fn cmd(args: &[String]) -> Result<()> {
    let opts = parse(args)?;
    let t0 = Instant::now();
    let mut results: Vec<(&str, Duration, Result<()>)> = Vec::new();
    for step in &opts.steps {
        println!("\n==== ci: {step} ====");
        let t = Instant::now();
        let r = match *step {
            "install" => step_install(),
            "fmt" => status(cargo().args(["fmt", "--all", "--check"])),
            "lint" => lint::run(),
            "clippy" => status(cargo().args([
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ])),
            "doc" => status(
                cargo()
                    .args(["doc", "--workspace", "--no-deps"])
                    .env("RUSTDOCFLAGS", "-D warnings"),
            ),
            "test" => step_test(opts.keep_servers),
            "fuzz" => crate::fuzz::cmd(&["--time".to_owned(), "10".to_owned()]),
            _ => unreachable!("steps are validated by parse"),
        };
        if let Err(e) = &r {
            eprintln!("ci: {step} FAILED: {e:#}");
        }
        results.push((step, t.elapsed(), r));
    }
    println!("\n==== ci summary ====");
    let mut failed = Vec::new();
    for (step, d, r) in &results {
        let verdict = match r {
            Ok(()) => "ok".to_string(),
            Err(e) => {
                failed.push(*step);
                format!("FAILED: {}", format!("{e:#}").lines().next().unwrap_or(""))
            }
        };
        println!("  {step:<8} {:>9}  {verdict}", secs(*d));
    }
    println!("  total    {:>9}", secs(t0.elapsed()));
    if failed.is_empty() {
        Ok(())
    } else {
        bail!("ci failed in: {}", failed.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_selection() {
        let all = parse(&[]).unwrap();
        assert_eq!(all.steps, STEPS);
        let no = parse(&["--no-install".into()]).unwrap();
        assert_eq!(no.steps, &STEPS[1..]);
        let one = parse(&["clippy".into(), "--keep-servers".into()]).unwrap();
        assert_eq!((one.steps, one.keep_servers), (vec!["clippy"], true));
        assert!(parse(&["bogus".into()]).is_err());
    }

    #[test]
    fn ignored_tests_are_counted_from_libtest_summaries() {
        let line = "test result: ok. 3 passed; 0 failed; 2 ignored; 0 measured; 0 filtered out";
        assert_eq!(ignored_in(line), 2);
        assert_eq!(
            ignored_in("test result: ok. 3 passed; 0 failed; 0 ignored"),
            0
        );
        assert_eq!(ignored_in("test foo ... ignored"), 0);
    }

    #[test]
    fn pump_survives_non_utf8_lines() {
        let (tx, rx) = mpsc::channel();
        pump(&b"a\r\n\xff\xfe\nb"[..], |_| {}, &tx);
        drop(tx);
        let got: Vec<String> = rx.into_iter().collect();
        assert_eq!(got, ["a", "\u{fffd}\u{fffd}", "b"]);
    }
}
