//! SQLite FTS5 extensions for mailsync's search index: the `mailsync_distinct` tokenizer, which
//! hands FTS5 each distinct word of a document once, and the `mailsync_phrase` SQL function,
//! which checks a phrase against a document's text; [`install`] registers both on every SQLite
//! connection the process opens afterwards.
//!
//! Why a tokenizer of our own: FTS5's work per document is per token (hashing each one into
//! its pending terms, writing its position, then flushing and merging those lists), and mail
//! repeats its words: in the search bench's corpus a body's distinct words are a fifth of its
//! words. Indexing each distinct word once is most of FTS5's work saved, and the index is the
//! part of a first sync with bodies that SQLite's writer and the sync do not need
//! (docs/benchmarks.md). The tokenizer wraps FTS5's own `unicode61` (same words, same case
//! and diacritic folding), so queries and documents still agree.
//!
//! The price: FTS5's positions no longer say where words stand, so FTS5 must not be asked for
//! a phrase of several words. The store asks it for the phrase's words (a superset) and keeps
//! the candidates for which `mailsync_phrase(phrase, column, ...)` is 1: that function splits
//! the phrase and each column's text with the same `unicode61` tokenizer (the same options)
//! and looks for the phrase's words in a row within one column, as FTS5 would have.
//!
//! This is the one crate of the workspace with `unsafe` code: SQLite's C interface (the FTS5
//! tokenizer API and application-defined functions) has no safe Rust binding in the SQLite
//! that sqlx links. Each `unsafe` block says what makes it sound.

use std::ffi::{c_char, c_int, c_void};
use std::fmt;
use std::ptr::null_mut;
use std::sync::OnceLock;

use libsqlite3_sys as ffi;

/// The tokenizer's name, as an FTS5 table's `tokenize` option names it.
pub const TOKENIZER: &str = "mailsync_distinct";

/// The `tokenize` option of an FTS5 table using the tokenizer: `unicode61`'s options follow its
/// name, and [`PHRASE_FUNCTION`] splits text with the same ones.
pub const TOKENIZE: &str = "mailsync_distinct remove_diacritics 2";

/// `mailsync_phrase(phrase, text, ...)`: 1 when one of the texts holds the phrase's words in a
/// row (as split by `unicode61 remove_diacritics 2`), else 0. NULL texts hold nothing.
pub const PHRASE_FUNCTION: &str = "mailsync_phrase";

/// The options [`PHRASE_FUNCTION`] gives `unicode61`: [`TOKENIZE`]'s, after the name.
const UNICODE61_ARGS: [&std::ffi::CStr; 2] = [c"remove_diacritics", c"2"];

/// SQLite could not register the extensions with the connections it opens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallError {
    /// SQLite's result code.
    pub code: i32,
}

impl fmt::Display for InstallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "could not register mailsync's SQLite search extensions (SQLite result code {})",
            self.code
        )
    }
}

impl std::error::Error for InstallError {}

/// Registers the tokenizer and the phrase function with every SQLite connection opened from
/// now on, in this process (SQLite's auto-extension list; connections already open do not
/// get them). Idempotent and cheap after the first call.
pub fn install() -> Result<(), InstallError> {
    static RESULT: OnceLock<c_int> = OnceLock::new();
    let code = *RESULT.get_or_init(|| {
        // SAFETY: `init` has the signature SQLite calls auto-extensions with, and stays valid
        // for the life of the process (it is a plain function).
        unsafe { ffi::sqlite3_auto_extension(Some(init)) }
    });
    if code == ffi::SQLITE_OK {
        Ok(())
    } else {
        Err(InstallError { code })
    }
}

/// SQLite's callback for each new connection. A SQLite without FTS5 gets nothing (a table
/// naming the tokenizer then fails with "no such tokenizer", a clear error); any other failure
/// fails the connection's opening, as SQLite does for an extension that cannot load.
unsafe extern "C" fn init(
    db: *mut ffi::sqlite3,
    _err: *mut *mut c_char,
    _api: *const ffi::sqlite3_api_routines,
) -> c_int {
    // SAFETY: SQLite calls this with the connection it is opening, on the opening thread.
    match unsafe { register(db) } {
        Ok(()) => ffi::SQLITE_OK,
        Err(code) => code,
    }
}

/// The `fts5_api` of `db`, or null when SQLite has no FTS5 (the documented way: `SELECT
/// fts5(?1)` with a pointer bound to be filled in). Errors are SQLite's result codes: a
/// database that cannot be read now (busy past the timeout, not a database) fails the
/// connection's opening rather than leaving it without the tokenizer.
///
/// # Safety
/// `db` is an open connection used by this thread only for the call's duration.
unsafe fn fts5_api(db: *mut ffi::sqlite3) -> Result<*mut ffi::fts5_api, c_int> {
    let mut api: *mut ffi::fts5_api = null_mut();
    let mut stmt: *mut ffi::sqlite3_stmt = null_mut();
    // SAFETY: `db` is open (caller); the SQL is NUL-terminated; `stmt` is finalized below
    // whether or not preparing it succeeded (finalizing null is a no-op); the bound pointer
    // outlives the statement, and FTS5 writes an `fts5_api*` through it, as its type says.
    let rc = unsafe {
        let mut rc =
            ffi::sqlite3_prepare_v2(db, c"SELECT fts5(?1)".as_ptr(), -1, &mut stmt, null_mut());
        if rc == ffi::SQLITE_OK {
            ffi::sqlite3_bind_pointer(
                stmt,
                1,
                (&raw mut api).cast(),
                c"fts5_api_ptr".as_ptr(),
                None,
            );
            rc = ffi::sqlite3_step(stmt);
        }
        ffi::sqlite3_finalize(stmt);
        rc
    };
    match rc {
        ffi::SQLITE_ROW | ffi::SQLITE_DONE => Ok(api),
        // "no such function: fts5": a SQLite built without FTS5.
        ffi::SQLITE_ERROR => Ok(null_mut()),
        rc => Err(rc),
    }
}

/// How long registering waits for a lock on the database (see [`register`]), in ms.
const REGISTER_BUSY_MS: c_int = 10_000;

/// `unicode61`'s methods and the context FTS5 created them with (per connection).
#[derive(Clone, Copy)]
struct Base {
    create: CreateFn,
    delete: DeleteFn,
    tokenize: TokenizeFn,
    user: *mut c_void,
}

type CreateFn = unsafe extern "C" fn(
    *mut c_void,
    *mut *const c_char,
    c_int,
    *mut *mut ffi::Fts5Tokenizer,
) -> c_int;
type DeleteFn = unsafe extern "C" fn(*mut ffi::Fts5Tokenizer);
type TokenCallback =
    unsafe extern "C" fn(*mut c_void, c_int, *const c_char, c_int, c_int, c_int) -> c_int;
type TokenizeFn = unsafe extern "C" fn(
    *mut ffi::Fts5Tokenizer,
    *mut c_void,
    c_int,
    *const c_char,
    c_int,
    Option<TokenCallback>,
) -> c_int;

impl Base {
    /// A `unicode61` tokenizer with `args`.
    ///
    /// # Safety
    /// `self` came from `xFindTokenizer` of a connection still open.
    unsafe fn instance(&self, args: &[*const c_char]) -> Result<*mut ffi::Fts5Tokenizer, c_int> {
        let mut args = args.to_vec();
        let n = c_int::try_from(args.len()).map_err(|_| ffi::SQLITE_ERROR)?;
        let mut out: *mut ffi::Fts5Tokenizer = null_mut();
        // SAFETY: FTS5's own xCreate with its own context, NUL-terminated arguments that it
        // copies (it does not keep the array), and an out pointer it fills on success.
        let rc = unsafe { (self.create)(self.user, args.as_mut_ptr(), n, &mut out) };
        if rc == ffi::SQLITE_OK && !out.is_null() {
            Ok(out)
        } else {
            Err(if rc == ffi::SQLITE_OK {
                ffi::SQLITE_ERROR
            } else {
                rc
            })
        }
    }
}

/// Registers the tokenizer and the phrase function on `db`.
///
/// # Safety
/// `db` is a connection being opened, used by this thread only.
unsafe fn register(db: *mut ffi::sqlite3) -> Result<(), c_int> {
    // Looking FTS5 up prepares a statement, which reads the schema, which waits for a read
    // lock: another process may be recovering the database's WAL at that moment (SQLite's
    // SQLITE_BUSY_RECOVERY, seen when a CLI command opened the database beside a daemon).
    // The connection has no busy timeout yet while it is being opened (sqlx sets its own
    // right after, replacing this one), so wait here rather than fail the opening at once.
    // SAFETY: `db` is the connection being opened (this function's contract).
    unsafe { ffi::sqlite3_busy_timeout(db, REGISTER_BUSY_MS) };
    // SAFETY: as this function's contract.
    let api = unsafe { fts5_api(db) }?;
    if api.is_null() {
        return Ok(());
    }
    // SAFETY: FTS5 returned a valid `fts5_api` that lives as long as the connection; version 2
    // and up have the v1 members read here.
    let (find, create_tokenizer) = unsafe {
        if (*api).iVersion < 2 {
            return Ok(());
        }
        ((*api).xFindTokenizer, (*api).xCreateTokenizer)
    };
    let (Some(find), Some(create_tokenizer)) = (find, create_tokenizer) else {
        return Err(ffi::SQLITE_ERROR);
    };
    let mut user: *mut c_void = null_mut();
    let mut methods = ffi::fts5_tokenizer {
        xCreate: None,
        xDelete: None,
        xTokenize: None,
    };
    // SAFETY: the documented lookup of a built-in tokenizer; FTS5 fills both out values.
    let rc = unsafe { find(api, c"unicode61".as_ptr(), &mut user, &mut methods) };
    if rc != ffi::SQLITE_OK {
        return Err(rc);
    }
    let (Some(create), Some(delete), Some(tokenize)) =
        (methods.xCreate, methods.xDelete, methods.xTokenize)
    else {
        return Err(ffi::SQLITE_ERROR);
    };
    let base = Base {
        create,
        delete,
        tokenize,
        user,
    };

    let mut ours = ffi::fts5_tokenizer {
        xCreate: Some(distinct_create),
        xDelete: Some(distinct_delete),
        xTokenize: Some(distinct_tokenize),
    };
    let context = Box::into_raw(Box::new(base));
    let name = c"mailsync_distinct";
    // SAFETY: FTS5 copies the methods struct and keeps `context` until the connection closes,
    // then calls `drop_boxed::<Base>` on it. It does not call the destructor when registering
    // fails, so the box is freed here then.
    let rc = unsafe {
        create_tokenizer(
            api,
            name.as_ptr(),
            context.cast(),
            &mut ours,
            Some(drop_boxed::<Base>),
        )
    };
    if rc != ffi::SQLITE_OK {
        // SAFETY: `context` came from Box::into_raw above and FTS5 did not take it.
        drop(unsafe { Box::from_raw(context) });
        return Err(rc);
    }

    let args: Vec<*const c_char> = UNICODE61_ARGS.iter().map(|a| a.as_ptr()).collect();
    // SAFETY: `base` came from this connection's FTS5, which is open.
    let inner = unsafe { base.instance(&args) }?;
    let phrase = Box::into_raw(Box::new(Phrase {
        base,
        inner,
        words: Vec::new(),
        state: Vec::new(),
        lower: Vec::new(),
    }));
    // SAFETY: `phrase_function` matches xFunc's signature and reads its context as `Phrase`;
    // SQLite calls `drop_phrase` when the function is replaced or the connection closes, and
    // also when registering fails, so the box is never freed twice.
    let rc = unsafe {
        ffi::sqlite3_create_function_v2(
            db,
            c"mailsync_phrase".as_ptr(),
            -1,
            ffi::SQLITE_UTF8 | ffi::SQLITE_DETERMINISTIC,
            phrase.cast(),
            Some(phrase_function),
            None,
            None,
            Some(drop_phrase),
        )
    };
    if rc != ffi::SQLITE_OK {
        return Err(rc);
    }
    Ok(())
}

/// Frees a context made with `Box::into_raw(Box::new(T))`.
unsafe extern "C" fn drop_boxed<T>(p: *mut c_void) {
    if !p.is_null() {
        // SAFETY: SQLite hands back the pointer it was given, once.
        drop(unsafe { Box::from_raw(p.cast::<T>()) });
    }
}

/// A `mailsync_distinct` tokenizer: a `unicode61` one and the set of words seen in the
/// document being tokenized.
struct Distinct {
    base: Base,
    inner: *mut ffi::Fts5Tokenizer,
    seen: Seen,
}

unsafe extern "C" fn distinct_create(
    context: *mut c_void,
    args: *mut *const c_char,
    n: c_int,
    out: *mut *mut ffi::Fts5Tokenizer,
) -> c_int {
    if context.is_null() || out.is_null() {
        return ffi::SQLITE_MISUSE;
    }
    // SAFETY: the context is the `Base` registered with the tokenizer (alive while the
    // connection is); `args` holds `n` NUL-terminated strings (FTS5's contract), passed on to
    // `unicode61`, which copies what it keeps.
    unsafe {
        let base = *context.cast::<Base>();
        let mut inner: *mut ffi::Fts5Tokenizer = null_mut();
        let rc = (base.create)(base.user, args, n, &mut inner);
        if rc != ffi::SQLITE_OK {
            return rc;
        }
        let this = Box::new(Distinct {
            base,
            inner,
            seen: Seen::default(),
        });
        *out = Box::into_raw(this).cast();
    }
    ffi::SQLITE_OK
}

unsafe extern "C" fn distinct_delete(p: *mut ffi::Fts5Tokenizer) {
    if p.is_null() {
        return;
    }
    // SAFETY: `p` is the box `distinct_create` made, handed back once by FTS5.
    let this = unsafe { Box::from_raw(p.cast::<Distinct>()) };
    // SAFETY: the inner tokenizer was made by `unicode61`'s xCreate and is deleted once.
    unsafe { (this.base.delete)(this.inner) };
}

/// What [`forward`] needs: FTS5's callback and context, and which words to pass on.
struct Forward<'a> {
    context: *mut c_void,
    token: TokenCallback,
    filter: Filter<'a>,
}

/// Which of `unicode61`'s words reach FTS5.
enum Filter<'a> {
    /// A document's: each word the first time it is seen.
    Distinct(&'a mut Seen),
    /// A query string's: its first word only (true once it went by).
    First(bool),
}

unsafe extern "C" fn distinct_tokenize(
    p: *mut ffi::Fts5Tokenizer,
    context: *mut c_void,
    flags: c_int,
    text: *const c_char,
    n: c_int,
    token: Option<TokenCallback>,
) -> c_int {
    if p.is_null() {
        return ffi::SQLITE_MISUSE;
    }
    // SAFETY: `p` is a `Distinct` made by `distinct_create`; FTS5 does not tokenize with one
    // tokenizer on two threads at once, nor re-enter it from the callback.
    let this = unsafe { &mut *p.cast::<Distinct>() };
    let Some(token) = token else {
        return ffi::SQLITE_MISUSE;
    };
    let filter = if flags & ffi::FTS5_TOKENIZE_QUERY != 0 {
        // A string of a query is one word of the store's (phrases are asked for as their
        // words). Where `unicode61` splits it (combining marks are not word characters to it:
        // Devanagari's vowel signs, say), its pieces' positions in the index mean nothing, so
        // only the first piece is asked for: a superset, which the store checks with
        // `mailsync_phrase` (any word outside ASCII is checked).
        Filter::First(false)
    } else if flags & ffi::FTS5_TOKENIZE_DOCUMENT == 0 {
        // FTS5's auxiliary functions get every word, in place.
        // SAFETY: FTS5's own arguments, passed on to `unicode61`.
        return unsafe { (this.base.tokenize)(this.inner, context, flags, text, n, Some(token)) };
    } else {
        this.seen.clear();
        Filter::Distinct(&mut this.seen)
    };
    let mut fwd = Forward {
        context,
        token,
        filter,
    };
    // SAFETY: `fwd` outlives the call, which is the only user of the pointer to it.
    unsafe {
        (this.base.tokenize)(
            this.inner,
            (&raw mut fwd).cast(),
            flags,
            text,
            n,
            Some(forward),
        )
    }
}

/// `unicode61`'s callback under this tokenizer: passes a word on to FTS5 as [`Forward`]'s
/// filter says.
unsafe extern "C" fn forward(
    context: *mut c_void,
    tflags: c_int,
    token: *const c_char,
    n: c_int,
    start: c_int,
    end: c_int,
) -> c_int {
    // SAFETY: the context is the `Forward` of `distinct_tokenize`, alive during tokenizing;
    // the token is `n` bytes FTS5 owns for the call.
    unsafe {
        let fwd = &mut *context.cast::<Forward<'_>>();
        let colocated = tflags & ffi::FTS5_TOKEN_COLOCATED != 0;
        let pass = match &mut fwd.filter {
            Filter::Distinct(seen) => colocated || seen.insert(bytes(token.cast(), n)),
            Filter::First(done) => {
                let pass = !*done;
                *done |= !colocated;
                pass
            }
        };
        if !pass {
            return ffi::SQLITE_OK;
        }
        (fwd.token)(fwd.context, tflags, token, n, start, end)
    }
}

/// `n` bytes at `p` (none for a null pointer or a length below 1).
///
/// # Safety
/// A non-null `p` points to at least `n` readable bytes that outlive the slice.
unsafe fn bytes<'a>(p: *const u8, n: c_int) -> &'a [u8] {
    match usize::try_from(n) {
        Ok(len) if len > 0 && !p.is_null() => {
            // SAFETY: as this function's contract.
            unsafe { std::slice::from_raw_parts(p, len) }
        }
        _ => &[],
    }
}

/// The distinct words of one document: an open-addressing set over a byte arena, reused from
/// one document to the next (no allocation per word once it has grown).
#[derive(Default)]
struct Seen {
    /// 0: empty; else 1 + an index into `entries`. A power of two long.
    slots: Vec<u32>,
    /// Hash, start and length in `bytes`, and the slot holding the entry.
    entries: Vec<(u64, usize, usize, usize)>,
    bytes: Vec<u8>,
}

/// Past this many bytes of words or this many slots, [`Seen::clear`] frees the set's memory
/// instead of keeping it for the next document: one huge body (a text part of megabytes)
/// must not pin its buffers to the connection for good.
const SEEN_KEEP_BYTES: usize = 1 << 20;
const SEEN_KEEP_SLOTS: usize = 1 << 16;

impl Seen {
    fn clear(&mut self) {
        if self.bytes.capacity() > SEEN_KEEP_BYTES || self.slots.len() > SEEN_KEEP_SLOTS {
            *self = Seen::default();
            return;
        }
        for e in &self.entries {
            if let Some(s) = self.slots.get_mut(e.3) {
                *s = 0;
            }
        }
        self.entries.clear();
        self.bytes.clear();
    }

    /// Adds `word`; false when it was there already.
    fn insert(&mut self, word: &[u8]) -> bool {
        if (self.entries.len() + 1) * 2 > self.slots.len() {
            self.grow();
        }
        let h = hash(word);
        let mask = self.slots.len() - 1;
        let mut i = (h as usize) & mask;
        loop {
            match self.slots.get(i).copied() {
                Some(0) | None => break,
                Some(s) => {
                    let found = self
                        .entries
                        .get(s as usize - 1)
                        .is_some_and(|e| e.0 == h && self.bytes.get(e.1..e.1 + e.2) == Some(word));
                    if found {
                        return false;
                    }
                }
            }
            i = (i + 1) & mask;
        }
        let start = self.bytes.len();
        self.bytes.extend_from_slice(word);
        self.entries.push((h, start, word.len(), i));
        if let Some(s) = self.slots.get_mut(i) {
            // At most half the slots are used, so the count fits (slots are counted in u32s).
            *s = u32::try_from(self.entries.len()).unwrap_or(u32::MAX);
        }
        true
    }

    /// Doubles the slots (256 at first) and places the entries again.
    fn grow(&mut self) {
        let len = (self.slots.len() * 2).max(256);
        self.slots.clear();
        self.slots.resize(len, 0);
        let mask = len - 1;
        for (n, e) in self.entries.iter_mut().enumerate() {
            let mut i = (e.0 as usize) & mask;
            while self.slots.get(i).is_some_and(|s| *s != 0) {
                i = (i + 1) & mask;
            }
            if let Some(s) = self.slots.get_mut(i) {
                *s = u32::try_from(n + 1).unwrap_or(u32::MAX);
            }
            e.3 = i;
        }
    }
}

/// A fast hash of a short byte string (FxHash's multiply-rotate over 8-byte words, with a
/// final mix so that the low bits, which pick the slot, depend on every byte).
fn hash(word: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h = word.len() as u64;
    let mut chunks = word.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut w = [0u8; 8];
        for (d, s) in w.iter_mut().zip(rest) {
            *d = *s;
        }
        h = (h.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^ (h >> 33)
}

/// The phrase function's context: a `unicode61` tokenizer with [`UNICODE61_ARGS`], and
/// buffers reused from one call to the next.
struct Phrase {
    base: Base,
    inner: *mut ffi::Fts5Tokenizer,
    /// The phrase's words.
    words: Vec<Vec<u8>>,
    /// [`Run::state`]'s buffer.
    state: Vec<bool>,
    /// An ASCII text in lower case ([`ascii_phrase`]).
    lower: Vec<u8>,
}

unsafe extern "C" fn drop_phrase(p: *mut c_void) {
    if p.is_null() {
        return;
    }
    // SAFETY: the box `register` made, handed back once by SQLite.
    let this = unsafe { Box::from_raw(p.cast::<Phrase>()) };
    // SAFETY: made by `unicode61`'s xCreate, deleted once.
    unsafe { (this.base.delete)(this.inner) };
}

/// What [`phrase_word`] does with each word `unicode61` finds.
enum Scan<'a> {
    /// The phrase's own: collects its words ([`Phrase::words`]).
    Collect(&'a mut Vec<Vec<u8>>),
    /// A text's: moves the runs of the phrase's words on.
    Match(Run<'a>),
}

/// A run of the phrase's words through a text (shift-and).
struct Run<'a> {
    words: &'a [Vec<u8>],
    /// `state[k]`: the last word read ends a run of the phrase's first `k` words.
    state: &'a mut [bool],
    /// Set once the phrase is found; [`phrase_word`] then stops the tokenizer with [`STOP`].
    found: bool,
}

/// What [`phrase_word`] returns to stop tokenizing once the phrase is found. Not an error, and
/// not relied on as a return value (`unicode61` turns `SQLITE_DONE` into `SQLITE_OK`): `found`
/// is.
const STOP: c_int = ffi::SQLITE_DONE;

/// `unicode61`'s callback for the phrase function: one word of the phrase or of a text, as the
/// [`Scan`] says.
unsafe extern "C" fn phrase_word(
    context: *mut c_void,
    tflags: c_int,
    token: *const c_char,
    n: c_int,
    _start: c_int,
    _end: c_int,
) -> c_int {
    if tflags & ffi::FTS5_TOKEN_COLOCATED != 0 {
        return ffi::SQLITE_OK;
    }
    // SAFETY: the context is `phrase_function`'s `Scan`, alive during the call; the token is
    // `n` bytes owned by FTS5 for the call.
    let (scan, word) = unsafe { (&mut *context.cast::<Scan<'_>>(), bytes(token.cast(), n)) };
    let run = match scan {
        Scan::Collect(words) => {
            words.push(word.to_vec());
            return ffi::SQLITE_OK;
        }
        Scan::Match(run) => run,
    };
    let len = run.words.len();
    for k in (1..=len).rev() {
        let before = run.state.get(k - 1).copied().unwrap_or(false);
        let same = run.words.get(k - 1).is_some_and(|w| w.as_slice() == word);
        if let Some(s) = run.state.get_mut(k) {
            *s = before && same;
        }
    }
    if run.state.get(len).copied().unwrap_or(false) {
        run.found = true;
        STOP
    } else {
        ffi::SQLITE_OK
    }
}

/// Whether `unicode61` takes an ASCII byte for part of a word: letters and digits (its
/// default categories, `L* N* Co`, hold no other ASCII character).
fn ascii_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

/// `unicode61`'s answer for an ASCII text and a phrase of ASCII words, without its tokenizer:
/// over ASCII its words are the runs of letters and digits, folded to lower case (diacritics
/// do not arise). The text is lowered into `lower`, the first word's occurrences are found
/// with a vectorised search, and the words after each are compared. Checking a 5 KB body this
/// way costs a fraction of tokenizing it through FTS5's callbacks, which is what a phrase of
/// common words does for thousands of candidates.
fn ascii_phrase(text: &[u8], words: &[Vec<u8>], lower: &mut Vec<u8>) -> bool {
    let Some(first) = words.first() else {
        return false;
    };
    lower.clear();
    lower.extend(text.iter().map(u8::to_ascii_lowercase));
    let lower = lower.as_slice();
    'occurrence: for start in memchr::memmem::find_iter(lower, first) {
        if start > 0 && lower.get(start - 1).copied().is_some_and(ascii_word_byte) {
            continue;
        }
        let mut at = start;
        for (i, w) in words.iter().enumerate() {
            if i > 0 {
                // To the next word: at least one separator (the previous word ended here).
                while lower.get(at).is_some_and(|b| !ascii_word_byte(*b)) {
                    at += 1;
                }
            }
            let end = at + w.len();
            if lower.get(at..end) != Some(w.as_slice())
                || lower.get(end).copied().is_some_and(ascii_word_byte)
            {
                continue 'occurrence;
            }
            at = end;
        }
        return true;
    }
    false
}

/// The text of a SQL value (none for NULL).
///
/// # Safety
/// `v` is a protected value of the current call.
unsafe fn value_text(v: *mut ffi::sqlite3_value) -> (*const c_char, c_int) {
    // SAFETY: as this function's contract; `sqlite3_value_bytes` after `sqlite3_value_text`
    // gives the length of that text.
    unsafe {
        let p = ffi::sqlite3_value_text(v);
        let n = ffi::sqlite3_value_bytes(v);
        (p.cast(), if p.is_null() { 0 } else { n })
    }
}

unsafe extern "C" fn phrase_function(
    ctx: *mut ffi::sqlite3_context,
    argc: c_int,
    argv: *mut *mut ffi::sqlite3_value,
) {
    // SAFETY: the function's context is the `Phrase` `register` made; a connection runs one
    // statement step at a time, so it is not used twice at once. `argv` holds `argc` values.
    unsafe {
        let this = &mut *ffi::sqlite3_user_data(ctx).cast::<Phrase>();
        let args: &[*mut ffi::sqlite3_value] = match usize::try_from(argc) {
            Ok(n) if n > 0 && !argv.is_null() => std::slice::from_raw_parts(argv, n),
            _ => &[],
        };
        let Some((phrase, texts)) = args.split_first() else {
            ffi::sqlite3_result_error(ctx, c"mailsync_phrase needs a phrase".as_ptr(), -1);
            return;
        };
        this.words.clear();
        let (p, n) = value_text(*phrase);
        let mut scan = Scan::Collect(&mut this.words);
        let rc = (this.base.tokenize)(
            this.inner,
            (&raw mut scan).cast(),
            ffi::FTS5_TOKENIZE_QUERY,
            p,
            n,
            Some(phrase_word),
        );
        if rc != ffi::SQLITE_OK {
            ffi::sqlite3_result_error_code(ctx, rc);
            return;
        }
        if this.words.is_empty() {
            // A phrase without words is found nowhere (FTS5 matches no document with it).
            ffi::sqlite3_result_int(ctx, 0);
            return;
        }
        let ascii = this.words.iter().all(|w| w.is_ascii());
        for text in texts {
            let (p, n) = value_text(*text);
            if n == 0 {
                continue;
            }
            let t = bytes(p.cast(), n);
            if ascii && t.is_ascii() {
                if ascii_phrase(t, &this.words, &mut this.lower) {
                    ffi::sqlite3_result_int(ctx, 1);
                    return;
                }
                continue;
            }
            this.state.clear();
            this.state.resize(this.words.len() + 1, false);
            // A run of no words ends everywhere.
            if let Some(s) = this.state.first_mut() {
                *s = true;
            }
            let mut scan = Scan::Match(Run {
                words: &this.words,
                state: &mut this.state,
                found: false,
            });
            let rc = (this.base.tokenize)(
                this.inner,
                (&raw mut scan).cast(),
                ffi::FTS5_TOKENIZE_DOCUMENT,
                p,
                n,
                Some(phrase_word),
            );
            if matches!(scan, Scan::Match(Run { found: true, .. })) {
                ffi::sqlite3_result_int(ctx, 1);
                return;
            }
            if rc != ffi::SQLITE_OK && rc != STOP {
                ffi::sqlite3_result_error_code(ctx, rc);
                return;
            }
        }
        ffi::sqlite3_result_int(ctx, 0);
    }
}

#[cfg(test)]
mod tests;
