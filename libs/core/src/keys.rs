//! The public side of signing keys, as the event log records their lifecycle: published
//! (in the JWKS, not yet signing), active (signing), retired (in the JWKS until the last
//! token it signed expires), then removed or revoked (gone from the JWKS at once).

use serde::{Deserialize, Serialize};
use signet_jose::Jwk;

use crate::UnixTime;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyState {
    Published,
    Active,
    Retired,
}

/// A signing key's public record in the projection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicKeyRecord {
    pub jwk: Jwk,
    pub state: KeyState,
    pub published_at: UnixTime,
    #[serde(default)]
    pub activated_at: Option<UnixTime>,
    #[serde(default)]
    pub retired_at: Option<UnixTime>,
}
