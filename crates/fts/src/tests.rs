//! Tests of the tokenizer and the phrase function on an in-memory SQLite, through SQL.

use super::*;

/// A connection opened after [`install`], and a few SQL helpers over the raw API.
struct Db(*mut ffi::sqlite3);

impl Db {
    fn open() -> Db {
        install().expect("install");
        let mut db = null_mut();
        // SAFETY: a new in-memory database; closed in Drop.
        let rc = unsafe {
            ffi::sqlite3_open_v2(
                c":memory:".as_ptr(),
                &mut db,
                ffi::SQLITE_OPEN_READWRITE | ffi::SQLITE_OPEN_CREATE,
                std::ptr::null(),
            )
        };
        assert_eq!(rc, ffi::SQLITE_OK);
        Db(db)
    }

    /// Runs `sql` with text parameters and returns every row's columns as text ("NULL" for
    /// NULL), or SQLite's error message.
    fn query(&self, sql: &str, params: &[&str]) -> Result<Vec<Vec<String>>, String> {
        let sql = std::ffi::CString::new(sql).expect("sql");
        let mut stmt = null_mut();
        // SAFETY: the connection is open; the statement is finalized before returning; bound
        // texts are copied by SQLite (SQLITE_TRANSIENT).
        unsafe {
            let rc = ffi::sqlite3_prepare_v2(self.0, sql.as_ptr(), -1, &mut stmt, null_mut());
            if rc != ffi::SQLITE_OK {
                return Err(self.error());
            }
            for (i, p) in params.iter().enumerate() {
                ffi::sqlite3_bind_text(
                    stmt,
                    c_int::try_from(i + 1).expect("index"),
                    p.as_ptr().cast(),
                    c_int::try_from(p.len()).expect("len"),
                    ffi::SQLITE_TRANSIENT(),
                );
            }
            let mut rows = Vec::new();
            loop {
                match ffi::sqlite3_step(stmt) {
                    ffi::SQLITE_ROW => {
                        let n = ffi::sqlite3_column_count(stmt);
                        let mut row = Vec::new();
                        for c in 0..n {
                            let p = ffi::sqlite3_column_text(stmt, c);
                            let len = ffi::sqlite3_column_bytes(stmt, c);
                            row.push(if p.is_null() {
                                "NULL".to_owned()
                            } else {
                                String::from_utf8_lossy(bytes(p, len)).into_owned()
                            });
                        }
                        rows.push(row);
                    }
                    ffi::SQLITE_DONE => break,
                    _ => {
                        let e = self.error();
                        ffi::sqlite3_finalize(stmt);
                        return Err(e);
                    }
                }
            }
            ffi::sqlite3_finalize(stmt);
            Ok(rows)
        }
    }

    fn run(&self, sql: &str, params: &[&str]) {
        if let Err(e) = self.query(sql, params) {
            panic!("{sql}: {e}");
        }
    }

    fn one(&self, sql: &str, params: &[&str]) -> String {
        match self.query(sql, params) {
            Ok(rows) => rows
                .first()
                .and_then(|r| r.first())
                .cloned()
                .unwrap_or_default(),
            Err(e) => panic!("{sql}: {e}"),
        }
    }

    fn error(&self) -> String {
        // SAFETY: the connection is open; the message is copied at once.
        unsafe {
            let p = ffi::sqlite3_errmsg(self.0);
            std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned()
        }
    }

    /// A contentless table like the store's, with the tokenizer.
    fn index(&self) {
        self.run(
            &format!(
                "CREATE VIRTUAL TABLE t USING fts5(subject, body, content='', \
                 contentless_delete=1, tokenize='{TOKENIZE}')"
            ),
            &[],
        );
        self.run("CREATE VIRTUAL TABLE v USING fts5vocab(t, 'row')", &[]);
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        // SAFETY: opened in `open`, closed once; every statement was finalized.
        unsafe { ffi::sqlite3_close(self.0) };
    }
}

#[test]
fn a_documents_words_are_indexed_once_each() {
    let db = Db::open();
    db.index();
    db.run(
        "INSERT INTO t (rowid, subject, body) VALUES (1, ?1, ?2)",
        &["Plan plan PLAN", "the big plan, the Été plan; the end"],
    );
    db.run(
        "INSERT INTO t (rowid, subject, body) VALUES (2, ?1, ?2)",
        &["other", "the plan"],
    );
    // Once per column of a document: "plan" in both columns of 1 and in 2's body.
    assert_eq!(db.one("SELECT cnt FROM v WHERE term = 'plan'", &[]), "3");
    assert_eq!(db.one("SELECT doc FROM v WHERE term = 'plan'", &[]), "2");
    assert_eq!(db.one("SELECT cnt FROM v WHERE term = 'the'", &[]), "2");
    // unicode61's folding is kept: case and diacritics.
    assert_eq!(db.one("SELECT cnt FROM v WHERE term = 'ete'", &[]), "1");
    // Queries find the words, whatever their case or accents.
    let ids = |q: &str| {
        db.query("SELECT rowid FROM t WHERE t MATCH ?1 ORDER BY rowid", &[q])
            .map(|rows| rows.into_iter().flatten().collect::<Vec<_>>())
    };
    assert_eq!(ids("PLAN"), Ok(vec!["1".to_owned(), "2".to_owned()]));
    assert_eq!(ids("ete AND end"), Ok(vec!["1".to_owned()]));
    assert_eq!(ids("subject : plan"), Ok(vec!["1".to_owned()]));
    assert_eq!(ids("pl*"), Ok(vec!["1".to_owned(), "2".to_owned()]));
    // Deleting a document (contentless_delete) removes its words.
    db.run("DELETE FROM t WHERE rowid = 1", &[]);
    assert_eq!(ids("ete"), Ok(vec![]));
    assert_eq!(ids("plan"), Ok(vec!["2".to_owned()]));
}

#[test]
fn a_document_of_many_distinct_words_keeps_all_of_them() {
    let db = Db::open();
    db.index();
    // More words than the set's first slots (256), repeated: each is indexed once.
    let words: Vec<String> = (0..5_000).map(|i| format!("w{i}x")).collect();
    let text = format!("{} {}", words.join(" "), words.join(" "));
    db.run(
        "INSERT INTO t (rowid, subject, body) VALUES (1, '', ?1)",
        &[&text],
    );
    assert_eq!(db.one("SELECT count(*) FROM v", &[]), "5000");
    assert_eq!(db.one("SELECT sum(cnt) FROM v", &[]), "5000");
    // The set is reused for the next document, empty.
    db.run(
        "INSERT INTO t (rowid, subject, body) VALUES (2, '', 'w7x w7x other')",
        &[],
    );
    assert_eq!(db.one("SELECT cnt FROM v WHERE term = 'w7x'", &[]), "2");
    assert_eq!(db.one("SELECT cnt FROM v WHERE term = 'other'", &[]), "1");
}

#[test]
fn the_phrase_function_finds_words_in_a_row_within_one_text() {
    let db = Db::open();
    let phrase = |p: &str, texts: &[&str]| {
        let marks: Vec<String> = (2..texts.len() + 2).map(|i| format!("?{i}")).collect();
        let mut params = vec![p];
        params.extend_from_slice(texts);
        db.one(
            &format!("SELECT mailsync_phrase(?1, {})", marks.join(", ")),
            &params,
        )
    };
    assert_eq!(phrase("big plan", &["the big plan"]), "1");
    assert_eq!(phrase("Big  PLAN", &["the big, plan"]), "1");
    assert_eq!(phrase("plan big", &["the big plan"]), "0");
    assert_eq!(phrase("big plan", &["big other plan"]), "0");
    // Not across two texts (columns).
    assert_eq!(phrase("plan the", &["big plan", "the end"]), "0");
    assert_eq!(phrase("the end", &["big plan", "the end"]), "1");
    // Overlapping starts: "a a b" in "a a a b".
    assert_eq!(phrase("a a b", &["x a a a b"]), "1");
    assert_eq!(phrase("a b a b c", &["a b a b a b c"]), "1");
    // unicode61's folding on both sides.
    assert_eq!(phrase("ete chaud", &["Un Été CHAUD"]), "1");
    assert_eq!(phrase("ann example", &["Ann <ann@example.org>"]), "1");
    // One word, NULLs, no words.
    assert_eq!(phrase("plan", &["the plan"]), "1");
    assert_eq!(
        db.one("SELECT mailsync_phrase('big plan', NULL, 'big plan')", &[]),
        "1"
    );
    assert_eq!(db.one("SELECT mailsync_phrase('big plan', NULL)", &[]), "0");
    assert_eq!(phrase(" ,; ", &["anything"]), "0");
    assert!(
        db.query("SELECT mailsync_phrase()", &[])
            .is_err_and(|e| e.contains("needs a phrase")),
    );
}

#[test]
fn the_set_of_seen_words_is_exact() {
    let mut s = Seen::default();
    for round in 0..3 {
        s.clear();
        for i in 0..2_000u32 {
            assert!(s.insert(format!("{i}").as_bytes()), "round {round}: {i}");
        }
        for i in 0..2_000u32 {
            assert!(!s.insert(format!("{i}").as_bytes()));
        }
        assert!(s.insert(b""));
        assert!(!s.insert(b""));
        assert!(s.insert("é".as_bytes()));
        assert_eq!(s.entries.len(), 2_002);
    }
    // A huge document's buffers are not kept for the next one.
    s.clear();
    for i in 0..100_000u32 {
        s.insert(format!("word{i}").as_bytes());
    }
    assert!(s.slots.len() > SEEN_KEEP_SLOTS);
    s.clear();
    assert_eq!((s.slots.len(), s.bytes.capacity()), (0, 0));
    assert!(s.insert(b"again") && !s.insert(b"again"));
}

/// The ASCII shortcut gives `unicode61`'s answer: checked against a plain model of its
/// words over ASCII (runs of letters and digits, lower case) on random texts and phrases.
#[test]
fn the_ascii_shortcut_agrees_with_unicode61s_words() {
    fn model(text: &[u8], words: &[Vec<u8>]) -> bool {
        let toks: Vec<Vec<u8>> = text
            .split(|b| !b.is_ascii_alphanumeric())
            .filter(|t| !t.is_empty())
            .map(|t| t.to_ascii_lowercase())
            .collect();
        toks.windows(words.len()).any(|w| w == words)
    }
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    let alphabet = b"abAB1 .-";
    let mut lower = Vec::new();
    let (mut found, mut missed) = (0, 0);
    for _ in 0..20_000 {
        let text: Vec<u8> = (0..next(24))
            .map(|_| alphabet[next(alphabet.len() as u64) as usize])
            .collect();
        let words: Vec<Vec<u8>> = (0..1 + next(3))
            .map(|_| (0..1 + next(2)).map(|_| b"ab1"[next(3) as usize]).collect())
            .collect();
        let want = model(&text, &words);
        assert_eq!(
            ascii_phrase(&text, &words, &mut lower),
            want,
            "{:?} in {:?}",
            words,
            String::from_utf8_lossy(&text)
        );
        if want {
            found += 1;
        } else {
            missed += 1;
        }
    }
    // Both answers were exercised.
    assert!(found > 1_000 && missed > 1_000, "{found} / {missed}");
}

/// Opening a connection waits for a lock another connection holds on the database, as
/// registering reads the schema before sqlx has set any busy timeout (a CLI command opening
/// the search index beside a daemon failed with "database is locked" without the wait).
#[test]
fn opening_waits_for_a_lock_held_elsewhere() {
    install().expect("install");
    let dir = std::env::temp_dir().join(format!("mailsync-fts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("locked.db");
    let _ = std::fs::remove_file(&path);
    let cpath = std::ffi::CString::new(path.to_str().expect("utf-8")).expect("path");
    let open = |p: &std::ffi::CStr| {
        let mut db = null_mut();
        // SAFETY: a file database opened here and closed by `Db`'s Drop.
        let rc = unsafe {
            ffi::sqlite3_open_v2(
                p.as_ptr(),
                &mut db,
                ffi::SQLITE_OPEN_READWRITE | ffi::SQLITE_OPEN_CREATE,
                std::ptr::null(),
            )
        };
        (rc, Db(db))
    };
    let (rc, holder) = open(&cpath);
    assert_eq!(rc, ffi::SQLITE_OK);
    holder.run("CREATE TABLE x (a)", &[]);
    holder.run("BEGIN EXCLUSIVE", &[]);
    holder.run("INSERT INTO x VALUES (1)", &[]);
    let p2 = cpath.clone();
    let opener = std::thread::spawn(move || {
        let started = std::time::Instant::now();
        let (rc, db) = open(&p2);
        let ok = db.one("SELECT count(*) FROM x", &[]);
        (rc, started.elapsed(), ok)
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    holder.run("COMMIT", &[]);
    let (rc, waited, count) = opener.join().expect("thread");
    assert_eq!(rc, ffi::SQLITE_OK, "opened once the lock was released");
    assert!(
        waited >= std::time::Duration::from_millis(200),
        "{waited:?}"
    );
    assert_eq!(count, "1");
    drop(holder);
    let _ = std::fs::remove_dir_all(&dir);
}
