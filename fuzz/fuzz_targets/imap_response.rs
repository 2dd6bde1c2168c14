//! Fuzz target: IMAP server bytes through the nesting guard, imap-proto, the conversion, and a
//! FETCH into a store row.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    mailsync_imap_sync::fuzzing::imap_responses(data);
});
