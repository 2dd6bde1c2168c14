//! `cargo xtask install`: the Debian packages and the unpacked cyrus-imapd binaries the test
//! servers need.

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::util::{self, run};

/// Packages the real-server tests need (a fresh Debian 12 has none of them).
pub const SERVER_PACKAGES: &[&str] = &[
    "dovecot-core",
    "dovecot-imapd",
    "cyrus-common",
    "cyrus-caldav",
    "cyrus-admin",
    "cyrus-clients",
    "sasl2-bin",
    "python3-aiosmtpd",
    "curl",
    "openssl",
];

/// Other sync tools, only for benchmarks.
pub const BENCH_PACKAGES: &[&str] = &["isync", "offlineimap"];

/// Only needed when nothing answers on 127.0.0.1:5432.
pub const POSTGRES_PACKAGES: &[&str] = &["postgresql"];

/// The packages of `pkgs` that dpkg does not report as installed.
pub fn missing(pkgs: &[&'static str]) -> Vec<&'static str> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Package} ${db:Status-Abbrev}\n"])
        .args(pkgs)
        .output();
    let installed: Vec<String> = match out {
        Ok(o) => String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| l.split_whitespace().nth(1) == Some("ii"))
            .filter_map(|l| l.split_whitespace().next().map(str::to_string))
            .collect(),
        Err(_) => Vec::new(),
    };
    pkgs.iter()
        .copied()
        .filter(|p| !installed.iter().any(|i| i == p))
        .collect()
}

/// Installs the missing packages of `pkgs` with apt-get (root only).
pub fn ensure_packages(pkgs: &[&'static str]) -> Result<()> {
    let missing = missing(pkgs);
    if missing.is_empty() {
        return Ok(());
    }
    if !util::is_root() {
        bail!(
            "missing Debian packages: {}; install them as root: apt-get install -y {}",
            missing.join(" "),
            missing.join(" ")
        );
    }
    println!("installing Debian packages: {}", missing.join(" "));
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
    };
    if !install()?.success() {
        // A fresh container often has no package lists yet.
        run(Command::new("apt-get").arg("update"))?;
        if !install()?.success() {
            bail!("apt-get install {} failed", missing.join(" "));
        }
    }
    Ok(())
}

/// Where the cyrus-imapd .deb is unpacked (`MAILSYNC_CACHE_DIR`, else `<workspace>/target`).
fn cache_dir() -> PathBuf {
    std::env::var_os("MAILSYNC_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| util::workspace_root().join("target"))
        .join("cyrus-imapd-deb")
}

/// The directory holding `imapd`, `idled` and `squatter` from the cyrus-imapd .deb, unpacking
/// it first if needed. cyrus-imapd conflicts with dovecot-imapd, so it is never installed.
pub fn cyrus_bin_dir() -> Result<PathBuf> {
    let dir = cache_dir();
    let bin = dir.join("usr/lib/cyrus/bin");
    if ["imapd", "idled", "squatter"]
        .iter()
        .all(|b| bin.join(b).is_file())
    {
        return Ok(bin);
    }
    println!(
        "unpacking imapd/idled/squatter from the cyrus-imapd .deb into {}",
        dir.display()
    );
    let parent = dir.parent().context("cache dir has no parent")?;
    fs::create_dir_all(parent)?;
    let tmp = parent.join(format!("cyrus-imapd-deb.tmp{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp)?;
    run(Command::new("apt-get")
        .arg("download")
        .arg("cyrus-imapd")
        .current_dir(&tmp))
    .context("apt-get download cyrus-imapd (needs network and apt lists: apt-get update)")?;
    let deb = fs::read_dir(&tmp)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .context("apt-get download produced no .deb")?;
    let x = tmp.join("x");
    run(Command::new("dpkg").arg("-x").arg(&deb).arg(&x))?;
    let _ = fs::remove_dir_all(&dir);
    fs::rename(&x, &dir)?;
    let _ = fs::remove_dir_all(&tmp);
    if !bin.join("imapd").is_file() {
        bail!("{} has no imapd after dpkg -x", bin.display());
    }
    Ok(bin)
}

/// `cargo xtask install [--bench]`.
pub fn cmd(args: &[String]) -> Result<()> {
    let mut pkgs: Vec<&'static str> = SERVER_PACKAGES.to_vec();
    let mut check = false;
    for a in args {
        match a.as_str() {
            "--bench" => pkgs.extend_from_slice(BENCH_PACKAGES),
            "--postgres" => pkgs.extend_from_slice(POSTGRES_PACKAGES),
            "--check" => check = true,
            other => bail!(
                "unknown install option {other}; usage: cargo xtask install [--check] [--bench] [--postgres]"
            ),
        }
    }
    if check {
        let m = missing(&pkgs);
        if m.is_empty() {
            println!("all {} packages are installed", pkgs.len());
            return Ok(());
        }
        bail!("missing Debian packages: {}", m.join(" "));
    }
    ensure_packages(&pkgs)?;
    let bin = cyrus_bin_dir()?;
    println!("all packages present; cyrus imapd in {}", bin.display());
    Ok(())
}
