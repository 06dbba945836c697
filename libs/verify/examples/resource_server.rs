//! A resource server protected by Signet: `GET /orders` demands a bearer token for the
//! audience with the scope `orders.read`, prints its claims on stdout and answers them as
//! JSON. `GET /healthz` is open; `GET /readyz` answers 200 once the revocation history is
//! replayed (at once without `--nats`).
//!
//! ```sh
//! cargo run -p signet-verify --example resource_server -- \
//!     --issuer http://127.0.0.1:8080 --audience orders-api --listen 127.0.0.1:9000 \
//!     [--nats nats://127.0.0.1:4222] [--introspection-secret SECRET] [--scope orders.read]
//! curl -i -H "Authorization: Bearer $TOKEN" http://127.0.0.1:9000/orders
//! # a DPoP-bound token (RFC 9449) goes with a proof for GET http://127.0.0.1:9000/orders:
//! curl -i -H "Authorization: DPoP $TOKEN" -H "DPoP: $PROOF" http://127.0.0.1:9000/orders
//! # behind a proxy that terminates mutual TLS and forwards the client certificate
//! # (--client-cert-header X-SSL-Client-Cert): a certificate-bound token (RFC 8705) passes
//! # only with the certificate it is bound to, base64 DER or URL-encoded PEM:
//! curl -i -H "Authorization: Bearer $TOKEN" -H "X-SSL-Client-Cert: $(base64 -w0 client.der)" \
//!     http://127.0.0.1:9000/orders
//! ```

use std::net::SocketAddr;

use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use clap::Parser;
use serde_json::json;
use signet_verify::{
    BearerAuthLayer, Claims, IntrospectionConfig, RevocationSubscriber, Revocations, Verifier,
};

#[derive(Parser, Debug)]
#[command(about = "An example resource server that verifies Signet access tokens")]
struct Args {
    /// The issuer URL, exactly as in its tokens' `iss`.
    #[arg(long, env = "SIGNET_ISSUER", default_value = "http://127.0.0.1:8080")]
    issuer: String,
    /// This API's name: the `aud` its tokens must carry.
    #[arg(long, default_value = "orders-api")]
    audience: String,
    /// Scope demanded by `/orders`.
    #[arg(long, default_value = "orders.read")]
    scope: String,
    /// NATS URL of the revocation stream; without it, revocation is by expiry (or
    /// introspection for opaque tokens).
    #[arg(long, env = "SIGNET_NATS_URL")]
    nats: Option<String>,
    /// One of the API resource's `apiSecrets`: accept opaque tokens (reference tokens, API
    /// keys) through introspection.
    #[arg(long, env = "ORDERS_API_SECRET")]
    introspection_secret: Option<String>,
    #[arg(long, default_value = "127.0.0.1:9000")]
    listen: SocketAddr,
    /// The origin clients address this server at, for DPoP proofs' `htu` (default:
    /// `http://` plus the request's Host header).
    #[arg(long)]
    public_origin: Option<String>,
    /// The header in which the TLS-terminating proxy in front forwards the client's
    /// certificate (mutual TLS): certificate-bound tokens then need it. Only for a server
    /// reachable through that proxy alone (the header is believed as it arrives).
    #[arg(long)]
    client_cert_header: Option<String>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();

    let mut builder = Verifier::builder(&args.issuer, &args.audience);
    let mut _subscriber = None;
    let revocations = match &args.nats {
        Some(url) => {
            let revs = Revocations::new();
            _subscriber = Some(RevocationSubscriber::connect(url, revs.clone())?);
            builder = builder.revocations(revs.clone());
            Some(revs)
        }
        None => None,
    };
    if let Some(secret) = &args.introspection_secret {
        builder = builder.introspection(IntrospectionConfig::new(&args.audience, secret));
    }
    let verifier = builder.build()?;
    if let Err(e) = verifier.warm_up().await {
        tracing::warn!(error = %e, "the issuer's keys are not available yet");
    }

    let mut auth = BearerAuthLayer::new(verifier).require_scopes([args.scope.clone()]);
    if let Some(origin) = &args.public_origin {
        auth = auth.public_origin(origin);
    }
    if let Some(name) = &args.client_cert_header {
        auth = auth.client_cert_header(name.parse()?);
    }
    let protected = Router::new().route("/orders", get(orders)).layer(auth);
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let revocations = revocations.clone();
                async move {
                    match revocations {
                        Some(r) if !r.is_caught_up() => (
                            StatusCode::SERVICE_UNAVAILABLE,
                            format!("{:?}", r.status().phase),
                        ),
                        _ => (StatusCode::OK, "ready".to_owned()),
                    }
                }
            }),
        )
        .merge(protected);

    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

async fn orders(claims: Claims) -> Json<serde_json::Value> {
    println!(
        "{}",
        serde_json::to_string(&claims).unwrap_or_else(|e| format!("(claims: {e})"))
    );
    Json(json!({
        "orders": [],
        "claims": claims,
    }))
}
