//! What exists from the start: the standard OIDC identity resources (OIDC Core section
//! 5.4), and the admin API's scope, resource and bootstrap client.

use crate::client::{Client, GrantType};
use crate::resource::ApiResource;
use crate::scope::ScopeResource;
use crate::secret::SecretInput;

pub const ADMIN_CLIENT_ID: &str = "signet-admin";
pub const ADMIN_SCOPE: &str = "signet.admin";
pub const ADMIN_RESOURCE: &str = "signet";

fn identity(
    name: &str,
    display: &str,
    required: bool,
    emphasize: bool,
    claims: &[&str],
) -> ScopeResource {
    ScopeResource {
        name: name.to_owned(),
        display_name: Some(display.to_owned()),
        enabled: true,
        description: None,
        show_in_discovery_document: true,
        required,
        emphasize,
        user_claims: claims.iter().map(|c| (*c).to_owned()).collect(),
        properties: Default::default(),
    }
}

/// `openid`, `profile`, `email`, `address`, `phone` with their standard claims.
pub fn standard_identity_resources() -> Vec<ScopeResource> {
    vec![
        identity("openid", "Your user identifier", true, false, &["sub"]),
        identity(
            "profile",
            "User profile",
            false,
            true,
            &[
                "name",
                "family_name",
                "given_name",
                "middle_name",
                "nickname",
                "preferred_username",
                "profile",
                "picture",
                "website",
                "gender",
                "birthdate",
                "zoneinfo",
                "locale",
                "updated_at",
            ],
        ),
        identity(
            "email",
            "Your email address",
            false,
            true,
            &["email", "email_verified"],
        ),
        identity("address", "Your postal address", false, true, &["address"]),
        identity(
            "phone",
            "Your phone number",
            false,
            true,
            &["phone_number", "phone_number_verified"],
        ),
    ]
}

pub fn admin_scope() -> ScopeResource {
    ScopeResource {
        name: ADMIN_SCOPE.to_owned(),
        display_name: Some("Signet administration".to_owned()),
        enabled: true,
        description: Some("Full access to Signet's admin API".to_owned()),
        show_in_discovery_document: false,
        required: false,
        emphasize: true,
        user_claims: vec![],
        properties: Default::default(),
    }
}

pub fn admin_resource() -> ApiResource<SecretInput> {
    ApiResource {
        name: ADMIN_RESOURCE.to_owned(),
        display_name: Some("Signet admin API".to_owned()),
        enabled: true,
        description: None,
        show_in_discovery_document: false,
        api_secrets: vec![],
        scopes: vec![ADMIN_SCOPE.to_owned()],
        allowed_access_token_signing_algorithms: vec![],
        user_claims: vec![],
        properties: Default::default(),
    }
}

/// The bootstrap admin client, with `secret` as its one secret.
pub fn admin_client(secret: String) -> Client<SecretInput> {
    let mut c = Client::new(ADMIN_CLIENT_ID);
    c.client_name = Some("Signet bootstrap admin".to_owned());
    c.allowed_grant_types = vec![GrantType::ClientCredentials];
    c.allowed_scopes = vec![ADMIN_SCOPE.to_owned()];
    c.access_token_lifetime = 900;
    c.client_secrets = vec![SecretInput {
        description: Some("bootstrap secret (SIGNET_ADMIN_CLIENT_SECRET)".to_owned()),
        value: Some(secret),
        expiration: None,
        kind: "SharedSecret".to_owned(),
        sealed: None,
    }];
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_objects_are_valid() {
        let c = admin_client("x".repeat(32));
        c.validate().unwrap();
        assert_eq!(c.access_token_lifetime, 900);
        admin_resource().validate().unwrap();
        for s in standard_identity_resources() {
            s.validate().unwrap();
        }
    }
}
