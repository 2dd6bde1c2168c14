//! End-to-end tests of mailsync across crates (see `tests/`), and the small helper binaries they
//! drive as separate processes (`src/bin/`), e.g. a sync that a test kills at random moments.
