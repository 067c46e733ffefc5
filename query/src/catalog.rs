//! Changes to the ad catalog: validation and the new row. The `ads` table keeps every version
//! (ReplacingMergeTree by `updated_at`); readers take the latest with `FINAL`, and ingest and the
//! aggregator pick it up at their next catalog refresh (`CATALOG_REFRESH_SECS`).

use schemas::rows::AdRow;
use time::{Duration, OffsetDateTime};
use url::Url;
use uuid::Uuid;

use crate::api::model::{AdChanges, NewAd};
use crate::error::QueryError;

/// A new ad's row, created and updated `now`.
pub fn new_row(ad: NewAd, now: OffsetDateTime) -> Result<AdRow, QueryError> {
    let now = whole_millis(now);
    Ok(AdRow {
        id: ad.id.unwrap_or_else(Uuid::now_v7),
        title: non_blank("title", ad.title.0)?,
        description: ad.description.0,
        media_url: web_url("media_url", &ad.media_url.0)?,
        target_url: web_url("target_url", &ad.target_url.0)?,
        campaign_id: non_blank("campaign_id", ad.campaign_id.0)?,
        active: ad.active,
        created_at: now,
        updated_at: now,
    })
}

/// `current` with `changes` applied: the row that supersedes it.
pub fn changed_row(current: AdRow, changes: AdChanges, now: OffsetDateTime) -> Result<AdRow, QueryError> {
    Ok(AdRow {
        title: changes.title.map(|t| non_blank("title", t.0)).transpose()?.unwrap_or(current.title),
        description: changes.description.map_or(current.description, |d| d.0),
        media_url: changes.media_url.map(|u| web_url("media_url", &u.0)).transpose()?.unwrap_or(current.media_url),
        target_url: changes.target_url.map(|u| web_url("target_url", &u.0)).transpose()?.unwrap_or(current.target_url),
        campaign_id: changes
            .campaign_id
            .map(|c| non_blank("campaign_id", c.0))
            .transpose()?
            .unwrap_or(current.campaign_id),
        active: changes.active.unwrap_or(current.active),
        updated_at: next_version(current.updated_at, now),
        ..current
    })
}

/// `current` deactivated (a soft delete: its events and numbers stay).
pub fn deactivated_row(current: AdRow, now: OffsetDateTime) -> AdRow {
    AdRow { active: false, updated_at: next_version(current.updated_at, now), ..current }
}

/// The new row's `updated_at`: later than the current one even if this clock is behind, so the
/// new row wins in `FINAL`.
fn next_version(current: OffsetDateTime, now: OffsetDateTime) -> OffsetDateTime {
    whole_millis(now).max(current + Duration::milliseconds(1))
}

/// `t` as the table stores it (`DateTime64(3)`), so that the answer equals what is read back.
fn whole_millis(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(t.nanosecond() / 1_000_000 * 1_000_000).unwrap_or(t)
}

fn non_blank(field: &'static str, value: String) -> Result<String, QueryError> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(QueryError::invalid(field, "must not be blank"));
    }
    Ok(trimmed.to_owned())
}

/// Only web addresses: a target is where clicks are sent, so no `javascript:` or `file:`.
/// Stored normalised (as the `url` crate writes it).
fn web_url(field: &'static str, url: &str) -> Result<String, QueryError> {
    let invalid = || QueryError::invalid(field, "must be an http or https URL with a host");
    let url = Url::parse(url).map_err(|_| invalid())?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(invalid());
    }
    Ok(url.to_string())
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;
    use crate::api::Text;

    const NOW: OffsetDateTime = datetime!(2026-11-22 10:00 UTC);

    fn new_ad() -> NewAd {
        NewAd {
            id: None,
            title: " Trail shoes ".into(),
            description: Text::default(),
            media_url: "https://cdn.example.com/a.mp4".into(),
            target_url: "https://shop.example.com/trail".into(),
            campaign_id: "autumn".into(),
            active: true,
        }
    }

    fn field(result: Result<AdRow, QueryError>) -> &'static str {
        match result {
            Err(QueryError::InvalidParameter { field, .. }) => field,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn new_ads_are_checked_and_trimmed() {
        let row = new_row(new_ad(), NOW + Duration::nanoseconds(1_999_999)).unwrap();
        assert_eq!(
            (row.title.as_str(), row.created_at, row.updated_at),
            ("Trail shoes", NOW + Duration::milliseconds(1), row.created_at)
        );
        assert_eq!(field(new_row(NewAd { title: "  ".into(), ..new_ad() }, NOW)), "title");
        assert_eq!(field(new_row(NewAd { target_url: "javascript:alert(1)".into(), ..new_ad() }, NOW)), "target_url");
        assert_eq!(field(new_row(NewAd { media_url: "file:///etc/passwd".into(), ..new_ad() }, NOW)), "media_url");
        assert_eq!(field(new_row(NewAd { media_url: "https://exa mple.com/".into(), ..new_ad() }, NOW)), "media_url");
    }

    #[test]
    fn changes_keep_what_they_do_not_name_and_always_supersede() {
        let current = new_row(new_ad(), NOW).unwrap();
        let changes = AdChanges { title: Some("Road shoes".into()), ..AdChanges::default() };
        // This server's clock is behind the row's: the new version is still later.
        let earlier = NOW - Duration::minutes(5);
        let changed = changed_row(current.clone(), changes, earlier).unwrap();
        assert_eq!(changed.title, "Road shoes");
        assert_eq!((changed.target_url.as_str(), changed.created_at), (current.target_url.as_str(), NOW));
        assert_eq!(changed.updated_at, NOW + Duration::milliseconds(1));
        let off = deactivated_row(changed, NOW + Duration::minutes(1));
        assert!(!off.active);
        assert_eq!(
            field(changed_row(off, AdChanges { campaign_id: Some(Text::default()), ..AdChanges::default() }, NOW)),
            "campaign_id"
        );
    }
}
