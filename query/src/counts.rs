//! Counts over a window, read in pieces so that the past stays cached while events stream in.
//!
//! A window is cut at UTC midnights ([`Window::pieces`]). The pieces before the current UTC day
//! change only when a late event arrives, and the aggregator's write announcements say the
//! earliest time each write touched: so their counts are cached for `CACHE_PAST_TTL_SECS` and
//! dropped only by a write at or before their end ([`CountsReader::forget_written`]). What lies in
//! the current day is read afresh for every answer. Pieces add up exactly: sums do, and unique
//! visitors do too, since no visitor id spans two UTC days. Playback percentiles do not add up,
//! so they are read over the whole window, in one more read (cached too when the whole window
//! is past).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use prometheus::IntCounterVec;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::breakdown::{Dimension, Filters};
use crate::cache::{AnswerCache, Footprint};
use crate::error::QueryError;
use crate::range::{utc_day, Granularity, Piece, Window, Zone};
use crate::repo::{Ads, ByReason, Counts, GroupBy, Read, Repo, States};
use crate::service::now;

/// Counts per group key, as [`Repo::rollups`] and [`Repo::breakdown`] answer them.
type ByKey = BTreeMap<String, Counts>;

/// Which ads a piece covers, owned (the cache key outlives the request).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Scope {
    All,
    One(Uuid),
    These(Vec<Uuid>),
}

impl Scope {
    fn of(ads: Ads<'_>) -> Scope {
        match ads {
            Ads::All => Scope::All,
            Ads::One(id) => Scope::One(id),
            Ads::These(ids) => Scope::These(ids.to_vec()),
        }
    }

    fn ads(&self) -> Ads<'_> {
        match self {
            Scope::All => Ads::All,
            Scope::One(id) => Ads::One(*id),
            Scope::These(ids) => Ads::These(ids),
        }
    }
}

/// One question about a piece of a window: the cache key of its counts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Question {
    Rollups { scope: Scope, group: GroupBy, read: Read },
    Breakdown { by: Dimension, filters: Filters },
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct PieceKey {
    window: Window,
    question: Question,
}

impl Footprint for Arc<ByKey> {
    fn footprint(&self) -> usize {
        self.keys().map(|key| key.capacity() + std::mem::size_of::<(String, Counts)>()).sum()
    }
}

/// Reads counts through [`Repo`], caching the pieces before today.
#[derive(Clone)]
pub struct CountsReader {
    repo: Repo,
    past: AnswerCache<PieceKey, Arc<ByKey>>,
}

impl CountsReader {
    /// `ttl`: how long a past piece is kept at most (a lost write announcement is stale that
    /// long); `max_bytes`: the past pieces' memory budget.
    pub fn new(repo: Repo, ttl: Duration, max_bytes: u64, lookups: IntCounterVec) -> Self {
        Self { repo, past: AnswerCache::new("past_counts", ttl, max_bytes, lookups) }
    }

    /// Totals per ad over the window, for the ads that had events.
    pub async fn totals_by_ad(
        &self,
        window: Window,
        ads: Ads<'_>,
        states: States,
    ) -> Result<BTreeMap<Uuid, Counts>, QueryError> {
        let by_key = self.rollups(window, Scope::of(ads), GroupBy::Ad, states).await?;
        by_key
            .into_iter()
            .map(|(key, counts)| {
                let id =
                    Uuid::parse_str(&key).map_err(|e| QueryError::ClickHouse(format!("bad ad_id {key:?}: {e}")))?;
                Ok((id, counts))
            })
            .collect()
    }

    /// The counts of every ad together (unique visitors counted once across ads).
    pub async fn total(&self, window: Window) -> Result<Counts, QueryError> {
        let mut by_key = self.rollups(window, Scope::All, GroupBy::Total, States::Merged).await?;
        Ok(by_key.remove("total").unwrap_or_default())
    }

    /// Counts per bucket (keyed by the bucket's unix start) of the ads; empty buckets absent.
    pub async fn series(
        &self,
        window: Window,
        ads: Ads<'_>,
        granularity: Granularity,
        zone: &Zone,
    ) -> Result<BTreeMap<i64, Counts>, QueryError> {
        let by_key =
            self.rollups(window, Scope::of(ads), GroupBy::Bucket(granularity, zone.clone()), States::Merged).await?;
        by_key
            .into_iter()
            .map(|(key, counts)| {
                let start =
                    key.parse::<i64>().map_err(|e| QueryError::ClickHouse(format!("bad bucket {key:?}: {e}")))?;
                Ok((start, counts))
            })
            .collect()
    }

    /// Counts per value of `by` over the window, for the events matching `filters`.
    pub async fn breakdown(&self, window: Window, by: Dimension, filters: &Filters) -> Result<ByKey, QueryError> {
        let question = Question::Breakdown { by, filters: filters.clone() };
        self.summed_at(window, &question, utc_day(now())).await
    }

    /// A write touched `earliest` and later (`None`: any time): forgets the past pieces that
    /// end after it, and keeps none being read now. A write of today's events (the usual one)
    /// touches no past piece and forgets nothing.
    pub fn forget_written(&self, earliest: Option<OffsetDateTime>, now: OffsetDateTime) {
        match earliest {
            Some(earliest) if earliest >= utc_day(now) => {}
            Some(earliest) => self.past.invalidate_if(move |key: &PieceKey| key.window.to > earliest),
            None => self.past.invalidate_all(),
        }
    }

    /// Forgets every past piece: the catalog changed, and breakdowns by campaign read it.
    pub fn forget_all(&self) {
        self.past.invalidate_all();
    }

    async fn rollups(&self, window: Window, scope: Scope, group: GroupBy, states: States) -> Result<ByKey, QueryError> {
        let counts = Question::Rollups { scope: scope.clone(), group: group.clone(), read: Read::Counts(states) };
        if states == States::Skipped {
            return self.summed_at(window, &counts, utc_day(now())).await;
        }
        let today = utc_day(now());
        let percentiles = Question::Rollups { scope, group, read: Read::Percentiles };
        // Boxed, as each read below: a read's future is large, and several side by side
        // overflowed a worker thread's stack in debug builds.
        let (mut out, percentiles) = tokio::try_join!(
            Box::pin(self.summed_at(window, &counts, today)),
            self.piece(Piece::new(window, today), &percentiles)
        )?;
        for (key, found) in percentiles.iter() {
            let counts = out.entry(key.clone()).or_default();
            (counts.playback_p50_secs, counts.playback_p95_secs) = (found.playback_p50_secs, found.playback_p95_secs);
        }
        Ok(out)
    }

    /// The question's counts over the window: the sum of its pieces', cut at `today`.
    async fn summed_at(&self, window: Window, question: &Question, today: OffsetDateTime) -> Result<ByKey, QueryError> {
        let pieces = window.pieces(today);
        let parts =
            futures::future::try_join_all(pieces.into_iter().map(|piece| Box::pin(self.piece(piece, question))))
                .await?;
        let mut out = ByKey::new();
        for part in parts {
            for (key, counts) in part.iter() {
                add(out.entry(key.clone()).or_default(), counts);
            }
        }
        Ok(out)
    }

    /// One piece's counts: from the cache when it is past.
    async fn piece(&self, piece: Piece, question: &Question) -> Result<Arc<ByKey>, QueryError> {
        let read = Box::pin(async {
            let counts = match question {
                Question::Rollups { scope, group, read } => {
                    self.repo.rollups(piece.window, scope.ads(), group, *read).await?
                }
                Question::Breakdown { by, filters } => self.repo.breakdown(piece.window, *by, filters).await?,
            };
            Ok(Arc::new(counts))
        });
        match piece.past {
            true => self.past.get_or_compute(PieceKey { window: piece.window, question: question.clone() }, read).await,
            false => read.await,
        }
    }
}

/// Adds `more`'s counts and sums to `into`'s; percentiles are read over whole windows instead.
fn add(into: &mut Counts, more: &Counts) {
    into.clicks += more.clicks;
    into.unique_clicks += more.unique_clicks;
    into.impressions += more.impressions;
    into.unique_viewers += more.unique_viewers;
    into.playback_time_secs_sum += more.playback_time_secs_sum;
    into.playback_count += more.playback_count;
    into.watched_percent_sum += more.watched_percent_sum;
    into.watched_percent_count += more.watched_percent_count;
    into.invalid_clicks = added(into.invalid_clicks, more.invalid_clicks);
    into.invalid_impressions = added(into.invalid_impressions, more.invalid_impressions);
}

fn added(a: ByReason, b: ByReason) -> ByReason {
    ByReason(std::array::from_fn(|i| a.0[i] + b.0[i]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_up_field_by_field_and_leave_percentiles_alone() {
        let a = Counts {
            clicks: 2,
            unique_clicks: 1,
            impressions: 10,
            unique_viewers: 4,
            playback_time_secs_sum: 3.5,
            playback_count: 1,
            watched_percent_sum: 50.0,
            watched_percent_count: 1,
            playback_p50_secs: Some(3.5),
            playback_p95_secs: Some(3.5),
            invalid_clicks: ByReason([1, 0, 2, 0, 1]),
            invalid_impressions: ByReason([0, 1, 0, 0, 0]),
        };
        let mut sum = Counts::default();
        add(&mut sum, &a);
        add(&mut sum, &a);
        assert_eq!(
            sum,
            Counts {
                clicks: 4,
                unique_clicks: 2,
                impressions: 20,
                unique_viewers: 8,
                playback_time_secs_sum: 7.0,
                playback_count: 2,
                watched_percent_sum: 100.0,
                watched_percent_count: 2,
                playback_p50_secs: None,
                playback_p95_secs: None,
                invalid_clicks: ByReason([2, 0, 4, 0, 2]),
                invalid_impressions: ByReason([0, 2, 0, 0, 0]),
            }
        );
    }
}
