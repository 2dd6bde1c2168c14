//! What to fetch for a mailbox, given its checkpoint and what the server says (pure logic,
//! unit-tested without a server).

use mailsync_store::checkpoints::Checkpoint;

/// The server state of a mailbox, from STATUS (before SELECT) or SELECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ServerState {
    /// UIDVALIDITY.
    pub uidvalidity: Option<u32>,
    /// UIDNEXT.
    pub uidnext: Option<u32>,
    /// HIGHESTMODSEQ (`None` without CONDSTORE or with NOMODSEQ).
    pub highestmodseq: Option<u64>,
    /// Number of messages.
    pub messages: Option<u32>,
}

fn cp_u32(v: Option<i64>) -> Option<u32> {
    v.and_then(|x| u32::try_from(x).ok())
}

fn cp_u64(v: Option<i64>) -> Option<u64> {
    v.and_then(|x| u64::try_from(x).ok())
}

/// Before SELECT: can this mailbox be skipped? Only when mod-sequences prove that nothing
/// changed (same UIDVALIDITY and HIGHESTMODSEQ, no UID beyond the checkpoint). Without
/// CONDSTORE a flag change is invisible in STATUS, so the mailbox is always examined.
pub fn can_skip(cp: Option<&Checkpoint>, status: &ServerState) -> bool {
    let Some(cp) = cp else { return false };
    let (Some(uv), Some(last_uid), Some(cp_modseq)) = (
        cp_u32(cp.uidvalidity),
        cp_u32(cp.last_uid),
        cp_u64(cp.highestmodseq),
    ) else {
        return false;
    };
    let same_uv = status.uidvalidity == Some(uv);
    let same_modseq = status.highestmodseq == Some(cp_modseq);
    let nothing_new = status
        .uidnext
        .is_some_and(|n| u64::from(n) <= u64::from(last_uid) + 1);
    same_uv && same_modseq && nothing_new
}

/// The QRESYNC parameters to send with SELECT: `(uidvalidity, modseq, last known UID)`.
pub fn qresync_params(cp: Option<&Checkpoint>) -> Option<(u32, u64, Option<u32>)> {
    let cp = cp?;
    let uv = cp_u32(cp.uidvalidity)?;
    let modseq = cp_u64(cp.highestmodseq).filter(|&m| m > 0)?;
    Some((uv, modseq, cp_u32(cp.last_uid)))
}

/// How flag changes of already-known messages are found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagCheck {
    /// Nothing to do: HIGHESTMODSEQ did not move.
    Nothing,
    /// The QRESYNC SELECT already reported them (FETCH responses).
    FromSelect,
    /// `UID FETCH 1:last (UID FLAGS) (CHANGEDSINCE modseq)`.
    ChangedSince(u64),
    /// `UID FETCH 1:last (UID FLAGS)` and compare (no usable mod-sequences).
    All,
}

/// How expunged messages are found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpungeCheck {
    /// QRESYNC reported them (`VANISHED (EARLIER)`); counts are still compared as a safety net.
    FromSelect,
    /// Compare the local count with EXISTS; on a difference, `UID SEARCH ALL` and diff.
    CompareCounts,
}

/// The plan for one mailbox after SELECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Fetch everything. `reset` when UIDVALIDITY changed: the old UIDs are detached first
    /// and the messages re-matched by Message-ID.
    Full {
        /// UIDVALIDITY changed since the checkpoint.
        reset: bool,
    },
    /// Fetch what is new and reconcile the rest.
    Incremental {
        /// The highest UID already in the database.
        last_uid: u32,
        /// Whether there may be messages above `last_uid`.
        fetch_new: bool,
        /// How to find flag changes.
        flags: FlagCheck,
        /// How to find expunges.
        expunges: ExpungeCheck,
    },
}

/// Decides what to do once the mailbox is selected. `qresync_sent` says whether SELECT
/// carried QRESYNC parameters from this checkpoint.
pub fn plan(cp: Option<&Checkpoint>, selected: &ServerState, qresync_sent: bool) -> Plan {
    let Some(cp) = cp else {
        return Plan::Full { reset: false };
    };
    let Some(cp_uv) = cp_u32(cp.uidvalidity) else {
        return Plan::Full { reset: false };
    };
    if selected.uidvalidity != Some(cp_uv) {
        return Plan::Full { reset: true };
    }
    let empty = selected.messages == Some(0);
    let last_uid = cp_u32(cp.last_uid).unwrap_or(0);
    // UIDNEXT never goes back under one UIDVALIDITY (RFC 3501 2.3.1.1): a UIDNEXT at or below
    // a UID already stored is another mailbox of that name that took the same UIDVALIDITY
    // (Cyrus takes it from the clock: a mailbox made in the same second and renamed over a
    // deleted one). Kept, the checkpoint would skip the new mailbox's first UIDs forever.
    if selected.uidnext.is_some_and(|n| n <= last_uid) {
        return Plan::Full { reset: true };
    }
    let fetch_new = match selected.uidnext {
        _ if empty => false,
        Some(n) => u64::from(n) > u64::from(last_uid) + 1,
        // Without UIDNEXT, look.
        None => true,
    };
    let cp_modseq = cp_u64(cp.highestmodseq);
    let (flags, expunges) = match (selected.highestmodseq, cp_modseq) {
        (Some(_), Some(_)) if qresync_sent => (FlagCheck::FromSelect, ExpungeCheck::FromSelect),
        (Some(now), Some(then)) if now == then => (FlagCheck::Nothing, ExpungeCheck::CompareCounts),
        (Some(now), Some(then)) if now > then => {
            (FlagCheck::ChangedSince(then), ExpungeCheck::CompareCounts)
        }
        // No mod-sequences, a checkpoint from an interrupted first sync, or a server whose
        // HIGHESTMODSEQ went backwards: look at every flag.
        _ => (FlagCheck::All, ExpungeCheck::CompareCounts),
    };
    let flags = if last_uid == 0 {
        FlagCheck::Nothing
    } else {
        flags
    };
    Plan::Incremental {
        last_uid,
        fetch_new,
        flags,
        expunges,
    }
}

/// The `last_uid` to record once every message below UIDNEXT (as of SELECT) is stored.
pub fn final_last_uid(previous: u32, max_fetched: u32, uidnext: Option<u32>) -> u32 {
    let below_next = uidnext.map(|n| n.saturating_sub(1)).unwrap_or(0);
    previous.max(max_fetched).max(below_next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cp(uv: u32, last: u32, modseq: Option<u64>) -> Checkpoint {
        Checkpoint {
            uidvalidity: Some(i64::from(uv)),
            last_uid: Some(i64::from(last)),
            highestmodseq: modseq.map(|m| m as i64),
            ..Checkpoint::default()
        }
    }

    fn st(uv: u32, next: u32, modseq: Option<u64>, messages: u32) -> ServerState {
        ServerState {
            uidvalidity: Some(uv),
            uidnext: Some(next),
            highestmodseq: modseq,
            messages: Some(messages),
        }
    }

    #[test]
    fn skip_only_when_modseq_proves_no_change() {
        let c = cp(7, 100, Some(50));
        assert!(can_skip(Some(&c), &st(7, 101, Some(50), 90)));
        assert!(
            !can_skip(Some(&c), &st(7, 101, Some(51), 90)),
            "flag change"
        );
        assert!(!can_skip(Some(&c), &st(7, 102, Some(50), 91)), "new uid");
        assert!(
            !can_skip(Some(&c), &st(8, 101, Some(50), 90)),
            "uidvalidity"
        );
        assert!(!can_skip(Some(&c), &st(7, 101, None, 90)), "no condstore");
        assert!(!can_skip(None, &st(7, 1, Some(1), 0)), "first sync");
        assert!(
            !can_skip(Some(&cp(7, 100, None)), &st(7, 101, Some(50), 90)),
            "interrupted first sync"
        );
    }

    #[test]
    fn qresync_parameters_need_a_complete_checkpoint() {
        assert_eq!(
            qresync_params(Some(&cp(7, 100, Some(50)))),
            Some((7, 50, Some(100)))
        );
        assert_eq!(qresync_params(Some(&cp(7, 100, None))), None);
        assert_eq!(qresync_params(None), None);
    }

    #[test]
    fn plans() {
        assert_eq!(
            plan(None, &st(7, 1, Some(1), 0), false),
            Plan::Full { reset: false }
        );
        assert_eq!(
            plan(Some(&cp(7, 100, Some(50))), &st(8, 5, Some(3), 4), true),
            Plan::Full { reset: true }
        );
        assert_eq!(
            plan(
                Some(&cp(7, 100, Some(50))),
                &st(7, 120, Some(60), 110),
                true
            ),
            Plan::Incremental {
                last_uid: 100,
                fetch_new: true,
                flags: FlagCheck::FromSelect,
                expunges: ExpungeCheck::FromSelect
            }
        );
        assert_eq!(
            plan(
                Some(&cp(7, 100, Some(50))),
                &st(7, 101, Some(60), 100),
                false
            ),
            Plan::Incremental {
                last_uid: 100,
                fetch_new: false,
                flags: FlagCheck::ChangedSince(50),
                expunges: ExpungeCheck::CompareCounts
            }
        );
        assert_eq!(
            plan(
                Some(&cp(7, 100, Some(50))),
                &st(7, 101, Some(50), 100),
                false
            ),
            Plan::Incremental {
                last_uid: 100,
                fetch_new: false,
                flags: FlagCheck::Nothing,
                expunges: ExpungeCheck::CompareCounts
            }
        );
        // No CONDSTORE: every flag is compared.
        assert_eq!(
            plan(Some(&cp(7, 100, None)), &st(7, 105, None, 104), false),
            Plan::Incremental {
                last_uid: 100,
                fetch_new: true,
                flags: FlagCheck::All,
                expunges: ExpungeCheck::CompareCounts
            }
        );
        // HIGHESTMODSEQ went backwards (server restored from backup).
        assert!(matches!(
            plan(
                Some(&cp(7, 100, Some(50))),
                &st(7, 101, Some(40), 100),
                false
            ),
            Plan::Incremental {
                flags: FlagCheck::All,
                ..
            }
        ));
        // Everything expunged: nothing to fetch.
        assert!(matches!(
            plan(Some(&cp(7, 100, Some(50))), &st(7, 130, Some(70), 0), false),
            Plan::Incremental {
                fetch_new: false,
                ..
            }
        ));
        // UIDNEXT below a stored UID under the same UIDVALIDITY: another mailbox.
        assert_eq!(
            plan(Some(&cp(7, 1, Some(50))), &st(7, 1, Some(51), 0), true),
            Plan::Full { reset: true }
        );
        assert_eq!(
            plan(Some(&cp(7, 3, Some(50))), &st(7, 2, Some(51), 1), true),
            Plan::Full { reset: true }
        );
        // Nothing stored yet: no flags to compare.
        assert!(matches!(
            plan(Some(&cp(7, 0, None)), &st(7, 5, None, 4), false),
            Plan::Incremental {
                flags: FlagCheck::Nothing,
                fetch_new: true,
                ..
            }
        ));
    }

    #[test]
    fn last_uid_covers_expunged_tail() {
        assert_eq!(final_last_uid(100, 90, Some(120)), 119);
        assert_eq!(final_last_uid(100, 130, Some(120)), 130);
        assert_eq!(final_last_uid(100, 0, None), 100);
    }
}
