//! An incremental `text/event-stream` parser (WHATWG HTML "server-sent events" rules).

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SseEvent {
    /// The `event` field (`message` when absent).
    pub(crate) event: String,
    /// The `data` lines joined with `\n`.
    pub(crate) data: String,
    /// The last event id in force when the event was dispatched.
    pub(crate) id: Option<String>,
}

/// A line longer than this (without a line break) is treated as a broken stream.
pub(crate) const MAX_LINE: usize = 1024 * 1024;

#[derive(Debug, Default)]
pub(crate) struct SseParser {
    line: Vec<u8>,
    after_cr: bool,
    started: bool,
    event: String,
    data: String,
    has_data: bool,
    last_id: Option<String>,
    /// The last `retry` value (milliseconds).
    pub(crate) retry_ms: Option<u64>,
}

/// The stream sent a line longer than [`MAX_LINE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LineTooLong;

impl SseParser {
    pub(crate) fn new() -> Self {
        SseParser::default()
    }

    /// Feeds bytes; returns the events completed by them.
    pub(crate) fn feed(&mut self, bytes: &[u8]) -> Result<Vec<SseEvent>, LineTooLong> {
        let mut events = Vec::new();
        for &b in bytes {
            match b {
                b'\n' if self.after_cr => {
                    // The LF of a CRLF pair: the line already ended at the CR.
                    self.after_cr = false;
                }
                b'\n' | b'\r' => {
                    self.after_cr = b == b'\r';
                    let line = std::mem::take(&mut self.line);
                    self.process_line(&line, &mut events);
                }
                _ => {
                    self.after_cr = false;
                    if self.line.len() >= MAX_LINE {
                        return Err(LineTooLong);
                    }
                    self.line.push(b);
                }
            }
        }
        Ok(events)
    }

    fn process_line(&mut self, raw: &[u8], events: &mut Vec<SseEvent>) {
        let mut line = String::from_utf8_lossy(raw).into_owned();
        if !self.started {
            self.started = true;
            if let Some(rest) = line.strip_prefix('\u{feff}') {
                line = rest.to_owned();
            }
        }
        if line.is_empty() {
            self.dispatch(events);
            return;
        }
        if line.starts_with(':') {
            return; // comment
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line.as_str(), ""),
        };
        match field {
            "event" => self.event = value.to_owned(),
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
                self.has_data = true;
            }
            "id" if !value.contains('\0') => self.last_id = Some(value.to_owned()),
            "retry" if !value.is_empty() && value.bytes().all(|c| c.is_ascii_digit()) => {
                self.retry_ms = value.parse().ok();
            }
            _ => {}
        }
    }

    fn dispatch(&mut self, events: &mut Vec<SseEvent>) {
        let event = std::mem::take(&mut self.event);
        let mut data = std::mem::take(&mut self.data);
        if !std::mem::take(&mut self.has_data) {
            return;
        }
        if data.ends_with('\n') {
            data.pop();
        }
        events.push(SseEvent {
            event: if event.is_empty() {
                "message".into()
            } else {
                event
            },
            data,
            id: self.last_id.clone(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(parser: &mut SseParser, input: &[u8]) -> Vec<SseEvent> {
        parser.feed(input).unwrap()
    }

    #[test]
    fn fields_comments_multiline_and_ids() {
        let mut p = SseParser::new();
        let ev = all(
            &mut p,
            b"\xEF\xBB\xBF: hello\nevent: state\nid: 7\ndata: {\"a\":\ndata:1}\n\ndata: plain\n\nretry: 2500\nevent: ping\ndata\n\n",
        );
        assert_eq!(ev.len(), 3);
        assert_eq!(
            ev[0],
            SseEvent {
                event: "state".into(),
                data: "{\"a\":\n1}".into(),
                id: Some("7".into())
            }
        );
        assert_eq!(
            ev[1],
            SseEvent {
                event: "message".into(),
                data: "plain".into(),
                id: Some("7".into())
            }
        );
        assert_eq!(ev[2].event, "ping");
        assert_eq!(ev[2].data, "");
        assert_eq!(p.retry_ms, Some(2500));
    }

    #[test]
    fn line_endings_split_across_chunks() {
        let input = b"event: state\r\ndata: x\r\n\r\nevent: a\rdata: y\r\rdata: z\n\n";
        for split in 0..input.len() {
            let mut p = SseParser::new();
            let mut ev = p.feed(&input[..split]).unwrap();
            ev.extend(p.feed(&input[split..]).unwrap());
            let data: Vec<&str> = ev.iter().map(|e| e.data.as_str()).collect();
            assert_eq!(data, ["x", "y", "z"], "split at {split}");
        }
    }

    #[test]
    fn event_without_data_is_not_dispatched_and_long_lines_fail() {
        let mut p = SseParser::new();
        assert!(all(&mut p, b"event: state\n\n").is_empty());
        let long = vec![b'a'; MAX_LINE + 1];
        assert_eq!(p.feed(&long), Err(LineTooLong));
    }
}
