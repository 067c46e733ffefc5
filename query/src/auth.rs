//! The API key: `Authorization: Bearer <API_KEY>`. With a key configured, every operation needs
//! it; without one, reads are anonymous and ads cannot be changed.

use poem_openapi::auth::Bearer;
use poem_openapi::SecurityScheme;

use crate::error::QueryError;

/// The API key configured as `API_KEY`, sent as a bearer token.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", rename = "apiKey")]
pub struct ApiKey(Bearer);

/// Who calls: a bearer token if the request has one.
#[derive(SecurityScheme)]
pub enum Caller {
    Key(ApiKey),
    #[oai(fallback)]
    Anonymous,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    /// Changing the ad catalog.
    Write,
}

/// Whether `caller` may do `access`, given the configured key.
pub fn authorize(configured: Option<&str>, caller: &Caller, access: Access) -> Result<(), QueryError> {
    let sent = match caller {
        Caller::Key(ApiKey(bearer)) => Some(bearer.token.as_str()),
        Caller::Anonymous => None,
    };
    match (configured, sent) {
        (None, _) if access == Access::Write => Err(QueryError::ManagementDisabled),
        (None, _) => Ok(()),
        (Some(key), Some(sent)) if same_key(key, sent) => Ok(()),
        (Some(_), Some(_)) => Err(QueryError::Unauthorized("wrong API key")),
        (Some(_), None) => Err(QueryError::Unauthorized("send the API key as `Authorization: Bearer <key>`")),
    }
}

/// Compares digests, not the keys: how long a comparison takes then says nothing about how
/// many leading bytes of a guess are right.
fn same_key(key: &str, sent: &str) -> bool {
    let digest = |s: &str| ring::digest::digest(&ring::digest::SHA256, s.as_bytes());
    digest(key).as_ref() == digest(sent).as_ref()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(token: &str) -> Caller {
        Caller::Key(ApiKey(Bearer { token: token.to_owned() }))
    }

    #[test]
    fn a_configured_key_guards_everything_and_no_key_guards_writes() {
        assert!(authorize(None, &Caller::Anonymous, Access::Read).is_ok());
        assert!(authorize(None, &key("anything"), Access::Read).is_ok());
        assert!(matches!(authorize(None, &key("anything"), Access::Write), Err(QueryError::ManagementDisabled)));
        assert!(authorize(Some("s3cret"), &key("s3cret"), Access::Write).is_ok());
        assert!(authorize(Some("s3cret"), &key("s3cret"), Access::Read).is_ok());
        assert!(matches!(authorize(Some("s3cret"), &key("s3cre"), Access::Read), Err(QueryError::Unauthorized(_))));
        assert!(matches!(authorize(Some("s3cret"), &Caller::Anonymous, Access::Read), Err(QueryError::Unauthorized(_))));
    }
}
