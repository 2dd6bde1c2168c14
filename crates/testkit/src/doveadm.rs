//! Running `doveadm` against the test Dovecot: changes made by "another client".

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::error::Error;

/// Runs `doveadm -c <conf> <args>` and returns its stdout; fails on a non-zero exit with the
/// command's stderr. Needs root (doveadm switches to the mail uid itself).
///
/// Examples: `["flags", "add", "-u", user, "\\Flagged", "mailbox", "INBOX", "uid", "5"]`,
/// `["expunge", "-u", user, "mailbox", "INBOX", "uid", "2:3"]`,
/// `["mailbox", "create", "-u", user, "Box"]`.
pub fn doveadm(conf: &Path, args: &[&str]) -> Result<String, Error> {
    doveadm_with_input(conf, args, None)
}

/// Like [`doveadm`], feeding `input` on stdin (`["save", "-u", user, "-m", "INBOX"]`).
pub fn doveadm_with_input(
    conf: &Path,
    args: &[&str],
    input: Option<&[u8]>,
) -> Result<String, Error> {
    let command = format!("doveadm -c {} {}", conf.display(), args.join(" "));
    let mut child = Command::new("doveadm")
        .arg("-c")
        .arg(conf)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(Error::io(format!("running {command}")))?;
    if let (Some(data), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(data)
            .map_err(Error::io(format!("writing to {command}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(Error::io(format!("waiting for {command}")))?;
    if !out.status.success() {
        return Err(Error::Command {
            command,
            status: out.status.code(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
