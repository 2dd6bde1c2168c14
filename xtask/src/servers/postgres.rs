//! PostgreSQL: the machine's server on 127.0.0.1:5432 when it accepts `postgres`/`test` with
//! trust auth, else a throwaway cluster of our own (Debian's binaries, in the state root).

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::{Instance, State};
use crate::util;

const SYSTEM_PORT: u16 = 5432;

fn data_dir(inst: &Instance) -> PathBuf {
    inst.dir("postgres").join("data")
}

fn pidfile(inst: &Instance) -> PathBuf {
    data_dir(inst).join("postmaster.pid")
}

/// `MAILSYNC_PG=own` forces a cluster of our own even when 5432 works.
fn force_own() -> bool {
    std::env::var("MAILSYNC_PG").is_ok_and(|v| v == "own")
}

/// Whether 127.0.0.1:`port` lets user postgres into database test without a password: a v3
/// StartupMessage must be answered with AuthenticationOk.
pub fn trust_ok(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
    let params = b"user\0postgres\0database\0test\0\0";
    let len = (8 + params.len()) as u32;
    let mut msg = Vec::new();
    msg.extend_from_slice(&len.to_be_bytes());
    msg.extend_from_slice(&196_608u32.to_be_bytes()); // protocol 3.0
    msg.extend_from_slice(params);
    if s.write_all(&msg).is_err() {
        return false;
    }
    let mut head = [0u8; 9];
    let ok = s.read_exact(&mut head).is_ok() && head[0] == b'R' && head[5..9] == [0, 0, 0, 0];
    let _ = s.write_all(&[b'X', 0, 0, 0, 4]); // Terminate
    ok
}

fn own_running(inst: &Instance) -> Option<u32> {
    util::live_pid(&pidfile(inst), "postgres")
}

pub fn state(inst: &Instance) -> State {
    if let Some(pid) = own_running(inst) {
        return if trust_ok(inst.ports.postgres) {
            State::Running(pid)
        } else {
            State::Unhealthy(pid, format!("no trust login on {}", inst.ports.postgres))
        };
    }
    if !force_own() && trust_ok(SYSTEM_PORT) {
        return State::External(format!("127.0.0.1:{SYSTEM_PORT}"));
    }
    State::Stopped
}

/// The URL tests use.
pub fn url(inst: &Instance) -> String {
    let port = if own_running(inst).is_some() {
        inst.ports.postgres
    } else {
        SYSTEM_PORT
    };
    format!("postgres://postgres@127.0.0.1:{port}/test")
}

/// The newest `/usr/lib/postgresql/<major>/bin`.
fn bin_dir() -> Result<PathBuf> {
    let mut majors: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .context("no /usr/lib/postgresql (install the Debian package postgresql)")?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((n, bin))
        })
        .collect();
    majors.sort();
    majors
        .pop()
        .map(|(_, b)| b)
        .context("no /usr/lib/postgresql/*/bin/initdb (install the Debian package postgresql)")
}

/// Runs a PostgreSQL binary as the `postgres` user (it refuses to run as root).
fn as_postgres(bin: &std::path::Path) -> Command {
    let mut c = Command::new("runuser");
    c.args(["-u", "postgres", "--"]).arg(bin).process_group(0);
    c
}

pub fn start(inst: &Instance) -> Result<()> {
    let port = inst.ports.postgres;
    if util::port_open(port) {
        bail!("port {port} is already used by another program");
    }
    let bin = bin_dir()?;
    let dir = inst.dir("postgres");
    let data = data_dir(inst);
    fs::create_dir_all(&dir)?;
    let (uid, gid) = util::user_ids("postgres")?;
    util::chown_recursive(&dir, uid, gid)?;
    if !data.join("PG_VERSION").exists() {
        util::run(as_postgres(&bin.join("initdb")).arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
        ]))
        .context("initdb")?;
    }
    let opts = format!(
        "-c port={port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} \
         -c fsync=off -c full_page_writes=off -c synchronous_commit=off",
        dir.display()
    );
    util::run_daemon(
        as_postgres(&bin.join("pg_ctl"))
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(dir.join("postgres.log"))
            .args(["-o", &opts, "-w", "-t", "30", "start"]),
        &dir.join("pg_ctl.log"),
    )
    .context("pg_ctl start")?;
    // database `test` as on the machine-wide server
    let exists = util::run(
        as_postgres(&bin.join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-U",
                "postgres",
                "-tAc",
            ])
            .arg("SELECT 1 FROM pg_database WHERE datname = 'test'"),
    )?;
    if exists.trim() != "1" {
        util::run(as_postgres(&bin.join("createdb")).args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "postgres",
            "test",
        ]))?;
    }
    if !trust_ok(port) {
        bail!("own PostgreSQL on {port} does not accept postgres/test");
    }
    Ok(())
}

pub fn stop(inst: &Instance) {
    // SIGINT = fast shutdown (disconnects clients, no checkpoint wait worth having on tmpfs)
    util::stop_pidfile(&pidfile(inst), "postgres", "INT", Duration::from_secs(15));
}
