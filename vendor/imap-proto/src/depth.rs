//! mailsync patch: a bound on the parser's recursion (see PATCHES.md).
//!
//! The body-structure parsers recurse once per parenthesis level. Without a bound, a server
//! (or a misread that lands inside a string) can nest deep enough to overflow the thread's
//! stack, which aborts the process. The parse is synchronous, so a thread-local counter sees
//! exactly the current parse's nesting.

use std::cell::Cell;

use nom::error::{Error, ErrorKind};

/// The deepest nesting of body structures and body extensions parsed. Real messages nest a
/// few levels; each level costs tens of KiB of stack in a debug build.
pub const MAX_DEPTH: u32 = 32;

thread_local! {
    static DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// One level of nesting, released when dropped (on every exit of the parser).
pub(crate) struct Level(());

impl Drop for Level {
    fn drop(&mut self) {
        DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
    }
}

/// Enters one level, or fails the whole parse (`nom::Err::Failure`: no alternative is tried,
/// so nothing reads the rest of the input another way) when the bound is reached.
pub(crate) fn enter(i: &[u8]) -> Result<Level, nom::Err<Error<&[u8]>>> {
    DEPTH.with(|d| {
        let n = d.get();
        if n >= MAX_DEPTH {
            return Err(nom::Err::Failure(Error::new(i, ErrorKind::TooLarge)));
        }
        d.set(n + 1);
        Ok(Level(()))
    })
}

// Tested from mailsync (crates/imap-sync): the fuzz crash regressions and
// `a_bodystructure_hidden_from_the_nesting_count_is_refused_not_a_stack_overflow`.
