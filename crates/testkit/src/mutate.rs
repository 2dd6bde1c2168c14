//! A small mutation fuzzer for CI smoke runs: random byte-level mutations of seed inputs fed
//! to a decoding function for a bounded time, without cargo-fuzz or an instrumented build.
//! Coverage-guided fuzzing stays behind `cargo xtask fuzz`; this catches the shallow panics
//! on every CI run and reports the input that caused one.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::generator::Rng;

/// What a smoke run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SmokeReport {
    /// Inputs tried.
    pub executions: u64,
    /// The generator's seed (give it to [`smoke_with_seed`] to replay).
    pub seed: u64,
}

/// How long a CI smoke may run per target: `MAILSYNC_FUZZ_SMOKE_SECS`, default 10 s.
pub fn smoke_time() -> Duration {
    Duration::from_secs(env_u64("MAILSYNC_FUZZ_SMOKE_SECS", 10))
}

fn env_u64(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Reads every file of `dir` (the fuzz target's seed corpus).
pub fn seeds_from(dir: &Path) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read(e.path()).ok())
        .collect();
    out.sort();
    out
}

/// Runs `target` on the same sequence of mutations of `seeds` every time (generator seed
/// `MAILSYNC_FUZZ_SMOKE_SEED`, default 1; `MAILSYNC_FUZZ_SMOKE_EXECS` inputs, default
/// 20,000), stopping early after `time`: a CI run is reproducible, and a slower machine only
/// runs a prefix of the same inputs. Exploring new inputs is `cargo xtask fuzz`'s job (or set
/// another seed). Panics, naming the seed and the input (hex), when `target` panics on one.
pub fn smoke(seeds: &[Vec<u8>], time: Duration, target: impl Fn(&[u8])) -> SmokeReport {
    let seed = env_u64("MAILSYNC_FUZZ_SMOKE_SEED", 1);
    let execs = env_u64("MAILSYNC_FUZZ_SMOKE_EXECS", 20_000);
    smoke_with_seed(seeds, time, execs, seed, target)
}

/// [`smoke`] with a given generator seed and number of inputs.
pub fn smoke_with_seed(
    seeds: &[Vec<u8>],
    time: Duration,
    max_executions: u64,
    seed: u64,
    target: impl Fn(&[u8]),
) -> SmokeReport {
    assert!(!seeds.is_empty(), "no seed inputs");
    let mut rng = Rng(seed);
    let start = Instant::now();
    let mut executions = 0u64;
    while executions < max_executions && start.elapsed() < time {
        let input = mutate(&mut rng, seeds);
        executions += 1;
        if catch_unwind(AssertUnwindSafe(|| target(&input))).is_err() {
            let hex: String = input.iter().map(|b| format!("{b:02x}")).collect();
            panic!("panic on a mutated input (seed {seed}, execution {executions}): {hex}");
        }
    }
    SmokeReport { executions, seed }
}

/// Bytes that matter to the parsers: IMAP and JSON syntax, line ends, literals.
const INTERESTING: &[&[u8]] = &[
    b"\r\n",
    b"{",
    b"}",
    b"(",
    b")",
    b"\"",
    b"\\",
    b"[",
    b"]",
    b"NIL",
    b" ",
    b"{4294967295}\r\n",
    b"{0}\r\n",
    b"*",
    b"null",
    b"-1",
    b"1e309",
    b"\xff",
    b"\xc3",
    b"\x00",
    b"=?utf-8?b?",
    b"--",
    b"\r\n\r\n",
    b"Content-Type: multipart/mixed; boundary=",
];

/// One input: a seed with 1-8 mutations (flip, insert, delete, duplicate a span, splice
/// another seed, insert a token).
fn mutate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut v = seeds
        .get(rng.below(seeds.len()))
        .cloned()
        .unwrap_or_default();
    for _ in 0..=rng.below(8) {
        let at = rng.below(v.len() + 1);
        match rng.below(6) {
            0 if !v.is_empty() => {
                let i = at.min(v.len() - 1);
                if let Some(b) = v.get_mut(i) {
                    *b ^= 1 << rng.below(8);
                }
            }
            1 => v.insert(at, rng.next() as u8),
            2 if !v.is_empty() => {
                let end = (at + 1 + rng.below(16)).min(v.len());
                v.drain(at.min(end)..end);
            }
            3 if !v.is_empty() => {
                let end = (at + 1 + rng.below(64)).min(v.len());
                let span: Vec<u8> = v.get(at.min(end)..end).unwrap_or_default().to_vec();
                v.splice(at..at, span);
            }
            4 => {
                let other = seeds
                    .get(rng.below(seeds.len()))
                    .cloned()
                    .unwrap_or_default();
                let from = rng.below(other.len() + 1);
                v.truncate(at);
                v.extend_from_slice(other.get(from..).unwrap_or_default());
            }
            _ => {
                let t = INTERESTING
                    .get(rng.below(INTERESTING.len()))
                    .copied()
                    .unwrap_or_default();
                v.splice(at..at, t.iter().copied());
            }
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_target_is_reported_with_its_input() {
        let seeds = vec![b"abc".to_vec()];
        let r = catch_unwind(|| {
            smoke_with_seed(&seeds, Duration::from_secs(5), u64::MAX, 7, |b| {
                assert!(!b.contains(&b'{'), "found a brace");
            })
        });
        let msg = r
            .err()
            .and_then(|e| e.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        assert!(msg.contains("seed 7"), "{msg}");
    }

    #[test]
    fn runs_for_the_time_or_the_count_given() {
        let r = smoke_with_seed(
            &[b"x".to_vec()],
            Duration::from_millis(50),
            u64::MAX,
            1,
            |_| {},
        );
        assert!(r.executions > 100);
        let r = smoke_with_seed(&[b"x".to_vec()], Duration::from_secs(5), 500, 1, |_| {});
        assert_eq!(r.executions, 500);
    }
}
