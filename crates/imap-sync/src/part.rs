//! On-demand download of one MIME part of an email (an attachment): its existence and
//! transfer encoding from the BODYSTRUCTURE, then the content in ranges with `BODY.PEEK[part]<offset.n>`
//! (RFC 3501 partial fetch), decoded as it arrives and written out, so memory holds one range
//! whatever the part's size.

use mailsync_store::{EmailId, Store};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::body::select_copy;
use crate::connection::Connection;
use crate::error::{Error, ResponseCode};
use crate::mime::Part;
use crate::transfer::Decoder;
use crate::wire::{Cmd, Event, Untagged};

/// Encoded bytes asked for per command: small enough to bound memory, big enough that a
/// 50 MB part takes a few dozen round trips.
const RANGE: u32 = 1 << 20;

/// Whether `part` is an IMAP section number (`1`, `2.1.3`).
fn valid_part(part: &str) -> bool {
    !part.is_empty()
        && part
            .split('.')
            .all(|n| !n.is_empty() && n.len() <= 9 && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Runs one `UID FETCH uid (UID item)` and returns the bytes of the section the response
/// names `key`, `None` when the server sent none.
async fn fetch_section(
    conn: &mut Connection,
    uid: i64,
    item: &str,
    key: &str,
) -> Result<Option<Vec<u8>>, Error> {
    let cmd = Cmd::new("UID FETCH")
        .raw(&uid.to_string())
        .raw(&format!("(UID {item})"));
    let tag = conn.wire.send(&cmd).await?;
    let mut found = None;
    loop {
        match conn.wire.next(&tag).await? {
            Event::Data(Untagged::Fetch(f)) => {
                if f.uid.map(i64::from) == Some(uid) {
                    let mut f = *f;
                    if let Some(pos) = f.sections.iter().position(|(p, _)| p == key) {
                        found = Some(f.sections.swap_remove(pos).1);
                    }
                }
            }
            Event::Data(other) => conn.note(&other),
            Event::Done(_) => return Ok(found),
        }
    }
}

/// The transfer encoding of leaf `part` in a BODYSTRUCTURE, `None` when the message has no
/// such leaf (servers answer a fetch of a missing section with an empty string, RFC 3501
/// leaves it open, so existence is decided by the structure).
fn leaf_encoding<'a>(p: &'a Part, part: &str) -> Option<&'a str> {
    if p.children.is_empty() {
        return (p.path == part).then_some(p.encoding.as_str());
    }
    p.children.iter().find_map(|c| leaf_encoding(c, part))
}

/// The message's BODYSTRUCTURE.
async fn structure(conn: &mut Connection, uid: i64) -> Result<Option<Part>, Error> {
    let cmd = Cmd::new("UID FETCH")
        .raw(&uid.to_string())
        .raw("(UID BODYSTRUCTURE)");
    let tag = conn.wire.send(&cmd).await?;
    let mut found = None;
    loop {
        match conn.wire.next(&tag).await? {
            Event::Data(Untagged::Fetch(f)) => {
                if f.uid.map(i64::from) == Some(uid) && f.structure.is_some() {
                    found = f.structure;
                }
            }
            Event::Data(other) => conn.note(&other),
            Event::Done(_) => return Ok(found),
        }
    }
}

/// Downloads part `part` (an IMAP section number from the email's attachment list) of
/// `email`, decodes it from its transfer encoding and writes it to `out`; returns the number
/// of decoded bytes written. Fails with [`Error::NotFound`] when the email has no IMAP copy,
/// its UIDVALIDITY changed, or the server has no such message or part.
pub async fn fetch_part<W>(
    conn: &mut Connection,
    store: &Store,
    email: EmailId,
    part: &str,
    out: &mut W,
) -> Result<u64, Error>
where
    W: AsyncWrite + Unpin + ?Sized,
{
    let (mailbox, uid) = select_copy(conn, store, email).await?;
    let gone = || Error::NotFound {
        what: "message part on the server",
        key: format!("{mailbox}/{uid} part {part}"),
    };
    if !valid_part(part) {
        return Err(gone());
    }
    let tree = match structure(conn, uid).await {
        Ok(t) => t,
        Err(Error::No {
            code: Some(ResponseCode::ExpungeIssued | ResponseCode::NonExistent),
            ..
        }) => return Err(gone()),
        Err(e) => return Err(e),
    };
    let tree = tree.ok_or_else(gone)?;
    let mut decoder = Decoder::for_encoding(leaf_encoding(&tree, part).ok_or_else(gone)?);
    let mut offset: u64 = 0;
    let mut written: u64 = 0;
    let mut decoded = Vec::with_capacity(RANGE as usize);
    loop {
        let item = format!("BODY.PEEK[{part}]<{offset}.{RANGE}>");
        let chunk = match fetch_section(conn, uid, &item, part).await {
            Ok(Some(c)) => c,
            Ok(None) if offset == 0 => return Err(gone()),
            Ok(None) => Vec::new(),
            Err(Error::No {
                code: Some(ResponseCode::ExpungeIssued | ResponseCode::NonExistent),
                ..
            }) => return Err(gone()),
            Err(e) => return Err(e),
        };
        let n = chunk.len();
        offset += n as u64;
        decoded.clear();
        decoder.feed(&chunk, &mut decoded);
        let last = n < RANGE as usize;
        if last {
            decoder.finish(&mut decoded);
        }
        out.write_all(&decoded).await.map_err(Error::Write)?;
        written += decoded.len() as u64;
        if last {
            break;
        }
    }
    out.flush().await.map_err(Error::Write)?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_numbers() {
        assert!(valid_part("1") && valid_part("2.1.3"));
        assert!(!valid_part("") && !valid_part("1.") && !valid_part("1]x") && !valid_part("a"));
    }

    #[test]
    fn only_leaves_of_the_structure_are_parts() {
        let leaf = |path: &str, enc: &str| Part {
            path: path.into(),
            encoding: enc.into(),
            ..Part::default()
        };
        let tree = Part {
            mime_type: "multipart/mixed".into(),
            children: vec![
                leaf("1", "7bit"),
                Part {
                    path: "2".into(),
                    mime_type: "multipart/related".into(),
                    children: vec![leaf("2.1", "quoted-printable"), leaf("2.2", "base64")],
                    ..Part::default()
                },
            ],
            ..Part::default()
        };
        assert_eq!(leaf_encoding(&tree, "2.2"), Some("base64"));
        assert_eq!(leaf_encoding(&tree, "1"), Some("7bit"));
        assert_eq!(leaf_encoding(&tree, "2"), None);
        assert_eq!(leaf_encoding(&tree, "3"), None);
    }
}
