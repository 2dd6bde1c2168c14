//! End-to-end tests of mailsync across crates (see `tests/`), the small helper binaries they
//! drive as separate processes (`src/bin/`), e.g. a sync that a test kills at random moments,
//! and the model test's library (`model`).

pub mod model;
