//! The two routers of a node: the public protocol surface (under the issuer URL's path)
//! and the admin API (on the admin listener, under `/admin/v1`).

pub mod account;
pub mod account_links;
pub mod account_security;
pub mod admin;
pub mod authorize;
pub mod backchannel;
pub mod browser;
pub mod client_addr;
pub mod client_auth;
pub mod client_cert;
pub mod client_jwks;
pub mod cors;
pub mod device;
pub mod discovery;
pub mod dpop;
pub mod email;
pub mod error;
pub mod federation;
pub mod form;
#[cfg(test)]
mod fuzz;
pub mod grants;
pub mod introspect;
pub mod login;
pub mod logout;
pub mod par;
pub mod passkeys;
pub mod password_step;
pub mod register;
pub mod request_object;
pub mod second_factor;
pub mod server;
pub mod sessions;
pub mod token;
pub mod user_tokens;
pub mod userinfo;

use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use crate::state::AppState;
use crate::telemetry;

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(serde_json::json!({"error": "not_found", "error_description": "no such endpoint"})),
    )
        .into_response()
}

/// Public endpoints, nested under the issuer URL's path (e.g. `/auth`).
pub fn public_router(state: AppState) -> Router {
    let timeout = state.config.request_timeout;
    let routes = Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(discovery::openid_configuration),
        )
        .route(
            "/.well-known/oauth-authorization-server",
            get(discovery::authorization_server),
        )
        .route("/oauth2/jwks", get(discovery::jwks))
        .route(
            "/oauth2/authorize",
            get(authorize::authorize_get).post(authorize::authorize_post),
        )
        .route("/oauth2/introspect", post(introspect::introspect))
        .route(
            "/oauth2/par",
            post(par::par).fallback(par::method_not_allowed),
        )
        .route("/oauth2/revoke", post(introspect::revoke))
        .route(
            "/oauth2/register",
            post(register::register).fallback(register::method_not_allowed),
        )
        .route(
            "/oauth2/register/{client_id}",
            get(register::read)
                .put(register::update)
                .delete(register::delete)
                .fallback(register::method_not_allowed),
        )
        .route(
            "/oauth2/logout",
            get(logout::logout_get).post(logout::logout_post),
        )
        .route("/login", get(login::login_get).post(login::login_post))
        .route(
            "/login/forgot",
            get(email::forgot_get).post(email::forgot_post),
        )
        .route(
            "/login/reset",
            get(email::reset_get).post(email::reset_post),
        )
        .route("/federation/{scheme}/start", post(federation::start_post))
        .route("/federation/{scheme}/callback", get(federation::callback))
        .route(
            "/federation/{scheme}/ldap",
            get(federation::ldap::form).post(federation::ldap::submit),
        )
        .route(
            "/federation/{scheme}/logged-out",
            get(federation::logged_out),
        )
        .route(
            "/login/otp",
            get(second_factor::otp_get).post(second_factor::otp_post),
        )
        .route("/login/passkey", post(passkeys::login))
        .route("/login/passkey/options", post(passkeys::login_options))
        .route(
            "/login/password",
            get(password_step::password_get).post(password_step::password_post),
        )
        .route(
            "/oauth2/device_authorization",
            post(device::device_authorization).fallback(device::method_not_allowed),
        )
        .route("/device", get(device::device_get).post(device::device_post))
        .route(
            "/account/api-keys",
            get(account::page_get).post(account::page_create),
        )
        .route("/account/api-keys/{id}/revoke", post(account::page_revoke))
        .route(
            "/account/api-keys/keys",
            get(account::json_list).post(account::json_create),
        )
        .route(
            "/account/api-keys/keys/{id}",
            axum::routing::delete(account::json_revoke),
        )
        .route("/account/sessions", get(account::sessions_get))
        .route("/account/links", get(account_links::links_get))
        .route("/account/links/{scheme}", post(account_links::link_post))
        .route(
            "/account/links/{scheme}/remove",
            post(account_links::unlink_post),
        )
        .route("/account/security", get(account_security::security_get))
        .route(
            "/account/security/totp",
            post(account_security::totp_enroll),
        )
        .route(
            "/account/security/totp/remove",
            post(account_security::totp_remove),
        )
        .route(
            "/account/security/recovery-codes",
            post(account_security::recovery_regenerate),
        )
        .route("/account/security/email", post(email::email_change))
        .route(
            "/account/email/verify",
            get(email::verify_get).post(email::verify_post),
        )
        .route("/account/security/passkey", post(passkeys::enroll))
        .route(
            "/account/security/passkey/options",
            post(passkeys::enroll_options),
        )
        .route("/account/security/passkey/remove", post(passkeys::remove))
        .route(
            "/account/security/password",
            post(account_security::password_change),
        )
        .route(
            "/account/sessions/{sid}/end",
            post(account::sessions_end_one),
        )
        .route(
            "/account/sessions/end-others",
            post(account::sessions_end_others),
        )
        .route("/account/sessions/end-all", post(account::sessions_end_all))
        .route(
            "/account/sessions/list",
            get(account::sessions_json_list).delete(account::sessions_json_end_all),
        )
        .route(
            "/account/sessions/list/{sid}",
            axum::routing::delete(account::sessions_json_end_one),
        )
        .route(
            "/consent",
            get(login::consent_get).post(login::consent_post),
        )
        .route(
            "/userinfo",
            get(userinfo::userinfo_get)
                .post(userinfo::userinfo_post)
                .layer(axum::middleware::from_fn_with_state(
                    state.clone(),
                    cors::cors,
                )),
        )
        .route(
            "/oauth2/token",
            post(token::token)
                .fallback(token::method_not_allowed)
                .layer(axum::middleware::from_fn_with_state(
                    state.clone(),
                    cors::cors,
                )),
        )
        .route("/healthz", get(discovery::healthz))
        .route("/readyz", get(discovery::readyz));
    let routes = if state.config.public_metrics {
        routes.route("/metrics", get(discovery::metrics))
    } else {
        routes
    };
    let routes = routes
        .route_layer(axum::middleware::from_fn(telemetry::track))
        .with_state(state.clone());
    let path = state.config.issuer.path().to_owned();
    let router = if path.is_empty() {
        routes
    } else {
        Router::new().nest(&path, routes)
    };
    with_common_layers(router.fallback(not_found), timeout)
}

/// The admin listener: the admin API, its OpenAPI document, plus health.
pub fn admin_router(state: AppState) -> Router {
    let timeout = state.config.request_timeout;
    let router = Router::new()
        .nest("/admin/v1", admin::router(state.clone()))
        // Outside the nest: the document needs no token (the schema is not data).
        .route(
            admin::openapi::PATH,
            get(admin::openapi::document).fallback(admin::method_not_allowed),
        )
        .route("/healthz", get(discovery::healthz))
        .route("/readyz", get(discovery::readyz).with_state(state.clone()))
        .route("/metrics", get(discovery::metrics).with_state(state))
        .route_layer(axum::middleware::from_fn(telemetry::track))
        .fallback(not_found);
    with_common_layers(router, timeout)
}

fn with_common_layers(router: Router, timeout: Duration) -> Router {
    router.layer(axum::middleware::from_fn_with_state(
        timeout,
        telemetry::request_context,
    ))
}
