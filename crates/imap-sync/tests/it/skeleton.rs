//! Issue 18: a sync's texts come from a skeleton of the message (attachment bodies left out,
//! located with the server's BODYSTRUCTURE); they must equal mail-parser's full parse.

use mailsync_imap_sync::fuzzing::{b64, compare_bodies, mixed};
use mailsync_testkit::Generator;

use crate::common::*;

/// Hand-written cases where mail-parser's choice is easy to get wrong.
fn tricky() -> Vec<Vec<u8>> {
    let pdf = format!(
        "Content-Type: application/pdf; name=\"a.pdf\"\r\nContent-Disposition: attachment; filename=\"a.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{}",
        b64(30)
    );
    let text = |t: &str| format!("Content-Type: text/plain; charset=utf-8\r\n\r\n{t}");
    vec![
        mixed(&[text("hello"), pdf.clone()]),
        mixed(&[pdf.clone(), text("after the attachment")]),
        mixed(&["Content-Type: text/html; charset=utf-8\r\n\r\n<p>only <b>html</b></p>".into(), pdf.clone()]),
        mixed(&[
            "Content-Type: multipart/alternative; boundary=\"YY\"\r\n\r\n--YY\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nGr=FC=DFe=\r\n weiter\r\n--YY\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\nPHA+R3LDvMOfZTwvcD4=\r\n--YY--".into(),
            pdf.clone(),
        ]),
        mixed(&[
            "Content-Type: text/plain; name=\"notes.txt\"\r\nContent-Disposition: attachment; filename=\"notes.txt\"\r\n\r\nnot the body".into(),
            text("the body"),
            pdf.clone(),
        ]),
        mixed(&[
            format!("Content-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\n{}", b64(10)),
            text("after an inline image"),
        ]),
        mixed(&[
            format!("Content-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\n{}!!!\r\n", b64(10)),
            text("after a broken inline image"),
        ]),
        mixed(&[
            text("dashes"),
            format!("Content-Type: application/octet-stream\r\n\r\n{}-- not a boundary\r\n", b64(10)),
        ]),
        mixed(&[
            text("csv and json"),
            format!("Content-Type: text/csv; name=x.csv\r\nContent-Disposition: attachment\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n{}", "a,b,c=3D1,=E9t=C3=A9\r\n".repeat(40)),
            format!("Content-Type: application/json\r\n\r\n{}", "{\"k\": [1, 2, 3]}\r\n".repeat(40)),
        ]),
        mixed(&[
            text("see below"),
            "Content-Type: message/rfc822\r\n\r\nFrom: x@y.test\r\nSubject: inner\r\nContent-Type: multipart/mixed; boundary=\"IN\"\r\n\r\n--IN\r\nContent-Type: text/plain\r\n\r\ninner body\r\n--IN--".into(),
            pdf.clone(),
        ]),
        mixed(&["Content-Type: text/plain\r\n\r\n".into(), String::new(), pdf.clone()]),
        mixed(&[
            format!("Content-Type: multipart/related; boundary=\"RR\"\r\n\r\n--RR\r\nContent-Type: text/html\r\n\r\n<img src=cid:i>\r\n--RR\r\nContent-Type: image/gif\r\nContent-ID: <i>\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n--RR--", b64(8)),
            pdf.clone(),
        ]),
        {
            let mut m = mixed(&[text("no closing boundary"), pdf.clone()]);
            m.truncate(m.len() - 10);
            m
        },
        b"Subject: plain\r\n\r\njust text\r\n".to_vec(),
    ]
}

/// mail-parser's own test messages (real-world, legacy and malformed), when the registry
/// copy of the crate is at hand.
fn mail_parser_suite() -> Vec<Vec<u8>> {
    let home = std::env::var_os("CARGO_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".cargo")));
    let mut out = Vec::new();
    let Some(src) = home.map(|h| h.join("registry/src")) else {
        return out;
    };
    for index in std::fs::read_dir(src).into_iter().flatten().flatten() {
        let eml = index.path().join("mail-parser-0.11.9/resources/eml");
        for dir in std::fs::read_dir(eml).into_iter().flatten().flatten() {
            for f in std::fs::read_dir(dir.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                if f.path().extension().is_some_and(|e| e == "eml")
                    && let Ok(b) = std::fs::read(f.path())
                {
                    // IMAP wants CRLF lines.
                    let mut crlf = Vec::with_capacity(b.len() + b.len() / 20);
                    let mut last = 0;
                    for &c in &b {
                        if c == b'\n' && last != b'\r' {
                            crlf.push(b'\r');
                        }
                        crlf.push(c);
                        last = c;
                    }
                    out.push(crlf);
                }
            }
        }
        if !out.is_empty() {
            break;
        }
    }
    out
}

/// Dovecot's BODYSTRUCTURE, through the crate's own FETCH path: generated messages (the
/// benchmark corpus), hand-written tricky cases and mail-parser's test suite.
#[tokio::test]
async fn skeleton_matches_full_parse() -> anyhow::Result<()> {
    let user = fresh_user("skel");
    let cfg = dovecot(&user);
    let g = Generator::new(18);
    let mut messages: Vec<Vec<u8>> = (0..600).map(|i| g.message(i)).collect();
    let generated = messages.len();
    let with_attachments = (0..generated)
        .filter(|&i| !g.expected(i).attachments.is_empty())
        .count();
    messages.extend(tricky());
    let suite = mail_parser_suite();
    let n_suite = suite.len();
    messages.extend(suite);
    let total = messages.len();
    let appended = append(&cfg, &user, "INBOX", messages).await?;
    assert_eq!(appended, total);
    let mut conn = connect(&cfg).await;
    let r = limit(120, compare_bodies(&mut conn, "INBOX")).await?;
    let mut reasons = std::collections::BTreeMap::new();
    for (_, why) in &r.fallbacks {
        *reasons.entry(*why).or_insert(0) += 1;
    }
    eprintln!(
        "{} messages ({generated} generated, {with_attachments} of them with attachments; {n_suite} from mail-parser's suite): {} skeleton, fallbacks {reasons:?}",
        r.messages, r.skeleton
    );
    assert_eq!(r.messages, total);
    assert!(r.mismatches.is_empty(), "{}", r.mismatches.join("\n\n"));
    // Most generated messages with an attachment take the skeleton.
    assert!(
        r.skeleton * 10 >= with_attachments * 9,
        "{} of {with_attachments}",
        r.skeleton
    );
    Ok(())
}
