//! Top-N rankings of ads by any metric.

use std::collections::BTreeMap;

use crate::error::QueryError;
use crate::repo::Counts;

/// A metric ads can be ranked by, highest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, poem_openapi::Enum)]
#[oai(rename_all = "snake_case")]
pub enum Metric {
    Clicks,
    UniqueClicks,
    Impressions,
    UniqueViewers,
    Ctr,
    AvgPlaybackTimeSecs,
    P50PlaybackTimeSecs,
    P95PlaybackTimeSecs,
    AvgWatchedPercent,
}

impl Metric {
    /// Whether ranking by it needs states (unique visitors, percentiles) merged for every ad.
    pub fn needs_states(self) -> bool {
        matches!(
            self,
            Metric::UniqueClicks | Metric::UniqueViewers | Metric::P50PlaybackTimeSecs | Metric::P95PlaybackTimeSecs
        )
    }

    /// The value ranked by; `None` (a ratio over nothing) ranks below every number.
    fn value(self, c: &Counts) -> Option<f64> {
        match self {
            Metric::Clicks => Some(c.clicks as f64),
            Metric::UniqueClicks => Some(c.unique_clicks as f64),
            Metric::Impressions => Some(c.impressions as f64),
            Metric::UniqueViewers => Some(c.unique_viewers as f64),
            Metric::Ctr => c.ctr(),
            Metric::AvgPlaybackTimeSecs => c.avg_playback_time_secs(),
            Metric::P50PlaybackTimeSecs => c.playback_p50_secs,
            Metric::P95PlaybackTimeSecs => c.playback_p95_secs,
            Metric::AvgWatchedPercent => c.avg_watched_percent(),
        }
    }
}

/// Ads in a ranking when `limit` is not given.
pub const DEFAULT_LIMIT: u32 = 10;

/// Which ads a report keeps: the `limit` highest by `metric`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ranking {
    pub metric: Metric,
    pub limit: u32,
}

impl Ranking {
    /// The ranking asked for by `sort` and `limit`, if any.
    pub fn resolve(sort: Option<Metric>, limit: Option<u32>, one_ad: bool) -> Result<Option<Ranking>, QueryError> {
        match (sort, limit) {
            (Some(_), _) if one_ad => Err(QueryError::invalid("sort", "ranks many ads; leave it out with ad_id")),
            (Some(metric), limit) => Ok(Some(Ranking { metric, limit: limit.unwrap_or(DEFAULT_LIMIT) })),
            (None, Some(_)) => Err(QueryError::invalid("limit", "only with sort")),
            (None, None) => Ok(None),
        }
    }
}

/// The `limit` ads (or groups) ranking highest by the metric, highest first; those without a
/// value (a ratio over nothing) come last, and ties go by key so that answers are stable.
pub fn top<K: Ord>(totals: BTreeMap<K, Counts>, ranking: Ranking) -> Vec<(K, Counts)> {
    use std::cmp::Ordering;
    let value = |c: &Counts| ranking.metric.value(c);
    let mut ads: Vec<(K, Counts)> = totals.into_iter().collect();
    ads.sort_by(|(a_id, a), (b_id, b)| {
        let by_value = match (value(a), value(b)) {
            (Some(a), Some(b)) => b.total_cmp(&a),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        };
        by_value.then_with(|| a_id.cmp(b_id))
    });
    ads.truncate(ranking.limit as usize);
    ads
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    fn ad(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    #[test]
    fn highest_first_undefined_last_ties_by_id() {
        let totals = BTreeMap::from([
            (ad(1), Counts { clicks: 5, impressions: 100, ..Counts::default() }),
            (ad(2), Counts { clicks: 9, impressions: 0, ..Counts::default() }),
            (ad(3), Counts { clicks: 5, impressions: 10, ..Counts::default() }),
            (ad(4), Counts { clicks: 1, impressions: 2, ..Counts::default() }),
        ]);
        let ids = |metric, limit| {
            top(totals.clone(), Ranking { metric, limit }).into_iter().map(|(id, _)| id).collect::<Vec<_>>()
        };
        assert_eq!(ids(Metric::Clicks, 10), vec![ad(2), ad(1), ad(3), ad(4)]);
        assert_eq!(ids(Metric::Clicks, 2), vec![ad(2), ad(1)]);
        // CTR: 0.5, 0.5 (tie: by id), 0.05, then ad 2 without impressions.
        assert_eq!(ids(Metric::Ctr, 10), vec![ad(3), ad(4), ad(1), ad(2)]);
        assert_eq!(ids(Metric::AvgWatchedPercent, 10), vec![ad(1), ad(2), ad(3), ad(4)]);
    }
}
