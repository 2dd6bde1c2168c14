//! Modified UTF-7 (RFC 3501 section 5.1.3), the encoding of non-ASCII IMAP mailbox names.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

fn sextet_char(v: u32) -> char {
    ALPHABET
        .get((v & 63) as usize)
        .map_or('A', |&b| char::from(b))
}

fn sextet(c: u8) -> Option<u32> {
    ALPHABET.iter().position(|&a| a == c).map(|p| p as u32)
}

/// Encodes a mailbox name for the wire.
pub fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut pending: Vec<u16> = Vec::new();
    for c in name.chars() {
        if (' '..='~').contains(&c) {
            flush(&mut pending, &mut out);
            if c == '&' {
                out.push_str("&-");
            } else {
                out.push(c);
            }
        } else {
            let mut buf = [0u16; 2];
            pending.extend_from_slice(c.encode_utf16(&mut buf));
        }
    }
    flush(&mut pending, &mut out);
    out
}

fn flush(pending: &mut Vec<u16>, out: &mut String) {
    if pending.is_empty() {
        return;
    }
    let bytes: Vec<u8> = pending.iter().flat_map(|u| u.to_be_bytes()).collect();
    out.push('&');
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 6 {
            bits -= 6;
            out.push(sextet_char(acc >> bits));
        }
    }
    if bits > 0 {
        out.push(sextet_char(acc << (6 - bits)));
    }
    out.push('-');
    pending.clear();
}

/// Decodes a mailbox name from the wire; `None` when it is not valid modified UTF-7 (then the
/// raw name is the best display name).
pub fn decode(wire: &str) -> Option<String> {
    let mut out = String::with_capacity(wire.len());
    let bytes = wire.as_bytes();
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b != b'&' {
            if !(0x20..=0x7e).contains(&b) {
                // Servers with UTF8=ACCEPT send raw UTF-8; keep it.
                let rest = wire.get(i..)?;
                let c = rest.chars().next()?;
                out.push(c);
                i += c.len_utf8();
                continue;
            }
            out.push(char::from(b));
            i += 1;
            continue;
        }
        let end = i + 1 + bytes.get(i + 1..)?.iter().position(|&c| c == b'-')?;
        let encoded = bytes.get(i + 1..end)?;
        if encoded.is_empty() {
            out.push('&');
        } else {
            let mut units = Vec::new();
            let mut acc: u32 = 0;
            let mut bits = 0u32;
            let mut raw = Vec::new();
            for &c in encoded {
                acc = (acc << 6) | sextet(c)?;
                bits += 6;
                if bits >= 8 {
                    bits -= 8;
                    raw.push(((acc >> bits) & 0xff) as u8);
                }
            }
            if raw.len() % 2 != 0 {
                return None;
            }
            for pair in raw.chunks(2) {
                if let [hi, lo] = pair {
                    units.push(u16::from_be_bytes([*hi, *lo]));
                }
            }
            out.push_str(&String::from_utf16(&units).ok()?);
        }
        i = end + 1;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors() {
        let cases = [
            ("INBOX", "INBOX"),
            ("Entwürfe", "Entw&APw-rfe"),
            ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
            ("Tom & Jerry", "Tom &- Jerry"),
            ("Отправленные", "&BB4EQgQ,BEAEMAQyBDsENQQ9BD0ESwQ1-"),
            ("😀 smile", "&2D3eAA- smile"),
        ];
        for (plain, wire) in cases {
            assert_eq!(encode(plain), wire, "encode {plain}");
            assert_eq!(decode(wire).as_deref(), Some(plain), "decode {wire}");
        }
    }

    #[test]
    fn invalid_input_is_refused() {
        assert_eq!(decode("&Jjo"), None);
        assert_eq!(decode("&*-"), None);
        assert_eq!(decode("&AP-"), None);
    }

    #[test]
    fn round_trips_arbitrary_text() {
        for s in ["a&b&&c", "Ünïcödé/Ordner", "日本", "mixed 日本 & text"] {
            assert_eq!(decode(&encode(s)).as_deref(), Some(s));
        }
    }
}
