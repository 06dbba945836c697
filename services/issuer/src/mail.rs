//! Outgoing e-mail (password reset links, address verification, "your password was
//! changed" notices) over SMTP with `lettre` (rustls on aws-lc-rs).
//!
//! `--smtp-url` follows lettre's URL scheme: `smtps://[user:password@]host[:465]` (TLS from
//! the first byte), `smtp://[user:password@]host[:587]?tls=required` (STARTTLS, refused
//! without it), or plain `smtp://host[:25]`, which is accepted only for a loopback host (a
//! local relay). `?tls=opportunistic` is refused: a downgrade would be silent. The URL's
//! password never appears in a log: [`SmtpUrl`]'s `Debug` and `Display` redact it.
//!
//! Messages are built with lettre's typed builders only: addresses are parsed into
//! [`Address`] (which refuses CR, LF and anything that is not an address) after a check of
//! our own ([`parse_address`]), there are no display names, and subjects are fixed text.
//! A send runs off the request path ([`Mailer::send_later`]); a failure is a warning in
//! the log naming neither the recipient's link nor the message.

use std::fmt;
use std::time::Duration;

use lettre::message::{header::ContentType, Mailbox, MultiPart, SinglePart};
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

/// Connect, greeting and each SMTP command: an unreachable relay fails quickly.
pub const SMTP_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest address accepted (RFC 5321 section 4.5.3.1.3: a path is 256 octets).
pub const MAX_ADDRESS_LEN: usize = 254;

/// Why `--smtp-url` or `--smtp-from` was refused.
#[derive(Debug, thiserror::Error)]
pub enum MailConfigError {
    #[error("smtp_url is not a URL: {0}")]
    NotAUrl(String),
    #[error("smtp_url: {0}")]
    Refused(&'static str),
    #[error("smtp_url: {0}")]
    Transport(String),
    #[error("smtp_from {0:?} is not an e-mail address")]
    From(String),
}

/// Why an address typed by a user was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("the address contains a line break or another control character")]
    Control,
    #[error("the address is longer than {MAX_ADDRESS_LEN} characters")]
    TooLong,
    #[error("this is not an e-mail address")]
    Invalid,
}

/// A user-supplied e-mail address, checked: no control characters (CR/LF would inject
/// header lines), at most [`MAX_ADDRESS_LEN`] bytes, one `local@domain` address (no
/// display name, no list), as lettre parses it.
pub fn parse_address(raw: &str) -> Result<Address, AddressError> {
    if raw.chars().any(char::is_control) {
        return Err(AddressError::Control);
    }
    let raw = raw.trim();
    if raw.len() > MAX_ADDRESS_LEN {
        return Err(AddressError::TooLong);
    }
    if raw.contains([',', '<', '>', '"', ' ', ';', '(', ')']) {
        return Err(AddressError::Invalid);
    }
    let address: Address = raw.parse().map_err(|_| AddressError::Invalid)?;
    // lettre accepts a bare domain literal or a dotless domain; mail here goes to the
    // Internet, so ask for a dotted domain.
    if !address.domain().contains('.') || address.domain().starts_with('[') {
        return Err(AddressError::Invalid);
    }
    Ok(address)
}

/// `--smtp-url`, whose `Debug` and `Display` hide the password.
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpUrl(String);

impl SmtpUrl {
    /// Checks the URL's scheme and TLS mode (see the module docs).
    pub fn parse(raw: &str) -> Result<SmtpUrl, MailConfigError> {
        let url = url::Url::parse(raw).map_err(|e| MailConfigError::NotAUrl(e.to_string()))?;
        let tls = url
            .query_pairs()
            .find(|(k, _)| k == "tls")
            .map(|(_, v)| v.into_owned());
        // `smtp:` is not a special scheme to the URL parser: an IPv4 host comes back as a
        // domain, so parse it here.
        let ip = match url.host() {
            None => return Err(MailConfigError::Refused("the URL names no host")),
            Some(url::Host::Ipv4(ip)) => Some(std::net::IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(std::net::IpAddr::V6(ip)),
            Some(url::Host::Domain(d)) => d.parse::<std::net::IpAddr>().ok(),
        };
        let loopback = match ip {
            Some(ip) => ip.is_loopback(),
            None => url
                .host_str()
                .is_some_and(|h| h.eq_ignore_ascii_case("localhost")),
        };
        let link_local = match ip {
            Some(std::net::IpAddr::V4(ip)) => ip.is_link_local(),
            Some(std::net::IpAddr::V6(ip)) => (ip.segments()[0] & 0xffc0) == 0xfe80,
            None => false,
        };
        if link_local {
            return Err(MailConfigError::Refused(
                "link-local (cloud metadata) addresses are refused",
            ));
        }
        match (url.scheme(), tls.as_deref()) {
            ("smtps", None) | ("smtp", Some("required")) => {}
            ("smtp", None) if loopback => {}
            ("smtp", None) => {
                return Err(MailConfigError::Refused(
                    "plain smtp:// is only for a loopback relay; use smtps:// or smtp://...?tls=required",
                ))
            }
            ("smtp", Some("opportunistic")) => {
                return Err(MailConfigError::Refused(
                    "tls=opportunistic is refused (a silent downgrade); use tls=required",
                ))
            }
            _ => {
                return Err(MailConfigError::Refused(
                    "the scheme must be smtps:// or smtp:// (with ?tls=required unless the host is loopback)",
                ))
            }
        }
        Ok(SmtpUrl(raw.to_owned()))
    }

    /// The URL without its password (for logs).
    pub fn redacted(&self) -> String {
        match url::Url::parse(&self.0) {
            Ok(mut u) => {
                if u.password().is_some() {
                    let _ = u.set_password(Some("redacted"));
                }
                u.to_string()
            }
            Err(_) => "[unparsable]".to_owned(),
        }
    }
}

impl fmt::Debug for SmtpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SmtpUrl({})", self.redacted())
    }
}

impl fmt::Display for SmtpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// A message to send: the recipient, a fixed subject, and the two bodies.
pub struct Mail {
    pub to: Address,
    pub subject: String,
    pub text: String,
    pub html: String,
}

impl fmt::Debug for Mail {
    // The bodies carry links that are secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mail")
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

/// The configured SMTP relay and sender.
#[derive(Clone)]
pub struct Mailer {
    url: SmtpUrl,
    from: Mailbox,
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

impl fmt::Debug for Mailer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mailer")
            .field("url", &self.url)
            .field("from", &self.from.to_string())
            .finish()
    }
}

impl Mailer {
    /// A mailer for `url` sending as `from` (an address, with an optional display name:
    /// `Signet <no-reply@example.com>`).
    pub fn new(url: SmtpUrl, from: &str) -> Result<Mailer, MailConfigError> {
        if from.chars().any(char::is_control) {
            return Err(MailConfigError::From(from.to_owned()));
        }
        let from: Mailbox = from
            .parse()
            .map_err(|_| MailConfigError::From(from.to_owned()))?;
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(&url.0)
            // lettre's error may echo the URL: say only what kind of error it was.
            .map_err(|e| {
                MailConfigError::Transport(if e.is_client() {
                    "lettre refused the URL".to_owned()
                } else {
                    "the TLS settings could not be built".to_owned()
                })
            })?
            .timeout(Some(SMTP_TIMEOUT))
            .build();
        Ok(Mailer {
            url,
            from,
            transport,
        })
    }

    /// The relay, password redacted.
    pub fn url(&self) -> &SmtpUrl {
        &self.url
    }

    /// Builds the message (typed headers only; see the module docs).
    pub fn build(&self, mail: &Mail) -> Result<Message, lettre::error::Error> {
        Message::builder()
            .from(self.from.clone())
            .to(Mailbox::new(None, mail.to.clone()))
            .subject(mail.subject.clone())
            .multipart(
                MultiPart::alternative()
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_PLAIN)
                            .body(mail.text.clone()),
                    )
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_HTML)
                            .body(mail.html.clone()),
                    ),
            )
    }

    /// Sends `mail` now; the error names neither the recipient nor the body.
    pub async fn send(&self, mail: &Mail) -> Result<(), String> {
        let message = self
            .build(mail)
            .map_err(|_| "the message could not be built".to_owned())?;
        self.transport.send(message).await.map(|_| ()).map_err(|e| {
            if e.is_timeout() {
                "the SMTP relay timed out".to_owned()
            } else if e.is_permanent() {
                "the SMTP relay refused the message (permanent)".to_owned()
            } else if e.is_transient() {
                "the SMTP relay refused the message (transient)".to_owned()
            } else {
                "the SMTP relay could not be reached".to_owned()
            }
        })
    }

    /// Sends `mail` in a task of its own (off the request path: the page answers the same
    /// whether or not a message goes out, and as fast); `kind` names the message in the
    /// log and the `signet_mail_sent_total` metric.
    pub fn send_later(&self, kind: &'static str, mail: Mail) {
        let mailer = self.clone();
        tokio::spawn(async move {
            match mailer.send(&mail).await {
                Ok(()) => {
                    metrics::counter!(crate::telemetry::MAIL_SENT, "kind" => kind, "outcome" => "sent")
                        .increment(1);
                    tracing::info!(kind, "e-mail sent");
                }
                Err(why) => {
                    metrics::counter!(crate::telemetry::MAIL_SENT, "kind" => kind, "outcome" => "failed")
                        .increment(1);
                    tracing::warn!(kind, error = %why, relay = %mailer.url, "e-mail not sent");
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_refuse_header_injection() {
        for bad in [
            "victim@example.com\r\nBcc: x@evil.example",
            "victim@example.com\nBcc: x@evil.example",
            "victim@example.com\r",
            "victim@example.com, x@evil.example",
            "Victim <victim@example.com>",
            "not an address",
            "victim@localhost",
            "",
            "@example.com",
        ] {
            assert!(parse_address(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            parse_address(" a.b+c@mail.example.com ")
                .unwrap()
                .to_string(),
            "a.b+c@mail.example.com"
        );
        let long = format!("{}@example.com", "a".repeat(250));
        assert_eq!(parse_address(&long), Err(AddressError::TooLong));
    }

    #[test]
    fn smtp_urls_need_tls_off_loopback() {
        for ok in [
            "smtp://127.0.0.1:2525",
            "smtp://localhost",
            "smtp://[::1]:25",
            "smtps://u:p@mail.example.com",
            "smtp://mail.example.com:587?tls=required",
        ] {
            SmtpUrl::parse(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "smtp://mail.example.com",
            "smtp://mail.example.com?tls=opportunistic",
            "http://mail.example.com",
            "smtps://169.254.169.254",
            "smtp://[fe80::1]:25",
            "not a url",
        ] {
            assert!(SmtpUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_password_is_redacted() {
        let url = SmtpUrl::parse("smtps://user:s3cr3t@mail.example.com:465").unwrap();
        assert!(!format!("{url:?} {url}").contains("s3cr3t"));
        let mailer = Mailer::new(url, "Signet <no-reply@example.com>").unwrap();
        assert!(!format!("{mailer:?}").contains("s3cr3t"));
        assert!(Mailer::new(
            SmtpUrl::parse("smtp://127.0.0.1").unwrap(),
            "a@example.com\r\nBcc: x@evil.example"
        )
        .is_err());
    }

    #[tokio::test]
    async fn messages_carry_typed_headers() {
        let mailer = Mailer::new(
            SmtpUrl::parse("smtp://127.0.0.1:1").unwrap(),
            "no-reply@example.com",
        )
        .unwrap();
        let mail = Mail {
            to: parse_address("user@example.com").unwrap(),
            subject: "Reset your password".into(),
            text: "link".into(),
            html: "<p>link</p>".into(),
        };
        let raw = String::from_utf8(mailer.build(&mail).unwrap().formatted()).unwrap();
        assert!(raw.contains("To: user@example.com\r\n"), "{raw}");
        assert!(raw.contains("Subject: Reset your password\r\n"), "{raw}");
        assert!(raw.contains("multipart/alternative"), "{raw}");
    }
}
