//! Fuzz target: a whole message through the MIME extraction of a body download.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    mailsync_imap_sync::fuzzing::mime_message(data);
});
