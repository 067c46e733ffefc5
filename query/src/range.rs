//! Time windows for analytics.
//!
//! Rollups hold whole minutes, so a window is a set of whole minutes: `from` is rounded down and
//! `to` up to the minute, and the window is `[from, to)`. Plain SQL over the raw tables agrees
//! with the API over the same aligned window.
//!
//! Series buckets follow the caller's time zone ([`Zone`], daylight-saving changes included):
//! a day bucket is a local day of 23, 24 or 25 hours. A window is read from the coarsest rollup
//! whose rows each fall inside one bucket ([`Window::coarsest_rollup`]), or, in a zone whose
//! offsets are not whole hours, bucket by bucket ([`Window::series_segments`]).

use jiff::civil::Weekday;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan, Unit, Zoned, ZonedRound};
use time::{Duration, OffsetDateTime, UtcOffset};

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
    #[oai(rename = "90d")]
    Last90Days,
    /// Everything since 1970.
    #[oai(rename = "all")]
    All,
}

/// What to compare a window with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, poem_openapi::Enum)]
#[oai(rename_all = "lowercase")]
pub enum Compare {
    /// The period of equal length that ends where the window starts.
    Previous,
}

/// The size of a series bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, poem_openapi::Enum)]
#[oai(rename_all = "lowercase")]
pub enum Granularity {
    Minute,
    Hour,
    Day,
    /// Monday to Sunday.
    Week,
    Month,
}

impl Granularity {
    /// The start of the bucket holding the time `t` (an SQL expression), as unix seconds, in
    /// the zone bound as `{tz:String}`: ClickHouse's time-zone rules, which
    /// [`Window::buckets`] mirrors. Fixed SQL per variant around `t`, never user text.
    pub fn bucket_start_sql(self, t: &str) -> String {
        match self {
            Granularity::Minute => format!("toUnixTimestamp(toStartOfMinute({t}))"),
            Granularity::Hour => format!("toUnixTimestamp(toStartOfHour({t}, {{tz:String}}))"),
            Granularity::Day => format!("toUnixTimestamp(toStartOfDay({t}, {{tz:String}}))"),
            Granularity::Week => {
                format!("toUnixTimestamp(toDateTime(toStartOfWeek({t}, 1, {{tz:String}}), {{tz:String}}))")
            }
            Granularity::Month => {
                format!("toUnixTimestamp(toDateTime(toStartOfMonth({t}, {{tz:String}}), {{tz:String}}))")
            }
        }
    }
}

/// A rollup granularity: `<kind>_per_minute`, `_per_hour` and `_per_day` (UTC days).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rollup {
    Minute,
    Hour,
    Day,
}

impl Rollup {
    fn step(self) -> Duration {
        match self {
            Rollup::Minute => Duration::MINUTE,
            Rollup::Hour => Duration::HOUR,
            Rollup::Day => Duration::DAY,
        }
    }

    /// The rollup tables' time column at this granularity (`click_events_per_<it>` holds it).
    pub fn column(self) -> &'static str {
        match self {
            Rollup::Minute => "minute",
            Rollup::Hour => "hour",
            Rollup::Day => "day",
        }
    }

    /// The condition that selects this rollup's rows in `[{from<i>:Int64}, {to<i>:Int64})`
    /// (bound parameters, unix seconds). Minute and hour rollups are sorted by the hour or UTC
    /// day of their rows first (migration 0013); ClickHouse finds rows by that key only when
    /// the query bounds it too, so the condition does.
    pub fn range_sql(self, i: usize) -> String {
        let time = self.column();
        let (from, to) =
            (format!("toDateTime({{from{i}:Int64}}, 'UTC')"), format!("toDateTime({{to{i}:Int64}}, 'UTC')"));
        let range = format!("{time} >= {from} AND {time} < {to}");
        match self {
            Rollup::Minute => {
                format!("toStartOfHour(minute) >= toStartOfHour({from}) AND toStartOfHour(minute) < {to} AND {range}")
            }
            Rollup::Hour => {
                format!("toStartOfDay(hour) >= toStartOfDay({from}) AND toStartOfDay(hour) < {to} AND {range}")
            }
            Rollup::Day => range,
        }
    }

    /// The next finer rollup; `None` for minutes, the finest.
    fn finer(self) -> Option<Rollup> {
        match self {
            Rollup::Minute => None,
            Rollup::Hour => Some(Rollup::Minute),
            Rollup::Day => Some(Rollup::Hour),
        }
    }
}

/// An IANA time zone, as named by the caller; `UTC` by default.
#[derive(Debug, Clone)]
pub struct Zone {
    name: String,
    tz: TimeZone,
}

impl Zone {
    pub fn utc() -> Zone {
        Zone { name: "UTC".to_owned(), tz: TimeZone::UTC }
    }

    /// The zone named `name` (e.g. `Europe/Paris`, in any case) in the time-zone database built
    /// into the service. It keeps the database's spelling of the name: that is what ClickHouse
    /// is given, what the answer echoes and what the cache is keyed by.
    pub fn parse(name: &str) -> Result<Zone, QueryError> {
        let unknown =
            || QueryError::invalid("tz", format!("unknown time zone {name:?}: use an IANA name such as Europe/Paris"));
        let tz = TimeZone::get(name).map_err(|_| unknown())?;
        let canonical = tz.iana_name().ok_or_else(unknown)?.to_owned();
        Ok(Zone { name: canonical, tz })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `t` shown with this zone's offset at that instant.
    pub fn local(&self, t: OffsetDateTime) -> OffsetDateTime {
        let offset = Timestamp::from_second(t.unix_timestamp()).map(|ts| self.tz.to_offset(ts).seconds()).unwrap_or(0);
        UtcOffset::from_whole_seconds(offset).map(|o| t.to_offset(o)).unwrap_or(t)
    }

    /// Every UTC offset the zone has during `[from, to)`.
    fn offsets(&self, from: OffsetDateTime, to: OffsetDateTime) -> Vec<i32> {
        let (Ok(from), Ok(to)) =
            (Timestamp::from_second(from.unix_timestamp()), Timestamp::from_second(to.unix_timestamp()))
        else {
            return vec![0];
        };
        let mut offsets = vec![self.tz.to_offset(from).seconds()];
        offsets.extend(self.tz.following(from).take_while(|t| t.timestamp() < to).map(|t| t.offset().seconds()));
        offsets
    }
}

impl PartialEq for Zone {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for Zone {}

impl std::hash::Hash for Zone {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

/// A part of a window read from one rollup: `[from, to)` on whole `granularity` units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub rollup: Rollup,
    pub from: OffsetDateTime,
    pub to: OffsetDateTime,
    pub rows: Rows,
}

/// Which of a segment's rows are read. In a zone whose offsets are not whole hours, an hour
/// row fits inside one bucket unless a bucket boundary cuts its hour: those hours are read from
/// minute rows instead ([`Window::series_segments`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rows {
    All,
    /// Hour rows inside one bucket of the granularity.
    InsideBuckets(Granularity),
    /// Minute rows of the hours a bucket boundary cuts: [`Window::cut_hours`], bound as
    /// `{cut<i>:Array(Int64)}` (the key finds those hours' rows; a condition on every row's
    /// hour would read the window's).
    InCutHours,
}

impl Segment {
    /// The condition (with a leading `AND`, or nothing) that keeps [`Segment::rows`] of the
    /// rollup's rows, segment `i`'s: hour rows whose first and last second are in one bucket, or
    /// minute rows of the cut hours.
    pub fn rows_sql(&self, i: usize) -> String {
        match self.rows {
            Rows::All => String::new(),
            Rows::InsideBuckets(g) => {
                format!(" AND {} = {}", g.bucket_start_sql("hour"), g.bucket_start_sql("(hour + 3599)"))
            }
            Rows::InCutHours => {
                format!(" AND toStartOfHour(minute) IN (SELECT toDateTime(arrayJoin({{cut{i}:Array(Int64)}}), 'UTC'))")
            }
        }
    }
}

/// A part of a window whose counts are read on their own: [`Window::pieces`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    pub window: Window,
    /// Wholly before the current UTC day: only a late event changes its counts.
    pub past: bool,
}

impl Piece {
    /// `window` as one piece, past when it ends by `today` (the start of the current UTC day).
    pub fn new(window: Window, today: OffsetDateTime) -> Piece {
        Piece { window, past: window.to <= today }
    }
}

/// The start of the UTC day of `t`.
pub fn utc_day(t: OffsetDateTime) -> OffsetDateTime {
    floor(t, Duration::DAY)
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
                    Timeframe::Last90Days => now - Duration::days(90),
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

    /// The period of equal length just before this one, for `compare=previous`.
    pub fn previous(&self) -> Result<Window, QueryError> {
        let from = self.from - (self.to - self.from);
        if from < OffsetDateTime::UNIX_EPOCH {
            return Err(QueryError::invalid("compare", "the previous period would start before 1970-01-01T00:00:00Z"));
        }
        Ok(Window { from, to: self.from })
    }

    /// Bucket starts covering the window at `granularity` in `zone`, oldest first. The first
    /// may start before `from`. More than [`MAX_BUCKETS`] is an error naming `granularity`.
    pub fn buckets(&self, granularity: Granularity, zone: &Zone) -> Result<Vec<OffsetDateTime>, QueryError> {
        let too_many = || {
            QueryError::invalid(
                "granularity",
                format!("more than {MAX_BUCKETS} buckets requested: use a coarser granularity or a shorter range"),
            )
        };
        let zoned = |t: OffsetDateTime| -> Result<Zoned, QueryError> {
            Ok(Timestamp::from_second(t.unix_timestamp()).map_err(time_error)?.to_zoned(zone.tz.clone()))
        };
        let mut start = bucket_start(&zoned(self.from)?, granularity)?;
        let to = zoned(self.to)?;
        let mut starts = Vec::new();
        while start < to {
            if starts.len() as i64 == MAX_BUCKETS {
                return Err(too_many());
            }
            starts.push(
                OffsetDateTime::from_unix_timestamp(start.timestamp().as_second())
                    .map_err(|e| time_error(e.to_string()))?,
            );
            start = next_bucket_start(&start, granularity)?;
        }
        Ok(starts)
    }

    /// The coarsest rollup whose rows each fall inside one bucket of `granularity` in `zone`:
    /// UTC days only when the zone is UTC all window long, hours when its offsets are whole
    /// hours, minutes otherwise (e.g. India's +05:30).
    pub fn coarsest_rollup(&self, granularity: Granularity, zone: &Zone) -> Rollup {
        let offsets = zone.offsets(self.from, self.to);
        let aligned = |unit: i32| offsets.iter().all(|o| o % unit == 0);
        match granularity {
            Granularity::Minute => Rollup::Minute,
            Granularity::Day | Granularity::Week | Granularity::Month if aligned(86_400) => Rollup::Day,
            Granularity::Hour | Granularity::Day | Granularity::Week | Granularity::Month if aligned(3_600) => {
                Rollup::Hour
            }
            _ => Rollup::Minute,
        }
    }

    /// The rollup reads of a series by `granularity` in `zone`: [`Window::segments`] of the
    /// coarsest rollup whose rows fit its buckets. In a zone whose offsets are not whole hours
    /// (India's +05:30) that is minutes, but most hour rows still fit inside a bucket (23 of a
    /// day's 24): the whole hours are read as hour rows that fit and minute rows of the hours a
    /// boundary cuts, the minutes at the window's edges as minute rows.
    pub fn series_segments(&self, granularity: Granularity, zone: &Zone) -> Vec<Segment> {
        let coarsest = self.coarsest_rollup(granularity, zone);
        let (hours_from, hours_to) = (ceil(self.from, Duration::HOUR), floor(self.to, Duration::HOUR));
        // Hourly buckets at :30 hold no whole hour: then minutes throughout.
        if coarsest != Rollup::Minute
            || matches!(granularity, Granularity::Minute | Granularity::Hour)
            || hours_from >= hours_to
        {
            return self.segments(coarsest);
        }
        let segment = |rollup, from, to, rows| Segment { rollup, from, to, rows };
        let mut segments = vec![
            segment(Rollup::Minute, self.from, hours_from, Rows::All),
            segment(Rollup::Hour, hours_from, hours_to, Rows::InsideBuckets(granularity)),
            segment(Rollup::Minute, hours_from, hours_to, Rows::InCutHours),
            segment(Rollup::Minute, hours_to, self.to, Rows::All),
        ];
        segments.retain(|s| s.from < s.to);
        segments
    }

    /// The hours of `[from, to)` that a bucket boundary of `granularity` in `zone` cuts (a
    /// boundary not on a whole hour), as the unix seconds of their start.
    pub fn cut_hours(&self, granularity: Granularity, zone: &Zone) -> Result<Vec<i64>, QueryError> {
        let (from, to) = (ceil(self.from, Duration::HOUR), floor(self.to, Duration::HOUR));
        let mut hours: Vec<i64> = self
            .buckets(granularity, zone)?
            .into_iter()
            .filter(|start| *start > from && *start < to && floor(*start, Duration::HOUR) != *start)
            .map(|start| floor(start, Duration::HOUR).unix_timestamp())
            .collect();
        hours.dedup();
        Ok(hours)
    }

    /// The window cut at UTC midnights into the pieces whose counts are read, and cached, apart:
    /// the part day at each edge, the whole days between (the same piece all day long, however
    /// the window slides by minutes), and what lies at or after `today` (the start of the
    /// current UTC day), which on-time events still change: one open piece, read afresh each
    /// time. Counts add up across the pieces, unique visitors too, since no visitor id spans two
    /// UTC days (ingest keys them by the event's day).
    pub fn pieces(&self, today: OffsetDateTime) -> Vec<Piece> {
        let mut cuts = vec![self.from, ceil(self.from, Duration::DAY), floor(self.to, Duration::DAY), today, self.to];
        cuts.retain(|t| *t >= self.from && *t <= self.to);
        cuts.sort();
        cuts.dedup();
        let mut pieces = Vec::with_capacity(cuts.len());
        for bounds in cuts.windows(2) {
            let (from, to) = (bounds[0], bounds[1]);
            if from >= today {
                pieces.push(Piece::new(Window { from, to: self.to }, today));
                break;
            }
            pieces.push(Piece::new(Window { from, to }, today));
        }
        pieces
    }

    /// Splits the window into the fewest rollup reads: whole units of `coarsest` in the
    /// middle, then ever finer units towards the edges. Together the segments cover the window
    /// exactly once, so sums and unique-visitor merges over them are exact.
    pub fn segments(&self, coarsest: Rollup) -> Vec<Segment> {
        let mut segments = Vec::new();
        split(self.from, self.to, coarsest, &mut segments);
        segments
    }
}

/// Time arithmetic that cannot fail on windows between 1970 and 2100, reported just in case.
fn time_error(e: impl std::fmt::Display) -> QueryError {
    QueryError::invalid("from", format!("the window cannot be divided into buckets: {e}"))
}

/// The start of the bucket holding `t`, in `t`'s zone.
fn bucket_start(t: &Zoned, granularity: Granularity) -> Result<Zoned, QueryError> {
    let truncated = |unit: Unit| t.round(ZonedRound::new().smallest(unit).mode(jiff::RoundMode::Trunc));
    let start = match granularity {
        Granularity::Minute => truncated(Unit::Minute),
        Granularity::Hour => truncated(Unit::Hour),
        Granularity::Day => t.start_of_day(),
        Granularity::Week => {
            let since_monday = i64::from(t.weekday().since(Weekday::Monday));
            t.start_of_day()
                .and_then(|day| day.checked_sub(since_monday.days()))
                .and_then(|monday| monday.start_of_day())
        }
        Granularity::Month => t.first_of_month().and_then(|first| first.start_of_day()),
    };
    start.map_err(time_error)
}

/// The start of the bucket after the one starting at `start`.
fn next_bucket_start(start: &Zoned, granularity: Granularity) -> Result<Zoned, QueryError> {
    let later = match granularity {
        Granularity::Minute => start.checked_add(1.minute()),
        Granularity::Hour => start.checked_add(1.hour()),
        Granularity::Day => start.checked_add(1.day()),
        Granularity::Week => start.checked_add(1.week()),
        Granularity::Month => start.checked_add(1.month()),
    }
    .map_err(time_error)?;
    // Back to a bucket start: a day after a local midnight lands at 01:00 when that day's
    // midnight does not exist, and a zone may shift its hours by half an hour.
    let next = bucket_start(&later, granularity)?;
    Ok(if next > *start { next } else { later })
}

fn split(from: OffsetDateTime, to: OffsetDateTime, rollup: Rollup, out: &mut Vec<Segment>) {
    if from >= to {
        return;
    }
    let Some(finer) = rollup.finer() else {
        out.push(Segment { rollup, from, to, rows: Rows::All });
        return;
    };
    let (inner_from, inner_to) = (ceil(from, rollup.step()), floor(to, rollup.step()));
    if inner_from < inner_to {
        split(from, inner_from, finer, out);
        out.push(Segment { rollup, from: inner_from, to: inner_to, rows: Rows::All });
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
    if down == t {
        t
    } else {
        down + step
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    const NOW: OffsetDateTime = datetime!(2026-11-22 10:17:42.5 UTC);

    fn shape(window: Window, coarsest: Rollup) -> Vec<(Rollup, OffsetDateTime, OffsetDateTime)> {
        window.segments(coarsest).into_iter().map(|s| (s.rollup, s.from, s.to)).collect()
    }

    fn zone(name: &str) -> Zone {
        Zone::parse(name).unwrap()
    }

    fn pieces(from: OffsetDateTime, to: OffsetDateTime) -> Vec<(OffsetDateTime, OffsetDateTime, bool)> {
        let today = datetime!(2026-11-22 0:00 UTC);
        let pieces = Window { from, to }.pieces(today);
        // Consecutive, covering the window exactly once.
        assert_eq!(pieces.first().map(|p| p.window.from), Some(from));
        assert_eq!(pieces.last().map(|p| p.window.to), Some(to));
        assert!(pieces.windows(2).all(|w| w[0].window.to == w[1].window.from));
        assert!(pieces.iter().all(|p| p.window.from < p.window.to));
        pieces.into_iter().map(|p| (p.window.from, p.window.to, p.past)).collect()
    }

    #[test]
    fn windows_are_read_in_pieces_cut_at_utc_midnight_and_today_is_one_open_piece() {
        // The last 30 days: the part day at the start, the whole days, today.
        assert_eq!(
            pieces(datetime!(2026-10-23 10:17 UTC), datetime!(2026-11-22 10:18 UTC)),
            vec![
                (datetime!(2026-10-23 10:17 UTC), datetime!(2026-10-24 0:00 UTC), true),
                (datetime!(2026-10-24 0:00 UTC), datetime!(2026-11-22 0:00 UTC), true),
                (datetime!(2026-11-22 0:00 UTC), datetime!(2026-11-22 10:18 UTC), false),
            ]
        );
        // A minute later the whole days are the same piece.
        assert_eq!(
            pieces(datetime!(2026-10-23 10:18 UTC), datetime!(2026-11-22 10:19 UTC))[1].0,
            datetime!(2026-10-24 0:00 UTC)
        );
        // Wholly in the past, ending inside a day: three past pieces.
        assert_eq!(
            pieces(datetime!(2026-11-01 22:00 UTC), datetime!(2026-11-05 6:30 UTC)),
            vec![
                (datetime!(2026-11-01 22:00 UTC), datetime!(2026-11-02 0:00 UTC), true),
                (datetime!(2026-11-02 0:00 UTC), datetime!(2026-11-05 0:00 UTC), true),
                (datetime!(2026-11-05 0:00 UTC), datetime!(2026-11-05 6:30 UTC), true),
            ]
        );
        // Inside one past day; inside today; across midnight into the future.
        assert_eq!(pieces(datetime!(2026-11-03 1:00 UTC), datetime!(2026-11-03 2:00 UTC)).len(), 1);
        assert_eq!(
            pieces(datetime!(2026-11-22 1:00 UTC), datetime!(2026-11-22 2:00 UTC)),
            vec![(datetime!(2026-11-22 1:00 UTC), datetime!(2026-11-22 2:00 UTC), false)]
        );
        assert_eq!(
            pieces(datetime!(2026-11-21 23:00 UTC), datetime!(2026-11-24 5:00 UTC)),
            vec![
                (datetime!(2026-11-21 23:00 UTC), datetime!(2026-11-22 0:00 UTC), true),
                (datetime!(2026-11-22 0:00 UTC), datetime!(2026-11-24 5:00 UTC), false),
            ]
        );
        // Whole days only, ending at today's midnight: one piece, and nothing open.
        assert_eq!(
            pieces(datetime!(2026-11-01 0:00 UTC), datetime!(2026-11-22 0:00 UTC)),
            vec![(datetime!(2026-11-01 0:00 UTC), datetime!(2026-11-22 0:00 UTC), true)]
        );
    }

    #[test]
    fn windows_are_read_from_the_coarsest_rollups_that_fit() {
        use Rollup::{Day, Hour, Minute};
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
    fn the_previous_period_ends_where_the_window_starts() {
        let w = Window { from: datetime!(2026-11-20 10:00 UTC), to: datetime!(2026-11-22 10:00 UTC) };
        assert_eq!(w.previous().unwrap(), Window { from: datetime!(2026-11-18 10:00 UTC), to: w.from });
        let all = Window::resolve(None, None, Some(Timeframe::All), NOW).unwrap();
        assert!(matches!(all.previous(), Err(QueryError::InvalidParameter { field: "compare", .. })));
    }

    #[test]
    fn explicit_ranges_are_aligned() {
        let w =
            Window::resolve(Some(datetime!(2026-11-01 0:00:30 UTC)), Some(datetime!(2026-11-02 0:00 UTC)), None, NOW)
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
        let utc = Zone::utc();
        let w = Window { from: datetime!(2026-11-22 9:17 UTC), to: datetime!(2026-11-22 11:01 UTC) };
        let hours = w.buckets(Granularity::Hour, &utc).unwrap();
        assert_eq!(
            hours,
            vec![datetime!(2026-11-22 9:00 UTC), datetime!(2026-11-22 10:00 UTC), datetime!(2026-11-22 11:00 UTC)]
        );
        assert_eq!(w.buckets(Granularity::Minute, &utc).unwrap().len(), 104);
        assert_eq!(w.buckets(Granularity::Day, &utc).unwrap(), vec![datetime!(2026-11-22 0:00 UTC)]);
        assert_eq!(w.buckets(Granularity::Week, &utc).unwrap(), vec![datetime!(2026-11-16 0:00 UTC)]);
        assert_eq!(w.buckets(Granularity::Month, &utc).unwrap(), vec![datetime!(2026-11-01 0:00 UTC)]);
        let year = Window { from: datetime!(2025-01-01 0:00 UTC), to: datetime!(2026-01-01 0:00 UTC) };
        assert!(matches!(
            year.buckets(Granularity::Minute, &utc),
            Err(QueryError::InvalidParameter { field: "granularity", .. })
        ));
        assert_eq!(year.buckets(Granularity::Hour, &utc).unwrap().len(), 8760);
        assert_eq!(year.buckets(Granularity::Month, &utc).unwrap().len(), 12);
    }

    #[test]
    fn days_follow_the_zone_across_daylight_saving_changes() {
        let paris = zone("Europe/Paris");
        // Paris leaves summer time on 2026-10-25: that local day lasts 25 hours.
        let w = Window { from: datetime!(2026-10-24 12:00 UTC), to: datetime!(2026-10-26 12:00 UTC) };
        let days = w.buckets(Granularity::Day, &paris).unwrap();
        assert_eq!(
            days,
            vec![datetime!(2026-10-23 22:00 UTC), datetime!(2026-10-24 22:00 UTC), datetime!(2026-10-25 23:00 UTC)]
        );
        assert_eq!(paris.local(days[2]).offset(), time::macros::offset!(+1));
        let months = Window { from: datetime!(2026-03-15 0:00 UTC), to: datetime!(2026-05-02 0:00 UTC) };
        assert_eq!(
            months.buckets(Granularity::Month, &paris).unwrap(),
            vec![datetime!(2026-02-28 23:00 UTC), datetime!(2026-03-31 22:00 UTC), datetime!(2026-04-30 22:00 UTC)]
        );
        // Weeks start on Monday at local midnight (2026-10-26 is a Monday, in winter time).
        assert_eq!(
            w.buckets(Granularity::Week, &paris).unwrap(),
            vec![datetime!(2026-10-18 22:00 UTC), datetime!(2026-10-25 23:00 UTC)]
        );
        // Santiago's clocks jump from 00:00 to 01:00 on 2022-09-11: that day starts at 01:00.
        let santiago = Window { from: datetime!(2022-09-10 12:00 UTC), to: datetime!(2022-09-11 12:00 UTC) };
        assert_eq!(
            santiago.buckets(Granularity::Day, &zone("America/Santiago")).unwrap()[1],
            datetime!(2022-09-11 4:00 UTC)
        );
    }

    #[test]
    fn a_half_hour_zone_reads_hours_inside_its_buckets_and_minutes_at_their_edges() {
        use Rollup::{Hour, Minute};
        let kolkata = zone("Asia/Kolkata");
        // Three Kolkata days (they start at 18:30 UTC), from and to inside the first and last.
        let w = Window { from: datetime!(2026-11-19 20:10 UTC), to: datetime!(2026-11-21 19:05 UTC) };
        let shape: Vec<_> = w
            .series_segments(Granularity::Day, &kolkata)
            .into_iter()
            .map(|s| (s.rollup, s.from, s.to, s.rows))
            .collect();
        let (whole_from, whole_to) = (datetime!(2026-11-19 21:00 UTC), datetime!(2026-11-21 19:00 UTC));
        assert_eq!(
            shape,
            vec![
                (Minute, w.from, whole_from, Rows::All),
                (Hour, whole_from, whole_to, Rows::InsideBuckets(Granularity::Day)),
                (Minute, whole_from, whole_to, Rows::InCutHours),
                (Minute, whole_to, w.to, Rows::All),
            ]
        );
        let rows = w.series_segments(Granularity::Day, &kolkata)[1].rows_sql(1);
        assert_eq!(rows, " AND toUnixTimestamp(toStartOfDay(hour, {tz:String})) = toUnixTimestamp(toStartOfDay((hour + 3599), {tz:String}))");
        // The two boundaries inside the window, at 18:30 UTC, cut the hours from 18:00.
        let cut = [datetime!(2026-11-20 18:00 UTC), datetime!(2026-11-21 18:00 UTC)].map(|t| t.unix_timestamp());
        assert_eq!(w.cut_hours(Granularity::Day, &kolkata).unwrap(), cut.to_vec());
        assert_eq!(w.cut_hours(Granularity::Day, &Zone::utc()).unwrap(), Vec::<i64>::new());
        // Hourly buckets at :30 hold no whole UTC hour: one minute read; whole-hour zones as before.
        assert_eq!(
            w.series_segments(Granularity::Hour, &kolkata),
            vec![Segment { rollup: Minute, from: w.from, to: w.to, rows: Rows::All }]
        );
        assert_eq!(w.series_segments(Granularity::Day, &zone("Europe/Paris")), w.segments(Hour));
    }

    #[test]
    fn zones_pick_the_coarsest_rollup_aligned_with_their_buckets() {
        let w = Window { from: datetime!(2026-10-01 0:00 UTC), to: datetime!(2026-11-01 0:00 UTC) };
        assert_eq!(w.coarsest_rollup(Granularity::Month, &Zone::utc()), Rollup::Day);
        assert_eq!(w.coarsest_rollup(Granularity::Day, &zone("Europe/Paris")), Rollup::Hour);
        assert_eq!(w.coarsest_rollup(Granularity::Day, &zone("Asia/Kolkata")), Rollup::Minute);
        assert_eq!(w.coarsest_rollup(Granularity::Hour, &zone("Asia/Kolkata")), Rollup::Minute);
        assert_eq!(w.coarsest_rollup(Granularity::Hour, &zone("America/New_York")), Rollup::Hour);
        assert_eq!(w.coarsest_rollup(Granularity::Minute, &Zone::utc()), Rollup::Minute);
        assert!(matches!(Zone::parse("Mars/Olympus"), Err(QueryError::InvalidParameter { field: "tz", .. })));
        assert_eq!(Zone::parse("america/NEW_YORK").unwrap().name(), "America/New_York");
        assert_eq!(Zone::parse("utc").unwrap(), Zone::utc());
    }
}
