//! Grant rules, one module per grant type, and the access-token claims they produce.

pub mod claims;
pub mod client_credentials;
pub mod resource_indicators;

pub use claims::AccessTokenClaims;
