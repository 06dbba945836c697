//! Property tests of the admin API's JSON bodies: `from_json` into each model, then the
//! model's rules. Arbitrary bytes and near-valid bodies never panic, the same body always
//! gets the same answer, every error names a field and a rule, and no error repeats a
//! secret or a password.

use proptest::prelude::*;
use serde_json::Value;

use super::{from_json, ValidationErrors};
use crate::client::Client;
use crate::fuzz::{
    config, json_object, API_RESOURCE_MEMBERS, CLIENT_MEMBERS, SCOPE_MEMBERS, USER_MEMBERS,
};
use crate::resource::ApiResource;
use crate::scope::ScopeResource;
use crate::secret::SecretInput;
use crate::user::{NewUser, UserReplacement};

/// The outcome of parsing and checking one body, comparable across runs.
fn outcome(kind: usize, body: &[u8]) -> Result<String, ValidationErrors> {
    match kind {
        0 => {
            let c: Client<SecretInput> = from_json(body)?;
            c.validate()?;
            Ok(format!("{c:?}"))
        }
        1 => {
            let r: ApiResource<SecretInput> = from_json(body)?;
            r.validate()?;
            Ok(format!("{r:?}"))
        }
        2 => {
            let s: ScopeResource = from_json(body)?;
            s.validate()?;
            Ok(format!("{s:?}"))
        }
        3 => {
            let u: NewUser = from_json(body)?;
            Ok(format!("{:?}", u.check()?))
        }
        _ => {
            let u: UserReplacement = from_json(body)?;
            Ok(format!("{:?}", u.check()?))
        }
    }
}

fn well_formed(e: &ValidationErrors) -> Result<(), TestCaseError> {
    prop_assert!(!e.errors.is_empty());
    for f in &e.errors {
        prop_assert!(!f.field.is_empty(), "{e:?}");
        prop_assert!(!f.rule.is_empty(), "{e:?}");
    }
    Ok(())
}

fn body_for(kind: usize) -> BoxedStrategy<Value> {
    match kind {
        0 => json_object(CLIENT_MEMBERS).boxed(),
        1 => json_object(API_RESOURCE_MEMBERS).boxed(),
        2 => json_object(SCOPE_MEMBERS).boxed(),
        _ => json_object(USER_MEMBERS).boxed(),
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn arbitrary_bytes_are_answered_deterministically(
        kind in 0usize..5,
        body in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        let first = outcome(kind, &body);
        if let Err(e) = &first {
            well_formed(e)?;
        }
        prop_assert_eq!(first, outcome(kind, &body));
    }

    #[test]
    fn near_valid_bodies_are_answered_deterministically(
        (kind, body) in (0usize..5).prop_flat_map(|k| (Just(k), body_for(k))),
    ) {
        let bytes = serde_json::to_vec(&body).unwrap();
        let first = outcome(kind, &bytes);
        if let Err(e) = &first {
            well_formed(e)?;
        }
        prop_assert_eq!(first, outcome(kind, &bytes));
    }

    /// A secret or password, valid or not, never appears in a field name or rule.
    #[test]
    fn errors_never_repeat_a_secret(
        (kind, body) in (0usize..5).prop_flat_map(|k| (Just(k), body_for(k))),
        secret in "[A-Za-z0-9]{24}",
        short in prop::bool::ANY,
    ) {
        let secret = if short { format!("Zq{}", &secret[..5]) } else { secret };
        let mut body = body;
        let map = body.as_object_mut().unwrap();
        match kind {
            0 | 1 => {
                let field = if kind == 0 { "clientSecrets" } else { "apiSecrets" };
                map.insert(field.into(), serde_json::json!([{"value": secret, "type": "X"}]));
            }
            // Scopes have no secret.
            2 => return Ok(()),
            _ => {
                map.insert("password".into(), Value::String(secret.clone()));
            }
        }
        if let Err(e) = outcome(kind, &serde_json::to_vec(&body).unwrap()) {
            for f in &e.errors {
                prop_assert!(!f.field.contains(&secret) && !f.rule.contains(&secret), "{f:?}");
            }
        }
    }
}
