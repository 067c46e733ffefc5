//! API keys, sent as `Authorization: Bearer <key>`. Admin keys (`API_KEY`) read and change the
//! ad catalog; read keys (`READ_API_KEYS`) only read. Each setting takes several keys, so that a
//! new key can be given out before the old one is removed. Without a key, a caller reads only
//! when `ANONYMOUS_READS` is on, and changes nothing.

use poem_openapi::auth::Bearer;
use poem_openapi::SecurityScheme;

use crate::error::QueryError;

/// A key configured as `API_KEY` or `READ_API_KEYS`, sent as a bearer token.
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

/// The configured keys, kept as digests.
#[derive(Debug, Clone, Default)]
pub struct Keys {
    admin: Vec<Digest>,
    read: Vec<Digest>,
    anonymous_reads: bool,
}

type Digest = [u8; 32];

/// Compares digests, not the keys: how long a comparison takes then says nothing about how
/// many leading bytes of a guess are right.
fn digest(key: &str) -> Digest {
    let digest = ring::digest::digest(&ring::digest::SHA256, key.as_bytes());
    let mut out = [0; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

impl Keys {
    pub fn new(admin: &[String], read: &[String], anonymous_reads: bool) -> Self {
        let digests = |keys: &[String]| keys.iter().map(|k| digest(k)).collect();
        Self { admin: digests(admin), read: digests(read), anonymous_reads }
    }

    /// Whether `caller` may do `access`.
    pub fn authorize(&self, caller: &Caller, access: Access) -> Result<(), QueryError> {
        let sent = match caller {
            Caller::Key(ApiKey(bearer)) => Some(digest(&bearer.token)),
            Caller::Anonymous => None,
        };
        let admin = sent.is_some_and(|d| self.admin.contains(&d));
        let reader = sent.is_some_and(|d| self.read.contains(&d));
        match access {
            Access::Read if admin || reader || self.anonymous_reads => Ok(()),
            Access::Write if admin => Ok(()),
            Access::Write if self.admin.is_empty() => Err(QueryError::Forbidden("ads cannot be changed: the query service runs without API_KEY")),
            Access::Write if reader => Err(QueryError::Forbidden("this key may only read: changing ads needs a key of API_KEY")),
            Access::Read | Access::Write if sent.is_some() => Err(QueryError::Unauthorized("unknown API key")),
            Access::Read | Access::Write => Err(QueryError::Unauthorized("send an API key as `Authorization: Bearer <key>`")),
        }
    }
}

/// Where the API's operations live: every path under it passes [`gate`].
pub const API_PATHS: &str = "/ads";

/// What a request under [`API_PATHS`] asks: reads by `GET` (and `HEAD`), changes otherwise.
fn access_of(method: &poem::http::Method) -> Access {
    if matches!(*method, poem::http::Method::GET | poem::http::Method::HEAD) { Access::Read } else { Access::Write }
}

/// The bearer token of an `Authorization` header, if any.
fn caller_of(request: &poem::Request) -> Caller {
    let header = request.headers().get(poem::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let token = header.and_then(|h| h.split_once(' ')).filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer")).map(|(_, token)| token.trim());
    match token {
        Some(token) => Caller::Key(ApiKey(Bearer { token: token.to_owned() })),
        None => Caller::Anonymous,
    }
}

/// Refuses a caller who may not do what the request asks before any of it is read: no
/// parameter, no body and no unknown-parameter check reaches someone without the right key.
/// The operations check again, with the same rule ([`Keys::authorize`]); this only answers
/// first.
pub async fn gate<E: poem::Endpoint>(next: E, request: poem::Request, keys: std::sync::Arc<Keys>) -> poem::Result<poem::Response> {
    use poem::IntoResponse;
    if request.uri().path().starts_with(API_PATHS) {
        if let Err(error) = keys.authorize(&caller_of(&request), access_of(request.method())) {
            let mut response = service_kit::Problem::new(error.status(), error.to_string(), None).into_response();
            if matches!(error, QueryError::Unauthorized(_)) {
                response.headers_mut().insert(poem::http::header::WWW_AUTHENTICATE, poem::http::HeaderValue::from_static("Bearer"));
            }
            return Ok(response);
        }
    }
    Ok(next.call(request).await?.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(token: &str) -> Caller {
        Caller::Key(ApiKey(Bearer { token: token.to_owned() }))
    }

    fn keys(admin: &[&str], read: &[&str], anonymous_reads: bool) -> Keys {
        let owned = |keys: &[&str]| keys.iter().map(|k| (*k).to_owned()).collect::<Vec<_>>();
        Keys::new(&owned(admin), &owned(read), anonymous_reads)
    }

    #[test]
    fn admin_keys_read_and_change_read_keys_only_read() {
        let keys = keys(&["admin-old", "admin-new"], &["reader"], false);
        for admin in ["admin-old", "admin-new"] {
            assert!(keys.authorize(&key(admin), Access::Read).is_ok());
            assert!(keys.authorize(&key(admin), Access::Write).is_ok());
        }
        assert!(keys.authorize(&key("reader"), Access::Read).is_ok());
        assert!(matches!(keys.authorize(&key("reader"), Access::Write), Err(QueryError::Forbidden(_))));
        for access in [Access::Read, Access::Write] {
            assert!(matches!(keys.authorize(&key("admin-ol"), access), Err(QueryError::Unauthorized(_))));
            assert!(matches!(keys.authorize(&Caller::Anonymous, access), Err(QueryError::Unauthorized(_))));
        }
    }

    #[test]
    fn the_gate_reads_the_bearer_token_and_the_method() {
        let request = |method: poem::http::Method, authorization: Option<&str>| {
            let mut builder = poem::Request::builder().method(method).uri(poem::http::Uri::from_static("/ads"));
            if let Some(value) = authorization {
                builder = builder.header(poem::http::header::AUTHORIZATION, value);
            }
            builder.finish()
        };
        let token = |caller: Caller| match caller {
            Caller::Key(ApiKey(bearer)) => Some(bearer.token),
            Caller::Anonymous => None,
        };
        assert_eq!(token(caller_of(&request(poem::http::Method::GET, Some("bearer  k-1 ")))), Some("k-1".to_owned()));
        assert_eq!(token(caller_of(&request(poem::http::Method::GET, Some("Basic a2V5")))), None);
        assert_eq!(token(caller_of(&request(poem::http::Method::GET, None))), None);
        assert_eq!(access_of(&poem::http::Method::HEAD), Access::Read);
        assert_eq!(access_of(&poem::http::Method::PATCH), Access::Write);
    }

    #[test]
    fn anonymous_reads_open_reads_only_and_no_admin_key_closes_changes() {
        let open = keys(&["admin"], &[], true);
        assert!(open.authorize(&Caller::Anonymous, Access::Read).is_ok());
        assert!(open.authorize(&key("anything"), Access::Read).is_ok());
        assert!(matches!(open.authorize(&Caller::Anonymous, Access::Write), Err(QueryError::Unauthorized(_))));
        assert!(open.authorize(&key("admin"), Access::Write).is_ok());
        let readers_only = keys(&[], &["reader"], false);
        assert!(readers_only.authorize(&key("reader"), Access::Read).is_ok());
        assert!(matches!(readers_only.authorize(&key("reader"), Access::Write), Err(QueryError::Forbidden(_))));
        assert!(matches!(keys(&[], &[], true).authorize(&key("x"), Access::Write), Err(QueryError::Forbidden(_))));
    }
}
