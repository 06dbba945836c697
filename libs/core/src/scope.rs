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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ScopeResource {
    pub name: String,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default = "yes")]
    pub show_in_discovery_document: bool,
    /// The user cannot de-select it on the consent screen.
    #[serde(default)]
    pub required: bool,
    /// The consent screen emphasizes it.
    #[serde(default)]
    pub emphasize: bool,
    #[serde(default)]
    pub user_claims: Vec<String>,
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

/// `/Resource/ApiScope`.
pub type ApiScope = ScopeResource;
/// `/Resource/IdentityResource`.
pub type IdentityResource = ScopeResource;

impl ScopeResource {
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut c = Collector::default();
        check_name(&mut c, "name", &self.name);
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
