//! What can go wrong answering a query. Each operation's response maps it to HTTP.

#[derive(Debug, Clone, thiserror::Error)]
pub enum QueryError {
    #[error("{field}: {message}")]
    InvalidParameter { field: &'static str, message: String },
    #[error("ad {0} not found")]
    AdNotFound(uuid::Uuid),
    #[error("clickhouse is unavailable: {0}")]
    ClickHouse(String),
    #[error("{0}")]
    Unauthorized(&'static str),
    /// The caller may not change ads: no admin key is configured, or its key only reads.
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("ad {0} already exists: change it with PATCH /ads/{0}")]
    AdExists(uuid::Uuid),
}

impl QueryError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self::InvalidParameter { field, message: message.into() }
    }

    /// The HTTP status each kind answers with, in every operation.
    pub fn status(&self) -> poem::http::StatusCode {
        use poem::http::StatusCode;
        match self {
            QueryError::InvalidParameter { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            QueryError::AdNotFound(_) => StatusCode::NOT_FOUND,
            QueryError::ClickHouse(_) => StatusCode::SERVICE_UNAVAILABLE,
            QueryError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            QueryError::Forbidden(_) => StatusCode::FORBIDDEN,
            QueryError::AdExists(_) => StatusCode::CONFLICT,
        }
    }

    /// What a client is told. A repository error's own text names the server's internals
    /// (hosts, tables, settings): clients get a fixed sentence, and the text goes to the log.
    pub fn public_message(&self) -> String {
        match self {
            QueryError::ClickHouse(_) => "ClickHouse did not answer; retry shortly".to_owned(),
            other => other.to_string(),
        }
    }

    pub fn field(&self) -> Option<&'static str> {
        match self {
            QueryError::InvalidParameter { field, .. } => Some(field),
            QueryError::AdNotFound(_) => Some("ad_id"),
            QueryError::AdExists(_) => Some("id"),
            QueryError::ClickHouse(_) | QueryError::Unauthorized(_) | QueryError::Forbidden(_) => None,
        }
    }
}

impl From<clickhouse::error::Error> for QueryError {
    fn from(error: clickhouse::error::Error) -> Self {
        QueryError::ClickHouse(error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repository_error_reaches_clients_without_its_text() {
        let error = QueryError::ClickHouse(
            "Code: 516. DB::Exception: adtrack_query: Authentication failed (clickhouse-0:9000)".into(),
        );
        assert_eq!(error.public_message(), "ClickHouse did not answer; retry shortly");
        assert!(error.to_string().contains("Authentication failed"), "the log keeps it");
        let invalid = QueryError::invalid("tz", "unknown time zone");
        assert_eq!(invalid.public_message(), invalid.to_string());
    }
}
