//! Passkeys (WebAuthn Level 3), through the `webauthn_rp` crate (pure Rust: RustCrypto
//! P-256, P-384, Ed25519 and RSA; no OpenSSL). This module holds no I/O: the issuer keeps
//! the ceremony states in the store and the credentials on the user's record.
//!
//! - The relying party ([`RelyingParty`]) is derived from the issuer URL: its RP ID is the
//!   issuer's host (a domain name: WebAuthn refuses IP addresses), and the only origin
//!   accepted in `clientDataJSON` is the issuer's origin, exactly (scheme, host, port).
//! - Registration (section 7.1): a discoverable credential (`residentKey: required`) with
//!   user verification required, ES256, EdDSA, ES384 or RS256; `excludeCredentials` lists
//!   the user's credentials. No attestation is asked for (`none`): Signet trusts the user's
//!   choice of authenticator, it does not certify models.
//! - Authentication (section 7.2): a discoverable request (empty `allowCredentials`) with
//!   user verification required; the credential is found by its user handle, the record
//!   must hold its id; the crate checks the challenge, the origin, the RP ID hash, the UP
//!   and UV flags and the signature.
//! - The signature counter (section 6.1.1): a stored counter that is not zero and a
//!   presented one that is not greater is refused ([`PasskeyError::CounterWentBack`]): the
//!   authenticator may have been cloned. Authenticators that keep no counter (always zero,
//!   like most synced passkeys) pass.
//! - Ceremony states ([`CeremonyState`]) serialize (the crate's `serializable_server_state`),
//!   so the ceremony may finish on another node; each lives five minutes at most.
//! - `amr`: a passkey sign-in proves possession of a key held by an authenticator (RFC 8176
//!   `hwk`) and, with user verification required, a biometric or PIN checked on it: `user`
//!   (RFC 8176 section 2: "user presence test" is weaker; `user` is the authenticator's
//!   verification of the user, which is what the UV flag asserts). As the first factor:
//!   `["hwk", "user"]`; after a password: `["pwd", "hwk", "user", "mfa"]`. Both reach `phr`.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};
use webauthn_rp::bin::{Decode, Encode};
use webauthn_rp::request::auth::{
    AuthenticationVerificationOptions, DiscoverableCredentialRequestOptions,
    SignatureCounterEnforcement,
};
use webauthn_rp::request::register::{
    Nickname, PublicKeyCredentialCreationOptions, PublicKeyCredentialUserEntity,
    RegistrationVerificationOptions, UserHandle64, Username, USER_HANDLE_MAX_LEN,
};
use webauthn_rp::request::{AsciiDomain, PublicKeyCredentialDescriptor, RpId};
use webauthn_rp::response::auth::error::AuthCeremonyErr;
use webauthn_rp::response::auth::ser_relaxed::DiscoverableAuthenticationRelaxed64;
use webauthn_rp::response::register::ser_relaxed::RegistrationRelaxed;
use webauthn_rp::response::register::{DynamicState, StaticState};
use webauthn_rp::response::{AuthTransports, CredentialId};
use webauthn_rp::{
    AuthenticatedCredential, DiscoverableAuthentication64, DiscoverableAuthenticationServerState,
    Registration, RegistrationServerState,
};

use crate::UnixTime;

/// RFC 8176 `amr` for the authenticator's verification of the user (PIN or biometric).
pub const AMR_USER: &str = "user";
/// The longest passkey name kept.
pub const MAX_NAME: usize = 64;
/// How many passkeys a user may hold.
pub const MAX_PASSKEYS: usize = 20;
/// The largest ceremony response accepted (an RSA-4096 attestation fits many times).
pub const MAX_RESPONSE: usize = 16 * 1024;

/// Why a ceremony was refused. The messages name no secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasskeyError {
    #[error("the issuer's host is not a domain name (passkeys need one)")]
    NoDomain,
    #[error("the response is not a WebAuthn credential")]
    Malformed,
    #[error("the ceremony state is not valid")]
    BadState,
    #[error("the ceremony was refused: {0}")]
    Refused(String),
    #[error("the origin or the relying party does not match")]
    WrongRelyingParty,
    #[error("the passkey is not registered for this account")]
    UnknownCredential,
    #[error("the signature counter went back: the authenticator may be cloned")]
    CounterWentBack,
    #[error("the authenticator did not verify the user")]
    UserNotVerified,
}

/// A user's registered passkey, as the record stores it (public data only).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PasskeyFactor {
    /// base64url of the credential id.
    pub id: String,
    /// The name the user gave it.
    pub name: String,
    /// base64url of the crate's encoding of the public key and its static extensions.
    pub public_key: String,
    /// base64url of the crate's encoding of the dynamic state (UV, backup, counter,
    /// attachment).
    pub state: String,
    /// The last signature counter accepted (also inside `state`; here for the admin view).
    pub sign_count: u32,
    pub created_at: UnixTime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<UnixTime>,
}

impl fmt::Debug for PasskeyFactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasskeyFactor")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("sign_count", &self.sign_count)
            .finish()
    }
}

/// A ceremony in progress: the crate's server state, encoded, and what it was for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CeremonyState {
    /// `reg` or `auth`.
    pub kind: String,
    /// What the state is bound to (the session or the interaction), checked by the caller.
    pub bound_to: String,
    /// Registration: the user enrolling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// Registration: the user handle the options carried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handle: Option<String>,
    /// base64url of the encoded server state.
    pub state: String,
}

/// A passkey's name: trimmed, control characters dropped, at most [`MAX_NAME`] characters;
/// `None` when nothing is left.
pub fn clean_name(name: &str) -> Option<String> {
    let cleaned: String = name
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_NAME)
        .collect::<String>()
        .trim()
        .to_owned();
    (!cleaned.is_empty()).then_some(cleaned)
}

/// A new random user handle (64 bytes, WebAuthn section 14.6.1), base64url.
pub fn new_user_handle() -> String {
    B64.encode(UserHandle64::new().as_ref())
}

fn decode_handle(handle: &str) -> Option<UserHandle64> {
    let bytes: [u8; USER_HANDLE_MAX_LEN] = B64.decode(handle).ok()?.try_into().ok()?;
    UserHandle64::decode(bytes).ok()
}

/// The relying party of an issuer.
#[derive(Debug)]
pub struct RelyingParty {
    rp_id: RpId,
    origin: String,
    name: String,
}

/// What [`RelyingParty::start_registration`] and [`RelyingParty::start_authentication`]
/// return: the state to keep, the options for `navigator.credentials` (JSON, the WebAuthn
/// Level 3 `...OptionsJSON` forms), and the challenge (base64url) that names the state.
#[derive(Debug)]
pub struct Started {
    pub state: String,
    pub options: String,
    pub challenge: String,
}

/// A newly registered credential's parts.
#[derive(Debug)]
pub struct Registered {
    pub id: String,
    pub public_key: String,
    pub state: String,
    pub sign_count: u32,
}

/// What an accepted assertion changes on the credential.
#[derive(Debug, PartialEq, Eq)]
pub struct Asserted {
    pub state: String,
    pub sign_count: u32,
}

fn challenge_of_options(options: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(options).ok()?;
    v.get("challenge")
        .or_else(|| v.get("publicKey").and_then(|p| p.get("challenge")))
        .and_then(|c| c.as_str())
        .map(str::to_owned)
}

impl RelyingParty {
    /// The relying party of the issuer at `issuer` (a URL); `name` is shown by the
    /// authenticator.
    pub fn new(issuer: &url::Url, name: &str) -> Result<RelyingParty, PasskeyError> {
        let host = match issuer.host() {
            Some(url::Host::Domain(d)) => d.to_ascii_lowercase(),
            _ => return Err(PasskeyError::NoDomain),
        };
        let domain = AsciiDomain::try_from(host).map_err(|_| PasskeyError::NoDomain)?;
        Ok(RelyingParty {
            rp_id: RpId::Domain(domain),
            origin: issuer.origin().ascii_serialization(),
            name: name.to_owned(),
        })
    }

    pub fn rp_id(&self) -> &str {
        match &self.rp_id {
            RpId::Domain(d) => d.as_ref(),
            RpId::Url(u) => u.as_ref(),
        }
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Starts registering a passkey for the user with handle `handle` (from
    /// [`new_user_handle`]) named `username`, excluding the credential ids `existing`.
    pub fn start_registration(
        &self,
        handle: &str,
        username: &str,
        existing: &[PasskeyFactor],
    ) -> Result<Started, PasskeyError> {
        let id = decode_handle(handle).ok_or(PasskeyError::BadState)?;
        let name = Username::try_from(username)
            .or_else(|_| Username::try_from("user"))
            .map_err(|_| PasskeyError::BadState)?;
        let exclude = existing
            .iter()
            .filter_map(|p| {
                let raw = B64.decode(&p.id).ok()?;
                Some(PublicKeyCredentialDescriptor {
                    id: CredentialId::<Vec<u8>>::decode(raw).ok()?,
                    transports: AuthTransports::decode(0).ok()?,
                })
            })
            .collect();
        let user = PublicKeyCredentialUserEntity {
            name,
            id: &id,
            display_name: Nickname::try_from(username).ok(),
        };
        let mut opts = PublicKeyCredentialCreationOptions::passkey(&self.rp_id, user, exclude);
        // Authenticators that cannot enforce credProtect still make usable passkeys: user
        // verification is demanded on every assertion anyway.
        opts.extensions.cred_protect = webauthn_rp::request::register::CredProtect::None;
        let (server, client) = opts
            .start_ceremony()
            .map_err(|e| PasskeyError::Refused(e.to_string()))?;
        let mut options =
            serde_json::to_value(&client).map_err(|e| PasskeyError::Refused(e.to_string()))?;
        // The crate names the RP by its id; the authenticator shows this name.
        let public_key = if options.get("publicKey").is_some() {
            &mut options["publicKey"]
        } else {
            &mut options
        };
        if let Some(rp) = public_key.get_mut("rp") {
            rp["name"] = self.name.clone().into();
        }
        let options = options.to_string();
        let state = server
            .encode()
            .map_err(|e| PasskeyError::Refused(e.to_string()))?;
        Ok(Started {
            challenge: challenge_of_options(&options).ok_or(PasskeyError::BadState)?,
            state: B64.encode(state),
            options,
        })
    }

    /// Finishes a registration: `state` from [`RelyingParty::start_registration`],
    /// `response` the browser's `PublicKeyCredential.toJSON()`.
    pub fn finish_registration(
        &self,
        state: &str,
        response: &[u8],
    ) -> Result<Registered, PasskeyError> {
        if response.len() > MAX_RESPONSE {
            return Err(PasskeyError::Malformed);
        }
        let server = B64
            .decode(state)
            .ok()
            .and_then(|b| RegistrationServerState::<USER_HANDLE_MAX_LEN>::decode(&b).ok())
            .ok_or(PasskeyError::BadState)?;
        let registration = parse_registration(response)?;
        let origins = [self.origin.as_str()];
        let options = RegistrationVerificationOptions::<&str, &str> {
            allowed_origins: &origins,
            ..Default::default()
        };
        let cred = server
            .verify(&self.rp_id, &registration, &options)
            .map_err(|e| {
                use webauthn_rp::response::register::error::RegCeremonyErr as E;
                match e {
                    E::OriginMismatch | E::RpIdHashMismatch | E::TopOriginMismatch => {
                        PasskeyError::WrongRelyingParty
                    }
                    E::UserNotVerified => PasskeyError::UserNotVerified,
                    other => PasskeyError::Refused(other.to_string()),
                }
            })?;
        let (id, _, _, static_state, dynamic, _) = cred.into_parts();
        let public_key = static_state
            .encode()
            .map_err(|e| PasskeyError::Refused(e.to_string()))?;
        let dyn_bytes = dynamic
            .encode()
            .map_err(|e| PasskeyError::Refused(e.to_string()))?;
        Ok(Registered {
            id: B64.encode(id.as_ref()),
            public_key: B64.encode(public_key),
            state: B64.encode(dyn_bytes),
            sign_count: dynamic.sign_count,
        })
    }

    /// Starts a sign-in with a discoverable passkey.
    pub fn start_authentication(&self) -> Result<Started, PasskeyError> {
        let (server, client) = DiscoverableCredentialRequestOptions::passkey(&self.rp_id)
            .start_ceremony()
            .map_err(|e| PasskeyError::Refused(e.to_string()))?;
        let options =
            serde_json::to_string(&client).map_err(|e| PasskeyError::Refused(e.to_string()))?;
        let state = server
            .encode()
            .map_err(|e| PasskeyError::Refused(e.to_string()))?;
        Ok(Started {
            challenge: challenge_of_options(&options).ok_or(PasskeyError::BadState)?,
            state: B64.encode(state),
            options,
        })
    }

    /// Finishes a sign-in: `state` from [`RelyingParty::start_authentication`], `assertion`
    /// the parsed response, `handle` and `passkey` the user and credential it names (the
    /// caller found them by [`Assertion::user_handle`] and [`Assertion::credential_id`]).
    pub fn finish_authentication(
        &self,
        state: &str,
        assertion: &Assertion,
        handle: &str,
        passkey: &PasskeyFactor,
    ) -> Result<Asserted, PasskeyError> {
        let server = B64
            .decode(state)
            .ok()
            .and_then(|b| DiscoverableAuthenticationServerState::decode(&b).ok())
            .ok_or(PasskeyError::BadState)?;
        let user = decode_handle(handle).ok_or(PasskeyError::UnknownCredential)?;
        let id_bytes = B64
            .decode(&passkey.id)
            .map_err(|_| PasskeyError::UnknownCredential)?;
        let key_bytes = B64
            .decode(&passkey.public_key)
            .map_err(|_| PasskeyError::UnknownCredential)?;
        let dyn_bytes: [u8; 7] = B64
            .decode(&passkey.state)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or(PasskeyError::UnknownCredential)?;
        let static_state = StaticState::decode(key_bytes.as_slice())
            .map_err(|_| PasskeyError::UnknownCredential)?;
        let dynamic =
            DynamicState::decode(dyn_bytes).map_err(|_| PasskeyError::UnknownCredential)?;
        let id = CredentialId::<&[u8]>::decode(id_bytes.as_slice())
            .map_err(|_| PasskeyError::UnknownCredential)?;
        let mut cred = AuthenticatedCredential::new(id, &user, static_state, dynamic)
            .map_err(|_| PasskeyError::UnknownCredential)?;
        let origins = [self.origin.as_str()];
        let options = AuthenticationVerificationOptions::<&str, &str> {
            allowed_origins: &origins,
            update_uv: true,
            sig_counter_enforcement: SignatureCounterEnforcement::Fail,
            ..Default::default()
        };
        server
            .verify(&self.rp_id, &assertion.0, &mut cred, &options)
            .map_err(|e| match e {
                AuthCeremonyErr::SignatureCounter => PasskeyError::CounterWentBack,
                AuthCeremonyErr::OriginMismatch
                | AuthCeremonyErr::RpIdHashMismatch
                | AuthCeremonyErr::TopOriginMismatch
                | AuthCeremonyErr::CrossOrigin => PasskeyError::WrongRelyingParty,
                AuthCeremonyErr::UserNotVerified => PasskeyError::UserNotVerified,
                AuthCeremonyErr::UserHandleMismatch | AuthCeremonyErr::CredentialIdMismatch => {
                    PasskeyError::UnknownCredential
                }
                other => PasskeyError::Refused(other.to_string()),
            })?;
        let dynamic = cred.dynamic_state();
        let bytes = dynamic
            .encode()
            .map_err(|e| PasskeyError::Refused(e.to_string()))?;
        Ok(Asserted {
            state: B64.encode(bytes),
            sign_count: dynamic.sign_count,
        })
    }
}

/// A parsed assertion (the browser's `PublicKeyCredential.toJSON()` of a `get()`).
pub struct Assertion(DiscoverableAuthentication64);

impl fmt::Debug for Assertion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Assertion(..)")
    }
}

impl Assertion {
    pub fn parse(json: &[u8]) -> Result<Assertion, PasskeyError> {
        if json.len() > MAX_RESPONSE {
            return Err(PasskeyError::Malformed);
        }
        serde_json::from_slice::<DiscoverableAuthenticationRelaxed64>(json)
            .map(|r| Assertion(r.0))
            .map_err(|_| PasskeyError::Malformed)
    }

    /// base64url of the user handle the authenticator returned.
    pub fn user_handle(&self) -> String {
        B64.encode(self.0.response().user_handle().as_ref())
    }

    /// base64url of the credential id.
    pub fn credential_id(&self) -> String {
        B64.encode(self.0.raw_id().as_ref())
    }

    /// base64url of the challenge in `clientDataJSON` (names the ceremony state).
    pub fn challenge(&self) -> Result<String, PasskeyError> {
        let c = self
            .0
            .challenge_relaxed()
            .map_err(|_| PasskeyError::Malformed)?;
        Ok(B64.encode(c.0.to_le_bytes()))
    }
}

/// A registration response: `PublicKeyCredential.toJSON()` (`RegistrationResponseJSON`),
/// unknown members ignored.
fn parse_registration(response: &[u8]) -> Result<Registration, PasskeyError> {
    serde_json::from_slice::<RegistrationRelaxed>(response)
        .map(|r| r.0)
        .map_err(|_| PasskeyError::Malformed)
}

/// The challenge (base64url) in a registration response's `clientDataJSON`.
pub fn registration_challenge(response: &[u8]) -> Result<String, PasskeyError> {
    if response.len() > MAX_RESPONSE {
        return Err(PasskeyError::Malformed);
    }
    let r = parse_registration(response)?;
    let c = r.challenge_relaxed().map_err(|_| PasskeyError::Malformed)?;
    Ok(B64.encode(c.0.to_le_bytes()))
}

#[cfg(test)]
#[path = "passkey/soft.rs"]
pub mod soft;

#[cfg(test)]
mod tests;
