//! Reading what the SMTP sink received: `<dir>/envelopes.jsonl` plus one raw file per message.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::Error;

/// One message as the sink received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SinkMessage {
    /// Arrival number (1-based, per sink run).
    pub seq: u64,
    /// The DATA bytes exactly as sent (CRLF line ends, dot-unstuffed).
    pub raw: Vec<u8>,
    /// The envelope sender (`MAIL FROM`), without angle brackets.
    pub mail_from: String,
    /// The envelope recipients (`RCPT TO`).
    pub rcpt_tos: Vec<String>,
    /// The user of `AUTH`, when the client authenticated.
    pub auth_user: Option<String>,
    /// The RFC 4954 `AUTH=` parameter of `MAIL FROM` (Cyrus sends it).
    pub mail_auth_param: Option<String>,
    /// The file holding [`SinkMessage::raw`].
    pub file: PathBuf,
}

impl SinkMessage {
    /// The first header `name` (case-insensitive), unfolded, not decoded.
    pub fn header(&self, name: &str) -> Option<String> {
        crate::header(&self.raw, name)
    }

    /// The Message-ID without angle brackets.
    pub fn message_id(&self) -> Option<String> {
        self.header("Message-ID").map(|v| {
            v.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        })
    }
}

/// Every message the sink in `dir` has received, in arrival order. A sink that has received
/// nothing yet gives an empty list; a missing `dir` is an error.
pub fn sink_messages(dir: &Path) -> Result<Vec<SinkMessage>, Error> {
    if !dir.is_dir() {
        return Err(Error::Io {
            context: format!("SMTP sink directory {} does not exist", dir.display()),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        });
    }
    let path = dir.join("envelopes.jsonl");
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(format!("reading {}", path.display()))(e)),
    };
    let complete = match text.rfind('\n') {
        Some(i) => &text[..=i],
        None => "", // a line still being written
    };
    let mut out = Vec::new();
    for (i, line) in complete.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        out.push(parse_line(dir, i + 1, line)?);
    }
    Ok(out)
}

fn parse_line(dir: &Path, line_no: usize, line: &str) -> Result<SinkMessage, Error> {
    let bad = |reason: &str| Error::BadEnvelope {
        line: line_no,
        reason: reason.to_string(),
    };
    let v: serde_json::Value = serde_json::from_str(line).map_err(|e| bad(&e.to_string()))?;
    let file = v["file"].as_str().ok_or_else(|| bad("no `file`"))?;
    let file = dir.join(file);
    let raw = fs::read(&file).map_err(Error::io(format!("reading {}", file.display())))?;
    let strings = |key: &str| -> Vec<String> {
        v[key]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    Ok(SinkMessage {
        seq: v["seq"].as_u64().ok_or_else(|| bad("no `seq`"))?,
        raw,
        mail_from: v["mail_from"].as_str().unwrap_or_default().to_string(),
        rcpt_tos: strings("rcpt_tos"),
        auth_user: v["auth_user"].as_str().map(str::to_string),
        mail_auth_param: v["mail_auth_param"].as_str().map(str::to_string),
        file,
    })
}

/// Polls the sink until a message matching `pred` arrives (every 50 ms, up to `timeout`).
pub fn wait_for_sink_message(
    dir: &Path,
    timeout: Duration,
    pred: impl Fn(&SinkMessage) -> bool,
) -> Result<SinkMessage, Error> {
    let start = Instant::now();
    loop {
        if let Some(m) = sink_messages(dir)?.into_iter().find(|m| pred(m)) {
            return Ok(m);
        }
        if start.elapsed() >= timeout {
            return Err(Error::Timeout {
                what: format!("a matching message in the SMTP sink {}", dir.display()),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_envelopes_and_skips_a_partial_last_line() {
        let dir = std::env::temp_dir().join(crate::unique_name("sinktest"));
        fs::create_dir_all(dir.join("Maildir/new")).unwrap();
        fs::write(
            dir.join("Maildir/new/000001.1.sink"),
            b"Message-ID: <a@b>\r\n\r\nhi\r\n",
        )
        .unwrap();
        let line = r#"{"seq": 1, "file": "Maildir/new/000001.1.sink", "mail_from": "a@example.test", "rcpt_tos": ["b@example.test", "c@example.test"], "auth_user": null, "mail_auth_param": "alice"}"#;
        fs::write(
            dir.join("envelopes.jsonl"),
            format!("{line}\n{{\"seq\": 2, \"fi"),
        )
        .unwrap();
        let msgs = sink_messages(&dir).unwrap();
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].mail_from, "a@example.test");
        assert_eq!(msgs[0].rcpt_tos, ["b@example.test", "c@example.test"]);
        assert_eq!(msgs[0].mail_auth_param.as_deref(), Some("alice"));
        assert_eq!(msgs[0].auth_user, None);
        assert_eq!(msgs[0].message_id().as_deref(), Some("a@b"));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_dir_is_an_error_and_empty_sink_is_empty() {
        let dir = std::env::temp_dir().join(crate::unique_name("sinktest"));
        assert!(sink_messages(&dir).is_err());
        fs::create_dir_all(&dir).unwrap();
        assert_eq!(sink_messages(&dir).unwrap(), Vec::new());
        fs::remove_dir_all(&dir).unwrap();
    }
}
