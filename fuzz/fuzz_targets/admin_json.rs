//! The admin API's JSON bodies: `from_json` into each model (the first byte picks it), then
//! its rules. Never a panic; every error names a field and a rule.
#![no_main]

use libfuzzer_sys::fuzz_target;
use signet_core::client::Client;
use signet_core::resource::ApiResource;
use signet_core::scope::ScopeResource;
use signet_core::secret::SecretInput;
use signet_core::user::{NewUser, UserReplacement};
use signet_core::validation::{from_json, ValidationErrors};

fn check(kind: u8, body: &[u8]) -> Result<(), ValidationErrors> {
    match kind % 5 {
        0 => from_json::<Client<SecretInput>>(body)?.validate(),
        1 => from_json::<ApiResource<SecretInput>>(body)?.validate(),
        2 => from_json::<ScopeResource>(body)?.validate(),
        3 => from_json::<NewUser>(body)?.check().map(drop),
        _ => from_json::<UserReplacement>(body)?.check().map(drop),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&kind, body)) = data.split_first() else {
        return;
    };
    if let Err(e) = check(kind, body) {
        assert!(!e.errors.is_empty());
        for f in &e.errors {
            assert!(!f.field.is_empty() && !f.rule.is_empty(), "{f:?}");
        }
    }
});
