//! A tiny scanner over the raw bytes of a `FETCH` response, for attributes imap-proto parses
//! but throws away (RFC 8970 `PREVIEW`).

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn skip_spaces(&mut self) {
        while self.peek() == Some(b' ') {
            self.i += 1;
        }
    }

    /// An attribute name such as `UID`, `BODY[HEADER.FIELDS (A B)]<0>`.
    fn name(&mut self) -> Option<&'a [u8]> {
        let start = self.i;
        let mut depth = 0usize;
        loop {
            match self.peek()? {
                b'[' => depth += 1,
                b']' => depth = depth.saturating_sub(1),
                b' ' | b')' if depth == 0 => break,
                b'\r' | b'\n' => return None,
                _ => {}
            }
            self.i += 1;
        }
        self.b.get(start..self.i)
    }

    fn quoted(&mut self) -> Option<Vec<u8>> {
        self.i += 1;
        let mut out = Vec::new();
        loop {
            let c = self.peek()?;
            self.i += 1;
            match c {
                b'"' => return Some(out),
                b'\\' => {
                    out.push(self.peek()?);
                    self.i += 1;
                }
                b'\r' | b'\n' => return None,
                _ => out.push(c),
            }
        }
    }

    fn literal(&mut self) -> Option<Vec<u8>> {
        self.i += 1;
        let start = self.i;
        while self.peek()?.is_ascii_digit() {
            self.i += 1;
        }
        let n: usize = std::str::from_utf8(self.b.get(start..self.i)?)
            .ok()?
            .parse()
            .ok()?;
        if self.peek() == Some(b'+') {
            self.i += 1;
        }
        if self.b.get(self.i..self.i + 3)? != b"}\r\n" {
            return None;
        }
        self.i += 3;
        let v = self.b.get(self.i..self.i.checked_add(n)?)?.to_vec();
        self.i += n;
        Some(v)
    }

    /// An nstring: `Some(None)` for NIL.
    fn nstring(&mut self) -> Option<Option<Vec<u8>>> {
        match self.peek()? {
            b'"' => self.quoted().map(Some),
            b'{' => self.literal().map(Some),
            _ => {
                let atom = self.name()?;
                atom.eq_ignore_ascii_case(b"NIL").then_some(None)
            }
        }
    }

    fn skip_value(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.quoted().map(|_| ()),
            b'{' => self.literal().map(|_| ()),
            b'(' => {
                self.i += 1;
                loop {
                    self.skip_spaces();
                    if self.peek()? == b')' {
                        self.i += 1;
                        return Some(());
                    }
                    self.skip_value()?;
                }
            }
            _ => self.name().map(|_| ()),
        }
    }
}

/// The value of attribute `name` in a raw `* n FETCH (...)` response: `None` when absent (or
/// the bytes are not a well-formed FETCH), `Some(None)` for `NIL`.
pub(crate) fn fetch_attribute(raw: &[u8], name: &str) -> Option<Option<Vec<u8>>> {
    // "* 12 FETCH (" — find the opening parenthesis of the attribute list.
    let head_end = raw.iter().take(64).position(|&c| c == b'(')?;
    let head = raw.get(..head_end)?;
    if !head.starts_with(b"* ") || !head.to_ascii_uppercase().ends_with(b"FETCH ") {
        return None;
    }
    let mut s = Scanner {
        b: raw,
        i: head_end + 1,
    };
    loop {
        s.skip_spaces();
        if s.peek()? == b')' {
            return None;
        }
        let attr = s.name()?;
        if s.peek()? != b' ' {
            return None;
        }
        s.i += 1;
        if attr.eq_ignore_ascii_case(name.as_bytes()) {
            return s.nstring();
        }
        s.skip_value()?;
    }
}

#[cfg(test)]
mod tests {
    use super::fetch_attribute;

    #[test]
    fn finds_preview_after_tricky_values() {
        let raw = b"* 3 FETCH (UID 9 BODY[HEADER.FIELDS (SUBJECT)] {24}\r\nSubject: PREVIEW \"x\"\r\n\r\n ENVELOPE (NIL \"PREVIEW (a)\" NIL NIL NIL NIL NIL NIL NIL NIL) PREVIEW \"He said \\\"hi\\\"\")\r\n* 4 FETCH (PREVIEW \"other\")\r\n\0\0\0";
        assert_eq!(
            fetch_attribute(raw, "PREVIEW"),
            Some(Some(b"He said \"hi\"".to_vec()))
        );
    }

    #[test]
    fn nil_literal_and_absent() {
        assert_eq!(
            fetch_attribute(b"* 1 FETCH (UID 1 PREVIEW NIL)\r\n", "PREVIEW"),
            Some(None)
        );
        assert_eq!(
            fetch_attribute(b"* 1 FETCH (PREVIEW {5}\r\nh\xc3\xa9l!)\r\n", "preview"),
            Some(Some("hél!".as_bytes().to_vec()))
        );
        assert_eq!(
            fetch_attribute(b"* 1 FETCH (UID 1 FLAGS (\\Seen))\r\n", "PREVIEW"),
            None
        );
        assert_eq!(fetch_attribute(b"* OK [X] y\r\n", "PREVIEW"), None);
        assert_eq!(
            fetch_attribute(b"* 1 FETCH (PREVIEW \"unterminated", "PREVIEW"),
            None
        );
    }
}
