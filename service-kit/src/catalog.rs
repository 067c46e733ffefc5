//! A service's copy of the ad catalog (`ads`), re-read every few seconds: ingest keeps accepting
//! events for known ads while ClickHouse is down, and the aggregator recognises events for ads
//! that do not exist.

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

#[derive(Default)]
pub struct Catalog {
    ads: RwLock<Option<Arc<HashMap<Uuid, bool>>>>,
    loaded_at: std::sync::Mutex<Option<std::time::Instant>>,
}

#[derive(Row, Deserialize)]
struct AdActive {
    #[serde(with = "clickhouse::serde::uuid")]
    id: Uuid,
    active: bool,
}

impl Catalog {
    pub fn status(&self, ad_id: Uuid) -> AdStatus {
        let guard = self.ads.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        match guard.as_ref().map(|ads| ads.get(&ad_id).copied()) {
            None => AdStatus::NotLoaded,
            Some(None) => AdStatus::Unknown,
            Some(Some(true)) => AdStatus::Active,
            Some(Some(false)) => AdStatus::Inactive,
        }
    }

    pub fn is_loaded(&self) -> bool {
        self.ads.read().unwrap_or_else(|poisoned| poisoned.into_inner()).is_some()
    }

    pub fn replace(&self, ads: HashMap<Uuid, bool>) {
        let mut guard = self.ads.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        *guard = Some(Arc::new(ads));
    }

    pub async fn load(&self, client: &Client) -> Result<usize, clickhouse::error::Error> {
        let rows = client.query("SELECT id, active FROM ads FINAL").fetch_all::<AdActive>().await?;
        let count = rows.len();
        self.replace(rows.into_iter().map(|r| (r.id, r.active)).collect());
        *self.loaded_at.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(std::time::Instant::now());
        Ok(count)
    }

    /// Reloads now unless the copy is younger than `max_age`: for a caller that just met an
    /// ad it does not know, which may be newer than the copy.
    pub async fn reload_if_older(&self, client: &Client, max_age: Duration) {
        let fresh = self
            .loaded_at
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .is_some_and(|at| at.elapsed() < max_age);
        if !fresh {
            if let Err(error) = self.load(client).await {
                tracing::warn!(%error, "catalog reload failed; keeping the previous copy");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_tells_unknown_from_not_loaded() {
        let catalog = Catalog::default();
        let (active, inactive) = (Uuid::now_v7(), Uuid::now_v7());
        assert_eq!(catalog.status(active), AdStatus::NotLoaded);
        assert!(!catalog.is_loaded());
        catalog.replace(HashMap::from([(active, true), (inactive, false)]));
        assert_eq!(catalog.status(active), AdStatus::Active);
        assert_eq!(catalog.status(inactive), AdStatus::Inactive);
        assert_eq!(catalog.status(Uuid::now_v7()), AdStatus::Unknown);
    }
}
