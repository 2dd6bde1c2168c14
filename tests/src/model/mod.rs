//! The project's own model test (issue #11 "Nothing lost"): random interleavings of engine
//! actions (flag, seen, move, delete, undo, send, sync, draft save/update/discard/send,
//! mailbox create/rename/delete through the outbox) and another client's IMAP changes
//! (flags, move, copy, expunge, append, mailbox create/delete/rename) on a real server, then an
//! oracle: the database equals the server and no local intent is lost. `ops` generates and
//! prints the operations, `runner` executes them per backend and shrinks failures, `oracle`
//! judges.

pub mod ops;
pub mod oracle;
pub mod runner;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

pub use ops::{Op, format_ops, generate, generate_full, generate_with, nest, parse_ops};
pub use runner::{Backend, Outcome, Setup, StoreKind, run_ops, shrink};

/// One seed's result, printable.
#[derive(Debug)]
pub struct SeedReport {
    /// The backend.
    pub backend: Backend,
    /// How the engine was set up.
    pub setup: Setup,
    /// The seed (`None` for a replayed list).
    pub seed: Option<u64>,
    /// Number of operations run.
    pub ops: usize,
    /// What the run found (`Err`: the harness could not run it).
    pub outcome: Result<Outcome, String>,
    /// How long the run took (without shrinking).
    pub elapsed: Duration,
    /// The shrunk failing list and what it found, for a divergent run.
    pub shrunk: Option<(Vec<Op>, Vec<String>)>,
}

impl SeedReport {
    /// Whether the oracle found a divergence (or the harness failed).
    pub fn failed(&self) -> bool {
        match &self.outcome {
            Ok(o) => !o.divergences.is_empty(),
            Err(_) => true,
        }
    }

    /// A multi-line description; for a failure, with a copy-pastable replay line.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let seed = self.seed.map(|s| s.to_string()).unwrap_or("replay".into());
        let _ = write!(
            s,
            "{}{} seed {seed} ({} ops, {:.1} s): ",
            self.backend.name(),
            self.setup.label(),
            self.ops,
            self.elapsed.as_secs_f64()
        );
        match &self.outcome {
            Err(e) => {
                let _ = writeln!(s, "HARNESS ERROR: {e}");
            }
            Ok(o) if o.divergences.is_empty() => {
                let _ = writeln!(
                    s,
                    "ok ({} converge cycles, {} intents, {} checked, {} messages{})",
                    o.converge_cycles,
                    o.intents.0,
                    o.intents.1,
                    o.server_messages,
                    if o.cuts > 0 {
                        format!(
                            ", {} cycles cut ({} killed, {} paused)",
                            o.cuts, o.crashes, o.pauses
                        )
                    } else {
                        String::new()
                    }
                );
            }
            Ok(o) => {
                let _ = writeln!(s, "DIVERGED {:?}", o.kinds());
                for d in &o.divergences {
                    let _ = writeln!(s, "    {d}");
                }
                for n in &o.notes {
                    let _ = writeln!(s, "    note: {n}");
                }
                if let Some((ops, found)) = &self.shrunk {
                    let _ = writeln!(s, "  shrunk to {} ops:", ops.len());
                    for f in found {
                        let _ = writeln!(s, "    {f}");
                    }
                    let _ = writeln!(
                        s,
                        "  replay: cargo xtask model --backend {}{} --replay '{}'",
                        self.backend.name(),
                        self.setup.options(),
                        format_ops(ops)
                    );
                }
            }
        }
        s
    }
}

/// Runs one list (seeded or replayed); on divergence shrinks within `shrink_budget`.
pub async fn run_one(
    backend: Backend,
    setup: Setup,
    seed: Option<u64>,
    ops: Vec<Op>,
    shrink_budget: Duration,
) -> SeedReport {
    let start = Instant::now();
    let outcome = run_ops(backend, setup, &ops)
        .await
        .map_err(|e| format!("{e:#}"));
    let elapsed = start.elapsed();
    let mut shrunk = None;
    if let Ok(o) = &outcome
        && !o.divergences.is_empty()
        && !shrink_budget.is_zero()
    {
        let (small, found) =
            shrink(backend, setup, ops.clone(), &o.kinds(), shrink_budget, 1).await;
        let found = found
            .map(|f| f.divergences.iter().map(ToString::to_string).collect())
            .unwrap_or_else(|| vec!["(no smaller failing list found)".into()]);
        shrunk = Some((small, found));
    }
    SeedReport {
        backend,
        setup,
        seed,
        ops: ops.len(),
        outcome,
        elapsed,
        shrunk,
    }
}
