//! The oracle of the model test: the database must equal the server (same mailboxes, per
//! mailbox the same messages with the same \Seen and \Flagged, no duplicates, no orphan rows),
//! and every local intent that nothing later touched must hold on the server or be listed in
//! the account's failed changes. Pure functions over plain snapshots, so they are unit-tested
//! here without servers.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;

use super::ops::ModelFlag;

/// One message as the oracle sees it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Msg {
    /// Message-ID without angle brackets (`""` when it has none).
    pub message_id: String,
    /// `\Seen`.
    pub seen: bool,
    /// `\Flagged`.
    pub flagged: bool,
}

impl Msg {
    /// A message from its parts.
    pub fn new(message_id: &str, seen: bool, flagged: bool) -> Self {
        Self {
            message_id: message_id.into(),
            seen,
            flagged,
        }
    }

    fn flag(&self, f: ModelFlag) -> bool {
        match f {
            ModelFlag::Seen => self.seen,
            ModelFlag::Flagged => self.flagged,
        }
    }
}

/// Mailboxes (by name, the inbox as `INBOX`) and their messages.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Name → messages (any order).
    pub mailboxes: BTreeMap<String, Vec<Msg>>,
    /// Email rows that are in no mailbox (database only; always 0 for the server).
    pub orphans: usize,
}

impl Snapshot {
    /// How many copies of a Message-ID there are, over all mailboxes.
    pub fn copies(&self, message_id: &str) -> usize {
        self.mailboxes
            .values()
            .flatten()
            .filter(|m| m.message_id == message_id)
            .count()
    }

    /// Copies of a Message-ID in one mailbox.
    pub fn copies_in(&self, mailbox: &str, message_id: &str) -> usize {
        self.mailboxes
            .get(mailbox)
            .map(|v| v.iter().filter(|m| m.message_id == message_id).count())
            .unwrap_or(0)
    }

    /// The mailboxes holding a copy of a Message-ID (one entry per copy).
    pub fn holders(&self, message_id: &str) -> Vec<&str> {
        self.mailboxes
            .iter()
            .flat_map(|(n, v)| {
                v.iter()
                    .filter(|m| m.message_id == message_id)
                    .map(move |_| n.as_str())
            })
            .collect()
    }

    fn any_copy(&self, message_id: &str, f: impl Fn(&Msg) -> bool) -> bool {
        self.mailboxes
            .values()
            .flatten()
            .any(|m| m.message_id == message_id && f(m))
    }
}

/// What went wrong, with a stable kind for grouping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Divergence {
    /// Stable category (`mailboxes`, `missing-in-db`, `extra-in-db`, `flags`, `orphan-rows`,
    /// `lost-intent/<op>`, `duplicate-send`, `queue-not-drained`, `not-converged`).
    pub kind: String,
    /// The details, for people.
    pub detail: String,
}

impl fmt::Display for Divergence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}", self.kind, self.detail)
    }
}

fn div(kind: impl Into<String>, detail: impl Into<String>) -> Divergence {
    Divergence {
        kind: kind.into(),
        detail: detail.into(),
    }
}

/// How the account's server represents messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// IMAP: every copy is its own message (compare multisets).
    Imap,
    /// JMAP on Cyrus: copies of the same message in one mailbox are one Email, and keywords are
    /// per Email (compare sets; flags only where the server's IMAP copies agree).
    Jmap,
}

/// Compares the database with the server (the server's snapshot taken over IMAP).
pub fn compare(db: &Snapshot, server: &Snapshot, view: View) -> Vec<Divergence> {
    let mut out = Vec::new();
    let db_names: BTreeSet<&String> = db.mailboxes.keys().collect();
    let sv_names: BTreeSet<&String> = server.mailboxes.keys().collect();
    if db_names != sv_names {
        out.push(div(
            "mailboxes",
            format!(
                "database has {:?} but server has {:?}",
                db_names.difference(&sv_names).collect::<Vec<_>>(),
                sv_names.difference(&db_names).collect::<Vec<_>>()
            ),
        ));
    }
    if db.orphans > 0 {
        out.push(div(
            "orphan-rows",
            format!("{} email rows are in no mailbox", db.orphans),
        ));
    }
    // For JMAP: a Message-ID's flags are comparable only when all its server copies agree.
    let mut disagreeing: HashSet<&str> = HashSet::new();
    if view == View::Jmap {
        let mut seen: HashMap<&str, (bool, bool)> = HashMap::new();
        for m in server.mailboxes.values().flatten() {
            let f = (m.seen, m.flagged);
            if let Some(prev) = seen.insert(&m.message_id, f)
                && prev != f
            {
                disagreeing.insert(&m.message_id);
            }
        }
    }
    for name in db_names.intersection(&sv_names) {
        let d = &db.mailboxes[*name];
        let s = &server.mailboxes[*name];
        let (dc, sc) = (by_id(d), by_id(s));
        let ids: BTreeSet<&str> = dc.keys().chain(sc.keys()).copied().collect();
        for id in ids {
            let dm = dc.get(id).map(Vec::as_slice).unwrap_or(&[]);
            let sm = sc.get(id).map(Vec::as_slice).unwrap_or(&[]);
            let (dn, sn) = match view {
                View::Imap => (dm.len(), sm.len()),
                View::Jmap => (dm.len(), sm.len().min(1)),
            };
            if dn < sn {
                out.push(div(
                    "missing-in-db",
                    format!("{name}: <{id}> {dn} in the database, {sn} on the server"),
                ));
                continue;
            }
            if dn > sn {
                let kind = if sn == 0 {
                    "extra-in-db"
                } else {
                    "duplicate-in-db"
                };
                out.push(div(
                    kind,
                    format!("{name}: <{id}> {dn} in the database, {sn} on the server"),
                ));
                continue;
            }
            if view == View::Jmap && disagreeing.contains(id) {
                continue;
            }
            let flags = |v: &[&Msg]| {
                let mut f: Vec<(bool, bool)> = v.iter().map(|m| (m.seen, m.flagged)).collect();
                f.sort_unstable();
                if view == View::Jmap {
                    f.dedup();
                }
                f
            };
            let (df, sf) = (flags(dm), flags(sm));
            if df != sf {
                out.push(div(
                    "flags",
                    format!("{name}: <{id}> (seen, flagged) database {df:?}, server {sf:?}"),
                ));
            }
        }
    }
    out
}

fn by_id(v: &[Msg]) -> BTreeMap<&str, Vec<&Msg>> {
    let mut c: BTreeMap<&str, Vec<&Msg>> = BTreeMap::new();
    for m in v {
        c.entry(&m.message_id).or_default().push(m);
    }
    c
}

/// What an engine action promised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// Some copy of the message has the flag set (or cleared).
    Flag(ModelFlag, bool),
    /// Moved: a copy is in `to`; when `exclusive_from` is set, none is left there.
    Moved {
        /// Target mailbox.
        to: String,
        /// The source mailbox, when the message had a single copy (so none may remain).
        exclusive_from: Option<String>,
    },
    /// Deleted to the trash: a copy is in `trash` (or the message is gone altogether).
    Trashed {
        /// The trash mailbox's name.
        trash: String,
        /// The source mailbox, when the message had a single copy (so none may remain).
        exclusive_from: Option<String>,
    },
    /// Deleted for good from the trash: no copy left (checked only when it had a single copy).
    Destroyed {
        /// Whether the message had a single copy (otherwise nothing is checked).
        single: bool,
    },
    /// Sent: exactly once at the sink and once in Sent.
    Sent {
        /// The Sent mailbox's name.
        sent: String,
    },
    /// A draft saved: exactly one copy of it, in Drafts (no duplicate versions), besides the
    /// copies another client made.
    Draft {
        /// The Drafts mailbox's name.
        drafts: String,
        /// Copies the other client had made of the message (see [`Expect::DraftGone`]).
        others: usize,
    },
    /// A send the user undid before it was handed over: not at the sink, no copy in Sent.
    Unsent {
        /// The Sent mailbox's name.
        sent: String,
    },
    /// A draft discarded or sent: no copy of it left, besides the copies another client made.
    ///
    /// A discard removes the user's draft, not the messages another client filed from it: over
    /// IMAP each such copy is a message of its own (its own UID and row; JMAP servers make
    /// it the same Email in one more mailbox, so there the destroy takes it too), and a
    /// permanent delete of messages the user did not pick, matched by Message-ID, could not be
    /// undone. So at most `others` copies may be left, the same allowance a delete for good
    /// makes ([`Expect::Destroyed`] is not checked for a copied message). Model seed 13006
    /// (Dovecot, with cuts): the other client copied the draft from the Trash the user had put
    /// it in to Archive (and later back to Trash); the user undid the delete and discarded
    /// the draft, and the copies in Archive and Trash, rightly kept, were reported.
    ///
    /// And the other way round, `kept`: the copies outside Drafts the database showed when
    /// the user acted (the other client's, synced) must still be on the server. Over JMAP they
    /// were once the same Email as the draft and destroyed with it (the discard now only takes
    /// the Email out of Drafts, like IMAP's expunge of the draft's own copy). Not checked when
    /// the other client had expunged or moved a copy of the message (`raced_expunge`).
    DraftGone {
        /// How many copies the other client had made of the message before the action (a
        /// copy made after it supersedes the promise).
        others: usize,
        /// Copies outside Drafts the database showed at the action.
        kept: usize,
    },
    /// A mailbox created or renamed to this name: the server has it.
    MailboxExists(String),
    /// A mailbox deleted or renamed away: the server has none by this name.
    MailboxGone(String),
    /// The other client created a mailbox of this name (CREATE, or RENAME to it): nothing the
    /// user did before may take it away (a delete queued earlier addresses the user's
    /// mailbox, which had the name then). A failure listed for the name does not excuse it.
    OtherMailboxKept(String),
}

/// An engine action and what it promised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intent {
    /// Index of the operation in the run.
    pub op: usize,
    /// The operation, as text.
    pub text: String,
    /// The message (Message-ID).
    pub message_id: String,
    /// The local email id (none for a send).
    pub email: Option<i64>,
    /// The queue id the outbox returned, if any.
    pub change: Option<i64>,
    /// The promise.
    pub expect: Expect,
    /// Mailboxes the promise is about (a later rename or delete of one supersedes it).
    pub mailboxes: Vec<String>,
    /// A later operation touched the message or its mailboxes, or an undo withdrew it: not
    /// checked.
    pub superseded: bool,
    /// The other client had already expunged a copy of the message before this action: the
    /// action may be moot (not checked when the message is gone).
    pub raced_expunge: bool,
}

/// What the account lists as failed.
#[derive(Debug, Clone, Default)]
pub struct Failed {
    /// Email ids of failed email changes.
    pub emails: HashSet<i64>,
    /// Descriptions of failed sends.
    pub sends: Vec<String>,
    /// Descriptions of failed mailbox changes (`create mailbox "E"`, ...).
    pub mailboxes: Vec<String>,
}

/// An undo withdrew or compensated the queued row `change`: the promises of the actions it
/// carries are not checked. An undo names the row, not the action, and actions on one email
/// merge into one row (a flag, then a draft's update and its discard), so every intent the
/// row carries is let go, whichever action the undo took out. Returns whether any intent
/// carries the row; when none does, the caller cannot tell what was undone.
pub fn undone(intents: &mut [Intent], change: i64) -> bool {
    let mut hit = false;
    for i in intents.iter_mut().filter(|i| i.change == Some(change)) {
        i.superseded = true;
        hit = true;
    }
    hit
}

/// Checks the intents nothing superseded against the server's final state.
pub fn check_intents(
    intents: &[Intent],
    server: &Snapshot,
    sink: &HashMap<String, usize>,
    failed: &Failed,
) -> Vec<Divergence> {
    let mut out = Vec::new();
    // A duplicated send is wrong whatever happened later.
    for i in intents {
        if let Expect::Sent { .. } = &i.expect {
            let n = sink.get(&i.message_id).copied().unwrap_or(0);
            if n > 1 {
                out.push(div(
                    "duplicate-send",
                    format!(
                        "op {} `{}`: <{}> reached the sink {n} times",
                        i.op, i.text, i.message_id
                    ),
                ));
            }
        }
    }
    for i in intents.iter().filter(|i| !i.superseded) {
        let id = i.message_id.as_str();
        let listed = match (&i.expect, i.email) {
            (Expect::OtherMailboxKept(_), _) => false,
            (Expect::MailboxExists(n) | Expect::MailboxGone(n), _) => failed
                .mailboxes
                .iter()
                .any(|d| d.contains(&format!("{n:?}"))),
            (_, Some(e)) => failed.emails.contains(&e),
            (_, None) => failed.sends.iter().any(|d| d.contains(id)),
        };
        if listed {
            continue;
        }
        let gone = server.copies(id) == 0;
        if i.raced_expunge && gone {
            continue;
        }
        let (ok, kind, why) = match &i.expect {
            Expect::Flag(f, v) => (
                server.any_copy(id, |m| m.flag(*f) == *v),
                "lost-intent/flag",
                format!(
                    "no copy has {}={v} (copies in {:?})",
                    f.imap(),
                    server.holders(id)
                ),
            ),
            Expect::Moved { to, exclusive_from } => {
                let there = server.copies_in(to, id) > 0;
                let left = exclusive_from
                    .as_ref()
                    .is_some_and(|from| from != to && server.copies_in(from, id) > 0);
                (
                    there && !left,
                    "lost-intent/move",
                    format!("expected in {to}, copies in {:?}", server.holders(id)),
                )
            }
            Expect::Trashed {
                trash,
                exclusive_from,
            } => {
                let there = server.copies_in(trash, id) > 0 || gone;
                let left = exclusive_from
                    .as_ref()
                    .is_some_and(|from| from != trash && server.copies_in(from, id) > 0);
                (
                    there && !left,
                    "lost-intent/delete",
                    format!("expected in {trash}, copies in {:?}", server.holders(id)),
                )
            }
            Expect::Destroyed { single } => (
                !*single || gone,
                "lost-intent/destroy",
                format!("copies left in {:?}", server.holders(id)),
            ),
            Expect::Draft { drafts, others } => {
                let n = server.copies(id);
                let in_drafts = server.copies_in(drafts, id);
                (
                    in_drafts >= 1 && n <= 1 + others,
                    "lost-intent/draft",
                    format!(
                        "{n} copies, in {:?} (the other client made {others})",
                        server.holders(id)
                    ),
                )
            }
            Expect::DraftGone { others, kept } => {
                let n = server.copies(id);
                let outside = i
                    .mailboxes
                    .first()
                    .map_or(n, |drafts| n - server.copies_in(drafts, id));
                if n > *others {
                    (
                        false,
                        "lost-intent/draft-gone",
                        format!(
                            "copies left in {:?} (the other client made {others})",
                            server.holders(id)
                        ),
                    )
                } else {
                    (
                        i.raced_expunge || outside >= *kept,
                        "other-copy-lost",
                        format!(
                            "{kept} copies outside Drafts when discarded, left in {:?}",
                            server.holders(id)
                        ),
                    )
                }
            }
            Expect::MailboxExists(n) => (
                server.mailboxes.contains_key(n),
                "lost-intent/mailbox",
                format!("no mailbox {n:?} on the server"),
            ),
            Expect::MailboxGone(n) => (
                !server.mailboxes.contains_key(n),
                "lost-intent/mailbox-gone",
                format!("mailbox {n:?} still on the server"),
            ),
            Expect::OtherMailboxKept(n) => (
                server.mailboxes.contains_key(n),
                "other-mailbox-lost",
                format!("the other client's mailbox {n:?} is gone from the server"),
            ),
            Expect::Unsent { sent } => {
                let at_sink = sink.get(id).copied().unwrap_or(0);
                let filed = server.copies_in(sent, id);
                (
                    at_sink == 0 && filed == 0,
                    "undone-send-sent",
                    format!("{at_sink} at the sink, {filed} in {sent} after its undo"),
                )
            }
            Expect::Sent { sent } => {
                let at_sink = sink.get(id).copied().unwrap_or(0);
                let filed = server.copies_in(sent, id);
                (
                    at_sink == 1 && filed == 1,
                    "lost-intent/send",
                    format!("{at_sink} at the sink, {filed} in {sent}"),
                )
            }
        };
        if !ok {
            out.push(div(
                kind,
                format!(
                    "op {} `{}` on <{id}>: {why}, and not listed as failed",
                    i.op, i.text
                ),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(boxes: &[(&str, &[Msg])]) -> Snapshot {
        Snapshot {
            mailboxes: boxes
                .iter()
                .map(|(n, v)| ((*n).to_string(), v.to_vec()))
                .collect(),
            orphans: 0,
        }
    }

    fn kinds(d: &[Divergence]) -> Vec<&str> {
        d.iter().map(|d| d.kind.as_str()).collect()
    }

    #[test]
    fn an_undo_lets_go_of_every_action_its_row_carries() {
        // Model seed 19003 (Dovecot, with cuts): a flag on an uploaded draft queued row 51,
        // the draft's update and then its discard merged into it; the undo took out the
        // discard (`Withdrawn(51)`), so the draft rightly stayed in Drafts, but only the
        // flag's promise was let go and the discard's was reported as a copy left.
        let intent = |op: usize, change: Option<i64>, expect: Expect| Intent {
            op,
            text: "t".into(),
            message_id: "d".into(),
            email: Some(9),
            change,
            expect,
            mailboxes: vec!["Drafts".into()],
            superseded: false,
            raced_expunge: false,
        };
        let mut intents = vec![
            intent(1, Some(51), Expect::Flag(ModelFlag::Flagged, true)),
            intent(2, Some(51), Expect::DraftGone { others: 0, kept: 0 }),
            intent(3, Some(52), Expect::Flag(ModelFlag::Seen, true)),
        ];
        assert!(undone(&mut intents, 51));
        let left: Vec<usize> = intents
            .iter()
            .filter(|i| !i.superseded)
            .map(|i| i.op)
            .collect();
        assert_eq!(left, [3]);
        let d = Msg::new("d", true, true);
        let kept = snap(&[("Drafts", std::slice::from_ref(&d))]);
        let found = check_intents(&intents, &kept, &HashMap::new(), &Failed::default());
        assert!(found.is_empty(), "{found:?}");
        // A row no intent carries: the caller has to let go of everything itself.
        assert!(!undone(&mut intents, 77));
    }

    #[test]
    fn draft_and_mailbox_promises_are_checked() {
        let intent = |id: &str, expect: Expect| Intent {
            op: 1,
            text: "t".into(),
            message_id: id.into(),
            email: Some(9),
            change: None,
            expect,
            mailboxes: vec!["Drafts".into()],
            superseded: false,
            raced_expunge: false,
        };
        let d = Msg::new("d", true, false);
        let twice = snap(&[("Drafts", &[d.clone(), d.clone()]), ("E", &[])]);
        let once = snap(&[("Drafts", std::slice::from_ref(&d)), ("E", &[])]);
        let none = snap(&[("Drafts", &[])]);
        let drafts = || Expect::Draft {
            drafts: "Drafts".into(),
            others: 0,
        };
        let sink = HashMap::new();
        let ok = Failed::default();
        let check = |i: Intent, s: &Snapshot| check_intents(&[i], s, &sink, &ok);
        assert!(check(intent("d", drafts()), &once).is_empty());
        assert_eq!(
            kinds(&check(intent("d", drafts()), &twice)),
            ["lost-intent/draft"]
        );
        assert_eq!(
            kinds(&check(intent("d", drafts()), &none)),
            ["lost-intent/draft"]
        );
        let gone_draft = |others| Expect::DraftGone { others, kept: 0 };
        assert!(check(intent("d", gone_draft(0)), &none).is_empty());
        assert_eq!(
            kinds(&check(intent("d", gone_draft(0)), &once)),
            ["lost-intent/draft-gone"]
        );
        // A copy the other client made is a message of its own: a discard leaves it (model
        // seed 13006), but not the user's draft besides it.
        let archived = snap(&[("Drafts", &[]), ("Archive", std::slice::from_ref(&d))]);
        let both = snap(&[
            ("Drafts", std::slice::from_ref(&d)),
            ("Archive", std::slice::from_ref(&d)),
        ]);
        assert!(check(intent("d", gone_draft(1)), &archived).is_empty());
        assert_eq!(
            kinds(&check(intent("d", gone_draft(1)), &both)),
            ["lost-intent/draft-gone"]
        );
        // The copy in Archive the database showed at the discard is still there; over JMAP
        // (one Email in two mailboxes) a destroy took it too.
        let kept = Expect::DraftGone { others: 1, kept: 1 };
        assert!(check(intent("d", kept.clone()), &archived).is_empty());
        assert_eq!(
            kinds(&check(intent("d", kept.clone()), &none)),
            ["other-copy-lost"]
        );
        let mut raced = intent("d", kept);
        raced.raced_expunge = true;
        assert!(check(raced, &none).is_empty());
        let saved_copied = || Expect::Draft {
            drafts: "Drafts".into(),
            others: 1,
        };
        assert!(check(intent("d", saved_copied()), &both).is_empty());
        assert_eq!(
            kinds(&check(intent("d", saved_copied()), &archived)),
            ["lost-intent/draft"]
        );
        let exists = || Expect::MailboxExists("E".into());
        let gone = || Expect::MailboxGone("E".into());
        assert!(check(intent("", exists()), &once).is_empty());
        assert_eq!(
            kinds(&check(intent("", exists()), &none)),
            ["lost-intent/mailbox"]
        );
        assert!(check(intent("", gone()), &none).is_empty());
        assert_eq!(
            kinds(&check(intent("", gone()), &once)),
            ["lost-intent/mailbox-gone"]
        );
        // Listed as failed: fine.
        let failed = Failed {
            mailboxes: vec!["create mailbox \"E\"".into()],
            ..Failed::default()
        };
        assert!(check_intents(&[intent("", exists())], &none, &sink, &failed).is_empty());
        // Another client's mailbox must survive, failure listed or not.
        let kept = || Expect::OtherMailboxKept("E".into());
        assert!(check(intent("", kept()), &once).is_empty());
        assert_eq!(
            kinds(&check_intents(&[intent("", kept())], &none, &sink, &failed)),
            ["other-mailbox-lost"]
        );
    }

    #[test]
    fn equal_snapshots_agree() {
        let a = [Msg::new("a", true, false), Msg::new("b", false, true)];
        let s = snap(&[("INBOX", &a), ("Trash", &[])]);
        assert!(compare(&s, &s, View::Imap).is_empty());
        assert!(compare(&s, &s, View::Jmap).is_empty());
    }

    #[test]
    fn a_wrong_database_is_caught() {
        let server = snap(&[
            (
                "INBOX",
                &[Msg::new("a", true, false), Msg::new("b", false, false)],
            ),
            ("A", &[]),
        ]);
        // Missing mailbox, missing message, wrong flag.
        let db = snap(&[("INBOX", &[Msg::new("a", false, false)])]);
        let d = compare(&db, &server, View::Imap);
        assert_eq!(kinds(&d), ["mailboxes", "flags", "missing-in-db"], "{d:?}");
        // A duplicate row and an orphan.
        let mut db = snap(&[
            (
                "INBOX",
                &[
                    Msg::new("a", true, false),
                    Msg::new("a", true, false),
                    Msg::new("b", false, false),
                ],
            ),
            ("A", &[]),
        ]);
        db.orphans = 2;
        let d = compare(&db, &server, View::Imap);
        assert_eq!(kinds(&d), ["orphan-rows", "duplicate-in-db"], "{d:?}");
        // A message only the database has.
        let db = snap(&[
            (
                "INBOX",
                &[Msg::new("a", true, false), Msg::new("b", false, false)],
            ),
            ("A", &[Msg::new("z", false, false)]),
        ]);
        assert_eq!(kinds(&compare(&db, &server, View::Imap)), ["extra-in-db"]);
    }

    #[test]
    fn jmap_view_merges_copies_and_skips_disagreeing_flags() {
        // Two IMAP copies of one message in INBOX are one JMAP Email.
        let server = snap(&[
            (
                "INBOX",
                &[Msg::new("a", true, false), Msg::new("a", false, false)],
            ),
            ("A", &[Msg::new("b", true, false)]),
        ]);
        let db = snap(&[
            ("INBOX", &[Msg::new("a", true, false)]),
            ("A", &[Msg::new("b", true, false)]),
        ]);
        assert!(compare(&db, &server, View::Jmap).is_empty());
        assert_eq!(kinds(&compare(&db, &server, View::Imap)), ["missing-in-db"]);
        let db = snap(&[
            ("INBOX", &[Msg::new("a", true, false)]),
            ("A", &[Msg::new("b", false, false)]),
        ]);
        assert_eq!(kinds(&compare(&db, &server, View::Jmap)), ["flags"]);
    }

    fn intent(expect: Expect) -> Intent {
        Intent {
            op: 3,
            text: "x".into(),
            message_id: "a".into(),
            email: Some(7),
            change: None,
            expect,
            mailboxes: vec![],
            superseded: false,
            raced_expunge: false,
        }
    }

    #[test]
    fn intents_hold_fail_or_are_listed() {
        let server = snap(&[
            ("INBOX", &[Msg::new("a", true, false)]),
            ("Trash", &[]),
            ("Sent", &[Msg::new("s", true, false)]),
        ]);
        let none = Failed::default();
        let sink: HashMap<String, usize> = [("s".to_string(), 1)].into();
        let ok = [
            intent(Expect::Flag(ModelFlag::Seen, true)),
            intent(Expect::Moved {
                to: "INBOX".into(),
                exclusive_from: Some("A".into()),
            }),
            Intent {
                message_id: "s".into(),
                email: None,
                ..intent(Expect::Sent {
                    sent: "Sent".into(),
                })
            },
        ];
        assert!(check_intents(&ok, &server, &sink, &none).is_empty());
        let lost = [
            intent(Expect::Flag(ModelFlag::Flagged, true)),
            intent(Expect::Trashed {
                trash: "Trash".into(),
                exclusive_from: Some("INBOX".into()),
            }),
            intent(Expect::Destroyed { single: true }),
        ];
        let d = check_intents(&lost, &server, &sink, &none);
        assert_eq!(
            kinds(&d),
            [
                "lost-intent/flag",
                "lost-intent/delete",
                "lost-intent/destroy"
            ]
        );
        // Listed as failed, or superseded: fine.
        let failed = Failed {
            emails: [7].into(),
            sends: vec![],
            mailboxes: vec![],
        };
        assert!(check_intents(&lost, &server, &sink, &failed).is_empty());
        let sup: Vec<Intent> = lost
            .iter()
            .cloned()
            .map(|i| Intent {
                superseded: true,
                ..i
            })
            .collect();
        assert!(check_intents(&sup, &server, &sink, &none).is_empty());
        // A send seen twice at the sink is wrong even when superseded.
        let twice: HashMap<String, usize> = [("s".to_string(), 2)].into();
        let d = check_intents(&ok[2..], &server, &twice, &none);
        assert_eq!(kinds(&d), ["duplicate-send", "lost-intent/send"]);
    }
}
