//! The operations of the model test, their generator from a seed (a small self-contained PRNG)
//! and their one-line text form (printed for a failing seed, parsed back for a replay).

use std::fmt;

/// The mailboxes the other client works in (messages are picked, moved and copied there).
pub const OTHER_MAILBOXES: &[&str] = &["INBOX", "Archive", "Trash", "A", "B", "C"];
/// The mailboxes the other client creates, deletes and renames.
pub const POOL: &[&str] = &["A", "B", "C"];
/// The names the engine creates and renames mailboxes to (overlapping the other client's, so
/// some creates are refused: the name exists on the server).
pub const ENGINE_POOL: &[&str] = &["B", "C", "E", "F"];

/// SplitMix64: tiny, fast, good enough to spread a seed over a few hundred draws.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x6d61_696c_7379_6e63)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// A pick index (resolved against the state at run time, modulo its size).
    pub fn pick(&mut self) -> u32 {
        (self.next_u64() % 1000) as u32
    }

    /// A coin flip.
    pub fn coin(&mut self) -> bool {
        self.next_u64() & 1 == 1
    }

    /// One of `items`.
    pub fn choose<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

/// A flag the model changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelFlag {
    /// `\Seen`.
    Seen,
    /// `\Flagged`.
    Flagged,
}

impl ModelFlag {
    fn word(self) -> &'static str {
        match self {
            Self::Seen => "seen",
            Self::Flagged => "flagged",
        }
    }

    /// The IMAP system flag.
    pub fn imap(self) -> &'static str {
        match self {
            Self::Seen => "\\Seen",
            Self::Flagged => "\\Flagged",
        }
    }
}

/// One step of a run. Emails and mailboxes are *picks*: indexes resolved at run time against
/// the current state (sorted), modulo its size, so any sub-list of a run is a valid run (which
/// is what shrinking needs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Engine: set or clear a flag on a local email.
    Flag {
        /// Which local email.
        pick: u32,
        /// Which flag.
        flag: ModelFlag,
        /// Set or clear.
        value: bool,
    },
    /// Engine: move a local email to a local mailbox.
    Move {
        /// Which local email.
        pick: u32,
        /// Which local mailbox.
        to: u32,
    },
    /// Engine: delete a local email (to Trash, or for good from Trash).
    Delete {
        /// Which local email.
        pick: u32,
    },
    /// Engine: undo the last action.
    Undo,
    /// Engine: send a new message.
    Send,
    /// Engine: one sync cycle (flush, then sync).
    Sync,
    /// Engine: one sync cycle whose network is cut (the engine's connections to the server,
    /// counted together) after `at` bytes from the server, or from the client (`client`):
    /// mid-command, mid-response, between a change's command and its answer. A cycle that
    /// ends sooner is not cut.
    Cut {
        /// Count the client's bytes instead of the server's.
        client: bool,
        /// Where.
        at: u32,
    },
    /// Engine: one sync cycle killed at that byte (as [`Op::Cut`] counts them): the proxy
    /// holds the connection there and the cycle is dropped where it stands, uncommitted
    /// transactions rolled back, then every connection is closed and the engine's memory (the
    /// outbox's) is started afresh, as after the process was killed and restarted.
    Crash {
        /// Count the client's bytes instead of the server's.
        client: bool,
        /// Where.
        at: u32,
    },
    /// Engine: one sync cycle paused at that byte (as [`Op::Cut`] counts them) while the other
    /// client does `other` (at most a few seconds: a server that holds a lock while its answer
    /// waits at the pause is let go on), then forwarded on: the other client's change lands in
    /// the middle of the engine's command or answer, as on a live account.
    During {
        /// Count the client's bytes instead of the server's.
        client: bool,
        /// Where.
        at: u32,
        /// The other client's operation (an `O*` one).
        other: Box<Op>,
    },
    /// Engine: create a mailbox (through the outbox).
    MCreate {
        /// Its name.
        name: String,
    },
    /// Engine: rename a local mailbox that has no role.
    MRename {
        /// Which local mailbox (among those without a role).
        pick: u32,
        /// The new name.
        name: String,
    },
    /// Engine: delete a local mailbox that has no role (with its emails).
    MDelete {
        /// Which local mailbox (among those without a role).
        pick: u32,
    },
    /// Engine: save a new draft.
    DSave,
    /// Engine: save a new version of a local draft.
    DUpdate {
        /// Which local draft.
        pick: u32,
    },
    /// Engine: discard a local draft.
    DDiscard {
        /// Which local draft.
        pick: u32,
    },
    /// Engine: send a local draft.
    DSend {
        /// Which local draft.
        pick: u32,
    },
    /// Other client: STORE +/-FLAGS on a message.
    OFlag {
        /// In this mailbox.
        mailbox: String,
        /// Which message.
        pick: u32,
        /// Which flag.
        flag: ModelFlag,
        /// Set or clear.
        value: bool,
    },
    /// Other client: UID MOVE.
    OMove {
        /// From this mailbox.
        from: String,
        /// Which message.
        pick: u32,
        /// To this mailbox.
        to: String,
    },
    /// Other client: UID COPY.
    OCopy {
        /// From this mailbox.
        from: String,
        /// Which message.
        pick: u32,
        /// To this mailbox.
        to: String,
    },
    /// Other client: \Deleted + UID EXPUNGE.
    OExpunge {
        /// In this mailbox.
        mailbox: String,
        /// Which message.
        pick: u32,
    },
    /// Other client: APPEND a new message.
    OAppend {
        /// To this mailbox.
        mailbox: String,
        /// Appended \Seen.
        seen: bool,
    },
    /// Other client: CREATE.
    OCreate {
        /// The mailbox.
        name: String,
    },
    /// Other client: DELETE.
    ODelete {
        /// The mailbox.
        name: String,
    },
    /// Other client: RENAME.
    ORename {
        /// Old name.
        from: String,
        /// New name.
        to: String,
    },
}

impl Op {
    /// Whether the engine (not the other client) does it.
    pub fn is_engine(&self) -> bool {
        matches!(
            self,
            Self::Flag { .. }
                | Self::Move { .. }
                | Self::Delete { .. }
                | Self::Undo
                | Self::Send
                | Self::Sync
                | Self::Cut { .. }
                | Self::Crash { .. }
                | Self::During { .. }
                | Self::MCreate { .. }
                | Self::MRename { .. }
                | Self::MDelete { .. }
                | Self::DSave
                | Self::DUpdate { .. }
                | Self::DDiscard { .. }
                | Self::DSend { .. }
        )
    }
}

fn b(v: bool) -> &'static str {
    if v { "+" } else { "-" }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Flag { pick, flag, value } => {
                write!(f, "flag {pick} {}{}", b(*value), flag.word())
            }
            Self::Move { pick, to } => write!(f, "move {pick} {to}"),
            Self::Delete { pick } => write!(f, "delete {pick}"),
            Self::Undo => write!(f, "undo"),
            Self::Send => write!(f, "send"),
            Self::Sync => write!(f, "sync"),
            Self::Cut { client, at } => {
                write!(f, "cut {}{at}", if *client { "c" } else { "s" })
            }
            Self::Crash { client, at } => {
                write!(f, "crash {}{at}", if *client { "c" } else { "s" })
            }
            Self::During { client, at, other } => {
                write!(f, "during {}{at} {other}", if *client { "c" } else { "s" })
            }
            Self::MCreate { name } => write!(f, "m-create {name}"),
            Self::MRename { pick, name } => write!(f, "m-rename {pick} {name}"),
            Self::MDelete { pick } => write!(f, "m-delete {pick}"),
            Self::DSave => write!(f, "d-save"),
            Self::DUpdate { pick } => write!(f, "d-update {pick}"),
            Self::DDiscard { pick } => write!(f, "d-discard {pick}"),
            Self::DSend { pick } => write!(f, "d-send {pick}"),
            Self::OFlag {
                mailbox,
                pick,
                flag,
                value,
            } => write!(f, "o-flag {mailbox} {pick} {}{}", b(*value), flag.word()),
            Self::OMove { from, pick, to } => write!(f, "o-move {from} {pick} {to}"),
            Self::OCopy { from, pick, to } => write!(f, "o-copy {from} {pick} {to}"),
            Self::OExpunge { mailbox, pick } => write!(f, "o-expunge {mailbox} {pick}"),
            Self::OAppend { mailbox, seen } => {
                write!(
                    f,
                    "o-append {mailbox} {}",
                    if *seen { "seen" } else { "unseen" }
                )
            }
            Self::OCreate { name } => write!(f, "o-create {name}"),
            Self::ODelete { name } => write!(f, "o-delete {name}"),
            Self::ORename { from, to } => write!(f, "o-rename {from} {to}"),
        }
    }
}

fn parse_flag(s: &str) -> Option<(ModelFlag, bool)> {
    let (value, word) = match s.split_at_checked(1)? {
        ("+", w) => (true, w),
        ("-", w) => (false, w),
        _ => return None,
    };
    let flag = match word {
        "seen" => ModelFlag::Seen,
        "flagged" => ModelFlag::Flagged,
        _ => return None,
    };
    Some((flag, value))
}

impl std::str::FromStr for Op {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let w: Vec<&str> = s.split_whitespace().collect();
        let bad = || format!("not an operation: {s:?}");
        let num = |i: usize| -> Result<u32, String> {
            w.get(i).and_then(|v| v.parse().ok()).ok_or_else(bad)
        };
        let word = |i: usize| -> Result<String, String> {
            w.get(i).map(|v| (*v).to_string()).ok_or_else(bad)
        };
        let side_at = |t: &str| -> Result<(bool, u32), String> {
            let (side, at) = t.split_at_checked(1).ok_or_else(bad)?;
            let client = match side {
                "c" => true,
                "s" => false,
                _ => return Err(bad()),
            };
            Ok((client, at.parse().map_err(|_| bad())?))
        };
        let op = match (w.first().copied(), w.len()) {
            (Some("during"), 3..) => {
                let (client, at) = side_at(w[1])?;
                let other: Op = w[2..].join(" ").parse()?;
                if other.is_engine() {
                    return Err(bad());
                }
                Self::During {
                    client,
                    at,
                    other: Box::new(other),
                }
            }
            (Some("flag"), 3) => {
                let (flag, value) = parse_flag(w[2]).ok_or_else(bad)?;
                Self::Flag {
                    pick: num(1)?,
                    flag,
                    value,
                }
            }
            (Some("move"), 3) => Self::Move {
                pick: num(1)?,
                to: num(2)?,
            },
            (Some("delete"), 2) => Self::Delete { pick: num(1)? },
            (Some("undo"), 1) => Self::Undo,
            (Some("send"), 1) => Self::Send,
            (Some("sync"), 1) => Self::Sync,
            (Some(verb @ ("cut" | "crash")), 2) => {
                let (client, at) = side_at(w[1])?;
                if verb == "cut" {
                    Self::Cut { client, at }
                } else {
                    Self::Crash { client, at }
                }
            }
            (Some("m-create"), 2) => Self::MCreate { name: word(1)? },
            (Some("m-rename"), 3) => Self::MRename {
                pick: num(1)?,
                name: word(2)?,
            },
            (Some("m-delete"), 2) => Self::MDelete { pick: num(1)? },
            (Some("d-save"), 1) => Self::DSave,
            (Some("d-update"), 2) => Self::DUpdate { pick: num(1)? },
            (Some("d-discard"), 2) => Self::DDiscard { pick: num(1)? },
            (Some("d-send"), 2) => Self::DSend { pick: num(1)? },
            (Some("o-flag"), 4) => {
                let (flag, value) = parse_flag(w[3]).ok_or_else(bad)?;
                Self::OFlag {
                    mailbox: word(1)?,
                    pick: num(2)?,
                    flag,
                    value,
                }
            }
            (Some("o-move"), 4) => Self::OMove {
                from: word(1)?,
                pick: num(2)?,
                to: word(3)?,
            },
            (Some("o-copy"), 4) => Self::OCopy {
                from: word(1)?,
                pick: num(2)?,
                to: word(3)?,
            },
            (Some("o-expunge"), 3) => Self::OExpunge {
                mailbox: word(1)?,
                pick: num(2)?,
            },
            (Some("o-append"), 3) => Self::OAppend {
                mailbox: word(1)?,
                seen: match w[2] {
                    "seen" => true,
                    "unseen" => false,
                    _ => return Err(bad()),
                },
            },
            (Some("o-create"), 2) => Self::OCreate { name: word(1)? },
            (Some("o-delete"), 2) => Self::ODelete { name: word(1)? },
            (Some("o-rename"), 3) => Self::ORename {
                from: word(1)?,
                to: word(2)?,
            },
            _ => return Err(bad()),
        };
        Ok(op)
    }
}

/// Formats a list of operations as one line, `;`-separated (the replay form).
pub fn format_ops(ops: &[Op]) -> String {
    ops.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Parses the replay form of [`format_ops`].
pub fn parse_ops(s: &str) -> Result<Vec<Op>, String> {
    s.split(';')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::parse)
        .collect()
}

/// The operations of a seed: about half engine actions (and syncs), the rest the other client.
pub fn generate(seed: u64, n: usize) -> Vec<Op> {
    generate_with(seed, n, false)
}

/// Server bytes within which a cut is placed: a model cycle's traffic is a few KB, so some
/// cuts fall after its end (a cycle that is not cut is part of the mix).
const CUT_SERVER_BYTES: u64 = 8_000;
/// Client bytes within which a cut is placed (commands are shorter than answers).
const CUT_CLIENT_BYTES: u64 = 2_500;

/// [`generate_with`], with `concurrent`: a third of the other client's operations become one
/// [`Op::During`] (made mid-cycle, at a random byte of a sync cycle; a plain sync just before
/// it is that cycle). Drawn from a third generator, so the rest of the seed's list is the same.
pub fn generate_full(seed: u64, n: usize, faults: bool, concurrent: bool) -> Vec<Op> {
    let ops = generate_with(seed, n, faults);
    if !concurrent {
        return ops;
    }
    let mut r = Rng::new(seed.rotate_left(29) ^ 0x636f_6e63);
    let mut out: Vec<Op> = Vec::with_capacity(ops.len());
    for op in ops {
        if op.is_engine() || r.below(3) != 0 {
            out.push(op);
            continue;
        }
        if out.last() == Some(&Op::Sync) {
            out.pop();
        }
        let client = r.coin();
        // Within a model cycle's few KB, mostly.
        let at = r.below(if client {
            CUT_CLIENT_BYTES
        } else {
            CUT_SERVER_BYTES / 2
        }) as u32;
        out.push(Op::During {
            client,
            at,
            other: Box::new(op),
        });
    }
    out
}

/// The names [`nest`] moves under a parent: the other client's `C` becomes `A/C`, the
/// engine's `F` becomes `B/F`.
pub const NESTED: &[(&str, &str)] = &[("C", "A/C"), ("F", "B/F")];

/// The same operations with some mailboxes made children of others ([`NESTED`]): a rename or
/// delete of `A` or `B` then reaches a mailbox below it (IMAP renames the children with
/// their parent; a server may refuse to delete a parent, or leave its children).
pub fn nest(ops: Vec<Op>) -> Vec<Op> {
    let n = |name: &mut String| {
        if let Some((_, to)) = NESTED.iter().find(|(from, _)| name == from) {
            *name = (*to).to_owned();
        }
    };
    ops.into_iter()
        .map(|mut op| {
            match &mut op {
                Op::During { other, .. } => {
                    **other = nest(vec![(**other).clone()]).remove(0);
                }
                Op::OFlag { mailbox, .. }
                | Op::OExpunge { mailbox, .. }
                | Op::OAppend { mailbox, .. } => n(mailbox),
                Op::OMove { from, to, .. }
                | Op::OCopy { from, to, .. }
                | Op::ORename { from, to } => {
                    n(from);
                    n(to);
                }
                Op::OCreate { name }
                | Op::ODelete { name }
                | Op::MCreate { name }
                | Op::MRename { name, .. } => {
                    n(name);
                }
                _ => {}
            }
            op
        })
        .collect()
}

/// [`generate`], with `faults`: half of the syncs become cut ones ([`Op::Cut`]), a third of
/// those killed ones instead ([`Op::Crash`]). The faults are drawn from a second generator, so
/// a seed's other operations are the same either way.
pub fn generate_with(seed: u64, n: usize, faults: bool) -> Vec<Op> {
    let mut r = Rng::new(seed);
    let mut fault = Rng::new(!seed);
    let mut ops = Vec::with_capacity(n);
    while ops.len() < n {
        let flag = if r.coin() {
            ModelFlag::Seen
        } else {
            ModelFlag::Flagged
        };
        let op = match r.below(120) {
            0..=11 => Op::Flag {
                pick: r.pick(),
                flag,
                value: r.coin(),
            },
            12..=19 => Op::Move {
                pick: r.pick(),
                to: r.pick(),
            },
            20..=25 => Op::Delete { pick: r.pick() },
            26..=30 => Op::Undo,
            31..=33 => Op::Send,
            34..=47 if faults && fault.coin() => {
                let client = fault.coin();
                let at = fault.below(if client {
                    CUT_CLIENT_BYTES
                } else {
                    CUT_SERVER_BYTES
                }) as u32;
                if fault.below(3) == 0 {
                    Op::Crash { client, at }
                } else {
                    Op::Cut { client, at }
                }
            }
            34..=47 => Op::Sync,
            48..=57 => Op::OFlag {
                mailbox: r.choose(OTHER_MAILBOXES).into(),
                pick: r.pick(),
                flag,
                value: r.coin(),
            },
            58..=64 => Op::OMove {
                from: r.choose(OTHER_MAILBOXES).into(),
                pick: r.pick(),
                to: r.choose(OTHER_MAILBOXES).into(),
            },
            65..=69 => Op::OCopy {
                from: r.choose(OTHER_MAILBOXES).into(),
                pick: r.pick(),
                to: r.choose(OTHER_MAILBOXES).into(),
            },
            70..=75 => Op::OExpunge {
                mailbox: r.choose(OTHER_MAILBOXES).into(),
                pick: r.pick(),
            },
            76..=84 => Op::OAppend {
                mailbox: r.choose(OTHER_MAILBOXES).into(),
                seen: r.coin(),
            },
            85..=89 => Op::OCreate {
                name: r.choose(POOL).into(),
            },
            90..=95 => Op::ODelete {
                name: r.choose(POOL).into(),
            },
            96..=99 => Op::ORename {
                from: r.choose(POOL).into(),
                to: r.choose(POOL).into(),
            },
            100..=103 => Op::MCreate {
                name: r.choose(ENGINE_POOL).into(),
            },
            104..=106 => Op::MRename {
                pick: r.pick(),
                name: r.choose(ENGINE_POOL).into(),
            },
            107..=109 => Op::MDelete { pick: r.pick() },
            110..=112 => Op::DSave,
            113..=115 => Op::DUpdate { pick: r.pick() },
            116..=117 => Op::DDiscard { pick: r.pick() },
            _ => Op::DSend { pick: r.pick() },
        };
        ops.push(op);
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_is_deterministic_and_round_trips() {
        for seed in 0..50 {
            let ops = generate(seed, 40);
            assert_eq!(ops, generate(seed, 40));
            assert_eq!(parse_ops(&format_ops(&ops)).unwrap(), ops);
        }
        assert_ne!(generate(1, 40), generate(2, 40));
        // Faults turn some syncs into cuts and change nothing else.
        for seed in 0..50 {
            let plain = generate(seed, 40);
            let cut = generate_with(seed, 40, true);
            assert_eq!(parse_ops(&format_ops(&cut)).unwrap(), cut);
            let ops_of = |ops: &[Op]| -> Vec<Op> {
                ops.iter()
                    .filter(|o| !matches!(o, Op::Sync | Op::Cut { .. } | Op::Crash { .. }))
                    .cloned()
                    .collect()
            };
            assert_eq!(ops_of(&plain), ops_of(&cut));
        }
        for fault in [
            |o: &Op| matches!(o, Op::Cut { .. }),
            |o: &Op| matches!(o, Op::Crash { .. }),
        ] {
            assert!((0..50).any(|s| generate_with(s, 40, true).iter().any(fault)));
        }
    }

    #[test]
    fn concurrent_runs_make_some_of_the_other_clients_operations_mid_cycle() {
        let mut seen = 0;
        for seed in 0..50 {
            let plain = generate_with(seed, 60, true);
            let conc = generate_full(seed, 60, true, true);
            assert_eq!(parse_ops(&format_ops(&conc)).unwrap(), conc);
            // Unfolding each `during` gives back the list, plain syncs aside.
            let unfolded: Vec<Op> = conc
                .iter()
                .map(|o| match o {
                    Op::During { other, .. } => {
                        seen += 1;
                        (**other).clone()
                    }
                    o => o.clone(),
                })
                .filter(|o| *o != Op::Sync)
                .collect();
            let without_syncs: Vec<Op> = plain.into_iter().filter(|o| *o != Op::Sync).collect();
            assert_eq!(unfolded, without_syncs);
        }
        assert!(seen > 50 * 60 / 2 / 3 / 2, "{seen}");
        assert!(
            parse_ops("during s10 sync").is_err(),
            "only another client's operation"
        );
    }

    #[test]
    fn nesting_moves_names_under_a_parent() {
        let ops = parse_ops(
            "o-create C; o-move C 1 INBOX; m-rename 2 F; during s5 o-rename A C; flag 1 +seen",
        )
        .unwrap();
        assert_eq!(
            format_ops(&nest(ops)),
            "o-create A/C; o-move A/C 1 INBOX; m-rename 2 B/F; during s5 o-rename A A/C; flag 1 +seen"
        );
    }

    #[test]
    fn bad_text_is_refused() {
        assert!(parse_ops("flag 1 *seen").is_err());
        assert!(parse_ops("jump 3").is_err());
        assert!(parse_ops("o-move INBOX x A").is_err());
    }
}
