//! What a caller can ask for: [`Change`]s to emails, and [`OutgoingMessage`]s to send.

use base64::Engine as _;
use mailsync_store::{Address, EmailId, Flags, MailboxId};
use serde::{Deserialize, Serialize};

use crate::Error;

/// A flag or keyword of an email, named independently of the protocol.
///
/// The engine maps them: `Seen` is IMAP `\Seen` and JMAP `$seen`, and so on; `Keyword` is any
/// other IMAP keyword / JMAP keyword, passed through as given (compare with the same spelling the
/// account's sync stores).
///
/// Serialised as `"seen"`, `"flagged"`, `"answered"`, `"draft"` or `{"keyword": "$Forwarded"}`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Flag {
    /// Read.
    Seen,
    /// Starred / important.
    Flagged,
    /// Replied to.
    Answered,
    /// A draft.
    Draft,
    /// Any other keyword.
    Keyword(String),
}

impl Flag {
    /// A flag from its name: the system flags in IMAP (`\Seen`) or JMAP (`$seen`) spelling, any
    /// case, become their variant; anything else must be a valid keyword (an IMAP atom: printable
    /// ASCII without spaces or `(){%*"\]`, at most 255 bytes).
    pub fn parse(name: &str) -> Result<Self, Error> {
        let lower = name.to_ascii_lowercase();
        match lower.as_str() {
            "\\seen" | "$seen" => return Ok(Self::Seen),
            "\\flagged" | "$flagged" => return Ok(Self::Flagged),
            "\\answered" | "$answered" => return Ok(Self::Answered),
            "\\draft" | "$draft" => return Ok(Self::Draft),
            _ => {}
        }
        let valid = !name.is_empty()
            && name.len() <= 255
            && name
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b"(){%*\"\\]".contains(&b));
        if valid {
            Ok(Self::Keyword(name.to_owned()))
        } else {
            Err(Error::InvalidKeyword(name.to_owned()))
        }
    }

    /// Whether `flags` has this flag set.
    pub fn is_set(&self, flags: &Flags) -> bool {
        match self {
            Self::Seen => flags.seen,
            Self::Flagged => flags.flagged,
            Self::Answered => flags.answered,
            Self::Draft => flags.draft,
            Self::Keyword(k) => flags.keywords.iter().any(|x| x == k),
        }
    }

    /// Sets or clears this flag in `flags` (keywords stay sorted and unique).
    pub fn apply(&self, flags: &mut Flags, value: bool) {
        match self {
            Self::Seen => flags.seen = value,
            Self::Flagged => flags.flagged = value,
            Self::Answered => flags.answered = value,
            Self::Draft => flags.draft = value,
            Self::Keyword(k) => {
                flags.keywords.retain(|x| x != k);
                if value {
                    flags.keywords.push(k.clone());
                }
                flags.keywords.sort();
                flags.keywords.dedup();
            }
        }
    }
}

impl std::fmt::Display for Flag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Seen => f.write_str("seen"),
            Self::Flagged => f.write_str("flagged"),
            Self::Answered => f.write_str("answered"),
            Self::Draft => f.write_str("draft"),
            Self::Keyword(k) => f.write_str(k),
        }
    }
}

/// A local change a user makes. [`Outbox::enqueue`](crate::Outbox::enqueue) applies it to the
/// local database at once and queues it for the server.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Change {
    /// Set or clear a flag or keyword (seen/unseen, flagged/unflagged, keyword add/remove).
    SetFlag {
        /// The email.
        email: EmailId,
        /// Which flag.
        flag: Flag,
        /// Set (`true`) or clear.
        value: bool,
    },
    /// Move the email into this mailbox: afterwards it is in this mailbox only (a JMAP email in
    /// several mailboxes leaves all of them).
    Move {
        /// The email.
        email: EmailId,
        /// The mailbox it goes to.
        to: MailboxId,
    },
    /// Delete: move into the account's trash (the mailbox with [`Role::Trash`]); when the email is
    /// already in the trash, or the account has no trash, delete it permanently.
    ///
    /// [`Role::Trash`]: mailsync_store::Role::Trash
    Delete {
        /// The email.
        email: EmailId,
    },
    /// Send a message.
    Send(Box<OutgoingMessage>),
}

impl Change {
    /// Mark read (`true`) or unread.
    pub fn seen(email: EmailId, value: bool) -> Self {
        Self::SetFlag {
            email,
            flag: Flag::Seen,
            value,
        }
    }

    /// Flag (`true`) or unflag.
    pub fn flagged(email: EmailId, value: bool) -> Self {
        Self::SetFlag {
            email,
            flag: Flag::Flagged,
            value,
        }
    }

    /// Add (`true`) or remove a keyword, validated with [`Flag::parse`].
    pub fn keyword(email: EmailId, keyword: &str, value: bool) -> Result<Self, Error> {
        Ok(Self::SetFlag {
            email,
            flag: Flag::parse(keyword)?,
            value,
        })
    }

    /// Move into a mailbox.
    pub fn move_to(email: EmailId, to: MailboxId) -> Self {
        Self::Move { email, to }
    }

    /// Delete (to the trash, or permanently from the trash).
    pub fn delete(email: EmailId) -> Self {
        Self::Delete { email }
    }

    /// Send a message.
    pub fn send(message: OutgoingMessage) -> Self {
        Self::Send(Box::new(message))
    }

    /// The email the change is about (`None` for a send).
    pub fn email(&self) -> Option<EmailId> {
        match self {
            Self::SetFlag { email, .. } | Self::Move { email, .. } | Self::Delete { email } => {
                Some(*email)
            }
            Self::Send(_) => None,
        }
    }
}

/// A message to send, as queued (serde: the `message` of a send payload).
///
/// Attachments are carried inline, base64-encoded, so a queued send is self-contained: it survives
/// a crash and does not depend on files that may be gone by the time it is sent.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct OutgoingMessage {
    /// The Message-ID, without angle brackets. Left empty, it is generated at enqueue time
    /// (`<random>@<sender's domain>`). It is the key the engine uses to find out whether a send
    /// interrupted by a crash already reached the server.
    #[serde(default)]
    pub message_id: String,
    /// The sender.
    pub from: Address,
    /// To.
    #[serde(default)]
    pub to: Vec<Address>,
    /// Cc.
    #[serde(default)]
    pub cc: Vec<Address>,
    /// Bcc (never written into the message headers by the engine).
    #[serde(default)]
    pub bcc: Vec<Address>,
    /// Subject.
    #[serde(default)]
    pub subject: String,
    /// The plain-text body.
    #[serde(default)]
    pub text: String,
    /// An HTML alternative.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
    /// Attachments.
    #[serde(default)]
    pub attachments: Vec<OutgoingAttachment>,
    /// The Message-ID this replies to, without brackets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_reply_to: Option<String>,
    /// The References chain, oldest first, without brackets.
    #[serde(default)]
    pub references: Vec<String>,
}

/// An attachment of an [`OutgoingMessage`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct OutgoingAttachment {
    /// File name shown to the recipient.
    pub file_name: String,
    /// MIME type, e.g. `application/pdf`.
    pub mime_type: String,
    /// The content, standard base64 (RFC 4648 §4, with padding, no line breaks).
    pub content_base64: String,
}

impl OutgoingAttachment {
    /// An attachment from its bytes.
    pub fn from_bytes(
        file_name: impl Into<String>,
        mime_type: impl Into<String>,
        bytes: &[u8],
    ) -> Self {
        Self {
            file_name: file_name.into(),
            mime_type: mime_type.into(),
            content_base64: base64::engine::general_purpose::STANDARD.encode(bytes),
        }
    }

    /// The decoded content.
    pub fn bytes(&self) -> Result<Vec<u8>, Error> {
        base64::engine::general_purpose::STANDARD
            .decode(&self.content_base64)
            .map_err(|e| {
                Error::InvalidMessage(format!("attachment {:?}: bad base64: {e}", self.file_name))
            })
    }
}

fn valid_address(a: &Address) -> bool {
    let e = a.email.trim();
    match e.rsplit_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !e.chars().any(|c| c.is_whitespace() || c.is_control())
        }
        None => false,
    }
}

impl OutgoingMessage {
    /// Checks what the engine would otherwise reject only at send time, and fills in a missing
    /// Message-ID. Called by the outbox at enqueue time.
    pub fn prepare(&mut self) -> Result<(), Error> {
        if !valid_address(&self.from) {
            return Err(Error::InvalidMessage(format!(
                "bad sender address {:?}",
                self.from.email
            )));
        }
        let recipients = self.to.iter().chain(&self.cc).chain(&self.bcc);
        let mut any = false;
        for a in recipients {
            any = true;
            if !valid_address(a) {
                return Err(Error::InvalidMessage(format!(
                    "bad recipient address {:?}",
                    a.email
                )));
            }
        }
        if !any {
            return Err(Error::InvalidMessage("no recipient".into()));
        }
        for a in &self.attachments {
            a.bytes()?;
            if a.file_name.is_empty() || a.mime_type.split('/').count() != 2 {
                return Err(Error::InvalidMessage(format!(
                    "attachment {:?} needs a file name and a type/subtype MIME type",
                    a.file_name
                )));
            }
        }
        let mid = self
            .message_id
            .trim()
            .trim_start_matches('<')
            .trim_end_matches('>');
        if mid.is_empty() {
            self.message_id = generate_message_id(&self.from.email);
        } else if !mid.contains('@') || mid.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(Error::InvalidMessage(format!("bad Message-ID {mid:?}")));
        } else {
            self.message_id = mid.to_owned();
        }
        Ok(())
    }
}

/// A fresh Message-ID (without brackets) in the sender's domain.
pub(crate) fn generate_message_id(from: &str) -> String {
    use rand::Rng as _;
    let domain = from
        .rsplit_once('@')
        .map(|(_, d)| d.trim())
        .filter(|d| !d.is_empty())
        .unwrap_or("mailsync.invalid");
    let mut rng = rand::rng();
    let a: u64 = rng.random();
    let b: u64 = rng.random();
    let micros = chrono::Utc::now().timestamp_micros();
    format!("{micros:x}.{a:016x}{b:016x}@{domain}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(e: &str) -> Address {
        Address {
            name: None,
            email: e.into(),
        }
    }

    #[test]
    fn flag_parse_maps_system_flags_and_validates_keywords() {
        assert_eq!(Flag::parse("\\Seen").ok(), Some(Flag::Seen));
        assert_eq!(Flag::parse("$seen").ok(), Some(Flag::Seen));
        assert_eq!(Flag::parse("$FLAGGED").ok(), Some(Flag::Flagged));
        assert_eq!(Flag::parse("\\Answered").ok(), Some(Flag::Answered));
        assert_eq!(Flag::parse("$draft").ok(), Some(Flag::Draft));
        assert_eq!(
            Flag::parse("$Forwarded").ok(),
            Some(Flag::Keyword("$Forwarded".into()))
        );
        for bad in ["", "a b", "x(", "\\Custom", "é", "a\"b", "x]"] {
            assert!(
                matches!(Flag::parse(bad), Err(Error::InvalidKeyword(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn flag_apply_keeps_keywords_sorted_unique() {
        let mut f = Flags::default();
        Flag::Keyword("b".into()).apply(&mut f, true);
        Flag::Keyword("a".into()).apply(&mut f, true);
        Flag::Keyword("b".into()).apply(&mut f, true);
        assert_eq!(f.keywords, vec!["a", "b"]);
        Flag::Keyword("a".into()).apply(&mut f, false);
        assert_eq!(f.keywords, vec!["b"]);
        Flag::Seen.apply(&mut f, true);
        assert!(Flag::Seen.is_set(&f) && !Flag::Flagged.is_set(&f));
        assert!(Flag::Keyword("b".into()).is_set(&f));
    }

    #[test]
    fn prepare_generates_message_id_and_validates() {
        let mut m = OutgoingMessage {
            from: addr("me@example.org"),
            to: vec![addr("you@example.net")],
            ..Default::default()
        };
        m.prepare().ok();
        assert!(m.message_id.ends_with("@example.org"), "{}", m.message_id);
        let first = m.message_id.clone();
        let mut m2 = m.clone();
        m2.message_id.clear();
        m2.prepare().ok();
        assert_ne!(first, m2.message_id, "Message-IDs are unique");

        let mut given = m.clone();
        given.message_id = "<abc@host>".into();
        given.prepare().ok();
        assert_eq!(given.message_id, "abc@host");

        let mut none = m.clone();
        none.to.clear();
        assert!(matches!(none.prepare(), Err(Error::InvalidMessage(_))));
        let mut bad_from = m.clone();
        bad_from.from = addr("nobody");
        assert!(matches!(bad_from.prepare(), Err(Error::InvalidMessage(_))));
        let mut bad_att = m.clone();
        bad_att.attachments.push(OutgoingAttachment {
            file_name: "a.bin".into(),
            mime_type: "application/octet-stream".into(),
            content_base64: "***".into(),
        });
        assert!(matches!(bad_att.prepare(), Err(Error::InvalidMessage(_))));
        let mut good_att = m;
        good_att.attachments.push(OutgoingAttachment::from_bytes(
            "a.txt",
            "text/plain",
            b"hello",
        ));
        assert!(good_att.prepare().is_ok());
        assert_eq!(
            good_att.attachments[0].bytes().ok(),
            Some(b"hello".to_vec())
        );
    }
}
