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

    fn cookie_header(&self) -> Option<String> {
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
        let mut req = self.http.post(url).form(form);
        if let Some(c) = self.cookie_header() {
            req = req.header(COOKIE, c);
        }
        let resp = req.send().await?;
        self.read(resp).await
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
