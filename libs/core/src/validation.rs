//! Validation failures that name the offending field, for the admin API's 400 bodies.

use serde::Serialize;

/// One broken rule: `field` is a JSON path such as `redirectUris[1]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(description = "One rule a body broke."))]
pub struct FieldError {
    /// The offending member as a JSON path, e.g. `redirectUris[1]`; `body` for the whole body.
    pub field: String,
    /// The rule it broke, in words.
    pub rule: String,
}

/// Every rule a body broke (never empty when returned as an error).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("invalid {}: {}", .errors[0].field, .errors[0].rule)]
pub struct ValidationErrors {
    pub errors: Vec<FieldError>,
}

impl ValidationErrors {
    pub fn single(field: impl Into<String>, rule: impl Into<String>) -> Self {
        ValidationErrors {
            errors: vec![FieldError {
                field: field.into(),
                rule: rule.into(),
            }],
        }
    }
}

/// Collects field errors while a validator walks a body.
#[derive(Debug, Default)]
pub struct Collector {
    errors: Vec<FieldError>,
}

impl Collector {
    pub fn push(&mut self, field: impl Into<String>, rule: impl Into<String>) {
        self.errors.push(FieldError {
            field: field.into(),
            rule: rule.into(),
        });
    }

    pub fn check(&mut self, ok: bool, field: impl Into<String>, rule: impl Into<String>) {
        if !ok {
            self.push(field, rule);
        }
    }

    pub fn finish(self) -> Result<(), ValidationErrors> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ValidationErrors {
                errors: self.errors,
            })
        }
    }
}

/// Parses JSON into `T`, reporting a type error or unknown field with its JSON path.
pub fn from_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ValidationErrors> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        // A member with an empty name (`{"": 1}`) leaves an empty last segment: name the
        // object that holds it.
        let path = path.trim_end_matches('.');
        let mut field = if path.is_empty() || path == "?" {
            "body".to_owned()
        } else {
            path.to_owned()
        };
        // A missing member is named by the error, not the path (which points at its parent).
        let text = inner.to_string();
        if let Some(name) = text
            .strip_prefix("missing field `")
            .and_then(|r| r.split('`').next())
        {
            field = if field == "body" {
                name.to_owned()
            } else {
                format!("{field}.{name}")
            };
        }
        // serde_json appends " at line L column C"; the field path says where already.
        let msg = inner.to_string();
        let rule = match msg.rfind(" at line ") {
            Some(i) if inner.line() > 0 => msg[..i].to_owned(),
            _ => msg,
        };
        ValidationErrors::single(field, shorten_unknown_field(rule))
    })
}

/// serde lists every known member after an unknown one (`unknown field `x`, expected one of
/// ...`: 49 names for a client). Say instead which known member was probably meant.
fn shorten_unknown_field(rule: String) -> String {
    let Some(rest) = rule.strip_prefix("unknown field `") else {
        return rule;
    };
    let Some((unknown, expected)) = rest.split_once("`, expected ") else {
        return rule;
    };
    let known: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    match closest(unknown, &known) {
        Some(best) => format!("unknown field `{unknown}`, did you mean \"{best}\"?"),
        None if known.len() <= 8 => rule,
        None => format!(
            "unknown field `{unknown}` (not one of the {} members of this object)",
            known.len()
        ),
    }
}

/// The known name closest to `unknown`, ignoring case, `_` and `-`: within a small edit
/// distance, or else the only one that contains it.
fn closest<'a>(unknown: &str, known: &[&'a str]) -> Option<&'a str> {
    let norm = |s: &str| -> Vec<char> {
        s.chars()
            .filter(|c| !matches!(c, '_' | '-'))
            .flat_map(char::to_lowercase)
            .collect()
    };
    let u = norm(unknown);
    if u.is_empty() {
        return None;
    }
    let limit = (u.len() / 4).clamp(1, 3);
    let best = known
        .iter()
        .map(|k| (edit_distance(&u, &norm(k)), *k))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d);
    if let Some((_, k)) = best {
        return Some(k);
    }
    if u.len() < 4 {
        return None;
    }
    let mut containing = known.iter().filter(|k| {
        let k = norm(k);
        k.windows(u.len()).any(|w| w == u.as_slice())
    });
    match (containing.next(), containing.next()) {
        (Some(k), None) => Some(k),
        _ => None,
    }
}

/// Levenshtein distance.
fn edit_distance(a: &[char], b: &[char]) -> usize {
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = prev[j] + usize::from(ca != cb);
            cur[j + 1] = substitute.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// An absolute `http`/`https` URI without a fragment (RFC 6749 section 3.1.2).
pub fn check_absolute_uri(c: &mut Collector, field: String, value: &str) {
    match url::Url::parse(value) {
        Ok(u) if u.fragment().is_some() => c.push(field, "must not contain a fragment"),
        Ok(u) if u.cannot_be_a_base() => c.push(field, "must be an absolute hierarchical URI"),
        Ok(_) => {}
        Err(e) => c.push(field, format!("must be an absolute URI ({e})")),
    }
}

/// An origin: `scheme://host[:port]` with nothing after it.
pub fn check_origin(c: &mut Collector, field: String, value: &str) {
    match url::Url::parse(value) {
        Ok(u)
            if matches!(u.scheme(), "http" | "https")
                && u.host().is_some()
                && u.path() == "/"
                && !value.ends_with('/')
                && u.query().is_none()
                && u.fragment().is_none()
                && u.username().is_empty() => {}
        _ => c.push(
            field,
            "must be an origin: scheme://host[:port], without path or trailing slash",
        ),
    }
}

/// Names used as identifiers (client ids, scope and resource names): printable ASCII
/// without spaces, 1 to 200 characters.
pub fn check_name(c: &mut Collector, field: &str, value: &str) {
    if value.is_empty() || value.len() > 200 {
        c.push(field, "must be 1 to 200 characters");
    } else if !value.bytes().all(|b| b.is_ascii_graphic()) {
        c.push(field, "must be printable ASCII without spaces");
    }
}

pub fn check_unique<'a>(c: &mut Collector, field: &str, values: impl IntoIterator<Item = &'a str>) {
    let mut seen = std::collections::HashSet::new();
    for (i, v) in values.into_iter().enumerate() {
        if !seen.insert(v) {
            c.push(format!("{field}[{i}]"), format!("duplicate value {v:?}"));
        }
    }
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    #[allow(dead_code)]
    struct T {
        access_token_lifetime: u32,
    }

    #[test]
    fn json_errors_name_the_field() {
        let e = from_json::<T>(br#"{"accessTokenLifetime": "x"}"#).unwrap_err();
        assert_eq!(e.errors[0].field, "accessTokenLifetime");
        assert!(e.errors[0].rule.contains("invalid type"), "{e:?}");
        let e = from_json::<T>(br#"{"accessTokenLifetime": 1, "bogus": 2}"#).unwrap_err();
        assert!(e.errors[0].rule.contains("unknown field `bogus`"), "{e:?}");
        let e = from_json::<T>(b"{}").unwrap_err();
        assert_eq!(e.errors[0].field, "accessTokenLifetime");
        assert!(e.errors[0].rule.contains("missing field"));
        let e = from_json::<T>(b"[").unwrap_err();
        assert_eq!(e.errors[0].field, "body");
        // A member with an empty name is named by the object holding it.
        let e = from_json::<T>(br#"{"": null}"#).unwrap_err();
        assert_eq!(e.errors[0].field, "body");
        assert!(e.errors[0].rule.contains("unknown field ``"), "{e:?}");
        let e = from_json::<crate::client::Client<crate::secret::SecretInput>>(
            br#"{"clientId": "c", "claims": [{"": 1}]}"#,
        )
        .unwrap_err();
        assert_eq!(e.errors[0].field, "claims[0]");
    }

    #[test]
    fn an_unknown_member_gets_the_closest_known_one_not_the_whole_list() {
        type C = crate::client::Client<crate::secret::SecretInput>;
        let e = from_json::<C>(br#"{"clientId": "c", "allowedGrantType": []}"#).unwrap_err();
        assert_eq!(e.errors[0].field, "allowedGrantType");
        assert_eq!(
            e.errors[0].rule,
            "unknown field `allowedGrantType`, did you mean \"allowedGrantTypes\"?"
        );
        for (typo, meant) in [
            ("redirectUri", "redirectUris"),
            ("client_id", "clientId"),
            ("AccessTokenLifetime", "accessTokenLifetime"),
            ("secrets", "clientSecrets"),
        ] {
            let body = format!(r#"{{"clientId": "c", "{typo}": 1}}"#);
            let e = from_json::<C>(body.as_bytes()).unwrap_err();
            let want = format!("did you mean \"{meant}\"?");
            assert!(e.errors[0].rule.ends_with(&want), "{typo}: {e:?}");
        }
        // Nothing close: a short sentence, not 49 names.
        let e = from_json::<C>(br#"{"clientId": "c", "zzz": 1}"#).unwrap_err();
        let rule = &e.errors[0].rule;
        assert!(
            rule.starts_with("unknown field `zzz` (not one of the "),
            "{rule}"
        );
        assert!(rule.len() < 80, "{rule}");
        assert_eq!(edit_distance(&['a', 'b'], &['b']), 1);
    }

    #[test]
    fn uris_and_origins() {
        let mut c = Collector::default();
        check_absolute_uri(&mut c, "a".into(), "https://app.example/cb");
        check_origin(&mut c, "b".into(), "https://app.example:8443");
        assert!(c.finish().is_ok());
        for bad in ["/relative", "https://x/cb#frag", "mailto:x@y"] {
            let mut c = Collector::default();
            check_absolute_uri(&mut c, "r".into(), bad);
            assert!(c.finish().is_err(), "{bad}");
        }
        for bad in ["https://x/", "https://x/path", "x", "ftp://x"] {
            let mut c = Collector::default();
            check_origin(&mut c, "o".into(), bad);
            assert!(c.finish().is_err(), "{bad}");
        }
    }
}
