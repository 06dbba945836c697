//! The YAML of `signet admin apply -f`: the parser with the options the CLI uses
//! (`services/signet/src/admin/spec.rs`, `parse_values`; the CLI is a binary crate, so
//! they are repeated here), then each `{kind, spec}` object's spec into its model and
//! rules. Never a panic, never an unbounded expansion (the parser's budget).
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use signet_core::client::{Client, ClientPolicy};
use signet_core::resource::ApiResource;
use signet_core::scope::ScopeResource;
use signet_core::secret::SecretInput;
use signet_core::validation::from_json;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let options = serde_saphyr::options! {
        with_snippet: false,
        strict_booleans: true,
        leading_zero_numbers_as_strings: true,
        underscored_numbers_as_strings: true,
    };
    let Ok(values) = serde_saphyr::from_multiple_with_options::<Value>(text, options) else {
        return;
    };
    for v in values.into_iter().flat_map(|v| match v {
        Value::Array(items) => items,
        other => vec![other],
    }) {
        let (Some(kind), Some(spec)) = (v.get("kind").and_then(Value::as_str), v.get("spec"))
        else {
            continue;
        };
        let body = serde_json::to_vec(spec).expect("a value serializes");
        let _ = match kind {
            "Client" => from_json::<Client<SecretInput>>(&body)
                .and_then(|c| c.validate_with(&ClientPolicy::lenient())),
            "ApiResource" => {
                from_json::<ApiResource<SecretInput>>(&body).and_then(|r| r.validate())
            }
            _ => from_json::<ScopeResource>(&body).and_then(|s| s.validate()),
        };
    }
});
