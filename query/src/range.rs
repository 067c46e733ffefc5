//! Time windows for analytics.
//!
//! Rollups hold whole minutes, so a window is a set of whole minutes: `from` is rounded down and
//! `to` up to the minute, and the window is `[from, to)`. Plain SQL over the raw tables agrees
//! with the API over the same aligned window.

use time::{Duration, OffsetDateTime};

use crate::error::QueryError;

/// Preset windows ending now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, poem_openapi::Enum)]
pub enum Timeframe {
    #[oai(rename = "15m")]
    Last15Minutes,
    #[oai(rename = "1h")]
    LastHour,
    #[oai(rename = "24h")]
    Last24Hours,
    #[oai(rename = "7d")]
    Last7Days,
    #[oai(rename = "30d")]
    Last30Days,
    /// Everything since 1970.
    #[oai(rename = "all")]
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, poem_openapi::Enum)]
#[oai(rename_all = "lowercase")]
pub enum Granularity {
    Minute,
    Hour,
    Day,
}

impl Granularity {
    pub fn step(self) -> Duration {
        match self {
            Granularity::Minute => Duration::MINUTE,
            Granularity::Hour => Duration::HOUR,
            Granularity::Day => Duration::DAY,
        }
    }

    /// The SQL interval; a fixed string per variant, never user text.
    pub fn sql_interval(self) -> &'static str {
        match self {
            Granularity::Minute => "INTERVAL 1 MINUTE",
            Granularity::Hour => "INTERVAL 1 HOUR",
            Granularity::Day => "INTERVAL 1 DAY",
        }
    }

    /// The rollup tables' time column at this granularity (`click_events_per_<it>` holds it).
    pub fn rollup_column(self) -> &'static str {
        match self {
            Granularity::Minute => "minute",
            Granularity::Hour => "hour",
            Granularity::Day => "day",
        }
    }

    /// The next finer granularity; `None` for minutes, the finest rollup.
    fn finer(self) -> Option<Granularity> {
        match self {
            Granularity::Minute => None,
            Granularity::Hour => Some(Granularity::Minute),
            Granularity::Day => Some(Granularity::Hour),
        }
    }
}

/// A part of a window read from one rollup: `[from, to)` on whole `granularity` units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub granularity: Granularity,
    pub from: OffsetDateTime,
    pub to: OffsetDateTime,
}

/// The latest `to` accepted.
const LATEST: OffsetDateTime = time::macros::datetime!(2100-01-01 0:00 UTC);

/// Most buckets one series may have.
pub const MAX_BUCKETS: i64 = 10_000;

/// `[from, to)`, both on whole minutes (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Window {
    pub from: OffsetDateTime,
    pub to: OffsetDateTime,
}

impl Window {
    /// Resolves `from`/`to` or `timeframe` (default: the last 24 hours) against `now`.
    pub fn resolve(
        from: Option<OffsetDateTime>,
        to: Option<OffsetDateTime>,
        timeframe: Option<Timeframe>,
        now: OffsetDateTime,
    ) -> Result<Self, QueryError> {
        let (from, to) = match (from, to, timeframe) {
            (None, None, timeframe) => {
                let from = match timeframe.unwrap_or(Timeframe::Last24Hours) {
                    Timeframe::Last15Minutes => now - Duration::minutes(15),
                    Timeframe::LastHour => now - Duration::HOUR,
                    Timeframe::Last24Hours => now - Duration::DAY,
                    Timeframe::Last7Days => now - Duration::days(7),
                    Timeframe::Last30Days => now - Duration::days(30),
                    Timeframe::All => OffsetDateTime::UNIX_EPOCH,
                };
                (from, now)
            }
            (_, _, Some(_)) => {
                return Err(QueryError::invalid("timeframe", "give either timeframe or from/to, not both"))
            }
            (None, Some(_), None) => return Err(QueryError::invalid("from", "is required when to is given")),
            (Some(from), to, None) => (from, to.unwrap_or(now)),
        };
        if from < OffsetDateTime::UNIX_EPOCH {
            return Err(QueryError::invalid("from", "must not be before 1970-01-01T00:00:00Z"));
        }
        // ClickHouse DateTime ends in 2106; checked before rounding, which could overflow.
        if to > LATEST {
            return Err(QueryError::invalid("to", "must not be after 2100-01-01T00:00:00Z"));
        }
        let window = Self { from: floor(from, Duration::MINUTE), to: ceil(to, Duration::MINUTE) };
        if window.from >= window.to {
            return Err(QueryError::invalid("to", "must be after from"));
        }
        Ok(window)
    }

    /// Bucket starts covering the window at `granularity`, oldest first.
    pub fn buckets(&self, granularity: Granularity) -> Result<Vec<OffsetDateTime>, QueryError> {
        let step = granularity.step();
        let first = floor(self.from, step);
        let (span, step_secs) = ((self.to - first).whole_seconds(), step.whole_seconds());
        let count = (span + step_secs - 1) / step_secs;
        if count > MAX_BUCKETS {
            return Err(QueryError::invalid(
                "granularity",
                format!("{count} buckets requested; at most {MAX_BUCKETS}: use a coarser granularity or a shorter range"),
            ));
        }
        Ok((0..count).map(|i| first + step * i as i32).collect())
    }

    /// Splits the window into the fewest rollup reads: whole units of `coarsest` (at most
    /// a day) in the middle, then ever finer units towards the edges. Together the segments
    /// cover the window exactly once, so sums and unique-visitor merges over them are exact.
    pub fn segments(&self, coarsest: Granularity) -> Vec<Segment> {
        let mut segments = Vec::new();
        split(self.from, self.to, coarsest, &mut segments);
        segments
    }
}

fn split(from: OffsetDateTime, to: OffsetDateTime, granularity: Granularity, out: &mut Vec<Segment>) {
    if from >= to {
        return;
    }
    let Some(finer) = granularity.finer() else {
        out.push(Segment { granularity, from, to });
        return;
    };
    let (inner_from, inner_to) = (ceil(from, granularity.step()), floor(to, granularity.step()));
    if inner_from < inner_to {
        split(from, inner_from, finer, out);
        out.push(Segment { granularity, from: inner_from, to: inner_to });
        split(inner_to, to, finer, out);
    } else {
        split(from, to, finer, out);
    }
}

fn floor(t: OffsetDateTime, step: Duration) -> OffsetDateTime {
    let secs = t.unix_timestamp();
    let step = step.whole_seconds();
    // Unix time has no leap seconds, so whole minutes, hours and UTC days divide evenly.
    OffsetDateTime::from_unix_timestamp(secs - secs.rem_euclid(step)).unwrap_or(t)
}

fn ceil(t: OffsetDateTime, step: Duration) -> OffsetDateTime {
    let down = floor(t, step);
    if down == t { t } else { down + step }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    const NOW: OffsetDateTime = datetime!(2026-11-22 10:17:42.5 UTC);

    fn shape(window: Window, coarsest: Granularity) -> Vec<(Granularity, OffsetDateTime, OffsetDateTime)> {
        window.segments(coarsest).into_iter().map(|s| (s.granularity, s.from, s.to)).collect()
    }

    #[test]
    fn windows_are_read_from_the_coarsest_rollups_that_fit() {
        use Granularity::{Day, Hour, Minute};
        let w = Window { from: datetime!(2026-10-23 10:17 UTC), to: datetime!(2026-11-22 10:18 UTC) };
        assert_eq!(
            shape(w, Day),
            vec![
                (Minute, datetime!(2026-10-23 10:17 UTC), datetime!(2026-10-23 11:00 UTC)),
                (Hour, datetime!(2026-10-23 11:00 UTC), datetime!(2026-10-24 0:00 UTC)),
                (Day, datetime!(2026-10-24 0:00 UTC), datetime!(2026-11-22 0:00 UTC)),
                (Hour, datetime!(2026-11-22 0:00 UTC), datetime!(2026-11-22 10:00 UTC)),
                (Minute, datetime!(2026-11-22 10:00 UTC), datetime!(2026-11-22 10:18 UTC)),
            ]
        );
        // A series by hour may not use days; one by minute reads minutes only.
        assert_eq!(shape(w, Hour).iter().filter(|s| s.0 == Day).count(), 0);
        assert_eq!(shape(w, Minute), vec![(Minute, w.from, w.to)]);
        // Inside one hour, or on exact boundaries, nothing finer is read.
        let short = Window { from: datetime!(2026-11-22 10:05 UTC), to: datetime!(2026-11-22 10:50 UTC) };
        assert_eq!(shape(short, Day), vec![(Minute, short.from, short.to)]);
        let days = Window { from: datetime!(2026-11-01 0:00 UTC), to: datetime!(2026-11-03 0:00 UTC) };
        assert_eq!(shape(days, Day), vec![(Day, days.from, days.to)]);
        let hours = Window { from: datetime!(2026-11-01 22:00 UTC), to: datetime!(2026-11-02 02:00 UTC) };
        assert_eq!(shape(hours, Day), vec![(Hour, hours.from, hours.to)]);
    }

    #[test]
    fn timeframes_end_now_on_whole_minutes() {
        let w = Window::resolve(None, None, Some(Timeframe::LastHour), NOW).unwrap();
        assert_eq!(w, Window { from: datetime!(2026-11-22 9:17 UTC), to: datetime!(2026-11-22 10:18 UTC) });
        let w = Window::resolve(None, None, None, NOW).unwrap();
        assert_eq!(w.from, datetime!(2026-11-21 10:17 UTC));
        let w = Window::resolve(None, None, Some(Timeframe::All), NOW).unwrap();
        assert_eq!(w.from, OffsetDateTime::UNIX_EPOCH);
    }

    #[test]
    fn explicit_ranges_are_aligned() {
        let w = Window::resolve(Some(datetime!(2026-11-01 0:00:30 UTC)), Some(datetime!(2026-11-02 0:00 UTC)), None, NOW)
            .unwrap();
        assert_eq!(w, Window { from: datetime!(2026-11-01 0:00 UTC), to: datetime!(2026-11-02 0:00 UTC) });
        let w = Window::resolve(Some(datetime!(2026-11-22 10:00 +02:00)), None, None, NOW).unwrap();
        assert_eq!(w.from, datetime!(2026-11-22 8:00 UTC));
        assert_eq!(w.to, datetime!(2026-11-22 10:18 UTC));
    }

    #[test]
    fn contradictions_name_the_parameter() {
        let field = |r: Result<Window, QueryError>| match r {
            Err(QueryError::InvalidParameter { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        let t = datetime!(2026-11-22 9:00 UTC);
        assert_eq!(field(Window::resolve(Some(t), None, Some(Timeframe::LastHour), NOW)), "timeframe");
        assert_eq!(field(Window::resolve(None, Some(t), None, NOW)), "from");
        assert_eq!(field(Window::resolve(Some(t), Some(t), None, NOW)), "to");
        assert_eq!(field(Window::resolve(Some(NOW), Some(t), None, NOW)), "to");
        let end_of_time = datetime!(9999-12-31 23:59:59.999 UTC);
        assert_eq!(field(Window::resolve(Some(t), Some(end_of_time), None, NOW)), "to");
        assert_eq!(field(Window::resolve(Some(end_of_time), None, None, NOW)), "to");
    }

    #[test]
    fn buckets_cover_the_window() {
        let w = Window { from: datetime!(2026-11-22 9:17 UTC), to: datetime!(2026-11-22 11:01 UTC) };
        let hours = w.buckets(Granularity::Hour).unwrap();
        assert_eq!(hours, vec![datetime!(2026-11-22 9:00 UTC), datetime!(2026-11-22 10:00 UTC), datetime!(2026-11-22 11:00 UTC)]);
        assert_eq!(w.buckets(Granularity::Minute).unwrap().len(), 104);
        assert_eq!(w.buckets(Granularity::Day).unwrap(), vec![datetime!(2026-11-22 0:00 UTC)]);
        let year = Window { from: datetime!(2025-01-01 0:00 UTC), to: datetime!(2026-01-01 0:00 UTC) };
        assert!(matches!(year.buckets(Granularity::Minute), Err(QueryError::InvalidParameter { .. })));
        assert_eq!(year.buckets(Granularity::Hour).unwrap().len(), 8760);
    }
}
