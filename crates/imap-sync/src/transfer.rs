//! Streaming decoders for MIME content transfer encodings (RFC 2045 base64 and
//! quoted-printable): fed the encoded bytes chunk by chunk, with chunk boundaries anywhere,
//! so a part never has to be in memory whole.

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

/// Base64 decoding that tolerates missing padding and trailing bits (what mailers send).
const B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// A streaming decoder for one transfer encoding.
#[derive(Debug)]
pub(crate) enum Decoder {
    /// 7bit, 8bit, binary and unknown encodings: bytes as they are.
    Identity,
    /// Base64: `carry` holds alphabet characters of an incomplete quad; after `=` the rest is
    /// padding.
    Base64 { carry: Vec<u8>, ended: bool },
    /// Quoted-printable: `carry` holds an escape or line break cut by a chunk boundary; `ws`
    /// whitespace not yet known to be followed by text (trailing whitespace is dropped).
    Qp { carry: Vec<u8>, ws: Vec<u8> },
}

impl Decoder {
    /// The decoder for a `Content-Transfer-Encoding` value (any case, surrounding blanks).
    pub(crate) fn for_encoding(encoding: &str) -> Decoder {
        match encoding.trim().to_ascii_lowercase().as_str() {
            "base64" => Decoder::Base64 {
                carry: Vec::new(),
                ended: false,
            },
            "quoted-printable" => Decoder::Qp {
                carry: Vec::new(),
                ws: Vec::new(),
            },
            _ => Decoder::Identity,
        }
    }

    /// Decodes `input`, appending to `out`; bytes that may continue in the next chunk are kept.
    pub(crate) fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        match self {
            Decoder::Identity => out.extend_from_slice(input),
            Decoder::Base64 { carry, ended } => {
                for &b in input {
                    if *ended {
                        break;
                    }
                    match b {
                        b'=' => *ended = true,
                        b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'+' | b'/' => carry.push(b),
                        // RFC 2045 §6.8: characters outside the alphabet are ignored.
                        _ => {}
                    }
                }
                let whole = carry.len() / 4 * 4;
                if whole > 0 {
                    b64_append(carry.get(..whole).unwrap_or_default(), out);
                    carry.drain(..whole);
                }
            }
            Decoder::Qp { carry, ws } => {
                let mut buf = std::mem::take(carry);
                buf.extend_from_slice(input);
                let used = qp_decode(&buf, false, ws, out);
                *carry = buf.get(used..).unwrap_or_default().to_vec();
            }
        }
    }

    /// Decodes what is left at the end of the part.
    pub(crate) fn finish(&mut self, out: &mut Vec<u8>) {
        match self {
            Decoder::Identity => {}
            Decoder::Base64 { carry, .. } => {
                // A single leftover character carries no whole byte.
                if carry.len() >= 2 {
                    b64_append(carry, out);
                }
                carry.clear();
            }
            Decoder::Qp { carry, ws } => {
                let buf = std::mem::take(carry);
                qp_decode(&buf, true, ws, out);
                ws.clear();
            }
        }
    }
}

fn b64_append(quads: &[u8], out: &mut Vec<u8>) {
    // Only alphabet characters reach here, so decoding cannot fail but on a lone trailing
    // character, which `finish` never passes.
    if let Err(e) = B64.decode_vec(quads, out) {
        tracing::debug!(error = %e, "Undecodable base64 tail dropped.");
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

/// Decodes quoted-printable from `buf`; returns how many bytes were used (the rest is an
/// escape or line break the next chunk completes, unless `last`).
fn qp_decode(buf: &[u8], last: bool, ws: &mut Vec<u8>, out: &mut Vec<u8>) -> usize {
    let mut i = 0;
    while let Some(&b) = buf.get(i) {
        match b {
            b'=' => {
                let rest = buf.get(i + 1..).unwrap_or_default();
                // A soft line break: `=`, optional blanks, then CRLF or LF.
                let blanks = rest
                    .iter()
                    .take_while(|c| **c == b' ' || **c == b'\t')
                    .count();
                let after = rest.get(blanks..).unwrap_or_default();
                if after.starts_with(b"\r\n") {
                    out.append(ws);
                    i += 1 + blanks + 2;
                    continue;
                }
                if after.starts_with(b"\n") {
                    out.append(ws);
                    i += 1 + blanks + 1;
                    continue;
                }
                if !last && (after.is_empty() || after == b"\r") {
                    return i;
                }
                if let (Some(h), Some(l)) = (
                    rest.first().and_then(|c| hex(*c)),
                    rest.get(1).and_then(|c| hex(*c)),
                ) {
                    out.append(ws);
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
                if !last && rest.len() < 2 {
                    return i;
                }
                // Not an escape: kept literally (RFC 2045 §6.7, note 1).
                out.append(ws);
                out.push(b'=');
                i += 1;
            }
            b' ' | b'\t' => {
                ws.push(b);
                i += 1;
            }
            b'\r' => {
                if buf.get(i + 1) == Some(&b'\n') {
                    // Whitespace before a hard line break was added in transport.
                    ws.clear();
                    out.extend_from_slice(b"\r\n");
                    i += 2;
                } else if !last && i + 1 == buf.len() {
                    return i;
                } else {
                    out.append(ws);
                    out.push(b'\r');
                    i += 1;
                }
            }
            b'\n' => {
                ws.clear();
                out.push(b'\n');
                i += 1;
            }
            _ => {
                out.append(ws);
                out.push(b);
                i += 1;
            }
        }
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `input` fed in chunks of every size from 1 to 7.
    fn all_chunkings(enc: &str, input: &[u8]) -> Vec<Vec<u8>> {
        (1..8)
            .map(|n| {
                let mut d = Decoder::for_encoding(enc);
                let mut out = Vec::new();
                for c in input.chunks(n) {
                    d.feed(c, &mut out);
                }
                d.finish(&mut out);
                out
            })
            .collect()
    }

    #[test]
    fn base64_across_any_boundary() {
        let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let mut enc = base64::engine::general_purpose::STANDARD.encode(&data);
        // Lines of 76 with CRLF, as mailers write them.
        let lines: Vec<String> = enc
            .as_bytes()
            .chunks(76)
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .collect();
        enc = lines.join("\r\n") + "\r\n";
        for out in all_chunkings("BASE64", enc.as_bytes()) {
            assert_eq!(out, data);
        }
        // Without padding, and with junk outside the alphabet.
        for out in all_chunkings("base64", b"aGVsbG8\r\n!") {
            assert_eq!(out, b"hello");
        }
    }

    #[test]
    fn quoted_printable_across_any_boundary() {
        let enc = b"caf=C3=A9 na=\r\nive \t\r\nx=3D1 =\n=ZZ end=";
        for out in all_chunkings("quoted-printable", enc) {
            assert_eq!(out, "café naive\r\nx=1 =ZZ end=".as_bytes());
        }
    }

    #[test]
    fn identity_for_other_encodings() {
        for out in all_chunkings("7bit", b"a=3Db\r\n") {
            assert_eq!(out, b"a=3Db\r\n");
        }
    }
}
