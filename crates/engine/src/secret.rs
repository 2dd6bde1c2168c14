//! Resolves an account's secret reference (environment variable or command) into the secret:
//! a password, an OAuth 2 refresh token or client secret.
//!
//! The secret is held in [`Secret`], whose `Debug` never shows it, and is never written anywhere.

use std::fmt;

use mailsync_store::SecretRef;

/// A password or token. `Debug` and `Display` are redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    /// The secret itself, for the one place that sends it to a server.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Why a secret could not be obtained.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// The environment variable is not set (or not UTF-8).
    #[error("secret variable ${0} (password or token) is not set")]
    EnvMissing(String),
    /// The command could not be run.
    #[error("secret command {command:?} (password or token) could not run: {reason}")]
    CommandFailed {
        /// The command line.
        command: String,
        /// What went wrong (exit status or spawn error).
        reason: String,
    },
    /// The command printed nothing.
    #[error("secret command {0:?} (password or token) printed nothing")]
    CommandEmpty(String),
}

/// Resolves a reference into the secret: the variable's value, or the first line the command prints.
pub async fn resolve(r: &SecretRef) -> Result<Secret, SecretError> {
    match r {
        SecretRef::Env(var) => std::env::var(var)
            .map(Secret)
            .map_err(|_| SecretError::EnvMissing(var.clone())),
        SecretRef::Command(cmd) => {
            let out = tokio::process::Command::new("sh")
                .arg("-c")
                .arg(cmd)
                .stdin(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .output()
                .await
                .map_err(|e| SecretError::CommandFailed {
                    command: cmd.clone(),
                    reason: e.to_string(),
                })?;
            if !out.status.success() {
                return Err(SecretError::CommandFailed {
                    command: cmd.clone(),
                    reason: out.status.to_string(),
                });
            }
            let text = String::from_utf8_lossy(&out.stdout);
            let line = text.lines().next().unwrap_or("").trim_end_matches('\r');
            if line.is_empty() {
                return Err(SecretError::CommandEmpty(cmd.clone()));
            }
            Ok(Secret(line.to_owned()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn resolves_command_and_env_and_redacts() {
        let s = resolve(&SecretRef::Command("printf 'hunter2\\nmore'".into()))
            .await
            .map_err(|e| e.to_string());
        assert_eq!(s.as_ref().map(Secret::expose), Ok("hunter2"));
        assert_eq!(format!("{:?}", s), "Ok(Secret(***))");
        let missing = resolve(&SecretRef::Env("MAILSYNC_SURELY_UNSET_VAR".into())).await;
        assert!(matches!(missing, Err(SecretError::EnvMissing(_))));
        let failing = resolve(&SecretRef::Command("exit 3".into())).await;
        assert!(matches!(failing, Err(SecretError::CommandFailed { .. })));
        let empty = resolve(&SecretRef::Command("true".into())).await;
        assert!(matches!(empty, Err(SecretError::CommandEmpty(_))));
    }
}
