//! The resource-server SDK. Today: the revocation events' wire format and the in-memory
//! revocation set (see [`revocation`]).

#![forbid(unsafe_code)]

pub mod revocation;
