//! The answers, independent of HTTP: cached reads over [`Repo`].

use std::time::Duration;

use time::OffsetDateTime;
use uuid::Uuid;

use crate::api::model::{Ad, AdAnalytics, AdList, AdMetrics, AnalyticsReport, Bucket, Pagination};
use crate::cache::AnswerCache;
use crate::error::QueryError;
use crate::metrics::Metrics;
use crate::range::{Granularity, Window};
use crate::repo::Repo;

pub struct Analytics {
    repo: Repo,
    ad_lists: AnswerCache<(u32, u32), AdList>,
    ads: AnswerCache<Uuid, Option<Ad>>,
    reports: AnswerCache<(Window, Option<Uuid>), AnalyticsReport>,
    series: AnswerCache<(Window, Uuid, Granularity), AdAnalytics>,
}

impl Analytics {
    pub fn new(repo: Repo, ttl: Duration, max_entries: u64, metrics: &Metrics) -> Self {
        let lookups = metrics.cache_lookups.clone();
        Self {
            repo,
            ad_lists: AnswerCache::new("ad_lists", ttl, max_entries, lookups.clone()),
            ads: AnswerCache::new("ads", ttl, max_entries, lookups.clone()),
            reports: AnswerCache::new("reports", ttl, max_entries, lookups.clone()),
            series: AnswerCache::new("series", ttl, max_entries, lookups),
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

    /// Metrics per ad; with `ad`, exactly that ad (zeros when it had no events).
    pub async fn report(&self, window: Window, ad: Option<Uuid>) -> Result<AnalyticsReport, QueryError> {
        if let Some(id) = ad {
            self.ad(id).await?;
        }
        self.reports
            .get_or_compute((window, ad), async {
                let mut totals = self.repo.totals_by_ad(window, ad).await?;
                if let Some(id) = ad {
                    totals.entry(id).or_default();
                }
                let ads = totals.into_iter().map(|(ad_id, c)| AdMetrics { ad_id, metrics: c.into() }).collect();
                Ok(AnalyticsReport { from: window.from, to: window.to, ads })
            })
            .await
    }

    pub async fn ad_analytics(&self, ad: Uuid, window: Window, granularity: Granularity) -> Result<AdAnalytics, QueryError> {
        let buckets = window.buckets(granularity)?;
        self.ad(ad).await?;
        self.series
            .get_or_compute((window, ad, granularity), async {
                let (totals, mut by_bucket) =
                    tokio::try_join!(self.repo.totals_by_ad(window, Some(ad)), self.repo.series(window, ad, granularity))?;
                let series = buckets
                    .into_iter()
                    .map(|start| Bucket {
                        start,
                        metrics: by_bucket.remove(&start.unix_timestamp()).unwrap_or_default().into(),
                    })
                    .collect();
                Ok(AdAnalytics {
                    ad_id: ad,
                    from: window.from,
                    to: window.to,
                    granularity,
                    totals: totals.get(&ad).copied().unwrap_or_default().into(),
                    series,
                })
            })
            .await
    }
}

/// Now, for resolving relative windows.
pub fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}
