//! Integration tests of mailsync-jmap-client: golden JSON files, scripted HTTP servers
//! (spec-following SSE, error pages) and the real Cyrus started by `cargo xtask servers up`.

mod golden;
mod support;
mod cyrus;
mod servers;
mod fake;
mod http;
