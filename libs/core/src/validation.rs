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
        ValidationErrors::single(field, rule)
    })
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
