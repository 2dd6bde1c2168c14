//! IMAP sequence sets of UIDs: parsing (`1:3,7`), compact formatting, and splitting long sets
//! so commands stay short.

/// Parses `1,3:5,9` into the listed UIDs (ascending ranges expanded). `*` and empty or
/// malformed sets give `None`. Ranges larger than a million UIDs are refused, since no
/// response code legitimately lists that many.
pub(crate) fn parse_uid_set(s: &str) -> Option<Vec<u32>> {
    let mut out = Vec::new();
    for part in s.split(',') {
        let (a, b) = match part.split_once(':') {
            Some((a, b)) => (a.parse::<u32>().ok()?, b.parse::<u32>().ok()?),
            None => {
                let n = part.parse::<u32>().ok()?;
                (n, n)
            }
        };
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        if hi - lo > 1_000_000 {
            return None;
        }
        out.extend(lo..=hi);
    }
    if out.is_empty() { None } else { Some(out) }
}

/// Formats UIDs as a compact set (`1:3,7`), sorting and deduplicating them first.
pub(crate) fn format_uid_set(uids: &[u32]) -> String {
    let mut v = uids.to_vec();
    v.sort_unstable();
    v.dedup();
    format_ranges(&ranges(&v))
}

/// `1:3,7` from contiguous ranges.
fn format_ranges(rs: &[(u32, u32)]) -> String {
    rs.iter()
        .map(|&(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}:{b}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Contiguous ranges of sorted, deduplicated UIDs.
pub(crate) fn ranges(sorted: &[u32]) -> Vec<(u32, u32)> {
    let mut out: Vec<(u32, u32)> = Vec::new();
    for &u in sorted {
        match out.last_mut() {
            Some((_, hi)) if hi.checked_add(1) == Some(u) => *hi = u,
            _ => out.push((u, u)),
        }
    }
    out
}

/// Splits UIDs into compact sets of at most `max_ranges` ranges each, so a command line stays
/// well under server limits (Dovecot accepts 64 KB, some servers 8 KB).
pub(crate) fn chunked_sets(uids: &[u32], max_ranges: usize) -> Vec<(String, Vec<u32>)> {
    let mut v = uids.to_vec();
    v.sort_unstable();
    v.dedup();
    let rs = ranges(&v);
    rs.chunks(max_ranges.max(1))
        .map(|chunk| {
            let text = format_ranges(chunk);
            let members = chunk.iter().flat_map(|&(a, b)| a..=b).collect();
            (text, members)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_format_round_trip() {
        assert_eq!(parse_uid_set("304,319:320"), Some(vec![304, 319, 320]));
        assert_eq!(parse_uid_set("5:3"), Some(vec![3, 4, 5]));
        assert_eq!(parse_uid_set("*"), None);
        assert_eq!(parse_uid_set(""), None);
        assert_eq!(parse_uid_set("1:4294967295"), None);
        assert_eq!(format_uid_set(&[7, 1, 2, 3, 3, 9, 10]), "1:3,7,9:10");
        assert_eq!(
            format_uid_set(&[u32::MAX, u32::MAX - 1]),
            "4294967294:4294967295"
        );
    }

    #[test]
    fn chunks_keep_every_uid_once() {
        let uids: Vec<u32> = (1..=100).filter(|u| u % 3 != 0).collect();
        let sets = chunked_sets(&uids, 10);
        let all: Vec<u32> = sets.iter().flat_map(|(_, m)| m.clone()).collect();
        assert_eq!(all, uids);
        assert!(sets.iter().all(|(t, _)| t.split(',').count() <= 10));
        assert_eq!(
            parse_uid_set(&sets[0].0).unwrap_or_default(),
            sets[0].1.clone()
        );
    }
}
