//! Authentication levels and second factors, pure logic (no I/O, no clock, no randomness:
//! the caller passes them in).
//!
//! - [`Level`]: what a sign-in achieved, emitted as the ID token's `acr` (OIDC Core
//!   section 2): `pwd` (a password), `mfa` (a password and a second factor), `phr`
//!   (phishing-resistant: a passkey, reserved for WebAuthn). Ordered: `pwd < mfa < phr`.
//!   The strings are Signet's own, advertised in discovery's `acr_values_supported`.
//! - `amr` values are RFC 8176's: `pwd`, `otp`, `mfa` (and later `hwk`, `user`, `pin`);
//!   [`Level::of_amr`] reads the level back from them.
//! - [`totp`]: RFC 6238 with its defaults (HMAC-SHA-1, 6 digits, 30 s steps), a code
//!   accepted in the current step and one step either side.
//! - Recovery codes: 80 random bits shown as `xxxx-xxxx-xxxx-xxxx` (base32), stored as
//!   SHA-256 of the user's `sub` and the normalized code (high entropy: no slow hash
//!   needed; the `sub` keeps one user's digests from matching another's).

use std::fmt;

use aws_lc_rs::hmac;
use serde::{Deserialize, Serialize};

/// RFC 8176 `amr` values Signet emits.
pub const AMR_PWD: &str = "pwd";
pub const AMR_OTP: &str = "otp";
pub const AMR_MFA: &str = "mfa";
/// Proof of possession of a hardware-secured key (a passkey), for WebAuthn.
pub const AMR_HWK: &str = "hwk";

/// What a sign-in achieved, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// A password.
    Pwd,
    /// A password and a second factor (TOTP or a recovery code).
    Mfa,
    /// Phishing-resistant (a passkey).
    Phr,
}

impl Level {
    pub const ALL: [Level; 3] = [Level::Pwd, Level::Mfa, Level::Phr];

    /// The `acr` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Pwd => "pwd",
            Level::Mfa => "mfa",
            Level::Phr => "phr",
        }
    }

    pub fn parse(s: &str) -> Option<Level> {
        Level::ALL.into_iter().find(|l| l.as_str() == s)
    }

    /// The level proven by a set of `amr` values: `phr` with a hardware key, `mfa` with
    /// `mfa` (or a password and a one-time code), else `pwd`.
    pub fn of_amr(amr: &[String]) -> Level {
        let has = |v: &str| amr.iter().any(|a| a == v);
        if has(AMR_HWK) {
            Level::Phr
        } else if has(AMR_MFA) || (has(AMR_PWD) && has(AMR_OTP)) {
            Level::Mfa
        } else {
            Level::Pwd
        }
    }

    /// The weakest level among the space-separated `acr_values` this server knows (OIDC
    /// Core 3.1.2.1: the values are in order of preference; any of them satisfies, so the
    /// weakest known one is what must be reached). `None` when no value is known.
    pub fn from_acr_values(values: &str) -> Option<Level> {
        values.split(' ').filter_map(Level::parse).min()
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `amr` after a second factor was added to a sign-in that had `amr`.
pub fn with_second_factor(amr: &[String]) -> Vec<String> {
    let mut out: Vec<String> = amr.to_vec();
    for v in [AMR_OTP, AMR_MFA] {
        if !out.iter().any(|a| a == v) {
            out.push(v.to_owned());
        }
    }
    out
}

/// The `amr` after a passkey (with user verification) was added to a sign-in that had
/// `amr`: `hwk` and `user`, and `mfa` when it follows another factor.
pub fn with_passkey(amr: &[String]) -> Vec<String> {
    let mut out: Vec<String> = amr.to_vec();
    let mut add = vec![AMR_HWK, crate::passkey::AMR_USER];
    if !amr.is_empty() {
        add.push(AMR_MFA);
    }
    for v in add {
        if !out.iter().any(|a| a == v) {
            out.push(v.to_owned());
        }
    }
    out
}

/// RFC 6238 TOTP.
pub mod totp {
    use super::hmac;

    /// Seconds per step (RFC 6238 section 4.1, X).
    pub const STEP: u64 = 30;
    pub const DIGITS: u32 = 6;
    /// Steps accepted either side of the current one.
    pub const DRIFT: u64 = 1;
    /// Bytes of a generated secret (RFC 4226 section 4 recommends 160 bits).
    pub const SECRET_LEN: usize = 20;

    /// The HOTP value (RFC 4226 section 5.3) of `counter`.
    pub fn hotp(secret: &[u8], counter: u64) -> u32 {
        let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret);
        let tag = hmac::sign(&key, &counter.to_be_bytes());
        let h = tag.as_ref();
        let offset = (h[h.len() - 1] & 0x0f) as usize;
        let bin = u32::from_be_bytes([
            h[offset] & 0x7f,
            h[offset + 1],
            h[offset + 2],
            h[offset + 3],
        ]);
        bin % 10u32.pow(DIGITS)
    }

    /// The step of Unix time `now`.
    pub fn step(now: i64) -> u64 {
        (now.max(0) as u64) / STEP
    }

    /// The code of the step of `now`, zero-padded.
    pub fn code(secret: &[u8], now: i64) -> String {
        format!("{:06}", hotp(secret, step(now)))
    }

    /// The step within the drift window whose code is `code`, if any. `code` must be
    /// exactly six ASCII digits (spaces are the caller's to strip). Every step of the
    /// window is computed, so timing does not tell which one matched.
    pub fn verify(secret: &[u8], code: &str, now: i64) -> Option<u64> {
        if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let presented: u32 = code.parse().ok()?;
        let current = step(now);
        let mut found = None;
        for s in current.saturating_sub(DRIFT)..=current + DRIFT {
            let ok = subtle::ConstantTimeEq::ct_eq(&hotp(secret, s), &presented);
            if bool::from(ok) && found.is_none() {
                found = Some(s);
            }
        }
        found
    }

    /// An `otpauth://` URI (the Key Uri Format authenticator apps read from the QR code).
    pub fn otpauth_uri(issuer: &str, account: &str, secret_b32: &str) -> String {
        let enc = |s: &str| -> String {
            url::form_urlencoded::byte_serialize(s.as_bytes())
                .collect::<String>()
                .replace('+', "%20")
        };
        format!(
            "otpauth://totp/{}:{}?secret={secret_b32}&issuer={}&algorithm=SHA1&digits={DIGITS}&period={STEP}",
            enc(issuer),
            enc(account),
            enc(issuer)
        )
    }
}

/// How many recovery codes a user gets.
pub const RECOVERY_CODES: usize = 10;

const B32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// Base32 (RFC 4648, no padding).
pub fn base32(bytes: &[u8]) -> String {
    let mut out = String::new();
    let mut buf: u32 = 0;
    let mut bits = 0;
    for &b in bytes {
        buf = (buf << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(B32[((buf >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(B32[((buf << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// A recovery code from 10 random bytes: 16 base32 characters in groups of four.
pub fn recovery_code(bytes: &[u8; 10]) -> String {
    let s = base32(bytes);
    s.as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join("-")
}

/// The form a recovery code is compared in: letters uppercased, separators and spaces
/// dropped.
pub fn normalize_recovery_code(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

/// The stored digest of a recovery code of user `sub`.
pub fn recovery_digest(sub: &str, code: &str) -> String {
    crate::secret::SecretDigest::of(&format!(
        "recovery\u{0}{sub}\u{0}{}",
        normalize_recovery_code(code)
    ))
    .to_b64url()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6238_sha1_vectors() {
        // RFC 6238 appendix B, SHA-1 rows (8 digits there; the last six here).
        let secret = b"12345678901234567890";
        for (t, eight) in [
            (59, "94287082"),
            (1111111109, "07081804"),
            (1111111111, "14050471"),
            (1234567890, "89005924"),
            (2000000000, "69279037"),
            (20000000000, "65353130"),
        ] {
            assert_eq!(totp::code(secret, t), eight[2..], "T={t}");
        }
    }

    #[test]
    fn drift_window() {
        let secret = b"12345678901234567890";
        let now = 1_111_111_111;
        let prev = totp::code(secret, now - 30);
        let next = totp::code(secret, now + 30);
        let far = totp::code(secret, now - 90);
        assert_eq!(totp::verify(secret, &prev, now), Some(totp::step(now) - 1));
        assert_eq!(totp::verify(secret, &next, now), Some(totp::step(now) + 1));
        assert_eq!(totp::verify(secret, &far, now), None);
        assert_eq!(totp::verify(secret, "12345", now), None);
        assert_eq!(totp::verify(secret, "12345a", now), None);
        assert_eq!(totp::verify(secret, "１２３４５６", now), None);
    }

    #[test]
    fn levels() {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(Level::of_amr(&v(&["pwd"])), Level::Pwd);
        assert_eq!(Level::of_amr(&v(&["pwd", "otp", "mfa"])), Level::Mfa);
        assert_eq!(Level::of_amr(&v(&["hwk", "user"])), Level::Phr);
        assert!(Level::Pwd < Level::Mfa && Level::Mfa < Level::Phr);
        assert_eq!(Level::from_acr_values("phr mfa"), Some(Level::Mfa));
        assert_eq!(Level::from_acr_values("urn:other mfa"), Some(Level::Mfa));
        assert_eq!(Level::from_acr_values("urn:other"), None);
        assert_eq!(with_second_factor(&v(&["pwd"])), v(&["pwd", "otp", "mfa"]));
        assert_eq!(with_passkey(&[]), v(&["hwk", "user"]));
        assert_eq!(
            with_passkey(&v(&["pwd"])),
            v(&["pwd", "hwk", "user", "mfa"])
        );
        assert_eq!(Level::of_amr(&with_passkey(&v(&["pwd"]))), Level::Phr);
    }

    #[test]
    fn base32_and_recovery_codes() {
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI"); // RFC 4648 section 10
        let code = recovery_code(&[0xff; 10]);
        assert_eq!(code, "7777-7777-7777-7777");
        assert_eq!(
            recovery_digest("u1", "7777-7777-7777-7777"),
            recovery_digest("u1", "7777 7777 7777 7777")
        );
        assert_ne!(recovery_digest("u1", &code), recovery_digest("u2", &code));
    }
}
