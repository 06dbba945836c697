//! One module per grant type. Each takes an authenticated client and answers the request.

pub mod client_credentials;
