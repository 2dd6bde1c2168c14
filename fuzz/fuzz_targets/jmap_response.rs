//! Fuzz target: a JMAP API response and a Session resource through the client's decoding.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    mailsync_jmap_client::fuzzing::api_response(data);
    mailsync_jmap_client::fuzzing::session(data);
});
