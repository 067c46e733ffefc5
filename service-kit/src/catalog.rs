//! A service's copy of the ad catalog (`ads`), re-read every few seconds: ingest keeps accepting
//! events for known ads (and redirecting their clicks, and showing them in its demo player) while
//! ClickHouse is down, and the aggregator recognises events for ads that do not exist.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use clickhouse::{Client, Row};
use serde::Deserialize;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdStatus {
    Active,
    Inactive,
    Unknown,
    /// The catalog was never loaded: we cannot tell, so we must not reject.
    NotLoaded,
}

/// What a service needs to know of an ad.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogAd {
    pub active: bool,
    /// Where a click sends the person (`GET /c/{ad_id}` redirects there).
    pub target_url: String,
    /// What ingest's demo player shows: the ad's name and its creative.
    pub title: String,
    pub media_url: String,
}

#[derive(Default)]
pub struct Catalog {
    ads: RwLock<Option<Arc<HashMap<Uuid, CatalogAd>>>>,
    loaded_at: std::sync::Mutex<Option<std::time::Instant>>,
}

#[derive(Row, Deserialize)]
struct AdEntry {
    #[serde(with = "clickhouse::serde::uuid")]
    id: Uuid,
    active: bool,
    target_url: String,
    title: String,
    media_url: String,
}

impl Catalog {
    pub fn status(&self, ad_id: Uuid) -> AdStatus {
        let guard = self.ads.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        match guard.as_ref().map(|ads| ads.get(&ad_id).map(|ad| ad.active)) {
            None => AdStatus::NotLoaded,
            Some(None) => AdStatus::Unknown,
            Some(Some(true)) => AdStatus::Active,
            Some(Some(false)) => AdStatus::Inactive,
        }
    }

    /// The ad's entry; `None` when it is unknown or the catalog never loaded ([`Self::status`]
    /// tells which).
    pub fn ad(&self, ad_id: Uuid) -> Option<CatalogAd> {
        let guard = self.ads.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        guard.as_ref().and_then(|ads| ads.get(&ad_id).cloned())
    }

    /// The whole copy, `None` while it never loaded.
    pub fn ads(&self) -> Option<Arc<HashMap<Uuid, CatalogAd>>> {
        self.ads.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    pub fn is_loaded(&self) -> bool {
        self.ads.read().unwrap_or_else(|poisoned| poisoned.into_inner()).is_some()
    }

    pub fn replace(&self, ads: HashMap<Uuid, CatalogAd>) {
        let mut guard = self.ads.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        *guard = Some(Arc::new(ads));
    }

    pub async fn load(&self, client: &Client) -> Result<usize, clickhouse::error::Error> {
        let rows = client
            .query("SELECT id, active, target_url, title, media_url FROM ads FINAL")
            .fetch_all::<AdEntry>()
            .await?;
        let count = rows.len();
        self.replace(
            rows.into_iter()
                .map(|r| {
                    (
                        r.id,
                        CatalogAd {
                            active: r.active,
                            target_url: r.target_url,
                            title: r.title,
                            media_url: r.media_url,
                        },
                    )
                })
                .collect(),
        );
        *self.loaded_at.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(std::time::Instant::now());
        Ok(count)
    }

    /// Reloads now unless the copy is younger than `max_age`: for a caller that just met an
    /// ad it does not know, which may be newer than the copy. Returns whether the copy is now
    /// that fresh: if not (ClickHouse did not answer), an ad missing from it may still exist.
    pub async fn reload_if_older(&self, client: &Client, max_age: Duration) -> bool {
        let fresh = self
            .loaded_at
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .is_some_and(|at| at.elapsed() < max_age);
        if fresh {
            return true;
        }
        match self.load(client).await {
            Ok(_) => true,
            Err(error) => {
                tracing::warn!(%error, "catalog reload failed; keeping the previous copy");
                false
            }
        }
    }

    /// Re-reads the catalog forever; on failure the previous copy stays in use.
    pub async fn refresh_forever(self: Arc<Self>, client: Client, every: Duration) {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            match self.load(&client).await {
                Ok(count) => tracing::debug!(ads = count, "catalog refreshed"),
                Err(error) => tracing::warn!(%error, "catalog refresh failed; keeping the previous copy"),
            }
        }
    }
}

/// How fresh a service's copy of the ad catalog is kept.
#[derive(Debug, Clone, clap::Args)]
pub struct CatalogArgs {
    /// How often the ad catalog is re-read from ClickHouse.
    #[arg(long, env = "CATALOG_REFRESH_SECS", default_value_t = 5)]
    pub catalog_refresh_secs: u64,
}

impl CatalogArgs {
    pub fn validate(&self) -> Result<(), String> {
        if self.catalog_refresh_secs == 0 {
            return Err("CATALOG_REFRESH_SECS must be at least 1".into());
        }
        Ok(())
    }

    pub fn refresh(&self) -> Duration {
        Duration::from_secs(self.catalog_refresh_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_tells_unknown_from_not_loaded() {
        let catalog = Catalog::default();
        let (active, inactive) = (Uuid::now_v7(), Uuid::now_v7());
        assert_eq!(catalog.status(active), AdStatus::NotLoaded);
        assert!(!catalog.is_loaded());
        assert!(catalog.ads().is_none());
        let entry = |active| CatalogAd {
            active,
            target_url: "https://shop.example.com/".into(),
            title: "Boots".into(),
            media_url: "https://cdn.example.com/boots.webm".into(),
        };
        catalog.replace(HashMap::from([(active, entry(true)), (inactive, entry(false))]));
        assert_eq!(catalog.ad(active), Some(entry(true)));
        assert_eq!(catalog.ads().map(|ads| ads.len()), Some(2));
        assert_eq!(catalog.status(active), AdStatus::Active);
        assert_eq!(catalog.status(inactive), AdStatus::Inactive);
        assert_eq!(catalog.status(Uuid::now_v7()), AdStatus::Unknown);
    }
}
