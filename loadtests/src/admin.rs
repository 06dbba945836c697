//! Registers what the scenarios need through the admin API: per algorithm an API scope, an
//! API resource that allows only that algorithm, and a `client_credentials` client. Existing
//! objects with the same names are replaced, so a run against a long-lived node (`--target`)
//! is repeatable.

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use signet_jose::Algorithm;

use crate::scenario::Fixtures;
use crate::server::{rand_u128, Target};

pub struct Admin {
    http: reqwest::Client,
    target: Target,
    token: String,
}

impl Admin {
    /// Gets an admin token (`client_credentials`, scope `signet.admin`).
    pub async fn connect(target: &Target) -> Result<Admin> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let resp = http
            .post(format!(
                "{}/oauth2/token",
                target.issuer.trim_end_matches('/')
            ))
            .basic_auth(&target.admin_client_id, Some(&target.admin_secret))
            .form(&[
                ("grant_type", "client_credentials"),
                ("scope", "signet.admin"),
            ])
            .send()
            .await
            .with_context(|| format!("cannot reach {}", target.issuer))?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        let Some(token) = body["access_token"].as_str() else {
            bail!(
                "admin token request as {} answered {status}: {body}",
                target.admin_client_id
            );
        };
        Ok(Admin {
            http,
            target: target.clone(),
            token: token.to_owned(),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}/admin/v1{path}", self.target.admin.trim_end_matches('/'))
    }

    /// Creates the object, or replaces it when it exists (409).
    async fn upsert(&self, path: &str, body: &Value) -> Result<()> {
        let resp = self
            .http
            .post(self.url(path))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await?;
        let status = resp.status().as_u16();
        if status == 201 {
            return Ok(());
        }
        if status != 409 {
            bail!("POST {path} answered {status}: {}", resp.text().await?);
        }
        let resp = self
            .http
            .put(self.url(path))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await?;
        let status = resp.status().as_u16();
        if status != 200 && status != 204 {
            bail!("PUT {path} answered {status}: {}", resp.text().await?);
        }
        Ok(())
    }

    /// Registers the fixtures for every algorithm, with a fresh secret.
    pub async fn setup(&self, prefix: &str) -> Result<Fixtures> {
        let fx = Fixtures {
            prefix: prefix.to_owned(),
            secret: format!("lt-{:032x}", rand_u128()),
        };
        for alg in Algorithm::ALL {
            self.upsert(
                "/Resource/ApiScope",
                &json!({"name": fx.scope(alg), "displayName": format!("Load tests, {alg}")}),
            )
            .await?;
            self.upsert(
                "/Resource/ApiResource",
                &json!({
                    "name": fx.resource(alg),
                    "scopes": [fx.scope(alg)],
                    "allowedAccessTokenSigningAlgorithms": [alg.as_str()],
                }),
            )
            .await?;
            self.upsert(
                "/Client",
                &json!({
                    "clientId": fx.client_id(alg),
                    "clientName": format!("signet-loadtests {alg}"),
                    "allowedGrantTypes": ["client_credentials"],
                    "clientSecrets": [{"value": fx.secret}],
                    "allowedScopes": [fx.scope(alg)],
                    "accessTokenLifetime": 600,
                }),
            )
            .await?;
        }
        Ok(fx)
    }

    /// One token request per client, so that a broken setup fails before any load.
    pub async fn check(&self, fx: &Fixtures) -> Result<()> {
        for alg in Algorithm::ALL {
            let resp = self
                .http
                .post(format!(
                    "{}/oauth2/token",
                    self.target.issuer.trim_end_matches('/')
                ))
                .basic_auth(fx.client_id(alg), Some(&fx.secret))
                .form(&[("grant_type", "client_credentials")])
                .send()
                .await?;
            let status = resp.status();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            let token = body["access_token"].as_str().unwrap_or_default();
            let header = token
                .split('.')
                .next()
                .and_then(|h| {
                    use base64::Engine;
                    base64::engine::general_purpose::URL_SAFE_NO_PAD
                        .decode(h)
                        .ok()
                })
                .and_then(|h| serde_json::from_slice::<Value>(&h).ok())
                .unwrap_or(Value::Null);
            if !status.is_success() || header["alg"] != alg.as_str() {
                bail!(
                    "client {} did not get an {alg} token: {status} {body}",
                    fx.client_id(alg)
                );
            }
        }
        Ok(())
    }
}
