//! API resources (`/Resource/ApiResource`): the APIs tokens are issued for. A resource holds
//! API scopes by name; an access token's `aud` is the set of resources holding its scopes.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use crate::secret::{SecretInput, SecretView, StoredSecret};
use crate::validation::{check_name, check_unique, Collector, ValidationErrors};
use crate::Algorithm;

fn yes() -> bool {
    true
}

/// A user claim type. Reads accept both a claim type string (as API scopes use) and a claim
/// object `{type, value, valueType}` (as the reference's ApiResource example shows); the
/// type is what is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct ClaimType(pub String);

/// Reads take a claim type string or a claim object whose `type` is kept; writes a string.
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for ClaimType {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
        OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .description(Some("A user claim type.")),
            )
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Object)
                    .property(
                        "type",
                        ObjectBuilder::new()
                            .schema_type(Type::String)
                            .description(Some("The user claim type (what is kept).")),
                    )
                    .required("type")
                    .description(Some(
                        "A claim object as the reference shows it (`{type, value, valueType}`); only its type is kept, other members are ignored.",
                    )),
            )
            .description(Some(
                "A user claim type: a string, or a claim object whose `type` is kept. Reads return the string.",
            ))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for ClaimType {}

impl<'de> Deserialize<'de> for ClaimType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Name(String),
            Object {
                #[serde(rename = "type")]
                kind: String,
            },
        }
        match Either::deserialize(d) {
            Ok(Either::Name(s)) | Ok(Either::Object { kind: s }) => Ok(ClaimType(s)),
            Err(_) => Err(serde::de::Error::custom(
                "expected a claim type string or an object with a \"type\"",
            )),
        }
    }
}

/// An API that tokens are issued for: its `aud` in access tokens carrying its scopes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(
    feature = "openapi",
    schema(
        description = "An API that tokens are issued for. Members left out get their default.",
        bound = "S: utoipa::ToSchema"
    )
)]
#[serde(
    deny_unknown_fields,
    rename_all = "camelCase",
    bound(serialize = "S: Serialize", deserialize = "S: Deserialize<'de>")
)]
pub struct ApiResource<S = StoredSecret> {
    /// Unique name of the API resource (the `aud` of its tokens).
    #[cfg_attr(feature = "openapi", schema(example = "configPortalApi"))]
    pub name: String,
    /// Display name of the API resource.
    #[serde(default)]
    pub display_name: Option<String>,
    /// Whether the resource is enabled.
    #[serde(default = "yes")]
    #[cfg_attr(feature = "openapi", schema(default = yes))]
    pub enabled: bool,
    /// Description of the resource.
    #[serde(default)]
    pub description: Option<String>,
    /// Whether the resource shows in the discovery document.
    #[serde(default = "yes")]
    #[cfg_attr(feature = "openapi", schema(default = yes))]
    pub show_in_discovery_document: bool,
    /// Secrets the API uses at the introspection endpoint (with its name). Write-only:
    /// reads return their description, expiration and type; a `PUT` without this member
    /// keeps the stored ones.
    #[serde(default = "Vec::new")]
    #[cfg_attr(feature = "openapi", schema(default = json!([])))]
    pub api_secrets: Vec<S>,
    /// Names of the API scopes this resource holds (each must exist).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(default = json!([])))]
    pub scopes: Vec<String>,
    /// Signing algorithms for access tokens; empty: the server's default signing algorithm.
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(value_type = Vec<crate::client::AlgorithmSchema>, default = json!([]))
    )]
    pub allowed_access_token_signing_algorithms: Vec<Algorithm>,
    /// User claims (by type) that access tokens for this resource carry, taken from the
    /// user's claims (never a protocol claim).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(default = json!([])))]
    pub user_claims: Vec<ClaimType>,
    /// Custom properties of the resource.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(default = json!({})))]
    pub properties: BTreeMap<String, String>,
}

impl<S> ApiResource<S> {
    pub fn map_secrets<T>(self, f: impl FnMut(S) -> T) -> ApiResource<T> {
        ApiResource {
            api_secrets: self.api_secrets.into_iter().map(f).collect(),
            name: self.name,
            display_name: self.display_name,
            enabled: self.enabled,
            description: self.description,
            show_in_discovery_document: self.show_in_discovery_document,
            scopes: self.scopes,
            allowed_access_token_signing_algorithms: self.allowed_access_token_signing_algorithms,
            user_claims: self.user_claims,
            properties: self.properties,
        }
    }
}

impl ApiResource<SecretInput> {
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut c = Collector::default();
        check_name(&mut c, "name", &self.name);
        check_unique(&mut c, "scopes", self.scopes.iter().map(String::as_str));
        let mut seen = std::collections::HashSet::new();
        for (i, a) in self
            .allowed_access_token_signing_algorithms
            .iter()
            .enumerate()
        {
            c.check(
                seen.insert(*a),
                format!("allowedAccessTokenSigningAlgorithms[{i}]"),
                "duplicate algorithm",
            );
        }
        for (i, s) in self.api_secrets.iter().enumerate() {
            c.check(
                s.value.as_deref().is_some_and(|v| !v.is_empty()),
                format!("apiSecrets[{i}].value"),
                "must not be empty",
            );
        }
        crate::client::check_secrets(&mut c, "apiSecrets", &self.api_secrets, false);
        c.finish()
    }
}

impl ApiResource<StoredSecret> {
    pub fn view(&self) -> ApiResource<SecretView> {
        self.clone().map_secrets(|s| s.view())
    }
}
