//! What can keep a message from being counted, and what the consumer then does with it: a
//! permanent failure sends the message to the dead-letter stream with its [`Reason`], anything
//! else is retried until it passes.
//!
//! ClickHouse's errors are sorted here, once, by their code: the data or the schema (the same
//! rows fail again, however often they are sent) against the server's state (network, timeouts,
//! too many parts, memory), which passes.

use schemas::event::DecodeError;
use schemas::stream::SignatureError;
use uuid::Uuid;

use crate::dead_letter::Reason;

#[derive(Debug, thiserror::Error)]
pub enum AggregatorError {
    /// Not signed with `EVENT_SIGNING_KEY`: the message did not come from ingest.
    #[error(transparent)]
    BadSignature(#[from] SignatureError),
    #[error(transparent)]
    Undecodable(#[from] DecodeError),
    #[error("ad {0} is not in the catalog")]
    UnknownAd(Uuid),
    /// The ad is missing from the catalog copy, which could not be reloaded: it may exist all
    /// the same, created moments ago.
    #[error("ad {0} is not in the catalog copy, which could not be reloaded")]
    CatalogUnreachable(Uuid),
    /// ClickHouse refuses the row itself (a constraint, a value out of range, a type the table no
    /// longer has): sending it again fails again.
    #[error("ClickHouse rejected the row: {0}")]
    Rejected(clickhouse::error::Error),
    /// ClickHouse could not take the call now; it passes once the server recovers.
    #[error("ClickHouse is unavailable: {0}")]
    Unavailable(clickhouse::error::Error),
}

impl AggregatorError {
    /// Sorts a ClickHouse error by whether the same call could ever pass.
    pub fn from_clickhouse(error: clickhouse::error::Error) -> Self {
        if rejects_the_data(&error) {
            Self::Rejected(error)
        } else {
            Self::Unavailable(error)
        }
    }

    /// Why the message goes to the dead-letter stream; `None`: it is retried.
    pub fn dead_letter_reason(&self) -> Option<Reason> {
        match self {
            Self::BadSignature(_) => Some(Reason::BadSignature),
            Self::Undecodable(DecodeError::Json(_) | DecodeError::Empty) => Some(Reason::BadJson),
            Self::Undecodable(DecodeError::UnknownVersion(_)) => Some(Reason::UnknownSchemaVersion),
            Self::UnknownAd(_) => Some(Reason::UnknownAd),
            Self::Rejected(_) => Some(Reason::RejectedByClickhouse),
            Self::CatalogUnreachable(_) | Self::Unavailable(_) => None,
        }
    }
}

/// ClickHouse's error codes (`src/Common/ErrorCodes.cpp`) that mean the data or the schema is at
/// fault. Anything not listed is taken as temporary and retried: an error wrongly taken as
/// temporary stalls the consumer behind an alert, one wrongly taken as permanent would halve
/// batches until single rows pass.
const DATA_OR_SCHEMA_ERRORS: &[(u32, &str)] = &[
    (6, "CANNOT_PARSE_TEXT"),
    (8, "THERE_IS_NO_COLUMN"),
    (10, "NOT_FOUND_COLUMN_IN_BLOCK"),
    (16, "NO_SUCH_COLUMN_IN_TABLE"),
    (20, "NUMBER_OF_COLUMNS_DOESNT_MATCH"),
    (27, "CANNOT_PARSE_INPUT_ASSERTION_FAILED"),
    (33, "CANNOT_READ_ALL_DATA"),
    (41, "CANNOT_PARSE_DATETIME"),
    (43, "ILLEGAL_TYPE_OF_ARGUMENT"),
    (44, "ILLEGAL_COLUMN"),
    (53, "TYPE_MISMATCH"),
    (69, "ARGUMENT_OUT_OF_BOUND"),
    (70, "CANNOT_CONVERT_TYPE"),
    (72, "CANNOT_PARSE_NUMBER"),
    (117, "INCORRECT_DATA"),
    (128, "TOO_LARGE_ARRAY_SIZE"),
    (131, "TOO_LARGE_STRING_SIZE"),
    (321, "VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE"),
    (349, "CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN"),
    (395, "FUNCTION_THROW_IF_VALUE_IS_NON_ZERO"),
    (469, "VIOLATED_CONSTRAINT"),
];

/// Whether ClickHouse refused the rows themselves, so that no retry of the same insert passes.
///
/// An error raised in a materialized view ("while pushing to view") is not: ClickHouse has then
/// already stored the raw rows and fed the views before it, so leaving rows out of a smaller
/// insert would count the others twice there. Retrying the same insert, with the same
/// deduplication token, is what those tables recognise.
fn rejects_the_data(error: &clickhouse::error::Error) -> bool {
    use clickhouse::error::Error;
    match error {
        // The crate checks our row against the table's columns before sending anything.
        Error::SchemaMismatch(_) => true,
        Error::BadResponse(text) => {
            !text.contains("while pushing to view")
                && exception_code(text)
                    .is_some_and(|code| DATA_OR_SCHEMA_ERRORS.iter().any(|(known, _)| *known == code))
        }
        _ => false,
    }
}

/// The code of a ClickHouse exception: its text starts `Code: 469. DB::Exception: ...`, or is
/// the bare code when the body could not be read.
fn exception_code(text: &str) -> Option<u32> {
    let text = text.trim();
    let code = text.strip_prefix("Code:").map_or(text, |rest| rest.trim_start().split(['.', ' ']).next().unwrap_or(""));
    code.parse().ok()
}

#[cfg(test)]
mod tests {
    use clickhouse::error::Error;

    use super::*;

    fn reason_for(error: Error) -> Option<Reason> {
        AggregatorError::from_clickhouse(error).dead_letter_reason()
    }

    #[test]
    fn the_data_or_the_schema_is_permanent() {
        let constraint = "Code: 469. DB::Exception: Constraint `c` for table ads.click_events is violated at row 2. \
                          Expression: (x < 100). Column values: x = 500. (VIOLATED_CONSTRAINT) (version 26.9.1.1)";
        assert_eq!(reason_for(Error::BadResponse(constraint.into())), Some(Reason::RejectedByClickhouse));
        assert_eq!(
            reason_for(Error::BadResponse("Code: 53. DB::Exception: Type mismatch".into())),
            Some(Reason::RejectedByClickhouse)
        );
        assert_eq!(reason_for(Error::BadResponse("131".into())), Some(Reason::RejectedByClickhouse), "a bare code");
        assert_eq!(
            reason_for(Error::SchemaMismatch("column playback_time_secs".into())),
            Some(Reason::RejectedByClickhouse)
        );
    }

    #[test]
    fn the_servers_state_is_temporary() {
        for text in [
            "Code: 252. DB::Exception: Too many parts (300). (TOO_MANY_PARTS)",
            "Code: 241. DB::Exception: Memory limit (total) exceeded. (MEMORY_LIMIT_EXCEEDED)",
            "Code: 159. DB::Exception: Timeout exceeded. (TIMEOUT_EXCEEDED)",
            "Code: 516. DB::Exception: adtrack_aggregator: Authentication failed. (AUTHENTICATION_FAILED)",
            "Code: 60. DB::Exception: Table ads.click_events does not exist. (UNKNOWN_TABLE)",
            "503 Service Unavailable",
            "",
        ] {
            assert_eq!(reason_for(Error::BadResponse(text.into())), None, "{text}");
        }
        assert_eq!(reason_for(Error::TimedOut), None);
        assert_eq!(reason_for(Error::Network("connection refused".into())), None);
    }

    #[test]
    fn an_error_in_a_view_is_retried_not_split() {
        let in_view = "Code: 395. DB::Exception: bad five: while executing 'FUNCTION throwIf(...)': \
                       while pushing to view ads.click_events_per_minute_mv. (FUNCTION_THROW_IF_VALUE_IS_NON_ZERO)";
        assert_eq!(reason_for(Error::BadResponse(in_view.into())), None);
    }

    #[test]
    fn messages_that_can_never_be_rows_have_their_reason() {
        assert_eq!(AggregatorError::from(SignatureError::Missing).dead_letter_reason(), Some(Reason::BadSignature));
        assert_eq!(AggregatorError::from(DecodeError::Empty).dead_letter_reason(), Some(Reason::BadJson));
        assert_eq!(
            AggregatorError::from(DecodeError::UnknownVersion(9)).dead_letter_reason(),
            Some(Reason::UnknownSchemaVersion)
        );
        assert_eq!(AggregatorError::UnknownAd(Uuid::nil()).dead_letter_reason(), Some(Reason::UnknownAd));
        assert_eq!(AggregatorError::CatalogUnreachable(Uuid::nil()).dead_letter_reason(), None);
    }
}
