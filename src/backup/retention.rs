//! Which snapshots to delete (docs/backup.md, "Retention"). Kept: the `keep.newest` newest
//! complete snapshots, and the newest of each of the `keep.daily` most recent UTC days that have
//! one. Deleted: every other complete snapshot, and leftovers of unfinished ones (a database
//! without its manifest, or the reverse) once they are a day old, so a snapshot being written
//! right now is never touched. Only names of the agent's own shape, under this cluster's token,
//! are ever considered (`manifest::SnapshotName::parse`).

use std::collections::BTreeSet;

use super::manifest::SnapshotName;
use crate::config::Keep;

/// How old a leftover of an unfinished snapshot must be before it is deleted.
pub const LEFTOVER_AGE: i64 = 86_400;

/// `complete`: snapshots with both objects. `leftovers`: names with only one of them.
pub fn to_delete<'a>(
    complete: &'a [SnapshotName],
    leftovers: &'a [SnapshotName],
    keep: Keep,
    now: i64,
) -> Vec<&'a SnapshotName> {
    let mut newest_first: Vec<&SnapshotName> = complete.iter().collect();
    newest_first.sort_by(|a, b| b.cmp(a));
    let mut kept: BTreeSet<&str> = newest_first
        .iter()
        .take(keep.newest)
        .map(|s| s.stem.as_str())
        .collect();
    let mut days = BTreeSet::new();
    for s in &newest_first {
        if days.len() == keep.daily {
            break;
        }
        if days.insert(s.taken_at.div_euclid(86_400)) {
            kept.insert(&s.stem);
        }
    }
    newest_first
        .into_iter()
        .filter(|s| !kept.contains(s.stem.as_str()))
        .chain(
            leftovers
                .iter()
                .filter(|s| now - s.taken_at >= LEFTOVER_AGE),
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;
    const T0: i64 = 1_795_219_200; // 2026-11-21 00:00 UTC

    fn at(t: i64) -> SnapshotName {
        SnapshotName::new("prod", t, 1)
    }

    #[test]
    fn keeps_the_newest_and_one_a_day() {
        // Hourly for three days: 72 snapshots.
        let all: Vec<_> = (0..72).map(|h| at(T0 + h * 3600)).collect();
        let keep = Keep {
            newest: 24,
            daily: 7,
        };
        let deleted = to_delete(&all, &[], keep, T0 + 3 * DAY);
        let kept: Vec<_> = all.iter().filter(|s| !deleted.contains(s)).collect();
        // The newest 24 are all of the third day; the newest of each of the first two days
        // (their 23:00) is kept beside them.
        assert_eq!(kept.len(), 26);
        assert!(kept.contains(&&at(T0 + 23 * 3600)));
        assert!(kept.contains(&&at(T0 + DAY + 23 * 3600)));
        assert!(!kept.contains(&&at(T0 + 22 * 3600)));
        assert!(kept.contains(&&at(T0 + 48 * 3600)));
    }

    #[test]
    fn daily_counts_days_that_have_a_snapshot_and_newest_alone_is_exact() {
        let all = [
            at(T0),
            at(T0 + 10 * DAY),
            at(T0 + 20 * DAY),
            at(T0 + 20 * DAY + 60),
        ];
        let deleted = to_delete(
            &all,
            &[],
            Keep {
                newest: 1,
                daily: 2,
            },
            T0 + 21 * DAY,
        );
        assert_eq!(deleted, vec![&at(T0 + 20 * DAY), &at(T0)]);
        let deleted = to_delete(
            &all,
            &[],
            Keep {
                newest: 3,
                daily: 0,
            },
            T0 + 21 * DAY,
        );
        assert_eq!(deleted, vec![&at(T0)]);
    }

    #[test]
    fn leftovers_go_only_once_a_day_old() {
        let fresh = at(T0 + DAY - 1);
        let old = at(T0);
        let leftovers = [fresh, old.clone()];
        let deleted = to_delete(
            &[],
            &leftovers,
            Keep {
                newest: 1,
                daily: 0,
            },
            T0 + DAY,
        );
        assert_eq!(deleted, vec![&old]);
    }
}
