//! Named stopping points in the send path, for the kill-point tests: with
//! `MAILSYNC_FAILPOINT=<name>` in the environment, reaching that step prints `FAILPOINT <name>`
//! on stdout and then waits forever, so a test can SIGKILL the process exactly there.
//!
//! Always compiled in and inert without the variable (one environment lookup per send step).
//! Names: `send:handed` (the hand-over is committed; nothing sent yet), `send:data` (SMTP only:
//! inside DATA, after the server's 354, before the message is written), `send:delivered` (the
//! server accepted the message; "accepted" not committed yet), `send:accepted` ("accepted"
//! committed; the copy not filed yet), `send:filed` (IMAP: the APPEND to Sent succeeded; the
//! outcome not recorded yet).

use std::io::Write as _;

/// The environment variable naming the failpoint to stop at.
pub const ENV: &str = "MAILSYNC_FAILPOINT";

/// Stops here for good when `MAILSYNC_FAILPOINT` names this point.
pub async fn hit(name: &str) {
    if std::env::var(ENV).is_ok_and(|v| v == name) {
        {
            let mut out = std::io::stdout().lock();
            // The test reads this line to know where the process is; nothing to do if it fails.
            let _ = writeln!(out, "FAILPOINT {name}");
            let _ = out.flush();
        }
        std::future::pending::<()>().await;
    }
}
