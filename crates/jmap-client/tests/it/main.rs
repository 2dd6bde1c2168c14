//! Integration tests of mailsync-jmap-client: golden JSON files, scripted HTTP servers
//! (spec-following SSE, error pages) and the real Cyrus started by `cargo xtask servers up`.

mod cyrus;
mod fake;
mod golden;
mod http;
mod manage;
mod servers;
mod support;
