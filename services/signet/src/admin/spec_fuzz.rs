//! Property tests of the files `signet admin apply|create|update -f` reads: any text, as
//! YAML or JSON, gets the same answer every time and never panics, through parsing,
//! flattening and checking every object; a file written as JSON means the same read as
//! YAML (JSON is YAML 1.2); and no problem repeats a secret from the file.

use proptest::prelude::*;
use serde_json::json;
use signet_core::fuzz::{
    config, json_object, nasty_string, API_RESOURCE_MEMBERS, CLIENT_MEMBERS, SCOPE_MEMBERS,
};

use super::*;

type Checked = Result<Result<Vec<Doc>, Vec<Problem>>, Problem>;

fn read(text: &str, format: Format) -> Checked {
    parse_values(text, format).map(|values| check_all(&flatten(values)))
}

/// Pieces of YAML: structure, anchors and aliases, tags, scalars of every style.
fn yaml_like() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => prop::sample::select(vec![
            "- kind: Client\n", "  spec:\n", "    clientId: web\n", "    allowedGrantTypes: [client_credentials]\n",
            "    clientSecrets: [{value: s3cret-0123456789abc}]\n", "- kind: ApiScope\n",
            "  spec: {name: orders.read}\n", "---\n", "...\n", "kind: ", "spec: ", "&a ", "*a",
            "<<: *a\n", "!!str ", "!!binary ", "!custom ", "? ", ": ", "- ", "[", "]", "{", "}",
            ",", "'", "\"", "\\u00e9", "#", "|\n", ">-\n", "\t", "  ", "\n", "no", "007", "1_000",
            "0x1F", ".inf", "~", "null", "%YAML 1.2\n", "%TAG ! tag:x:\n", "\u{feff}", "@", "`",
        ])
        .prop_map(str::to_owned),
        1 => nasty_string(),
    ];
    prop::collection::vec(piece, 0..30).prop_map(|p| p.concat())
}

/// A file of `{kind, spec}` objects with near-valid specs.
fn objects() -> impl Strategy<Value = Value> {
    let object = prop_oneof![
        json_object(CLIENT_MEMBERS).prop_map(|s| json!({"kind": "Client", "spec": s})),
        json_object(API_RESOURCE_MEMBERS).prop_map(|s| json!({"kind": "ApiResource", "spec": s})),
        json_object(SCOPE_MEMBERS).prop_map(|s| json!({"kind": "ApiScope", "spec": s})),
        json_object(SCOPE_MEMBERS).prop_map(|s| json!({"kind": "IdentityResource", "spec": s})),
        json_object(&["kind", "spec", "metadata"]),
    ];
    prop::collection::vec(object, 0..4).prop_map(Value::Array)
}

/// `v` as JSON that is also YAML with the same meaning: every non-integer number written
/// as a string (serde_json, without its `float_roundtrip` feature, may read a float one unit
/// in the last place off, a YAML parser exactly; no admin API member is a float anyway), and
/// member names cut to 100 characters (YAML 1.2 section 7.4.2 limits implicit keys to
/// 1024 characters, escapes included).
fn yaml_compatible(v: Value) -> Value {
    match v {
        Value::Number(n) if n.is_f64() => Value::String(n.to_string()),
        Value::Array(a) => Value::Array(a.into_iter().map(yaml_compatible).collect()),
        Value::Object(o) => Value::Object(
            o.into_iter()
                .map(|(k, v)| (k.chars().take(100).collect(), yaml_compatible(v)))
                .collect(),
        ),
        other => other,
    }
}

/// JSON text with the characters YAML 1.2 does not allow in a stream (C0 and C1 controls,
/// DEL, U+FFFE, U+FFFF; section 5.1) escaped. JSON allows them raw in strings and
/// serde_json writes them so, which makes such JSON no YAML; escaped, it is. Outside
/// strings serde_json writes only printable ASCII, so every such character is in one.
fn escape_unprintable(text: &str) -> String {
    let printable = |c: char| matches!(c, '\t' | '\n' | '\r' | ' '..='~' | '\u{85}' | '\u{a0}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}' | '\u{10000}'..);
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if printable(c) {
            out.push(c);
        } else {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        }
    }
    out
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn any_text_gets_the_same_answer(text in prop_oneof![yaml_like(), ".{0,120}"]) {
        for format in [Format::Yaml, Format::Json] {
            let first = read(&text, format);
            prop_assert_eq!(&first, &read(&text, format));
            if let Err(p) = first {
                prop_assert!(p.object.is_none() && !p.rule.is_empty());
                // One line, whatever the parser said.
                prop_assert!(!p.render(&Source::Stdin).contains('\n'), "{p:?}");
            }
        }
        let _ = detect(None, &text);
    }

    #[test]
    fn json_files_mean_the_same_as_yaml(file in objects(), pretty in prop::bool::ANY) {
        let file = yaml_compatible(file);
        let text = if pretty {
            serde_json::to_string_pretty(&file).unwrap()
        } else {
            serde_json::to_string(&file).unwrap()
        };
        let text = escape_unprintable(&text);
        let json = parse_values(&text, Format::Json).unwrap();
        prop_assert_eq!(&json, &vec![file.clone()]);
        let yaml = parse_values(&text, Format::Yaml);
        prop_assert_eq!(Ok(json), yaml, "{}", text);
    }

    #[test]
    fn problems_never_repeat_a_secret(file in objects(), secret in "[A-Za-z0-9]{20}") {
        let secret = format!("fz{secret}");
        let mut file = file;
        for o in file.as_array_mut().unwrap() {
            if let Some(spec) = o.get_mut("spec").and_then(Value::as_object_mut) {
                spec.insert("clientSecrets".into(), json!([{"value": secret, "type": 3}]));
                spec.insert("apiSecrets".into(), json!([{"value": secret}]));
            }
        }
        let text = serde_json::to_string(&file).unwrap();
        if let Ok(Err(problems)) = read(&text, Format::Json) {
            for p in problems {
                prop_assert!(!p.render(&Source::Stdin).contains(&secret), "{p:?}");
            }
        }
    }
}

/// A "billion laughs" file (aliases nested six deep, ten to a level: a million strings from
/// 300 bytes) is refused rather than expanded: serde-saphyr's default budget (250,000
/// nodes) bounds alias replay.
#[test]
fn an_alias_bomb_is_refused() {
    let mut text = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..6 {
        let p = i - 1;
        text.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    let e = parse_values(&text, Format::Yaml).unwrap_err();
    assert!(e.rule.starts_with("invalid YAML: budget breached"), "{e:?}");
}
