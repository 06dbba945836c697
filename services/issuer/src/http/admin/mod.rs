//! The admin API (`/admin/v1`), shaped after the reference AuthService configuration API:
//! `/Client`, `/Resource/ApiResource`, `/Resource/ApiScope`, `/Resource/IdentityResource`,
//! `/User` and a user's `/Session`s; `/InitialAccessToken` (dynamic client registration); plus `/Key`, the signing keys, `/revocations`, and `/Events`, the audit trail.
//!
//! Every route demands a bearer access token issued by this server with scope
//! `signet.admin` (RFC 6750), checked here by [`require_admin`]. A write is decided against
//! the projection (`signet-core`), appended to the log with the aggregate's expected version
//! (a racing writer gets 409), and answered only once this node's projection has applied it.
//! Reads never return secrets.
//!
//! Layout: one module per resource, each with its routes and its part of the OpenAPI
//! document; [`common`] holds what they share (and uses none of them); [`openapi`] assembles
//! the document from the resources. A new resource is a new module plus one line in
//! [`RESOURCES`].

mod clients;
pub mod common;
mod events;
mod identity_providers;
pub mod initial_access_tokens;
mod keys;
pub mod openapi;
mod resources;
mod revocations;
mod scopes;
mod sessions;
mod users;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;
use serde::Deserialize;
use signet_core::bootstrap::{ADMIN_RESOURCE, ADMIN_SCOPE};
use utoipa::OpenApi;

pub use self::common::{method_not_allowed, Actor, MAX_ADMIN_BODY};
use crate::http::error::ApiError;
use crate::http::token::now;
use crate::state::AppState;

/// Clock skew tolerated on `nbf`.
const LEEWAY: i64 = 30;

/// One resource of the admin API: its routes (relative to `/admin/v1`) and its part of the
/// OpenAPI document.
pub struct Resource {
    pub routes: fn() -> Router<AppState>,
    pub api: fn() -> utoipa::openapi::OpenApi,
}

/// Every resource, in the order of the OpenAPI document's tags.
pub const RESOURCES: &[Resource] = &[
    Resource {
        routes: clients::routes,
        api: clients::Api::openapi,
    },
    Resource {
        routes: initial_access_tokens::routes,
        api: initial_access_tokens::Api::openapi,
    },
    Resource {
        routes: identity_providers::routes,
        api: identity_providers::Api::openapi,
    },
    Resource {
        routes: resources::routes,
        api: resources::Api::openapi,
    },
    Resource {
        routes: scopes::routes,
        api: scopes::Api::openapi,
    },
    Resource {
        routes: users::routes,
        api: users::Api::openapi,
    },
    Resource {
        routes: sessions::routes,
        api: sessions::Api::openapi,
    },
    Resource {
        routes: keys::routes,
        api: keys::Api::openapi,
    },
    Resource {
        routes: events::routes,
        api: events::Api::openapi,
    },
    Resource {
        routes: revocations::routes,
        api: revocations::Api::openapi,
    },
];

pub fn router(state: AppState) -> Router {
    RESOURCES
        .iter()
        .fold(Router::new(), |router, r| router.merge((r.routes)()))
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_admin,
        ))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such admin API route".into())
}

#[derive(Deserialize)]
struct AdminClaims {
    iss: String,
    exp: i64,
    #[serde(default)]
    nbf: Option<i64>,
    aud: Audience,
    #[serde(default)]
    scope: String,
    client_id: String,
    sub: String,
    /// Present only in tokens issued for a user (a sign-in or an API key).
    #[serde(default)]
    sid: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    auth_time: Option<serde::de::IgnoredAny>,
    /// A DPoP-bound token's confirmation (RFC 9449 section 6): such a token is not a
    /// bearer token, and the admin API takes bearer tokens only.
    #[serde(default)]
    cnf: Option<serde::de::IgnoredAny>,
}

impl AdminClaims {
    /// Whether the token was issued to a client for itself (`client_credentials`): its
    /// subject is the client and it carries nothing of a user's sign-in. The admin API
    /// takes no token that speaks for a user, whatever its scope.
    fn is_client_own(&self) -> bool {
        self.sub == self.client_id && self.sid.is_none() && self.auth_time.is_none()
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn contains(&self, s: &str) -> bool {
        match self {
            Audience::One(a) => a == s,
            Audience::Many(v) => v.iter().any(|a| a == s),
        }
    }
}

/// RFC 6750 bearer-token check for the admin API.
async fn require_admin(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let invalid = |description: &'static str| ApiError::Unauthorized {
        description,
        token_present: true,
    };
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return Err(ApiError::Unauthorized {
            description: "a bearer token with scope signet.admin is required",
            token_present: false,
        });
    };
    let value = value
        .to_str()
        .map_err(|_| invalid("malformed Authorization header"))?;
    let token = match value.split_once(' ') {
        Some((scheme, t)) if scheme.eq_ignore_ascii_case("bearer") => t.trim(),
        _ => {
            return Err(ApiError::Unauthorized {
                description: "the Authorization scheme must be Bearer",
                token_present: false,
            })
        }
    };
    let p = state.projection.load();
    let verified = signet_jose::verify_compact(token, |kid| p.key(kid).map(|k| &k.jwk))
        .map_err(|_| invalid(malformed_bearer_reason(token)))?;
    if verified.typ.as_deref() != Some("at+jwt") {
        return Err(invalid("the token is not an access token"));
    }
    let claims: AdminClaims = serde_json::from_slice(&verified.payload)
        .map_err(|_| invalid("the access token is invalid"))?;
    if claims.cnf.is_some() {
        return Err(invalid(
            "the access token is DPoP-bound; the admin API takes bearer tokens only",
        ));
    }
    let now = now();
    if claims.iss != state.config.issuer.as_str() {
        return Err(invalid("the access token was issued by another issuer"));
    }
    if claims.exp <= now || claims.nbf.is_some_and(|nbf| nbf > now + LEEWAY) {
        return Err(invalid("the access token is expired or not yet valid"));
    }
    if !claims.aud.contains(ADMIN_RESOURCE) {
        return Err(invalid("the access token is not meant for the admin API"));
    }
    // The client must still exist and be enabled: disabling it cuts its tokens off.
    if !p
        .client(&claims.client_id)
        .is_some_and(|c| c.client.enabled)
    {
        return Err(invalid(
            "the client of this access token is disabled or gone",
        ));
    }
    if !claims.is_client_own()
        || !p.client(&claims.client_id).is_some_and(|c| {
            c.client
                .allows(signet_core::client::GrantType::ClientCredentials)
        })
    {
        return Err(invalid(
            "the admin API takes only a client's own client_credentials token, never a token issued for a user",
        ));
    }
    if !claims.scope.split(' ').any(|s| s == ADMIN_SCOPE) {
        return Err(ApiError::Forbidden);
    }
    drop(p);
    req.extensions_mut().insert(Actor(claims.client_id));
    Ok(next.run(req).await)
}

/// Why a bearer value failed verification: a value that is not even shaped like a JWT
/// (three base64url segments) is no token at all, typically the error JSON of a failed
/// token request that a script captured instead of the `access_token`.
fn malformed_bearer_reason(token: &str) -> &'static str {
    let segments: Vec<&str> = token.split('.').collect();
    let jwt_shaped = segments.len() == 3
        && segments.iter().all(|s| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if jwt_shaped {
        "the access token is invalid"
    } else if token.starts_with('{') {
        "the bearer value is not a token at all but JSON (an error from the token endpoint?); send the access_token of a successful token response"
    } else {
        "the bearer value is not a token at all (a JWT access token from the token endpoint has three dot-separated parts)"
    }
}
