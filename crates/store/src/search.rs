//! Local full-text search over subject, addresses and cached text bodies: one query language
//! and one API over SQLite FTS5 (ranked by bm25) and PostgreSQL tsvector/GIN (ts_rank). The
//! index is noted by triggers and filled in bulk beside the writes, by
//! [`crate::Store::index_noted`]: in a companion file on SQLite (`companion`, schema v16), in
//! transactions of their own on PostgreSQL (`pg_index_step`, schema v19).
//!
//! SQLite's index holds each distinct word of a field once, without positions (the
//! `mailsync_fts` tokenizer: FTS5's work is per word written), so a phrase is asked of FTS5
//! as its words and checked against the candidates' text by `mailsync_phrase`
//! (`push_phrases`); PostgreSQL's documents keep positions (`pg_doc`), and a phrase is asked
//! of the index with `<->`.
//!
//! Query syntax: words and `"quoted phrases"` (all must match), `from:`, `to:` (To/Cc/Bcc),
//! `subject:` (a word or a quoted phrase), `in:MAILBOX` (name or role), `is:unread`,
//! `is:read`, `is:flagged`, `is:unflagged`, `has:attachment`, `before:YYYY-MM-DD` (arrived
//! before that day, UTC), `after:YYYY-MM-DD` (arrived that day or later).

use chrono::{DateTime, NaiveDate, Utc};
use sea_orm::{ConnectionTrait, Statement, sqlx};

use crate::emails::{self, EmailSummary};
use crate::sql::Sql;
use crate::{AccountId, EmailId, StoreError};

/// Which indexed field a term must match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Field {
    /// Any field.
    Any,
    /// The subject.
    Subject,
    /// The sender (From).
    From,
    /// The recipients (To, Cc, Bcc).
    To,
}

/// A word or phrase: its words in order, lower case, letters and digits only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Term {
    /// Where it must appear.
    pub field: Field,
    /// The words, adjacent and in this order.
    pub words: Vec<String>,
    /// The value as typed (quotes removed): what a server-side search looks for, since
    /// servers match substrings of the decoded text rather than index words.
    pub text: String,
}

/// A parsed query.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    /// Terms that must all match.
    pub terms: Vec<Term>,
    /// `in:` a mailbox name or role.
    pub mailbox: Option<String>,
    /// `is:unread` (Some(false)) / `is:read` (Some(true)).
    pub seen: Option<bool>,
    /// `is:flagged` / `is:unflagged`.
    pub flagged: Option<bool>,
    /// `has:attachment`.
    pub has_attachment: bool,
    /// Arrived before this instant.
    pub before: Option<DateTime<Utc>>,
    /// Arrived at or after this instant.
    pub after: Option<DateTime<Utc>>,
}

fn bad(reason: impl Into<String>) -> StoreError {
    StoreError::BadQuery {
        reason: reason.into(),
    }
}

/// The words of `s` as the index sees them.
pub fn words(s: &str) -> Vec<String> {
    s.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

fn day(op: &str, v: &str) -> Result<DateTime<Utc>, StoreError> {
    NaiveDate::parse_from_str(v, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(|| bad(format!("{op}: expects a date YYYY-MM-DD, not {v:?}")))
}

/// Parses a query; anything it does not understand is an error naming the culprit.
pub fn parse(input: &str) -> Result<Query, StoreError> {
    let mut q = Query::default();
    let mut chars = input.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        // One token: `op:value`, `op:"quoted value"`, `"phrase"` or `word`.
        let mut op = None;
        let mut value = String::new();
        let mut quoted = false;
        let mut raw = String::new();
        while let Some(&c) = chars.peek() {
            if c.is_whitespace() && !quoted {
                break;
            }
            chars.next();
            if c == '"' {
                quoted = !quoted;
                raw.push(c);
                continue;
            }
            if c == ':'
                && !quoted
                && op.is_none()
                && !raw.is_empty()
                && raw.chars().all(|c| c.is_ascii_alphabetic())
            {
                op = Some(raw.to_ascii_lowercase());
                value.clear();
                raw.push(c);
                continue;
            }
            raw.push(c);
            value.push(c);
        }
        if quoted {
            return Err(bad(format!("unterminated quote in {raw:?}")));
        }
        let field = match op.as_deref() {
            None => Field::Any,
            Some("from") => Field::From,
            Some("to") => Field::To,
            Some("subject") => Field::Subject,
            Some(o) => {
                if value.is_empty() {
                    return Err(bad(format!("{o}: needs a value")));
                }
                match (o, value.to_ascii_lowercase().as_str()) {
                    ("in", _) => q.mailbox = Some(value.clone()),
                    ("is", "unread") => q.seen = Some(false),
                    ("is", "read" | "seen") => q.seen = Some(true),
                    ("is", "flagged" | "starred") => q.flagged = Some(true),
                    ("is", "unflagged") => q.flagged = Some(false),
                    ("has", "attachment" | "attachments") => q.has_attachment = true,
                    ("before", _) => q.before = Some(day("before", &value)?),
                    ("after", _) => q.after = Some(day("after", &value)?),
                    ("is" | "has", v) => return Err(bad(format!("unknown {o}:{v}"))),
                    _ => {
                        return Err(bad(format!(
                            "unknown operator {o}: (known: from: to: subject: in: is: has: \
                             before: after:; quote text that contains a colon)"
                        )));
                    }
                }
                continue;
            }
        };
        let w = words(&value);
        if w.is_empty() {
            if op.is_some() {
                return Err(bad(format!("{raw}: needs a word to look for")));
            }
            // Punctuation alone matches nothing the index holds; it is not a search term.
            continue;
        }
        q.terms.push(Term {
            field,
            words: w,
            text: value,
        });
    }
    if q == Query::default() {
        return Err(bad("empty query"));
    }
    Ok(q)
}

/// FTS5 MATCH text: every term as a quoted phrase (its words are letters and digits only),
/// restricted to a column where asked.
fn fts5_match(terms: &[Term]) -> String {
    terms
        .iter()
        .map(|t| {
            // The index holds each distinct word of a column once, without where it stands
            // (`mailsync_fts`), so a phrase is asked for as its words; [`push_phrases`]
            // keeps the documents that have them in a row.
            let words = t
                .words
                .iter()
                .map(|w| format!("\"{w}\""))
                .collect::<Vec<_>>();
            let words = if words.len() == 1 {
                words.join("")
            } else {
                format!("({})", words.join(" AND "))
            };
            match t.field {
                Field::Any => words,
                Field::Subject => format!("subject : {words}"),
                Field::From => format!("sender : {words}"),
                Field::To => format!("recipients : {words}"),
            }
        })
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// SQLite: keeps the candidates `e` that hold each phrase of the query in a row, within one
/// of the term's columns: `mailsync_phrase` splits the same text the index was given
/// ([`crate::companion::columns`]) with the same tokenizer. A phrase is a term of several
/// words, or one with a word outside ASCII: FTS5's `unicode61` may split such a word in
/// pieces (combining marks are not word characters to it), of which the index is asked for
/// the first only (`mailsync_fts`).
fn push_phrases(sql: &mut Sql, q: &Query) {
    let [subject, sender, recipients, body] = crate::companion::columns();
    let checked = |t: &&Term| t.words.len() > 1 || t.words.iter().any(|w| !w.is_ascii());
    for t in q.terms.iter().filter(checked) {
        let columns = match t.field {
            Field::Any => format!("{subject}, {sender}, {recipients}, {body}"),
            Field::Subject => subject.clone(),
            Field::From => sender.clone(),
            Field::To => recipients.clone(),
        };
        sql.push(" AND mailsync_phrase(")
            .bind(t.words.join(" "))
            .push(&format!(", {columns}) = 1"));
    }
}

/// tsquery text: lexemes in quotes, weights A..C for the fields. A phrase is its words in
/// order with `<->`.
fn tsquery(terms: &[Term]) -> String {
    terms
        .iter()
        .map(|t| {
            let w = match t.field {
                Field::Any => "",
                Field::Subject => ":A",
                Field::From => ":B",
                Field::To => ":C",
            };
            let seq: Vec<String> = t.words.iter().map(|x| format!("'{x}'{w}")).collect();
            format!("({})", seq.join(" <-> "))
        })
        .collect::<Vec<_>>()
        .join(" & ")
}

/// One result.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// The email and its mailboxes.
    pub summary: EmailSummary,
    /// Relevance (higher is better; 0 without text terms).
    pub score: f64,
    /// A piece of the body or subject around the first matching word, else the preview.
    pub snippet: Option<String>,
}

/// How many of the newest matches are ranked and filtered first (see [`search`]).
fn candidates(limit: u64) -> i64 {
    i64::try_from(limit.saturating_mul(10).max(500)).unwrap_or(i64::MAX)
}

/// Emails indexed per round trip on PostgreSQL: their text and documents are held at once,
/// by each of the engine's indexing loops. With 500, a first sync of 10,000 peaked at
/// 133 MiB RSS; with 100 at 69 MiB, 5 % slower.
const PG_INDEX_CHUNK: usize = 100;

/// PostgreSQL: one step of filling the search index beside the writers (schema v19; before,
/// each writer's batch indexed its own rows, in series with its writes, which left one of two
/// cores idle while a first sync spent most of its time in GIN). In a transaction of its own:
/// takes up to `max_notes` notes, indexes the emails they name as committed now, deletes the
/// notes. Returns how many notes it consumed; 0 when none could be taken.
///
/// Writers never wait for it for long, and it never waits for them:
/// - notes are taken `FOR UPDATE SKIP LOCKED`: a note a writer's trigger holds (v19's
///   triggers lock the note they meet) is left for a later step, and a writer meeting a note
///   taken here waits for this step, then notes the email again (so a change committed after
///   the text was read here is indexed by a later step);
/// - then their emails, `FOR KEY SHARE SKIP LOCKED`: one a writer is deleting is left with
///   its note (its index row goes with it), and the notes behind it are taken instead; the
///   note of one gone already is dropped;
/// - its index rows are only ever written by steps like this one, on emails it holds.
///
/// Documents are built here rather than by `to_tsvector` in the server (PostgreSQL's
/// text-search parser took ~1.2 ms per 5 KB body), and sent in `tsvector`'s binary form
/// ([`PgDoc::binary`]): reading the text form was a third of the server's indexing work
/// (~0.1 ms per email of a first sync). sqlx directly, not SeaORM, for that one parameter
/// type; the transaction is an ordinary one on the store's pool.
pub(crate) async fn pg_index_step(store: &crate::Store, max_notes: u64) -> Result<u64, StoreError> {
    // The store opens PostgreSQL through sqlx's pool, and this runs for PostgreSQL only
    // (`Store::index_noted`); checked first, as SeaORM's accessor panics otherwise.
    if !matches!(
        store.conn().inner,
        sea_orm::DatabaseConnectionType::SqlxPostgresPoolConnection(_)
    ) {
        return Err(StoreError::Db(sea_orm::DbErr::Custom(
            "the PostgreSQL search index needs a PostgreSQL connection pool".into(),
        )));
    }
    let pool = store.conn().get_postgres_connection_pool();
    // Searches and idle indexing loops call this when nothing is noted, most of the time: a
    // plain read then spares them a write transaction, its locks and the anti-join below.
    let any: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM search_pending)")
        .fetch_one(pool)
        .await
        .map_err(sqlx_error)?;
    if !any {
        return Ok(0);
    }
    let mut tx = pool.begin().await.map_err(sqlx_error)?;
    let max = i64::try_from(max_notes).unwrap_or(i64::MAX);
    // Notes are taken in key order, then their emails are locked; notes skipped for a busy
    // email do not use up the step: the next notes are taken until the step is full or none
    // are left (else a step whose lowest notes all named emails being deleted consumed
    // nothing, and its loop stopped with other notes waiting). Two queries, each driven by
    // the few notes it names: one query joining notes and emails let the planner, misled by
    // statistics of a queue that churns faster than it is analysed, walk every email's key
    // and look its note up (a scan of all emails per step, quadratic over a first sync).
    let mut held: Vec<i64> = Vec::new();
    let mut after = i64::MIN;
    while (held.len() as u64) < max_notes {
        let want = max - i64::try_from(held.len()).unwrap_or(0);
        let notes: Vec<i64> = sqlx::query_scalar(
            "SELECT email_id FROM search_pending WHERE email_id > $1 \
             ORDER BY email_id LIMIT $2 FOR UPDATE SKIP LOCKED",
        )
        .bind(after)
        .bind(want)
        .fetch_all(&mut *tx)
        .await
        .map_err(sqlx_error)?;
        let Some(&last) = notes.last() else {
            break;
        };
        after = last;
        let taken = notes.len() as i64;
        let emails: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM emails WHERE id = ANY($1) FOR KEY SHARE SKIP LOCKED",
        )
        .bind(notes)
        .fetch_all(&mut *tx)
        .await
        .map_err(sqlx_error)?;
        held.extend(emails);
        if taken < want {
            break;
        }
    }
    // Notes of emails gone (deletions are noted; their index rows went with them), once the
    // live notes did not fill the step: the anti-join reads every note, and such notes cost
    // nothing while they wait. Each note's email is looked up by its key (`OFFSET 0` keeps
    // the subquery from becoming a join the planner may run over every email). An email
    // whose deletion is not yet committed still exists here, so its note stays for the step
    // after the commit.
    let gone = if (held.len() as u64) < max_notes {
        sqlx::query(
            "DELETE FROM search_pending WHERE email_id IN (SELECT p.email_id \
             FROM search_pending p WHERE NOT EXISTS (SELECT 1 FROM emails e \
             WHERE e.id = p.email_id OFFSET 0) LIMIT $1 FOR UPDATE SKIP LOCKED)",
        )
        .bind(max - i64::try_from(held.len()).unwrap_or(0))
        .execute(&mut *tx)
        .await
        .map_err(sqlx_error)?
        .rows_affected()
    } else {
        0
    };
    if held.is_empty() {
        tx.commit().await.map_err(sqlx_error)?;
        return Ok(gone);
    }
    type Row = (
        i64,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
    );
    for part in held.chunks(PG_INDEX_CHUNK) {
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT e.id, e.subject, e.from_addr, e.to_addr, e.cc_addr, e.bcc_addr, \
             b.text_body FROM emails e LEFT JOIN email_bodies b ON b.email_id = e.id \
             WHERE e.id = ANY($1)",
        )
        .bind(part)
        .fetch_all(&mut *tx)
        .await
        .map_err(sqlx_error)?;
        if rows.is_empty() {
            continue;
        }
        let mut sql = String::from("INSERT INTO email_search (email_id, doc) VALUES ");
        for k in 0..rows.len() {
            if k > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("(${}, ${})", 2 * k + 1, 2 * k + 2));
        }
        sql.push_str(" ON CONFLICT (email_id) DO UPDATE SET doc = EXCLUDED.doc");
        // Only placeholders are formatted into it.
        let mut insert = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (id, subject, from, to, cc, bcc, body) in &rows {
            let doc = pg_doc(&DocText {
                subject: subject.as_deref(),
                from: from.as_deref(),
                to: to.as_deref(),
                cc: cc.as_deref(),
                bcc: bcc.as_deref(),
                body: body.as_deref(),
            });
            insert = insert.bind(*id).bind(TsVector(doc.binary()));
        }
        insert.execute(&mut *tx).await.map_err(sqlx_error)?;
    }
    let consumed = held.len() as u64 + gone;
    sqlx::query("DELETE FROM search_pending WHERE email_id = ANY($1)")
        .bind(&held)
        .execute(&mut *tx)
        .await
        .map_err(sqlx_error)?;
    tx.commit().await.map_err(sqlx_error)?;
    Ok(consumed)
}

/// A driver error of the statements run through sqlx directly, as SeaORM reports its own (so
/// [`StoreError::is_transient`] reads it the same way).
fn sqlx_error(e: sqlx::Error) -> StoreError {
    StoreError::Db(sea_orm::DbErr::Query(sea_orm::RuntimeErr::SqlxError(
        std::sync::Arc::new(e),
    )))
}

/// A `tsvector` in PostgreSQL's binary format ([`PgDoc::binary`]), bound as a parameter of
/// that type: the server reads it with `tsvectorrecv`, no text to parse.
struct TsVector(Vec<u8>);

impl sqlx::Type<sqlx::Postgres> for TsVector {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        // `tsvector`'s OID is fixed in PostgreSQL's catalog (pg_type.dat), as for any
        // built-in type.
        sqlx::postgres::PgTypeInfo::with_oid(sqlx::postgres::types::Oid(3614))
    }
}

impl sqlx::Encode<'_, sqlx::Postgres> for TsVector {
    fn encode_by_ref(
        &self,
        buf: &mut sqlx::postgres::PgArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        buf.extend_from_slice(&self.0);
        Ok(sqlx::encode::IsNull::No)
    }
}

/// The indexed text of one email, as stored (addresses as their JSON).
struct DocText<'a> {
    subject: Option<&'a str>,
    from: Option<&'a str>,
    to: Option<&'a str>,
    cc: Option<&'a str>,
    bcc: Option<&'a str>,
    body: Option<&'a str>,
}

/// PostgreSQL's limits on a `tsvector`: the highest position, positions kept per lexeme, the
/// longest lexeme (longer words are left out, as `to_tsvector` does).
const TS_MAX_POS: u16 = 16_383;
const TS_MAX_POSITIONS: u16 = 255;
const TS_MAX_LEXEME: usize = 2_047;
/// The most bytes a `tsvector`'s lexemes and positions take (`MAXSTRPOS`, 1 MB less a byte).
/// Past it the server refuses the whole document, and so the whole indexing step, every
/// time: one message with a subject or recipient list of a megabyte of distinct words held
/// every email's indexing back. A document takes no new lexeme once its lexemes, with 5 bytes
/// each for a position count, an alignment byte and one position, and 2 bytes for each of the
/// other positions (at most one per position number, [`TS_MAX_POS`]), could pass it; words
/// already in it still take their positions.
const TS_MAX_DATA: usize = (1 << 20) - 1 - 2 * (TS_MAX_POS as usize + 1);
/// A body is indexed up to this many characters (a `tsvector` holds at most 1 MB).
const BODY_INDEXED_CHARS: usize = 100_000;

/// An email's search document for PostgreSQL: its [`words`] with their positions, weighted A
/// (subject), B (sender), C (recipients) and D (body). The same as v11's SQL function
/// `mailsync_search_doc` (each field's words numbered on from the previous field's last
/// position), except that words are split and lower-cased as [`words`] does, which is also
/// how queries are ([`tsquery`]).
///
/// From v17 to this version documents also held, for every two words in a row, one of 65,536
/// lexemes standing for the pair (`_` and four hex digits), so that GIN left few documents to
/// check a phrase's positions in. Those rare keys were three quarters of GIN's work when
/// indexing (inserting 20,000 documents into a GIN index: 10.2 s with them, 2.5 s without);
/// phrases of common words are now found by walking the newest mail ([`search`]). Documents
/// written before keep their pair lexemes until reindexed; no query asks for them (words
/// hold no `_`).
struct PgDoc {
    /// Distinct lexemes, in the order they first occur: ranges of `text`.
    lexemes: Vec<std::ops::Range<usize>>,
    text: String,
    /// Lexeme indexes in `tsvector` order (bytewise, as PostgreSQL compares lexemes).
    order: Vec<u32>,
    /// Each lexeme's positions, grouped: those of lexeme `i` are
    /// `positions[starts[i]..starts[i + 1]]`, ascending, as `WordEntryPos` (the position in
    /// the low 14 bits, the weight, 3 for A to 0 for D, in the top 2).
    starts: Vec<u32>,
    positions: Vec<u16>,
}

/// Builds [`PgDoc`]. This runs for every email a PostgreSQL store indexes and was most of the
/// client's CPU in a first sync: hence one table from word to lexeme index with a
/// multiplicative hash instead of SipHash (the keys are the mail's own words; a flooded table
/// costs one document's indexing time), and positions kept in one list, grouped at the end,
/// rather than a list per lexeme.
fn pg_doc(t: &DocText<'_>) -> PgDoc {
    use std::borrow::Cow;
    use std::collections::HashMap;
    let addrs = |json: Option<&str>| -> String {
        let list: Vec<crate::Address> = json
            .and_then(|j| serde_json::from_str(j).ok())
            .unwrap_or_default();
        list.iter()
            .map(|a| format!("{} {}", a.name.as_deref().unwrap_or(""), a.email))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let from = addrs(t.from);
    let recipients = format!("{} {} {}", addrs(t.to), addrs(t.cc), addrs(t.bcc));
    let body = t.body.unwrap_or("");
    let body = body
        .char_indices()
        .nth(BODY_INDEXED_CHARS)
        .map_or(body, |(end, _)| &body[..end]);
    let fields: [(&str, u16); 4] = [
        (t.subject.unwrap_or(""), 3),
        (from.as_str(), 2),
        (recipients.as_str(), 1),
        (body, 0),
    ];
    let guess = (body.len() / 6).max(16);
    let mut index: HashMap<Cow<'_, str>, u32, FastHash> =
        HashMap::with_capacity_and_hasher(guess, FastHash);
    let mut lexemes: Vec<std::ops::Range<usize>> = Vec::with_capacity(guess);
    let mut text = String::with_capacity(body.len() / 2);
    // Per lexeme: positions kept so far and the last one (0: none; positions start at 1).
    let mut kept: Vec<(u16, u16)> = Vec::with_capacity(guess);
    // Every kept occurrence: (lexeme, WordEntryPos), in position order.
    let mut occurrences: Vec<(u32, u16)> = Vec::with_capacity(body.len() / 5);
    let mut last: u16 = 0;
    for &(field, weight) in &fields {
        let base = last;
        let words = field
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(|w| {
                if w.bytes().any(|b| b.is_ascii_uppercase() || !b.is_ascii()) {
                    Cow::Owned(w.to_lowercase())
                } else {
                    Cow::Borrowed(w)
                }
            })
            // As `to_tsvector`: a word too long to index takes no position.
            .filter(|w| w.len() <= TS_MAX_LEXEME);
        for (i, w) in words.enumerate() {
            let pos = u16::try_from(i + 1)
                .unwrap_or(u16::MAX)
                .saturating_add(base)
                .min(TS_MAX_POS);
            last = last.max(pos);
            if text.len() + w.len() + 5 * (lexemes.len() + 1) > TS_MAX_DATA
                && !index.contains_key(&w)
            {
                continue;
            }
            let next = u32::try_from(lexemes.len()).unwrap_or(u32::MAX);
            let id = *index.entry(w).or_insert_with_key(|w| {
                text.push_str(w);
                lexemes.push(text.len() - w.len()..text.len());
                kept.push((0, 0));
                next
            });
            let (count, at) = &mut kept[id as usize];
            // PostgreSQL keeps at most 255 positions of a lexeme, each once (the words past
            // the highest position all share it).
            if *count < TS_MAX_POSITIONS && *at < pos {
                *count += 1;
                *at = pos;
                occurrences.push((id, pos | (weight << 14)));
            }
        }
    }
    let mut starts = Vec::with_capacity(kept.len() + 1);
    let mut sum = 0u32;
    for &(count, _) in &kept {
        starts.push(sum);
        sum += u32::from(count);
    }
    starts.push(sum);
    let mut fill: Vec<u32> = starts[..kept.len()].to_vec();
    let mut positions = vec![0u16; occurrences.len()];
    for &(id, p) in &occurrences {
        let slot = &mut fill[id as usize];
        positions[*slot as usize] = p;
        *slot += 1;
    }
    let mut order: Vec<u32> = (0..u32::try_from(lexemes.len()).unwrap_or(u32::MAX)).collect();
    let word = |i: u32| &text[lexemes[i as usize].clone()];
    order.sort_unstable_by(|&a, &b| word(a).cmp(word(b)));
    PgDoc {
        lexemes,
        text,
        order,
        starts,
        positions,
    }
}

impl PgDoc {
    /// Each lexeme in `tsvector` order with its positions.
    fn entries(&self) -> impl Iterator<Item = (&str, &[u16])> {
        self.order.iter().map(|&i| {
            let i = i as usize;
            let at = &self.positions[self.starts[i] as usize..self.starts[i + 1] as usize];
            (&self.text[self.lexemes[i].clone()], at)
        })
    }

    /// `tsvector`'s binary form, as `tsvectorrecv` reads it: the number of lexemes (int32),
    /// then each lexeme's bytes, a NUL, its number of positions (uint16) and the positions
    /// (uint16 `WordEntryPos` each), all big-endian. Lexemes are sorted and distinct, and hold
    /// no NUL (they are letters and digits), as it requires.
    fn binary(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            4 + self.text.len() + 3 * self.lexemes.len() + 2 * self.positions.len(),
        );
        let n = i32::try_from(self.order.len()).unwrap_or(i32::MAX);
        out.extend_from_slice(&n.to_be_bytes());
        for (lexeme, at) in self.entries() {
            out.extend_from_slice(lexeme.as_bytes());
            out.push(0);
            // At most TS_MAX_POSITIONS.
            out.extend_from_slice(&(at.len() as u16).to_be_bytes());
            for p in at {
                out.extend_from_slice(&p.to_be_bytes());
            }
        }
        out
    }

    /// `tsvector`'s text form (what PostgreSQL prints), for tests and for reading.
    #[cfg(test)]
    fn text(&self) -> String {
        let mut out = String::new();
        for (lexeme, at) in self.entries() {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push('\'');
            out.push_str(&lexeme.replace('\'', "''"));
            out.push_str("':");
            for (k, p) in at.iter().enumerate() {
                if k > 0 {
                    out.push(',');
                }
                out.push_str(&(p & TS_MAX_POS).to_string());
                if let Some(w) = [None, Some('C'), Some('B'), Some('A')][usize::from(p >> 14)] {
                    out.push(w);
                }
            }
        }
        out
    }
}

/// A multiplicative hasher (FxHash's) for [`pg_doc`]'s per-document table.
#[derive(Clone, Copy, Default)]
struct FastHash;

impl std::hash::BuildHasher for FastHash {
    type Hasher = FxHasher;
    fn build_hasher(&self) -> FxHasher {
        FxHasher(0)
    }
}

struct FxHasher(u64);

impl FxHasher {
    fn mix(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl std::hash::Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.mix(u64::from_le_bytes(w));
        }
        for &b in chunks.remainder() {
            self.mix(u64::from(b));
        }
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// Indexes what writers left noted, in a transaction of its own (SQLite: the companion's
/// steps, then the notes it passed are collected), when there is anything.
async fn catch_up(store: &crate::Store) -> Result<(), StoreError> {
    while store.index_noted(CATCH_UP_NOTES).await? > 0 {}
    store.collect_noted().await?;
    Ok(())
}

/// Notes indexed per transaction when a search catches up.
const CATCH_UP_NOTES: u64 = 2_000;

/// Searches the local database, best match first (newest first when the query has no words).
///
/// Ranking is bounded so a very common word does not rank every message that has it. SQLite:
/// FTS5 ranks by bm25 the newest max(500, 10 × `limit`) matches (rowid order, found without
/// ranking), which are joined with the emails, filtered and their phrases checked; should
/// fewer than `limit` pass, the next older matches are taken in growing windows
/// (`fts_ranked`), each candidate checked once. PostgreSQL (where ranking
/// reads each match's stored tsvector): the newest max(500, 10 × `limit`) matches that pass the
/// filters are ranked by `ts_rank`; when a query matches more than that, older matches are not
/// ranked (recent mail first, which is what a mail search wants of a word found everywhere).
pub async fn search(
    store: &crate::Store,
    account: Option<AccountId>,
    q: &Query,
    limit: u64,
) -> Result<Vec<Hit>, StoreError> {
    catch_up(store).await?;
    let pg = store.backend() == crate::Backend::Postgres;
    // SQLite: the index's pool, which sees the mail database attached (read only here).
    let index = store.search_conn();
    let bound = candidates(limit);
    // PostgreSQL: a query matching many documents walks the newest mail instead of the index.
    let estimate = if pg && !q.terms.is_empty() {
        pg_estimate(index, &tsquery(&q.terms)).await?
    } else {
        0
    };
    let walked = if estimate >= PG_COMMON {
        pg_walk(index, account, q, limit, bound, estimate, PG_WALK).await?
    } else {
        None
    };
    let ranked = match walked {
        Some(r) => r,
        None if pg && !q.terms.is_empty() => {
            // Few matches, or a walk that would read more mail than the index holds
            // matches: the index's matches, all of them. Read through the index even when
            // the planner expects many (a phrase is estimated as its words together):
            // rechecking 14,408 documents holding both words of a phrase took 105 ms from
            // the index's bitmap, 150-220 ms by the sequential scan it chose.
            use sea_orm::TransactionTrait;
            let txn = index.begin().await?;
            txn.execute_unprepared("SET LOCAL enable_seqscan = off")
                .await?;
            let r = ranked_ids(&txn, account, q, limit, Some(bound), None).await?;
            txn.commit().await?;
            r
        }
        None => ranked_ids(index, account, q, limit, Some(bound), None).await?,
    };
    let c = store.conn();
    let ids: Vec<EmailId> = ranked.iter().map(|(id, _)| *id).collect();
    let mut summaries = emails::summaries_by_ids(c, &ids).await?;
    let all_words: Vec<&str> = q
        .terms
        .iter()
        .flat_map(|t| t.words.iter().map(String::as_str))
        .collect();
    let mut out = Vec::with_capacity(ranked.len());
    for (id, score) in ranked {
        let Some(summary) = summaries.remove(&id) else {
            continue;
        };
        let body = crate::bodies::get(c, id).await?.and_then(|b| b.text);
        let snippet = snippet(
            body.as_deref(),
            summary.email.preview.as_deref(),
            &all_words,
        );
        out.push(Hit {
            summary,
            score,
            snippet,
        });
    }
    Ok(out)
}

/// The filters on `e` (emails) every query shares.
fn push_filters(sql: &mut Sql, account: Option<AccountId>, q: &Query) {
    push_filters_but(sql, account, q, false);
}

/// Only mail that is in some mailbox (a queued permanent delete keeps its row, unlisted), on
/// `alias`'s `id`.
fn push_listed(sql: &mut Sql, alias: &str) {
    sql.push(&format!(
        " AND EXISTS (SELECT 1 FROM email_mailboxes em WHERE em.email_id = {alias}.id)"
    ));
}

/// [`push_filters`], leaving out the check that the email is in some mailbox when
/// `defer_listed` and no `in:` names one: the caller tests it ([`push_listed`]) on fewer rows
/// (a walk, on its matches only: nearly every email is listed, and testing each walked one
/// was a fifth of a walk).
fn push_filters_but(sql: &mut Sql, account: Option<AccountId>, q: &Query, defer_listed: bool) {
    if let Some(a) = account {
        sql.push(" AND e.account_id = ").bind(a.0);
    }
    match &q.mailbox {
        Some(m) => push_in_mailbox(sql, m),
        None if !defer_listed => push_listed(sql, "e"),
        None => {}
    }
    push_flags_and_dates(sql, q);
}

/// In the mailbox `in:` names (`name`, matched against names and roles).
fn push_in_mailbox(sql: &mut Sql, name: &str) {
    // Not correlated with the email (a membership names its own account's mailbox), so the
    // database evaluates the mailbox list once, not once per candidate.
    sql.push(" AND EXISTS (SELECT 1 FROM email_mailboxes em WHERE em.email_id = e.id")
        .push(" AND em.mailbox_id IN (SELECT m.id FROM mailboxes m WHERE (lower(m.name) = ")
        .bind(name.to_lowercase())
        .push(" OR m.role = ")
        .bind(name.to_lowercase())
        .push(")))");
}

/// The flag and date filters.
fn push_flags_and_dates(sql: &mut Sql, q: &Query) {
    if let Some(s) = q.seen {
        sql.push(" AND e.seen = ").bind(s);
    }
    if let Some(f) = q.flagged {
        sql.push(" AND e.flagged = ").bind(f);
    }
    if q.has_attachment {
        sql.push(" AND e.has_attachment = ").bind(true);
    }
    if let Some(t) = q.before {
        sql.push(" AND e.received_at < ").bind(t);
    }
    if let Some(t) = q.after {
        sql.push(" AND e.received_at >= ").bind(t);
    }
}

/// PostgreSQL: a query's documents past which walking the newest mail, testing each
/// document, beats reading every match from the GIN index and sorting them by date. At
/// 100,000 messages a match read, joined and sorted costs ~8 µs and a document walked ~9 µs;
/// a word in 5,000 documents finds 500 (the ranked bound) within ~10,000 walked.
const PG_COMMON: i64 = 5_000;
/// PostgreSQL: how many emails a walk tests first (~40 ms at 100,000 messages); later windows
/// are sized by the matches found ([`pg_walk`]).
const PG_WALK: i64 = 8_000;

/// PostgreSQL: how many documents the query is expected to match, as the planner estimates it
/// from the lexemes' statistics (`EXPLAIN`, nothing read; the store analyses `email_search`
/// as a first sync grows it; a phrase is estimated as its words together). Counting the
/// matches instead let the planner scan the table for a rare word (~1 s at 100,000). Without
/// statistics the estimate is small, which keeps the GIN index.
async fn pg_estimate<C: ConnectionTrait>(c: &C, tsq: &str) -> Result<i64, StoreError> {
    // A literal, not a parameter, so the estimate is for these lexemes (the text is made of
    // words of letters and digits, `_` and the quotes `tsquery` adds; doubled for SQL).
    let stmt = Statement::from_string(
        c.get_database_backend(),
        format!(
            "EXPLAIN (FORMAT JSON) SELECT 1 FROM email_search WHERE doc @@ CAST('{}' AS tsquery)",
            tsq.replace('\'', "''")
        ),
    );
    let Some(row) = c.query_one_raw(stmt).await? else {
        return Ok(0);
    };
    let plan: serde_json::Value = match row.try_get_by_index::<serde_json::Value>(0) {
        Ok(v) => v,
        Err(_) => serde_json::from_str(&row.try_get_by_index::<String>(0)?)
            .map_err(|e| StoreError::json("EXPLAIN", e))?,
    };
    let rows = plan[0]["Plan"]["Plan Rows"].as_f64().unwrap_or(0.0);
    // A count of rows: in range, and the cast saturates.
    Ok(rows as i64)
}

/// PostgreSQL: where a walk window starts, the email before which it takes the newest ones
/// (`received_at`, id), none for the newest of all.
type Edge = Option<(DateTime<Utc>, i64)>;

/// PostgreSQL: the best `limit` matches of a query found in many documents, by walking the
/// mail that passes the filters newest first, testing each document, in windows: the newest
/// `first` emails ([`PG_WALK`]), then as many as the matches found so far say are needed
/// for the rest (half as many again; as many as were walked when none matched; at least a
/// quarter of `first`), until `limit` match or all were walked. Each window ranks at most
/// what is left of `bound`, so the matches ranked are the newest `bound` ones, as with the
/// index. A phrase of two common words (GIN keeps no positions) matches rarely among the
/// documents holding both: at 100,000 messages 275 of 21,787 for one, so the newest 8,000
/// emails held 22 and it read and checked all 21,787 from the index (~260 ms); a second
/// window of ~15,000 finds the rest.
///
/// None when the next window would cost more than reading the index's `estimate` matches:
/// reading a match costs about as much as walking an email.
async fn pg_walk<C: ConnectionTrait>(
    c: &C,
    account: Option<AccountId>,
    q: &Query,
    limit: u64,
    bound: i64,
    estimate: i64,
    first: i64,
) -> Result<Option<Vec<(EmailId, f64)>>, StoreError> {
    let mut found: Vec<(EmailId, f64)> = Vec::new();
    let mut below: Edge = None;
    let mut size = first.max(1);
    let mut walked = 0i64;
    let want = i64::try_from(limit).unwrap_or(i64::MAX);
    loop {
        let left = bound.saturating_sub(i64::try_from(found.len()).unwrap_or(i64::MAX));
        let window = Walk { below, size };
        found.extend(ranked_ids(c, account, q, limit, Some(left), Some(window)).await?);
        walked = walked.saturating_add(size);
        let got = i64::try_from(found.len()).unwrap_or(i64::MAX);
        if got >= want {
            break;
        }
        let next = if got == 0 {
            walked
        } else {
            // (want - got) more at the rate got / walked, and half as many again (with a
            // quarter, one window in five or so fell a match or two short).
            let need = (want - got).saturating_mul(walked) / got;
            need.saturating_add(need / 2)
        }
        .max(first / 4)
        .max(1);
        // The index would read `estimate` matches afresh. Once some matched, the next window
        // is what is left to walk, against that; while none did, what the walk will have
        // cost in all (so a phrase found nowhere costs at most about twice the index).
        let cost = if got == 0 {
            walked.saturating_add(next)
        } else {
            next
        };
        if cost > estimate {
            return Ok(None);
        }
        // Where this window ended; none when it held the last of the mail.
        match pg_walk_edge(c, account, q, below, size).await? {
            Some(edge) => below = Some(edge),
            None => break,
        }
        size = next;
    }
    // Stable: equal scores keep the newer window first.
    found.sort_by(|a, b| b.1.total_cmp(&a.1));
    found.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    Ok(Some(found))
}

/// PostgreSQL: the oldest email of the walk window of `size` emails before `below` (the
/// start of the next window), or none when fewer than `size` are left.
async fn pg_walk_edge<C: ConnectionTrait>(
    c: &C,
    account: Option<AccountId>,
    q: &Query,
    below: Edge,
    size: i64,
) -> Result<Edge, StoreError> {
    let mut sql = Sql::new(c.get_database_backend());
    sql.push("SELECT e.received_at AS at, e.id AS id FROM emails e WHERE 1 = 1");
    // The same emails as a walk window's.
    push_filters_but(&mut sql, account, q, true);
    push_below(&mut sql, below);
    sql.push(" ORDER BY e.received_at DESC, e.id DESC LIMIT 1 OFFSET ")
        .bind(size.saturating_sub(1));
    Ok(match c.query_one_raw(sql.build()).await? {
        Some(r) => Some((
            r.try_get::<DateTime<Utc>>("", "at")?,
            r.try_get::<i64>("", "id")?,
        )),
        None => None,
    })
}

/// Keeps the emails older than `below` in walk order (by arrival, then id).
fn push_below(sql: &mut Sql, below: Edge) {
    if let Some((at, id)) = below {
        // The first condition alone is what the (account, received_at) index can seek to.
        sql.push(" AND e.received_at <= ")
            .bind(at)
            .push(" AND (e.received_at < ")
            .bind(at)
            .push(" OR e.id < ")
            .bind(id)
            .push(")");
    }
}

/// PostgreSQL: one window of a walk ([`pg_walk`]).
#[derive(Clone, Copy)]
struct Walk {
    below: Edge,
    size: i64,
}

/// PostgreSQL: closes the candidates `c` (ids and dates) and ranks them by `ts_rank`.
fn rank_candidates(sql: &mut Sql, tsq: String) {
    sql.push(") SELECT e.id AS id, CAST(ts_rank(s.doc, CAST(")
        .bind(tsq)
        .push(
            " AS tsquery)) AS DOUBLE PRECISION) AS score FROM c e \
             JOIN email_search s ON s.email_id = e.id WHERE 1 = 1",
        );
}

/// SQLite: the ids and scores of the best `limit` matches of a text query, from the newest
/// matches (by rowid, arrival order) in windows: the newest `first`, then as many again, then
/// twice as many each time, until `limit` matches passed the filters and phrase checks or
/// every match was seen. Each window is ranked by bm25 on its own (FTS5 ranks only the rowids
/// in it; bm25's statistics are the whole index's, so scores compare across windows) and only
/// its candidates are checked, once: a phrase of common words, whose candidates are checked
/// against their text ([`push_phrases`]), costs what finding `limit` of them costs, not a
/// fixed 16-fold widening. Best score first; ties keep the newer window's order.
async fn fts_ranked<C: ConnectionTrait>(
    c: &C,
    account: Option<AccountId>,
    q: &Query,
    limit: u64,
    first: i64,
) -> Result<Vec<(EmailId, f64)>, StoreError> {
    let m = fts5_match(&q.terms);
    let mut found: Vec<(EmailId, f64)> = Vec::new();
    // The window's upper end (exclusive); none for the newest.
    let mut below: Option<i64> = None;
    let mut size = first.max(1);
    let mut windows = 0u32;
    loop {
        // Where the window ends: the `size`-th match below it, or none (all the rest).
        let mut edge = Sql::new(c.get_database_backend());
        edge.push("SELECT rowid AS id FROM email_fts WHERE email_fts MATCH ")
            .bind(m.clone());
        if let Some(b) = below {
            edge.push(" AND rowid < ").bind(b);
        }
        edge.push(" ORDER BY rowid DESC LIMIT 1 OFFSET ")
            .bind(size - 1);
        let lowest = match c.query_one_raw(edge.build()).await? {
            Some(r) => Some(r.try_get::<i64>("", "id")?),
            None => None,
        };
        // bm25 weights per column: subject, sender, recipients, body (FTS5's rank is
        // lower-is-better, so negated). FTS5 sorts the window's matches by rank itself and
        // they are looked up in emails in that order (CROSS JOIN keeps that order of work).
        let mut sql = Sql::new(c.get_database_backend());
        sql.push(
            "SELECT e.id AS id, f.score AS score FROM (SELECT rowid AS rid, -rank AS score \
             FROM email_fts WHERE email_fts MATCH ",
        )
        .bind(m.clone());
        if let Some(b) = below {
            sql.push(" AND rowid < ").bind(b);
        }
        if let Some(l) = lowest {
            sql.push(" AND rowid >= ").bind(l);
        }
        sql.push(
            " AND rank MATCH 'bm25(4.0, 2.0, 2.0, 1.0)' ORDER BY rank) f \
                  CROSS JOIN emails e WHERE e.id = f.rid",
        );
        push_filters(&mut sql, account, q);
        push_phrases(&mut sql, q);
        sql.push(" ORDER BY score DESC, e.received_at DESC, e.id DESC LIMIT ")
            .bind(i64::try_from(limit).unwrap_or(i64::MAX));
        for r in c.query_all_raw(sql.build()).await? {
            found.push((
                EmailId(r.try_get::<i64>("", "id")?),
                r.try_get::<f64>("", "score")?,
            ));
        }
        windows += 1;
        match lowest {
            Some(l) if (found.len() as u64) < limit => {
                below = Some(l);
                if windows > 1 {
                    size = size.saturating_mul(2);
                }
            }
            _ => break,
        }
    }
    // Stable: equal scores keep the newer window first.
    found.sort_by(|a, b| b.1.total_cmp(&a.1));
    found.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    Ok(found)
}

/// The ids and scores of the best `limit` matches; `bound` limits the candidates ranked;
/// `walk` (PostgreSQL) takes them from one window of the newest mail instead of the index.
async fn ranked_ids<C: ConnectionTrait>(
    c: &C,
    account: Option<AccountId>,
    q: &Query,
    limit: u64,
    bound: Option<i64>,
    walk: Option<Walk>,
) -> Result<Vec<(EmailId, f64)>, StoreError> {
    let mut sql = Sql::new(c.get_database_backend());
    let pg = sql.is_postgres();
    let text = !q.terms.is_empty();
    match (text, pg, walk) {
        (true, false, _) => {
            return fts_ranked(c, account, q, limit, bound.unwrap_or(i64::MAX)).await;
        }
        (true, true, Some(walk)) => {
            // The window's emails that pass the filters, newest first, each document tested
            // in turn (a subquery per row, so the planner cannot trade the walk for the GIN
            // index), until `bound` match.
            let tsq = tsquery(&q.terms);
            sql.push("WITH w AS (SELECT e.id, e.received_at FROM emails e WHERE 1 = 1");
            push_filters_but(&mut sql, account, q, true);
            push_below(&mut sql, walk.below);
            sql.push(" ORDER BY e.received_at DESC, e.id DESC LIMIT ")
                .bind(walk.size)
                .push("), c AS (SELECT w.id, w.received_at FROM w WHERE (SELECT s.doc @@ CAST(")
                .bind(tsq.clone())
                .push(" AS tsquery) FROM email_search s WHERE s.email_id = w.id)");
            if q.mailbox.is_none() {
                push_listed(&mut sql, "w");
            }
            sql.push(" ORDER BY w.received_at DESC, w.id DESC LIMIT ")
                .bind(bound.unwrap_or(i64::MAX));
            rank_candidates(&mut sql, tsq);
        }
        (true, true, None) => {
            // The matches come from the GIN index first (materialised, so the planner cannot
            // walk emails by date testing each document instead: [`search`] decided that
            // there are few, or that a walk would read more); the newest `bound` of them that
            // pass the filters are ranked.
            let tsq = tsquery(&q.terms);
            sql.push(
                "WITH m AS MATERIALIZED (SELECT email_id FROM email_search \
                 WHERE doc @@ CAST(",
            )
            .bind(tsq.clone())
            .push(" AS tsquery)), c AS (SELECT e.id, e.received_at FROM m JOIN emails e ON e.id = m.email_id WHERE 1 = 1");
            push_filters(&mut sql, account, q);
            sql.push(" ORDER BY e.received_at DESC, e.id DESC LIMIT ")
                .bind(bound.unwrap_or(i64::MAX));
            rank_candidates(&mut sql, tsq);
        }
        (false, _, _) => {
            sql.push(
                "SELECT e.id AS id, CAST(0 AS DOUBLE PRECISION) AS score FROM emails e WHERE 1 = 1",
            );
            push_filters(&mut sql, account, q);
        }
    }
    if text {
        sql.push(" ORDER BY score DESC, e.received_at DESC, e.id DESC LIMIT ");
    } else {
        sql.push(" ORDER BY e.received_at DESC, e.id DESC LIMIT ");
    }
    sql.bind(i64::try_from(limit).unwrap_or(i64::MAX));
    let rows = c.query_all_raw(sql.build()).await?;
    let mut ranked = Vec::with_capacity(rows.len());
    for r in rows {
        ranked.push((
            EmailId(r.try_get::<i64>("", "id")?),
            r.try_get::<f64>("", "score")?,
        ));
    }
    Ok(ranked)
}

/// Up to ~120 characters of the body around the first query word found, else the preview.
pub fn snippet(body: Option<&str>, preview: Option<&str>, words: &[&str]) -> Option<String> {
    if let Some(b) = body {
        let lower = b.to_lowercase();
        // Positions in `lower` line up with `b` only when lowering keeps byte lengths; fall
        // back to the start of the body otherwise.
        let same = lower.len() == b.len();
        let at = if same {
            words.iter().filter_map(|w| lower.find(w)).min()
        } else {
            None
        };
        let start = at.map_or(0, |p| p.saturating_sub(50));
        let start = (0..=start)
            .rev()
            .find(|i| b.is_char_boundary(*i))
            .unwrap_or(0);
        let piece: String = b[start..].chars().take(120).collect();
        let piece = piece.split_whitespace().collect::<Vec<_>>().join(" ");
        if !piece.is_empty() {
            return Some(if start > 0 {
                format!("…{piece}")
            } else {
                piece
            });
        }
    }
    preview.map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(field: Field, w: &[&str]) -> Term {
        Term {
            field,
            words: w.iter().map(|s| (*s).to_owned()).collect(),
            text: w.join(" "),
        }
    }

    #[test]
    fn parses_the_language() -> Result<(), StoreError> {
        let q = parse(
            r#"budget "next quarter" from:alice@example.org to:"Bob Smith" subject:Plan in:Archive is:unread is:flagged has:attachment before:2026-02-01 after:2026-01-01"#,
        )?;
        assert_eq!(
            q.terms,
            vec![
                t(Field::Any, &["budget"]),
                t(Field::Any, &["next", "quarter"]),
                Term {
                    text: "alice@example.org".into(),
                    ..t(Field::From, &["alice", "example", "org"])
                },
                Term {
                    text: "Bob Smith".into(),
                    ..t(Field::To, &["bob", "smith"])
                },
                Term {
                    text: "Plan".into(),
                    ..t(Field::Subject, &["plan"])
                },
            ]
        );
        assert_eq!(q.mailbox.as_deref(), Some("Archive"));
        assert_eq!(q.seen, Some(false));
        assert_eq!(q.flagged, Some(true));
        assert!(q.has_attachment);
        assert_eq!(
            q.before.map(|d| d.to_rfc3339()).as_deref(),
            Some("2026-02-01T00:00:00+00:00")
        );
        assert_eq!(
            q.after.map(|d| d.to_rfc3339()).as_deref(),
            Some("2026-01-01T00:00:00+00:00")
        );
        // A colon after digits is text, not an operator.
        assert_eq!(
            parse("10:30")?.terms,
            vec![Term {
                text: "10:30".into(),
                ..t(Field::Any, &["10", "30"])
            }]
        );
        Ok(())
    }

    #[test]
    fn bad_queries_are_one_line_errors() {
        for (q, want) in [
            ("", "empty query"),
            ("   ", "empty query"),
            ("\"open phrase", "unterminated quote"),
            ("foo:bar", "unknown operator foo:"),
            ("is:weird", "unknown is:weird"),
            ("before:yesterday", "before: expects a date"),
            ("from:", "needs a word"),
            ("in:", "in: needs a value"),
        ] {
            match parse(q) {
                Ok(p) => panic!("{q:?} parsed as {p:?}"),
                Err(e) => {
                    let s = e.to_string();
                    assert!(s.contains(want), "{q:?}: {s}");
                    assert!(!s.contains('\n'), "{q:?}: one line");
                }
            }
        }
    }

    #[test]
    fn backend_queries() -> Result<(), StoreError> {
        let q = parse(r#"hello "big plan" from:ann subject:x"#)?;
        assert_eq!(
            fts5_match(&q.terms),
            r#""hello" AND ("big" AND "plan") AND sender : "ann" AND subject : "x""#
        );
        // A phrase: its words in order.
        assert_eq!(
            tsquery(&q.terms),
            "('hello') & ('big' <-> 'plan') & ('ann':B) & ('x':A)"
        );
        let q = parse(r#"subject:"a big plan""#)?;
        assert_eq!(tsquery(&q.terms), "('a':A <-> 'big':A <-> 'plan':A)");
        Ok(())
    }

    #[test]
    fn pg_documents_number_words_across_fields() {
        let doc = pg_doc(&DocText {
            subject: Some("Big Plan"),
            from: Some(r#"[{"name":"Ann","email":"ann@x.org"}]"#),
            to: Some("[]"),
            cc: None,
            bcc: Some("not json"),
            body: Some("the big plan, it's big"),
        });
        assert_eq!(
            doc.text(),
            "'ann':3B,4B 'big':1A,8,12 'it':10 'org':6B 'plan':2A,9 's':11 'the':7 'x':5B"
        );
        // The binary form: 8 lexemes; "ann" at 3 and 4 weighted B (2 << 14); ...
        let bin = doc.binary();
        assert_eq!(&bin[..4], &8i32.to_be_bytes());
        assert_eq!(
            &bin[4..16],
            &[b'a', b'n', b'n', 0, 0, 2, 0x80, 3, 0x80, 4, b'b', b'i']
        );
        assert_eq!(&bin[bin.len() - 6..], &[b'x', 0, 0, 1, 0x80, 5]);
        fn body_only(body: &str) -> String {
            pg_doc(&DocText {
                subject: None,
                from: None,
                to: None,
                cc: None,
                bcc: None,
                body: Some(body),
            })
            .text()
        }
        // The lexemes are the words queries are made of, whatever the script.
        let text = "İstanbul ΣΟΦΟΣ Straße ÉTÉ naïve Ǆemal x²";
        let doc = body_only(text);
        let mut want = words(text);
        want.sort();
        let lexemes = |doc: &str| -> Vec<String> {
            doc.split(' ')
                .map(|l| {
                    l.split("':")
                        .next()
                        .unwrap_or("")
                        .trim_start_matches('\'')
                        .to_owned()
                })
                .collect()
        };
        assert_eq!(lexemes(&doc), want);
        // Positions stop at PostgreSQL's highest; a lexeme keeps at most 255 of them.
        let doc = body_only(&"w ".repeat(20_000));
        let w = doc.split(' ').find(|l| l.starts_with("'w':")).unwrap_or("");
        assert_eq!(w.matches(',').count(), usize::from(TS_MAX_POSITIONS) - 1);
        let doc = pg_doc(&DocText {
            subject: Some(&"x".repeat(3_000)),
            from: None,
            to: None,
            cc: None,
            bcc: None,
            body: Some(&format!("{} y", "z ".repeat(20_000))),
        })
        .text();
        assert!(
            doc.starts_with("'y':16383 'z':1,2,"),
            "{}",
            &doc[doc.len().saturating_sub(2_000)..]
        );
        assert!(!doc.contains("xxx"), "a word over 2,047 bytes is left out");
    }

    #[test]
    fn snippets_centre_on_a_word() {
        let body = format!("{} the budget is here {}", "a ".repeat(60), "z ".repeat(60));
        let s = snippet(Some(&body), None, &["budget"]).unwrap_or_default();
        assert!(s.starts_with('…') && s.contains("budget"), "{s}");
        assert_eq!(snippet(None, Some("pv"), &["x"]).as_deref(), Some("pv"));
    }

    /// A walk over real PostgreSQL: 40 emails, one a minute; "alpha beta" in a row only in
    /// the five oldest, both words apart in all the others. With windows of 8, 8, 16 and 32
    /// emails the phrase is found in the fourth; capped by the estimate it gives way to the
    /// index; past the oldest email it ends with what it found; a window after one that found
    /// some is sized by them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_walk_goes_on_in_windows_until_enough_match() -> Result<(), Box<dyn std::error::Error>>
    {
        use crate::emails::{EmailUpsert, Membership};
        use chrono::TimeZone;
        let db = crate::testing::TempDb::postgres().await?;
        let store = &db.store;
        let c = store.conn();
        let a = crate::testing::account(c, "walk", crate::BodyPolicy::All).await?;
        let inbox = crate::mailboxes::upsert(
            c,
            a.id,
            &[crate::mailboxes::MailboxUpsert {
                remote_id: "INBOX".into(),
                name: "INBOX".into(),
                selectable: true,
                ..Default::default()
            }],
        )
        .await?[0]
            .id;
        // Email 41, the newest, holds the phrase but is in no mailbox: never a result.
        let batch: Vec<EmailUpsert> = (1..=41i64)
            .map(|uid| {
                let at = Utc.timestamp_opt(1_700_000_000 + uid * 60, 0).single();
                let mut u = EmailUpsert::new(format!("1/1/{uid}"), at.unwrap_or_default());
                u.subject = Some(if uid <= 5 || uid == 41 {
                    format!("alpha beta {uid}")
                } else {
                    format!("beta alpha {uid}")
                });
                if uid <= 40 {
                    u.mailboxes = vec![Membership {
                        mailbox_id: inbox,
                        uidvalidity: Some(1),
                        uid: Some(uid),
                        modseq: None,
                    }];
                }
                u
            })
            .collect();
        crate::emails::upsert_batch(c, a.id, &batch).await?;
        while store.index_noted(1_000).await? > 0 {}
        let q = parse("\"alpha beta\"")?;
        let ids = |found: &[(EmailId, f64)]| -> Vec<i64> {
            let mut n: Vec<i64> = found.iter().map(|(id, _)| id.0).collect();
            n.sort_unstable();
            n
        };
        let oldest: Vec<i64> = crate::emails::list(
            c,
            &crate::emails::EmailFilter {
                account: Some(a.id),
                ..Default::default()
            },
        )
        .await?
        .iter()
        .filter(|e| {
            e.email
                .subject
                .as_deref()
                .is_some_and(|s| s.starts_with("alpha"))
                && !e.mailboxes.is_empty()
        })
        .map(|e| e.email.id.0)
        .collect();
        assert_eq!(oldest.len(), 5);
        let mut oldest = oldest;
        oldest.sort_unstable();
        // Windows of 8, 8 and 16 find none (each next one as large as all walked before);
        // the fourth (32, allowed: 32 + 32 ≤ 64, the estimate) all five, each once.
        let walked = pg_walk(c, Some(a.id), &q, 5, 500, 64, 8).await?;
        assert_eq!(walked.as_deref().map(ids), Some(oldest.clone()));
        // Capped: after 8 + 8 emails the next window (16) would pass the estimate of 20.
        assert_eq!(pg_walk(c, Some(a.id), &q, 5, 500, 20, 8).await?, None);
        // More asked for than match: the walk ends at the oldest email with all it found.
        let walked = pg_walk(c, Some(a.id), &q, 10, 500, 1_000, 8).await?;
        assert_eq!(walked.as_deref().map(ids), Some(oldest.clone()));
        // "beta alpha" is in emails 6 to 40: the first window (8: 34 to 41) finds 7 of the 20
        // asked for, so the second is 13 × 8 / 7 (14) and half as many again: 21, which finds
        // the rest; it is weighed alone against the index's estimate (what was walked is
        // spent): 21 walks on, 20 leaves it to the index.
        let many = parse("\"beta alpha\"")?;
        let walked = pg_walk(c, Some(a.id), &many, 20, 500, 21, 8).await?;
        assert_eq!(walked.map(|w| w.len()), Some(20));
        assert_eq!(pg_walk(c, Some(a.id), &many, 20, 500, 20, 8).await?, None);
        // What the index gives for the same query.
        let indexed = ranked_ids(c, Some(a.id), &q, 10, Some(500), None).await?;
        assert_eq!(ids(&indexed), oldest);
        db.cleanup().await?;
        Ok(())
    }
}
