//! API keys, sent as `Authorization: Bearer <key>`. Admin keys (`API_KEY`) read and change the
//! ad catalog; read keys (`READ_API_KEYS`) only read. Each setting takes several keys, so that a
//! new key can be given out before the old one is removed. Without a key, a caller reads only
//! when `ANONYMOUS_READS` is on, and changes nothing.

use std::sync::Arc;

use poem_openapi::auth::Bearer;
use poem_openapi::SecurityScheme;
use service_kit::rate::{address_key, RateLimiter, RateRefusal};

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

/// Who a caller is, once its key (or the lack of one) is accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Admin,
    Reader,
    /// Anyone, while `ANONYMOUS_READS` is on: reads only.
    Anyone {
        sent_a_key: bool,
    },
}

const UNKNOWN_KEY: &str = "unknown API key";
const SEND_A_KEY: &str = "send an API key as `Authorization: Bearer <key>`";

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

pub type Digest = [u8; 32];

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

    /// Who `caller` is: an admin or a reader by its key, or anyone while `ANONYMOUS_READS` is
    /// on (a key then counts only if it is configured); otherwise 401.
    pub fn authenticate(&self, caller: &Caller) -> Result<Role, QueryError> {
        let sent = match caller {
            Caller::Key(ApiKey(bearer)) => Some(digest(&bearer.token)),
            Caller::Anonymous => None,
        };
        match sent {
            Some(d) if self.admin.contains(&d) => Ok(Role::Admin),
            Some(d) if self.read.contains(&d) => Ok(Role::Reader),
            _ if self.anonymous_reads => Ok(Role::Anyone { sent_a_key: sent.is_some() }),
            Some(_) => Err(QueryError::Unauthorized(UNKNOWN_KEY)),
            None => Err(QueryError::Unauthorized(SEND_A_KEY)),
        }
    }

    /// Whether `caller` may do `access`.
    pub fn authorize(&self, caller: &Caller, access: Access) -> Result<(), QueryError> {
        match (access, self.authenticate(caller)?) {
            (Access::Read, _) | (Access::Write, Role::Admin) => Ok(()),
            (Access::Write, _) if self.admin.is_empty() => {
                Err(QueryError::Forbidden("ads cannot be changed: the query service runs without API_KEY"))
            }
            (Access::Write, Role::Reader) => {
                Err(QueryError::Forbidden("this key may only read: changing ads needs a key of API_KEY"))
            }
            (Access::Write, Role::Anyone { sent_a_key: true }) => Err(QueryError::Unauthorized(UNKNOWN_KEY)),
            (Access::Write, Role::Anyone { sent_a_key: false }) => Err(QueryError::Unauthorized(SEND_A_KEY)),
        }
    }
}

/// Where the API's operations live: every path under it passes [`gate`].
pub const API_PATHS: &str = "/ads";

/// The bearer token of an `Authorization` header, if any.
fn caller_of(request: &poem::Request) -> Caller {
    let header = request.headers().get(poem::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let token = header
        .and_then(|h| h.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    match token {
        Some(token) => Caller::Key(ApiKey(Bearer { token: token.to_owned() })),
        None => Caller::Anonymous,
    }
}

/// Who a caller's requests are counted against: its key, or its address when it reads without
/// one (an IPv6 subscriber's whole /64).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RateKey {
    Key(Digest),
    Address(std::net::IpAddr),
}

/// What [`gate`] checks: the keys, and each caller's rate (`RATE_LIMIT_PER_CALLER`; `None`: no
/// limit).
pub struct Gate {
    pub keys: Keys,
    pub rate_limiter: Option<Arc<RateLimiter<RateKey>>>,
}

/// Why [`gate`] turns a request away.
#[derive(Debug, Clone)]
enum Refused {
    /// 401: the service does not know the caller.
    Unknown(QueryError),
    /// 429: its message names no key or address.
    OverRate { retry_after_secs: u32 },
}

impl Gate {
    /// Who `caller` is, and whether it may make one more request now.
    fn admit(&self, caller: &Caller, peer: Option<std::net::IpAddr>) -> Result<(), Refused> {
        let role = self.keys.authenticate(caller).map_err(Refused::Unknown)?;
        let Some(limiter) = &self.rate_limiter else { return Ok(()) };
        let key = match (role, caller) {
            (Role::Admin | Role::Reader, Caller::Key(ApiKey(bearer))) => RateKey::Key(digest(&bearer.token)),
            _ => match peer {
                Some(ip) => RateKey::Address(address_key(ip)),
                None => return Ok(()),
            },
        };
        limiter.take(&key, 1).map_err(|refusal| match refusal {
            RateRefusal::Wait { retry_after_secs } => Refused::OverRate { retry_after_secs },
            // One request is never more than a burst (at least 1).
            RateRefusal::OverBurst { .. } => Refused::OverRate { retry_after_secs: 1 },
        })
    }
}

/// Refuses a caller whose key is unknown, or who sends none while reads need one, and a caller
/// over its rate, before any of the request is read: no parameter, no body and no
/// unknown-parameter check answers someone the service does not know or should not serve now.
/// What a known caller may do (read, or change ads) is the operations' to say
/// ([`Keys::authorize`], after routing, so a wrong method is still 405).
pub async fn gate<E: poem::Endpoint>(next: E, request: poem::Request, gate: Arc<Gate>) -> poem::Result<poem::Response> {
    use poem::http::{header, HeaderValue};
    use poem::IntoResponse;
    if request.uri().path().starts_with(API_PATHS) {
        let peer = request.remote_addr().as_socket_addr().map(|addr| addr.ip());
        match gate.admit(&caller_of(&request), peer) {
            Ok(()) => {}
            Err(Refused::Unknown(error)) => {
                let mut response = service_kit::Problem::new(error.status(), error.to_string(), None).into_response();
                if matches!(error, QueryError::Unauthorized(_)) {
                    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                }
                return Ok(response);
            }
            Err(Refused::OverRate { retry_after_secs }) => {
                let message = format!("too many requests from this caller; retry in {retry_after_secs} s");
                let mut response =
                    service_kit::Problem::new(poem::http::StatusCode::TOO_MANY_REQUESTS, message, None).into_response();
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
                return Ok(response);
            }
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

    #[tokio::test]
    async fn a_caller_is_counted_by_its_key_or_else_by_its_address() {
        let gate =
            Gate { keys: keys(&["admin-key"], &["reader-key"], true), rate_limiter: RateLimiter::new(1, Some(1)) };
        let (here, there): (std::net::IpAddr, std::net::IpAddr) =
            ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let over_rate = |outcome| matches!(outcome, Err(Refused::OverRate { retry_after_secs: 1 }));
        assert!(gate.admit(&key("reader-key"), Some(here)).is_ok());
        assert!(over_rate(gate.admit(&key("reader-key"), Some(there))), "a key, from anywhere");
        assert!(gate.admit(&key("admin-key"), Some(here)).is_ok(), "another key has its own bucket");
        assert!(gate.admit(&Caller::Anonymous, Some(here)).is_ok());
        assert!(over_rate(gate.admit(&key("not-a-key"), Some(here))), "an unknown key reads as anyone, by address");
        assert!(gate.admit(&Caller::Anonymous, Some(there)).is_ok());
        let closed = Gate { keys: keys(&["admin-key"], &[], false), rate_limiter: None };
        assert!(matches!(
            closed.admit(&Caller::Anonymous, Some(here)),
            Err(Refused::Unknown(QueryError::Unauthorized(_)))
        ));
    }

    #[test]
    fn the_gate_reads_the_bearer_token() {
        let request = |authorization: Option<&str>| {
            let mut builder = poem::Request::builder().uri(poem::http::Uri::from_static("/ads"));
            if let Some(value) = authorization {
                builder = builder.header(poem::http::header::AUTHORIZATION, value);
            }
            builder.finish()
        };
        let token = |caller: Caller| match caller {
            Caller::Key(ApiKey(bearer)) => Some(bearer.token),
            Caller::Anonymous => None,
        };
        assert_eq!(token(caller_of(&request(Some("bearer  k-1 ")))), Some("k-1".to_owned()));
        assert_eq!(token(caller_of(&request(Some("Basic a2V5")))), None);
        assert_eq!(token(caller_of(&request(None))), None);
    }

    #[test]
    fn anonymous_reads_open_reads_only_and_no_admin_key_closes_changes() {
        let open = keys(&["admin"], &[], true);
        assert_eq!(open.authenticate(&key("anything")).ok(), Some(Role::Anyone { sent_a_key: true }));
        assert!(matches!(
            keys(&["admin"], &[], false).authenticate(&key("anything")),
            Err(QueryError::Unauthorized(_))
        ));
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
