//! Registers what the scenarios need through the admin API (see [`Fixtures`]): per
//! algorithm an API scope, an API resource that allows only that algorithm, and a
//! `client_credentials` client; a reference-token client; a web app and a user, who then
//! signs in and consents once through the login and consent pages, as a browser would.
//! Existing objects with the same names are replaced, so a run against a long-lived node
//! (`--target`) is repeatable. Also mints what a run uses up (refresh tokens) or what should
//! be fresh (the access token to introspect) right before each run.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use serde_json::{json, Value};
use signet_jose::Algorithm;

use crate::scenario::{pct, Fixtures, Minted, Need, PKCE_VERIFIER, SESSION_COOKIE};
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

    /// Creates the user, or gives the existing one this password.
    async fn upsert_user(&self, username: &str, password: &str) -> Result<()> {
        let body = json!({
            "username": username,
            "password": password,
            "claims": {"name": "Signet Load Test"},
        });
        let resp = self
            .http
            .post(self.url("/User"))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await?;
        let status = resp.status().as_u16();
        if status == 201 {
            return Ok(());
        }
        if status != 409 {
            bail!("POST /User answered {status}: {}", resp.text().await?);
        }
        let found: Value = self
            .http
            .get(self.url("/User"))
            .query(&[("username", username)])
            .bearer_auth(&self.token)
            .send()
            .await?
            .json()
            .await?;
        let sub = found[0]["sub"]
            .as_str()
            .with_context(|| format!("user {username} exists but cannot be found: {found}"))?;
        let mut body = body;
        body["enabled"] = true.into();
        let resp = self
            .http
            .put(self.url(&format!("/User/{}", pct(sub))))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await?;
        if !resp.status().is_success() {
            bail!(
                "PUT /User answered {}: {}",
                resp.status(),
                resp.text().await?
            );
        }
        Ok(())
    }

    /// Registers the fixtures, with a fresh secret and password, and signs the user in.
    pub async fn setup(&self, prefix: &str) -> Result<Fixtures> {
        let mut fx = Fixtures {
            prefix: prefix.to_owned(),
            secret: format!("lt-{:032x}", rand_u128()),
            password: format!("lt-pw-{:032x}", rand_u128()),
            session: String::new(),
        };
        for alg in Algorithm::ALL {
            self.upsert(
                "/Resource/ApiScope",
                &json!({"name": fx.scope(alg), "displayName": format!("Load tests, {alg}")}),
            )
            .await?;
            let mut resource = json!({
                "name": fx.resource(alg),
                "scopes": [fx.scope(alg)],
                "allowedAccessTokenSigningAlgorithms": [alg.as_str()],
            });
            if alg == Algorithm::ES256 {
                // The introspection scenarios call as this resource.
                resource["apiSecrets"] = json!([{"value": fx.secret}]);
            }
            self.upsert("/Resource/ApiResource", &resource).await?;
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
        let es256 = fx.scope(Algorithm::ES256);
        self.upsert(
            "/Client",
            &json!({
                "clientId": fx.reference_client_id(),
                "clientName": "signet-loadtests reference tokens",
                "allowedGrantTypes": ["client_credentials"],
                "clientSecrets": [{"value": fx.secret}],
                "allowedScopes": [es256],
                "accessTokenType": 1,
                "accessTokenLifetime": 600,
            }),
        )
        .await?;
        self.upsert(
            "/Client",
            &json!({
                "clientId": fx.web_client_id(),
                "clientName": "signet-loadtests web app",
                "allowedGrantTypes": ["authorization_code"],
                "clientSecrets": [{"value": fx.secret}],
                "redirectUris": [fx.redirect_uri()],
                "allowedScopes": ["openid", "offline_access", es256],
                "allowOfflineAccess": true,
                "requireConsent": true,
                "allowRememberConsent": true,
                "requirePkce": true,
                "allowedIdentityTokenSigningAlgorithms": ["ES256"],
                "accessTokenLifetime": 600,
                // One-time refresh tokens (rotation); families live an hour, so a long-lived
                // target's store does not keep the minted ones for a month.
                "refreshTokenUsage": 1,
                "refreshTokenExpiration": 1,
                "absoluteRefreshTokenLifetime": 3600,
                "slidingRefreshTokenLifetime": 3600,
            }),
        )
        .await?;
        self.upsert_user(&fx.username(), &fx.password).await?;
        fx.session = self.sign_in(&fx).await?;
        Ok(fx)
    }

    /// A browser's sign-in: the authorization request, the login page and form, the consent
    /// page and form (remembered), for the scopes of the refresh-token flows (which cover
    /// the code-flow ones). Returns the SSO session cookie's value.
    async fn sign_in(&self, fx: &Fixtures) -> Result<String> {
        let mut b = Browser::new(&self.target.issuer)?;
        let authorize = self.target_url(&format!(
            "/oauth2/authorize?{}",
            fx.authorize_query(&fx.offline_scope())
        ));
        let r = b.get(&authorize).await?;
        let login = r.redirect("/login")?;
        let page = b.get(&login).await?;
        page.expect(200, "the login page")?;
        let form = [
            ("interaction", page.hidden("interaction")?),
            ("csrf", page.hidden("csrf")?),
            ("username", fx.username()),
            ("password", fx.password.clone()),
        ];
        let mut r = b.post(&self.target_url("/login"), &form).await?;
        if r.location().is_some_and(|l| l.contains("/consent?")) {
            let consent = r.redirect("/consent")?;
            let page = b.get(&consent).await?;
            page.expect(200, "the consent page")?;
            let mut form = vec![
                ("interaction", page.hidden("interaction")?),
                ("csrf", page.hidden("csrf")?),
            ];
            for s in fx.offline_scope().split(' ') {
                form.push(("scope", s.to_owned()));
            }
            form.push(("remember", "yes".into()));
            form.push(("decision", "allow".into()));
            r = b.post(&self.target_url("/consent"), &form).await?;
        }
        code_of(&r).context("signing in as the load-test user")?;
        b.cookies
            .get(SESSION_COOKIE)
            .cloned()
            .context("signing in set no session cookie")
    }

    fn target_url(&self, path: &str) -> String {
        format!("{}{path}", self.target.issuer.trim_end_matches('/'))
    }

    /// A code for the signed-in user (consent remembered) and `scope`.
    async fn code(&self, fx: &Fixtures, scope: &str) -> Result<String> {
        let resp = self
            .http
            .get(self.target_url(&format!("/oauth2/authorize?{}", fx.authorize_query(scope))))
            .header(COOKIE, format!("{SESSION_COOKIE}={}", fx.session))
            .send()
            .await?;
        code_of(&Page::read(resp).await?)
    }

    /// Redeems a code at the token endpoint; returns the token response.
    async fn redeem(&self, fx: &Fixtures, code: &str) -> Result<Value> {
        let resp = self
            .http
            .post(self.target_url("/oauth2/token"))
            .basic_auth(fx.web_client_id(), Some(&fx.secret))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", &fx.redirect_uri()),
                ("code_verifier", PKCE_VERIFIER),
            ])
            .send()
            .await?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("redeeming a code answered {status}: {body}");
        }
        Ok(body)
    }

    /// One new refresh-token family: a code flow with `offline_access`.
    async fn refresh_token(&self, fx: &Fixtures) -> Result<String> {
        let code = self.code(fx, &fx.offline_scope()).await?;
        let body = self.redeem(fx, &code).await?;
        body["refresh_token"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("no refresh token in {body}"))
    }

    /// What `need` asks for, fresh.
    pub async fn mint(&self, fx: &Fixtures, need: Need) -> Result<Minted> {
        let mut minted = Minted::default();
        match need {
            Need::Nothing => {}
            Need::RefreshTokens(n) => {
                // A few flows at a time: the node does the same work either way.
                let mut tasks = tokio::task::JoinSet::new();
                let workers = n.clamp(1, 8);
                for w in 0..workers {
                    let (admin, fx) = (self.clone_handle(), fx.clone());
                    let count = n / workers + usize::from(w < n % workers);
                    tasks.spawn(async move {
                        let mut out = Vec::with_capacity(count);
                        for _ in 0..count {
                            out.push(admin.refresh_token(&fx).await?);
                        }
                        anyhow::Ok(out)
                    });
                }
                while let Some(r) = tasks.join_next().await {
                    minted.refresh_tokens.extend(r??);
                }
            }
            Need::AccessToken { reference } => {
                let client = if reference {
                    fx.reference_client_id()
                } else {
                    fx.client_id(Algorithm::ES256)
                };
                let resp = self
                    .http
                    .post(self.target_url("/oauth2/token"))
                    .basic_auth(&client, Some(&fx.secret))
                    .form(&[("grant_type", "client_credentials")])
                    .send()
                    .await?;
                let status = resp.status();
                let body: Value = resp.json().await.unwrap_or(Value::Null);
                let token = body["access_token"]
                    .as_str()
                    .with_context(|| format!("client {client} got no token: {status} {body}"))?;
                minted.access_token = Some(token.to_owned());
            }
        }
        Ok(minted)
    }

    fn clone_handle(&self) -> Admin {
        Admin {
            http: self.http.clone(),
            target: self.target.clone(),
            token: self.token.clone(),
        }
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
        // The user flows: a code and its redemption, with a refresh token.
        self.refresh_token(fx)
            .await
            .context("the web app's code flow")?;
        Ok(())
    }
}

/// One response, read whole.
struct Page {
    status: u16,
    location: Option<String>,
    set_cookies: Vec<String>,
    body: String,
}

impl Page {
    async fn read(resp: reqwest::Response) -> Result<Page> {
        let status = resp.status().as_u16();
        let location = resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let set_cookies = resp
            .headers()
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect();
        Ok(Page {
            status,
            location,
            set_cookies,
            body: resp.text().await?,
        })
    }

    fn location(&self) -> Option<&str> {
        self.location.as_deref()
    }

    fn expect(&self, status: u16, what: &str) -> Result<()> {
        if self.status != status {
            bail!("{what} answered {}: {}", self.status, self.body);
        }
        Ok(())
    }

    /// The `Location` of a 302 to a page whose path ends with `page`.
    fn redirect(&self, page: &str) -> Result<String> {
        match self.location() {
            Some(l) if self.status == 302 && l.split('?').next().unwrap_or("").ends_with(page) => {
                Ok(l.to_owned())
            }
            _ => bail!(
                "expected a redirect to {page}, got {} {:?}: {}",
                self.status,
                self.location,
                self.body
            ),
        }
    }

    /// The value of `<input ... name="NAME" value="...">` in the page.
    fn hidden(&self, name: &str) -> Result<String> {
        let marker = format!("name=\"{name}\" value=\"");
        let start = self
            .body
            .find(&marker)
            .with_context(|| format!("no input {name} in the page"))?
            + marker.len();
        let end = self.body[start..].find('"').context("unterminated value")?;
        Ok(self.body[start..start + end].to_owned())
    }
}

/// The code of an authorization response (a 302 to the redirect URI with `code`).
fn code_of(page: &Page) -> Result<String> {
    let code = page.location().and_then(|l| {
        let query = l.split_once('?')?.1;
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix("code="))
            .map(str::to_owned)
    });
    match code {
        Some(c) if page.status == 302 => Ok(c),
        _ => bail!(
            "expected a redirect with a code, got {} {:?}: {}",
            page.status,
            page.location,
            page.body
        ),
    }
}

/// A minimal browser for the sign-in: keeps cookies (one host), never follows redirects.
struct Browser {
    http: reqwest::Client,
    origin: String,
    cookies: BTreeMap<String, String>,
}

impl Browser {
    fn new(issuer: &str) -> Result<Browser> {
        let origin = crate::scenario::url_parts::Issuer::parse(issuer)?.origin;
        Ok(Browser {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()?,
            origin,
            cookies: BTreeMap::new(),
        })
    }

    fn absolute(&self, url: &str) -> String {
        if url.starts_with('/') {
            format!("{}{url}", self.origin)
        } else {
            url.to_owned()
        }
    }

    fn with_cookies(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        if self.cookies.is_empty() {
            return req;
        }
        let header: Vec<String> = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        req.header(COOKIE, header.join("; "))
    }

    fn keep(&mut self, page: &Page) {
        for c in &page.set_cookies {
            let first = c.split(';').next().unwrap_or_default();
            let Some((name, value)) = first.split_once('=') else {
                continue;
            };
            let gone = c
                .split(';')
                .any(|a| a.trim().eq_ignore_ascii_case("Max-Age=0"));
            if gone || value.trim().is_empty() {
                self.cookies.remove(name.trim());
            } else {
                self.cookies
                    .insert(name.trim().to_owned(), value.trim().to_owned());
            }
        }
    }

    async fn get(&mut self, url: &str) -> Result<Page> {
        let req = self.with_cookies(self.http.get(self.absolute(url)));
        let page = Page::read(req.send().await?).await?;
        self.keep(&page);
        Ok(page)
    }

    async fn post(&mut self, url: &str, form: &[(&str, String)]) -> Result<Page> {
        let req = self.with_cookies(self.http.post(self.absolute(url)).form(form));
        let page = Page::read(req.send().await?).await?;
        self.keep(&page);
        Ok(page)
    }
}
