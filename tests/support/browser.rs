//! A minimal browser over HTTP for the sign-in tests: keeps cookies, never follows
//! redirects (the tests look at each one), and reads hidden form fields from pages.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use reqwest::header::{HeaderMap, COOKIE, LOCATION, SET_COOKIE};

pub struct Browser {
    http: reqwest::Client,
    /// name → value, for the one host the tests talk to.
    pub cookies: BTreeMap<String, String>,
}

/// One response, read whole.
pub struct Page {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Page {
    /// The `Location` of a redirect.
    pub fn location(&self) -> Result<url::Url> {
        let l = self
            .headers
            .get(LOCATION)
            .context("no Location header")?
            .to_str()?;
        Ok(url::Url::parse(l)?)
    }

    /// The value of `<input ... name="NAME" value="...">` in the page.
    pub fn hidden(&self, name: &str) -> Result<String> {
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

/// The query (or fragment) parameters of a URL, by name.
pub fn params_of(url: &url::Url, fragment: bool) -> BTreeMap<String, String> {
    let raw = if fragment {
        url.fragment().unwrap_or_default().to_owned()
    } else {
        url.query().unwrap_or_default().to_owned()
    };
    url::form_urlencoded::parse(raw.as_bytes())
        .into_owned()
        .collect()
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

impl Browser {
    pub fn new() -> Browser {
        Browser {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("reqwest client"),
            cookies: BTreeMap::new(),
        }
    }

    /// The `Cookie` header this browser sends, if it holds any cookie.
    pub fn cookie_header(&self) -> Option<String> {
        (!self.cookies.is_empty()).then(|| {
            self.cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ")
        })
    }

    fn keep_cookies(&mut self, headers: &HeaderMap) {
        for v in headers.get_all(SET_COOKIE) {
            let Ok(v) = v.to_str() else { continue };
            let first = v.split(';').next().unwrap_or_default();
            let Some((name, value)) = first.split_once('=') else {
                continue;
            };
            let expired = v
                .split(';')
                .any(|a| a.trim().eq_ignore_ascii_case("Max-Age=0"));
            if expired || value.is_empty() {
                self.cookies.remove(name.trim());
            } else {
                self.cookies
                    .insert(name.trim().to_owned(), value.trim().to_owned());
            }
        }
    }

    async fn read(&mut self, resp: reqwest::Response) -> Result<Page> {
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        self.keep_cookies(&headers);
        let body = resp.text().await?;
        Ok(Page {
            status,
            headers,
            body,
        })
    }

    pub async fn get(&mut self, url: &str) -> Result<Page> {
        let mut req = self.http.get(url);
        if let Some(c) = self.cookie_header() {
            req = req.header(COOKIE, c);
        }
        let resp = req.send().await?;
        self.read(resp).await
    }

    pub async fn post_form(&mut self, url: &str, form: &[(&str, &str)]) -> Result<Page> {
        self.post_form_with(url, form, &[]).await
    }

    /// [`Browser::post_form`] with extra request headers (e.g. `Origin`).
    pub async fn post_form_with(
        &mut self,
        url: &str,
        form: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> Result<Page> {
        let mut req = self.http.post(url).form(form);
        if let Some(c) = self.cookie_header() {
            req = req.header(COOKIE, c);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await?;
        self.read(resp).await
    }

    /// A browser whose connections leave from `ip` (any 127.0.0.0/8 address reaches a
    /// server on 127.0.0.1), so tests can play several client addresses.
    pub fn from_address(ip: std::net::IpAddr) -> Browser {
        Browser {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .local_address(ip)
                .build()
                .expect("reqwest client"),
            cookies: BTreeMap::new(),
        }
    }

    /// A browser whose connections leave from `ip` and whose every request carries
    /// `headers` (e.g. a load balancer's `X-Forwarded-For`).
    pub fn from_address_with(ip: std::net::IpAddr, headers: &[(&str, &str)]) -> Result<Browser> {
        let mut defaults = HeaderMap::new();
        for (k, v) in headers {
            defaults.append(
                reqwest::header::HeaderName::from_bytes(k.as_bytes())?,
                reqwest::header::HeaderValue::from_str(v)?,
            );
        }
        Ok(Browser {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .local_address(ip)
                .default_headers(defaults)
                .build()?,
            cookies: BTreeMap::new(),
        })
    }

    /// From an authorization URL through the login page: returns the response to the
    /// login form (a redirect to the client or to the consent page).
    pub async fn sign_in(
        &mut self,
        authorize_url: &str,
        user: &str,
        password: &str,
    ) -> Result<Page> {
        let page = self.get(authorize_url).await?;
        if page.status != 302 {
            bail!("authorize answered {}: {}", page.status, page.body);
        }
        let login_url = page.location()?;
        if !login_url.path().ends_with("/login") {
            bail!("authorize redirected to {login_url}, not to the login page");
        }
        let login = self.get(login_url.as_str()).await?;
        if login.status != 200 {
            bail!("login page answered {}: {}", login.status, login.body);
        }
        let action = login_url
            .as_str()
            .split('?')
            .next()
            .unwrap_or_default()
            .to_owned();
        let (interaction, csrf) = (login.hidden("interaction")?, login.hidden("csrf")?);
        self.post_form(
            &action,
            &[
                ("interaction", &interaction),
                ("csrf", &csrf),
                ("username", user),
                ("password", password),
            ],
        )
        .await
    }
}

/// RFC 7636 appendix B's verifier, and its S256 challenge.
pub const PKCE_VERIFIER: &str = "dBjftJeZ4CVP-mJ0LbmCqxJW9X8Nqn_H96LJPLkgK0Y";
pub const PKCE_CHALLENGE: &str = "mUC84QHW1XnmFGk31dqlZ81-q8-qS-OxrweG_XEDeIU";

/// The whole code flow for a client without consent: authorize at `authorize_base`, sign in
/// as `user`, redeem the code at `token_base` (with Basic credentials when `secret` is
/// given). Returns the token response.
#[allow(clippy::too_many_arguments)]
pub async fn code_flow(
    authorize_base: &str,
    token_base: &str,
    client_id: &str,
    secret: Option<&str>,
    redirect_uri: &str,
    scope: &str,
    user: &str,
    password: &str,
) -> Result<serde_json::Value> {
    let code = authorization_code(
        authorize_base,
        client_id,
        redirect_uri,
        scope,
        user,
        password,
    )
    .await?;
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", redirect_uri),
        ("code_verifier", PKCE_VERIFIER),
    ];
    let http = reqwest::Client::new();
    let mut req = http.post(format!("{token_base}/oauth2/token"));
    match secret {
        Some(s) => req = req.basic_auth(client_id, Some(s)),
        None => form.push(("client_id", client_id)),
    }
    let resp = req.form(&form).send().await?;
    let status = resp.status().as_u16();
    let body: serde_json::Value = resp.json().await?;
    if status != 200 {
        bail!("token endpoint answered {status}: {body}");
    }
    Ok(body)
}

/// The first half of [`code_flow`]: signs `user` in at the authorization endpoint (PKCE with
/// [`PKCE_CHALLENGE`]) and returns the authorization code, not redeemed.
pub async fn authorization_code(
    authorize_base: &str,
    client_id: &str,
    redirect_uri: &str,
    scope: &str,
    user: &str,
    password: &str,
) -> Result<String> {
    let mut u = url::Url::parse(&format!("{authorize_base}/oauth2/authorize"))?;
    u.query_pairs_mut()
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("response_type", "code")
        .append_pair("scope", scope)
        .append_pair("state", "s")
        .append_pair("nonce", "n")
        .append_pair("code_challenge", PKCE_CHALLENGE)
        .append_pair("code_challenge_method", "S256");
    let mut b = Browser::new();
    let r = b.sign_in(u.as_str(), user, password).await?;
    if r.status != 302 {
        bail!("login answered {}: {}", r.status, r.body);
    }
    params_of(&r.location()?, false)
        .remove("code")
        .context("no code in the redirect")
}
