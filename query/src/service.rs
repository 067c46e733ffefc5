//! The answers, independent of HTTP: cached reads over [`Repo`].

use std::time::Duration;

use time::OffsetDateTime;
use uuid::Uuid;

use schemas::rows::AdRow;

use crate::api::model::{
    Ad, AdAnalytics, AdChanges, AdList, AdMetrics, AnalyticsReport, Breakdown, BreakdownGroup, Bucket, NewAd,
    Pagination, Period, PreviousReport, Series,
};
use crate::breakdown::{Dimension, Filters};
use crate::cache::AnswerCache;
use crate::catalog;
use crate::counts::CountsReader;
use crate::error::QueryError;
use crate::metrics::Metrics;
use crate::range::{Compare, Granularity, Window, Zone};
use crate::ranking::{self, Ranking};
use crate::repo::{Ads, Counts, Repo, States};

pub struct Analytics {
    repo: Repo,
    counts: CountsReader,
    ad_lists: AnswerCache<(u32, u32), AdList>,
    ads: AnswerCache<Uuid, Option<Ad>>,
    reports: AnswerCache<ReportQuery, AnalyticsReport>,
    series: AnswerCache<(Option<Uuid>, SeriesQuery), Series>,
    breakdowns: AnswerCache<BreakdownQuery, Breakdown>,
    /// When ingest received the newest event stored: one read shared by every answer between
    /// two write announcements.
    newest_received: AnswerCache<(), Option<OffsetDateTime>>,
}

impl Analytics {
    /// `ttl` bounds the age of answers, `past_ttl` that of the counts before today (see
    /// [`CountsReader`]); `max_bytes` is the budget of all caches together: a sixth for each
    /// of the five kinds of answer and for the past counts (the watermark's one entry aside).
    pub fn new(repo: Repo, ttl: Duration, past_ttl: Duration, max_bytes: u64, metrics: &Metrics) -> Self {
        let lookups = metrics.cache_lookups.clone();
        let share = max_bytes / 6;
        Self {
            counts: CountsReader::new(repo.clone(), past_ttl, share, lookups.clone()),
            repo,
            ad_lists: AnswerCache::new("ad_lists", ttl, share, lookups.clone()),
            ads: AnswerCache::new("ads", ttl, share, lookups.clone()),
            reports: AnswerCache::new("reports", ttl, share, lookups.clone()),
            series: AnswerCache::new("series", ttl, share, lookups.clone()),
            breakdowns: AnswerCache::new("breakdowns", ttl, share, lookups.clone()),
            newest_received: AnswerCache::new("newest_received", ttl, WATERMARK_BYTES, lookups),
        }
    }

    pub async fn list_ads(&self, page: u32, limit: u32) -> Result<AdList, QueryError> {
        self.ad_lists
            .get_or_compute((page, limit), async {
                let offset = u64::from(page - 1) * u64::from(limit);
                let (rows, total) = self.repo.list_ads(offset, limit).await?;
                Ok(AdList {
                    ads: rows.into_iter().map(Ad::from).collect(),
                    pagination: Pagination { page, limit, total, total_pages: total.div_ceil(u64::from(limit)) },
                })
            })
            .await
    }

    pub async fn ad(&self, id: Uuid) -> Result<Ad, QueryError> {
        self.ads
            .get_or_compute(id, async { Ok(self.repo.get_ad(id).await?.map(Ad::from)) })
            .await?
            .ok_or(QueryError::AdNotFound(id))
    }

    /// The window's metrics grouped by one dimension: see [`BreakdownQuery`].
    pub async fn breakdown(&self, query: BreakdownQuery) -> Result<Breakdown, QueryError> {
        if let Some(id) = query.filters.ad_id {
            self.ad(id).await?;
        }
        self.breakdowns
            .get_or_compute(query.clone(), async {
                let (groups, newest_event_received_at) = tokio::try_join!(
                    self.counts.breakdown(query.window, query.by, &query.filters),
                    self.newest_event_received_at()
                )?;
                Ok(Breakdown {
                    from: query.window.from,
                    to: query.window.to,
                    by: query.by,
                    newest_event_received_at,
                    groups: ranking::top(groups, query.ranking)
                        .into_iter()
                        .map(|(value, c)| BreakdownGroup::new(value, c))
                        .collect(),
                })
            })
            .await
    }

    /// Adds an ad to the catalog.
    pub async fn create_ad(&self, ad: NewAd) -> Result<Ad, QueryError> {
        let row = catalog::new_row(ad, now())?;
        if self.repo.get_ad(row.id).await?.is_some() {
            return Err(QueryError::AdExists(row.id));
        }
        self.store(row).await
    }

    /// Applies `changes` to an ad.
    pub async fn update_ad(&self, id: Uuid, changes: AdChanges) -> Result<Ad, QueryError> {
        let current = self.repo.get_ad(id).await?.ok_or(QueryError::AdNotFound(id))?;
        self.store(catalog::changed_row(current, changes, now())?).await
    }

    /// Deactivates an ad (its events and numbers stay); deactivating it again changes nothing.
    pub async fn deactivate_ad(&self, id: Uuid) -> Result<Ad, QueryError> {
        let current = self.repo.get_ad(id).await?.ok_or(QueryError::AdNotFound(id))?;
        if !current.active {
            return Ok(current.into());
        }
        self.store(catalog::deactivated_row(current, now())).await
    }

    /// Forgets the cached answers a write made stale: every answer about events (not the
    /// catalog's), and the counts of past days only when the write reached back to them
    /// (`earliest`, the earliest event time it wrote; `None`: any).
    pub fn forget_written(&self, earliest: Option<OffsetDateTime>) {
        self.reports.invalidate_all();
        self.series.invalidate_all();
        self.breakdowns.invalidate_all();
        self.newest_received.invalidate_all();
        self.counts.forget_written(earliest, now());
    }

    async fn newest_event_received_at(&self) -> Result<Option<OffsetDateTime>, QueryError> {
        // Boxed: a cache lookup's future is large, and inside an answer's it overflowed a worker
        // thread's stack in debug builds.
        Box::pin(self.newest_received.get_or_compute((), self.repo.newest_event_received_at())).await
    }

    /// Writes the ad's new version and forgets cached answers that showed the old one.
    async fn store(&self, row: AdRow) -> Result<Ad, QueryError> {
        self.repo.insert_ad(&row).await?;
        self.ads.invalidate(&row.id).await;
        self.ad_lists.invalidate_all();
        // Breakdowns by campaign read the catalog.
        self.breakdowns.invalidate_all();
        self.counts.forget_all();
        Ok(row.into())
    }

    /// Metrics per ad: see [`ReportQuery`].
    pub async fn report(&self, query: ReportQuery) -> Result<AnalyticsReport, QueryError> {
        if let Some(id) = query.ad {
            self.ad(id).await?;
        }
        let previous_window = query.compare.map(|Compare::Previous| query.window.previous()).transpose()?;
        self.reports
            .get_or_compute(query, async {
                let total = async {
                    match query.ad {
                        Some(_) => Ok(None),
                        None => self.counts.total(query.window).await.map(Some),
                    }
                };
                let (ads, total, newest_event_received_at) =
                    tokio::try_join!(self.report_ads(&query), total, self.newest_event_received_at())?;
                // With one ad, its own metrics are the total.
                let total = total.or_else(|| ads.first().map(|(_, c)| *c)).unwrap_or_default();
                let previous = match previous_window {
                    Some(window) => Some(self.previous_report(window, &query, &ads).await?),
                    None => None,
                };
                Ok(AnalyticsReport {
                    from: query.window.from,
                    to: query.window.to,
                    newest_event_received_at,
                    total: total.into(),
                    ads: ads.into_iter().map(|(ad_id, c)| AdMetrics { ad_id, metrics: c.into() }).collect(),
                    previous,
                })
            })
            .await
    }

    /// The report's ads and their counts, in answer order.
    async fn report_ads(&self, query: &ReportQuery) -> Result<Vec<(Uuid, Counts)>, QueryError> {
        let window = query.window;
        if let Some(id) = query.ad {
            let mut totals = self.counts.totals_by_ad(window, Ads::One(id), States::Merged).await?;
            return Ok(vec![(id, totals.remove(&id).unwrap_or_default())]);
        }
        let Some(ranking) = query.ranking else {
            return Ok(self.counts.totals_by_ad(window, Ads::All, States::Merged).await?.into_iter().collect());
        };
        if ranking.metric.needs_states() {
            return Ok(ranking::top(self.counts.totals_by_ad(window, Ads::All, States::Merged).await?, ranking));
        }
        // Rank on the sums alone, then merge the states for the winners only.
        let mut top = ranking::top(self.counts.totals_by_ad(window, Ads::All, States::Skipped).await?, ranking);
        if !top.is_empty() {
            let ids: Vec<Uuid> = top.iter().map(|(id, _)| *id).collect();
            let merged = self.counts.totals_by_ad(window, Ads::These(&ids), States::Merged).await?;
            for (id, counts) in &mut top {
                if let Some(m) = merged.get(id) {
                    counts.unique_clicks = m.unique_clicks;
                    counts.unique_viewers = m.unique_viewers;
                    counts.playback_p50_secs = m.playback_p50_secs;
                    counts.playback_p95_secs = m.playback_p95_secs;
                }
            }
        }
        Ok(top)
    }

    /// The same ads over the previous period, in the same order.
    async fn previous_report(
        &self,
        window: Window,
        query: &ReportQuery,
        ads: &[(Uuid, Counts)],
    ) -> Result<PreviousReport, QueryError> {
        let ids: Vec<Uuid> = ads.iter().map(|(id, _)| *id).collect();
        // A ranking holds at most a page of ads: read just those. A full report reads every ad,
        // as the current window did, rather than binding a list of all of them.
        let scope = match (query.ad, query.ranking) {
            (Some(id), _) => Ads::One(id),
            (None, Some(_)) => Ads::These(&ids),
            (None, None) => Ads::All,
        };
        let totals = async {
            match ids.is_empty() {
                true => Ok(Default::default()),
                false => self.counts.totals_by_ad(window, scope, States::Merged).await,
            }
        };
        let total = async {
            match query.ad {
                Some(_) => Ok(None),
                None => self.counts.total(window).await.map(Some),
            }
        };
        let (mut totals, total) = tokio::try_join!(totals, total)?;
        // With one ad, its own metrics are the total, as in the current period.
        let total = total.or_else(|| query.ad.and_then(|id| totals.get(&id).copied())).unwrap_or_default();
        Ok(PreviousReport {
            from: window.from,
            to: window.to,
            total: total.into(),
            ads: ids
                .iter()
                .map(|id| AdMetrics { ad_id: *id, metrics: totals.remove(id).unwrap_or_default().into() })
                .collect(),
        })
    }

    /// One ad's totals and series (404 for an unknown ad).
    pub async fn ad_analytics(&self, ad: Uuid, query: SeriesQuery) -> Result<AdAnalytics, QueryError> {
        self.ad(ad).await?;
        Ok(AdAnalytics { ad_id: ad, series: self.series(Some(ad), query).await? })
    }

    /// The totals and series of one ad, or of every ad together (`None`): unique visitors are
    /// then counted once across ads, as in the report's total.
    pub async fn series(&self, ad: Option<Uuid>, query: SeriesQuery) -> Result<Series, QueryError> {
        let buckets = query.window.buckets(query.granularity, &query.zone)?;
        let previous_window = query.compare.map(|Compare::Previous| query.window.previous()).transpose()?;
        let previous_buckets = previous_window.map(|w| w.buckets(query.granularity, &query.zone)).transpose()?;
        self.series
            .get_or_compute((ad, query.clone()), async {
                let current = self.period(ad, query.window, &query, buckets);
                let previous = async {
                    match (previous_window, previous_buckets) {
                        (Some(window), Some(buckets)) => Ok(Some(self.period(ad, window, &query, buckets).await?)),
                        _ => Ok(None),
                    }
                };
                let (current, previous, newest_event_received_at) =
                    tokio::try_join!(current, previous, self.newest_event_received_at())?;
                Ok(Series {
                    granularity: query.granularity,
                    tz: query.zone.name().to_owned(),
                    newest_event_received_at,
                    current,
                    previous,
                })
            })
            .await
    }

    /// The totals and series of one ad, or of every ad, over the given buckets.
    async fn period(
        &self,
        ad: Option<Uuid>,
        window: Window,
        query: &SeriesQuery,
        buckets: Vec<OffsetDateTime>,
    ) -> Result<Period, QueryError> {
        let scope = ad.map_or(Ads::All, Ads::One);
        let totals = async {
            match ad {
                Some(id) => {
                    Ok(self.counts.totals_by_ad(window, scope, States::Merged).await?.remove(&id).unwrap_or_default())
                }
                None => self.counts.total(window).await,
            }
        };
        let (totals, mut by_bucket) =
            tokio::try_join!(totals, self.counts.series(window, scope, query.granularity, &query.zone))?;
        let series: Vec<Bucket> = buckets
            .into_iter()
            .map(|start| Bucket {
                start: query.zone.local(start),
                metrics: by_bucket.remove(&start.unix_timestamp()).unwrap_or_default().into(),
            })
            .collect();
        // ClickHouse's zone rules and ours must name the same buckets, or counts would be lost.
        if let Some(start) = by_bucket.keys().next() {
            return Err(QueryError::ClickHouse(format!(
                "ClickHouse counted a bucket starting at {start}, which is not one of the planned buckets"
            )));
        }
        Ok(Period { from: window.from, to: window.to, totals: totals.into(), series })
    }
}

/// The watermark cache's budget: one small entry.
const WATERMARK_BYTES: u64 = 4_096;

/// What `GET /ads/analytics` asks, normalised: also the cache key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReportQuery {
    pub window: Window,
    /// Exactly this ad (zeros when it had no events); otherwise every ad with events.
    pub ad: Option<Uuid>,
    /// Only the top ads by a metric.
    pub ranking: Option<Ranking>,
    pub compare: Option<Compare>,
}

/// What `GET /ads/analytics/breakdown` asks, normalised.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BreakdownQuery {
    pub window: Window,
    pub by: Dimension,
    pub filters: Filters,
    /// The order and number of groups.
    pub ranking: Ranking,
}

/// What `GET /ads/{ad_id}/analytics` asks besides the ad, and `GET /ads/analytics/series`, normalised.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SeriesQuery {
    pub window: Window,
    pub granularity: Granularity,
    /// The zone buckets follow.
    pub zone: Zone,
    pub compare: Option<Compare>,
}

/// Now, for resolving relative windows.
pub fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}
