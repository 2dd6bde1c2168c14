//! Entry points for the fuzz targets (`fuzz/`): the decoding a client applies to bytes a
//! server sends, without a socket. Not a stable API.

use crate::method::{ChangesResponse, GetResponse, QueryResponse};
use crate::object::email::Email;
use crate::object::mailbox::Mailbox;
use crate::request::exec::ApiResponse;

/// Decodes an API response body as [`crate::Client::send`] does, then each method's
/// arguments as the typed responses the sync reads. Never panics.
pub fn api_response(bytes: &[u8]) {
    let Ok(api) = serde_json::from_slice::<ApiResponse>(bytes) else {
        return;
    };
    for (name, args, id) in api.method_responses {
        if name == "error" {
            let _ = crate::error::MethodError::from_arguments(&name, &id, &args);
            continue;
        }
        let _ = serde_json::from_value::<GetResponse<Email>>(args.clone());
        let _ = serde_json::from_value::<QueryResponse<Email>>(args.clone());
        let _ = serde_json::from_value::<ChangesResponse<Email>>(args.clone());
        let _ = serde_json::from_value::<GetResponse<Mailbox>>(args.clone());
    }
}

/// Parses a Session resource as the client does when it connects.
pub fn session(bytes: &[u8]) {
    if let Ok(url) = url::Url::parse("https://example.test/jmap/session") {
        let _ = crate::session::Session::parse(bytes, &url);
    }
}

#[cfg(test)]
mod tests {
    /// The CI fuzz smoke: mutations of the seed corpus for a few seconds
    /// (`MAILSYNC_FUZZ_SMOKE_SECS`, default 10), no cargo-fuzz needed (see testkit `mutate`).
    #[test]
    fn fuzz_smoke_mutations_do_not_panic() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/jmap_response");
        let seeds = mailsync_testkit::mutate::seeds_from(&dir);
        let r =
            mailsync_testkit::mutate::smoke(&seeds, mailsync_testkit::mutate::smoke_time(), |b| {
                super::api_response(b);
                super::session(b);
            });
        eprintln!(
            "jmap_response: {} executions, seed {}",
            r.executions, r.seed
        );
        assert!(r.executions > 0);
    }
}
