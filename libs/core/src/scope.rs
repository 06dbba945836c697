//! API scopes (`/Resource/ApiScope`) and identity resources (`/Resource/IdentityResource`).
//! Both are scopes a client may request, with one shape; they share one namespace of names,
//! because a `scope` parameter cannot tell them apart.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::validation::{check_name, Collector, ValidationErrors};

fn yes() -> bool {
    true
}

/// Which of the two scope kinds a [`ScopeResource`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScopeKind {
    Api,
    Identity,
}

impl ScopeKind {
    pub fn label(self) -> &'static str {
        match self {
            ScopeKind::Api => "ApiScope",
            ScopeKind::Identity => "IdentityResource",
        }
    }
}

/// An API scope or an identity resource: a scope a client may request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(
    feature = "openapi",
    schema(
        description = "An API scope (`/Resource/ApiScope`) or an identity resource (`/Resource/IdentityResource`): a scope a client may request. Both share one namespace of names. Members left out get their default."
    )
)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ScopeResource {
    /// Unique name of the scope (among API scopes and identity resources).
    #[cfg_attr(feature = "openapi", schema(example = "configportalscope"))]
    pub name: String,
    /// Display name of the scope.
    #[serde(default)]
    pub display_name: Option<String>,
    /// Whether the scope is enabled.
    #[serde(default = "yes")]
    #[cfg_attr(feature = "openapi", schema(default = yes))]
    pub enabled: bool,
    /// Description of the scope.
    #[serde(default)]
    pub description: Option<String>,
    /// Whether the scope shows in the discovery document.
    #[serde(default = "yes")]
    #[cfg_attr(feature = "openapi", schema(default = yes))]
    pub show_in_discovery_document: bool,
    /// Whether the user cannot de-select the scope on the consent screen.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(default = false))]
    pub required: bool,
    /// Whether the consent screen emphasizes the scope (for sensitive or important ones).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(default = false))]
    pub emphasize: bool,
    /// User claims (by type) included when this scope is granted: an identity resource's go
    /// into ID tokens and userinfo, an API scope's into access tokens.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(default = json!([])))]
    pub user_claims: Vec<String>,
    /// Custom properties of the scope.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(default = json!({})))]
    pub properties: BTreeMap<String, String>,
}

/// The scope property that makes an API scope available for users' API keys
/// (`"true"`/`"false"`; absent means false). Only an operator sets it: a user may put on a
/// key only the API scopes marked so, never the admin scope and never an identity scope.
pub const API_KEYS_PROPERTY: &str = "signet:apiKeys";

/// `/Resource/ApiScope`.
pub type ApiScope = ScopeResource;
/// `/Resource/IdentityResource`.
pub type IdentityResource = ScopeResource;

impl ScopeResource {
    /// Whether an operator made this scope available for users' API keys.
    pub fn for_api_keys(&self) -> bool {
        self.properties.get(API_KEYS_PROPERTY).map(String::as_str) == Some("true")
    }

    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut c = Collector::default();
        check_name(&mut c, "name", &self.name);
        if let Some(v) = self.properties.get(API_KEYS_PROPERTY) {
            c.check(
                v == "true" || v == "false",
                format!("properties.{API_KEYS_PROPERTY}"),
                "must be \"true\" or \"false\"",
            );
            c.check(
                !(v == "true" && self.name == crate::bootstrap::ADMIN_SCOPE),
                format!("properties.{API_KEYS_PROPERTY}"),
                "the admin scope can never be put on a user's API key",
            );
        }
        for (i, claim) in self.user_claims.iter().enumerate() {
            c.check(
                !claim.is_empty(),
                format!("userClaims[{i}]"),
                "must not be empty",
            );
        }
        c.finish()
    }
}
