use super::*;
use crate::bootstrap;
use crate::validation::from_json;

fn apply(p: &mut Projection, cmd: Command) -> Result<(), CommandError> {
    let d = decide(p, cmd)?;
    let subject = d.event.subject();
    assert_eq!(
        d.expected_version,
        p.version(d.event.aggregate().0, d.event.aggregate().1)
    );
    p.apply(p.seq() + 1, &subject, d.event).unwrap();
    Ok(())
}

fn base() -> Projection {
    let mut p = Projection::new();
    for s in bootstrap::standard_identity_resources() {
        apply(&mut p, Command::CreateScope(ScopeKind::Identity, s)).unwrap();
    }
    let mut read = bootstrap::admin_scope();
    read.name = "api.read".into();
    apply(&mut p, Command::CreateScope(ScopeKind::Api, read)).unwrap();
    p
}

fn client(json: serde_json::Value) -> Box<Client<SecretInput>> {
    Box::new(from_json(json.to_string().as_bytes()).unwrap())
}

#[test]
fn clients_need_existing_scopes_and_unique_ids() {
    let mut p = base();
    let c = client(
        serde_json::json!({"clientId": "svc", "allowedGrantTypes": ["client_credentials"],
        "clientSecrets": [{"value": "secret-0123456789abc"}], "allowedScopes": ["api.read", "nope"]}),
    );
    match decide(&p, Command::CreateClient(c)) {
        Err(CommandError::Invalid(e)) => assert_eq!(e.errors[0].field, "allowedScopes[1]"),
        other => panic!("{other:?}"),
    }
    let c = client(
        serde_json::json!({"clientId": "svc", "allowedGrantTypes": ["client_credentials"],
        "clientSecrets": [{"value": "secret-0123456789abc"}], "allowedScopes": ["api.read"]}),
    );
    apply(&mut p, Command::CreateClient(c.clone())).unwrap();
    assert!(matches!(
        decide(&p, Command::CreateClient(c)),
        Err(CommandError::AlreadyExists(_))
    ));
    let ghost = client(
        serde_json::json!({"clientId": "ghost", "allowedGrantTypes": ["client_credentials"], "clientSecrets": [{"value": "secret-0123456789abc"}]}),
    );
    assert!(matches!(
        decide(
            &p,
            Command::ReplaceClient {
                client: ghost,
                keep_secrets: false
            }
        ),
        Err(CommandError::NotFound(_))
    ));
}

#[test]
fn replace_without_secrets_keeps_the_stored_ones() {
    let mut p = base();
    let c = client(
        serde_json::json!({"clientId": "svc", "allowedGrantTypes": ["client_credentials"],
        "clientSecrets": [{"value": "first-secret-0123456789"}], "allowedScopes": ["api.read"]}),
    );
    apply(&mut p, Command::CreateClient(c)).unwrap();
    let update = client(
        serde_json::json!({"clientId": "svc", "allowedGrantTypes": ["client_credentials"],
        "allowedScopes": ["api.read"], "accessTokenLifetime": 60}),
    );
    apply(
        &mut p,
        Command::ReplaceClient {
            client: update.clone(),
            keep_secrets: true,
        },
    )
    .unwrap();
    let e = p.client("svc").unwrap();
    assert_eq!(e.client.access_token_lifetime, 60);
    assert!(e.secrets.matches(
        &crate::secret::SecretDigest::of("first-secret-0123456789"),
        0
    ));
    // Sending an explicit empty list means "no secrets", which a backend client cannot have.
    assert!(matches!(
        decide(
            &p,
            Command::ReplaceClient {
                client: update,
                keep_secrets: false
            }
        ),
        Err(CommandError::Invalid(_))
    ));
}

#[test]
fn scopes_share_one_namespace_and_cannot_be_deleted_while_used() {
    let mut p = base();
    let mut dup = bootstrap::admin_scope();
    dup.name = "email".into();
    assert!(matches!(
        decide(&p, Command::CreateScope(ScopeKind::Api, dup)),
        Err(CommandError::AlreadyExists(_))
    ));
    let mut r = bootstrap::admin_resource();
    r.name = "orders".into();
    r.scopes = vec!["api.read".into()];
    apply(&mut p, Command::CreateApiResource(Box::new(r))).unwrap();
    match decide(&p, Command::DeleteScope(ScopeKind::Api, "api.read".into())) {
        Err(CommandError::InUse(m)) => assert!(m.contains("API resource \"orders\""), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        decide(
            &p,
            Command::DeleteScope(ScopeKind::Identity, "api.read".into())
        ),
        Err(CommandError::NotFound(_))
    ));
    let mut bad = bootstrap::admin_resource();
    bad.name = "x".into();
    bad.scopes = vec!["email".into()];
    assert!(matches!(
        decide(&p, Command::CreateApiResource(Box::new(bad))),
        Err(CommandError::Invalid(_))
    ));
}

#[test]
fn the_admin_client_cannot_be_deleted() {
    let mut p = base();
    apply(
        &mut p,
        Command::CreateScope(ScopeKind::Api, bootstrap::admin_scope()),
    )
    .unwrap();
    apply(
        &mut p,
        Command::CreateClient(Box::new(bootstrap::admin_client(
            "admin-secret-0123456789".into(),
        ))),
    )
    .unwrap();
    assert!(matches!(
        decide(&p, Command::DeleteClient(bootstrap::ADMIN_CLIENT_ID.into())),
        Err(CommandError::InUse(_))
    ));
}

#[test]
fn client_credentials_grant_rules() {
    use crate::grants::client_credentials::decide as grant;
    use crate::Algorithm;
    let mut p = base();
    for name in ["api.write", "other"] {
        let mut s = bootstrap::admin_scope();
        s.name = name.into();
        apply(&mut p, Command::CreateScope(ScopeKind::Api, s)).unwrap();
    }
    let mut r = bootstrap::admin_resource();
    r.name = "orders".into();
    r.scopes = vec!["api.read".into(), "api.write".into()];
    r.allowed_access_token_signing_algorithms = vec![Algorithm::ES256, Algorithm::EdDSA];
    apply(&mut p, Command::CreateApiResource(Box::new(r))).unwrap();
    let mut r = bootstrap::admin_resource();
    r.name = "audit".into();
    r.scopes = vec!["api.write".into()];
    r.allowed_access_token_signing_algorithms = vec![Algorithm::EdDSA];
    apply(&mut p, Command::CreateApiResource(Box::new(r))).unwrap();
    let c = client(
        serde_json::json!({"clientId": "svc", "allowedGrantTypes": ["client_credentials"],
        "clientSecrets": [{"value": "secret-0123456789abc"}], "allowedScopes": ["api.read", "api.write", "openid", "other"]}),
    );
    apply(&mut p, Command::CreateClient(c)).unwrap();
    let e = p.client("svc").unwrap().clone();

    let g = grant(&p, &e, Some("api.read"), Algorithm::RS256).unwrap();
    assert_eq!(
        (g.scopes, g.audiences, g.alg),
        (vec!["api.read"], vec!["orders"], Algorithm::ES256)
    );
    let g = grant(
        &p,
        &e,
        Some("api.read api.write api.read"),
        Algorithm::RS256,
    )
    .unwrap();
    assert_eq!(
        (g.scopes, g.audiences, g.alg),
        (
            vec!["api.read", "api.write"],
            vec!["orders", "audit"],
            Algorithm::EdDSA
        )
    );
    let g = grant(&p, &e, None, Algorithm::RS256).unwrap();
    assert_eq!(g.scopes, vec!["api.read", "api.write", "other"]);
    let g = grant(&p, &e, Some("other"), Algorithm::PS256).unwrap();
    assert_eq!((g.audiences.len(), g.alg), (0, Algorithm::PS256));
    for bad in ["openid", "api.admin", "api.read  api.write", "", "a\"b"] {
        let err = grant(&p, &e, Some(bad), Algorithm::RS256).unwrap_err();
        assert_eq!(err.code, crate::oauth::ErrorCode::InvalidScope, "{bad:?}");
    }
}

#[test]
fn replacing_bootstrap_objects_cannot_lock_the_admin_api_out() {
    let mut p = base();
    apply(
        &mut p,
        Command::CreateScope(ScopeKind::Api, bootstrap::admin_scope()),
    )
    .unwrap();
    apply(
        &mut p,
        Command::CreateApiResource(Box::new(bootstrap::admin_resource())),
    )
    .unwrap();
    apply(
        &mut p,
        Command::CreateClient(Box::new(bootstrap::admin_client(
            "admin-secret-0123456789".into(),
        ))),
    )
    .unwrap();

    let mut r = bootstrap::admin_resource();
    r.scopes.clear();
    assert!(matches!(
        decide(
            &p,
            Command::ReplaceApiResource {
                resource: Box::new(r),
                keep_secrets: true
            }
        ),
        Err(CommandError::InUse(_))
    ));
    let mut s = bootstrap::admin_scope();
    s.enabled = false;
    assert!(matches!(
        decide(&p, Command::ReplaceScope(ScopeKind::Api, s)),
        Err(CommandError::InUse(_))
    ));
    let mut c = bootstrap::admin_client("admin-secret-0123456789".into());
    c.enabled = false;
    assert!(matches!(
        decide(
            &p,
            Command::ReplaceClient {
                client: Box::new(c),
                keep_secrets: false
            }
        ),
        Err(CommandError::InUse(_))
    ));
    // Harmless changes stay possible: a new scope beside signet.admin, a new lifetime.
    let mut audit = bootstrap::admin_scope();
    audit.name = "signet.audit".into();
    apply(&mut p, Command::CreateScope(ScopeKind::Api, audit)).unwrap();
    let mut r = bootstrap::admin_resource();
    r.scopes.push("signet.audit".into());
    apply(
        &mut p,
        Command::ReplaceApiResource {
            resource: Box::new(r),
            keep_secrets: true,
        },
    )
    .unwrap();
    let mut c = bootstrap::admin_client("admin-secret-0123456789".into());
    c.access_token_lifetime = 300;
    apply(
        &mut p,
        Command::ReplaceClient {
            client: Box::new(c),
            keep_secrets: false,
        },
    )
    .unwrap();
}

#[test]
fn initial_access_tokens_name_existing_scopes_and_uses_run_out() {
    use crate::registration::InitialAccessTokenInput;
    let mut p = base();
    let token = |body: serde_json::Value| {
        let input: InitialAccessTokenInput = from_json(body.to_string().as_bytes()).unwrap();
        Box::new(input.into_record("t1".into(), "h".into(), 1_000).unwrap())
    };
    match decide(
        &p,
        Command::CreateInitialAccessToken(token(serde_json::json!({"allowedScopes": ["nope"]}))),
    ) {
        Err(CommandError::Invalid(e)) => assert_eq!(e.errors[0].field, "allowedScopes[0]"),
        other => panic!("{other:?}"),
    }
    let t =
        token(serde_json::json!({"allowedScopes": ["api.read"], "maxUses": 1, "lifetime": 100}));
    apply(&mut p, Command::CreateInitialAccessToken(t.clone())).unwrap();
    assert!(matches!(
        decide(&p, Command::CreateInitialAccessToken(t)),
        Err(CommandError::AlreadyExists(_))
    ));
    // The scope the token hands out cannot be deleted under it.
    match decide(&p, Command::DeleteScope(ScopeKind::Api, "api.read".into())) {
        Err(CommandError::InUse(m)) => assert!(m.contains("initial access token \"t1\""), "{m}"),
        other => panic!("{other:?}"),
    }
    let use_at = |now| Command::UseInitialAccessToken {
        id: "t1".into(),
        client_id: "c".into(),
        now,
    };
    assert!(
        matches!(decide(&p, use_at(1_100)), Err(CommandError::Unusable(_))),
        "expired at creation + lifetime"
    );
    apply(&mut p, use_at(1_050)).unwrap();
    assert!(
        matches!(decide(&p, use_at(1_050)), Err(CommandError::Unusable(_))),
        "used up"
    );
    apply(&mut p, Command::DeleteInitialAccessToken("t1".into())).unwrap();
    assert!(matches!(
        decide(&p, use_at(1_050)),
        Err(CommandError::Unusable(_))
    ));
    apply(
        &mut p,
        Command::DeleteScope(ScopeKind::Api, "api.read".into()),
    )
    .unwrap();
}
