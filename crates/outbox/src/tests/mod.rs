//! Unit tests (see the submodules).
