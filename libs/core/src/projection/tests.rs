use super::*;
use crate::client::ClientClaim;
use crate::secret::StoredSecret;

fn scope(name: &str) -> ScopeResource {
    let mut s = crate::bootstrap::admin_scope();
    s.name = name.to_owned();
    s
}

fn resource(name: &str, scopes: &[&str]) -> ApiResource {
    let mut r =
        crate::bootstrap::admin_resource().map_secrets(|_| -> StoredSecret { unreachable!() });
    r.name = name.to_owned();
    r.scopes = scopes.iter().map(|s| (*s).to_owned()).collect();
    r
}

fn fold(events: Vec<Event>) -> Result<Projection, ProjectionError> {
    let mut p = Projection::new();
    for (i, e) in events.into_iter().enumerate() {
        let subject = e.subject();
        p.apply(i as u64 + 1, &subject, e)?;
    }
    Ok(p)
}

#[test]
fn folds_configuration_and_indexes_audiences() {
    let p = fold(vec![
        Event::ApiScopeCreated(scope("read")),
        Event::ApiScopeCreated(scope("write")),
        Event::ApiResourceCreated(Box::new(resource("orders", &["read", "write"]))),
        Event::ApiResourceCreated(Box::new(resource("billing", &["read"]))),
    ])
    .unwrap();
    assert_eq!(p.seq(), 4);
    let names: Vec<&str> = p
        .audiences_of("read")
        .iter()
        .map(|r| r.resource.name.as_str())
        .collect();
    assert_eq!(names, vec!["billing", "orders"]);
    assert_eq!(p.version(Aggregate::ApiResource, "billing"), 4);
    assert_eq!(p.version(Aggregate::ApiResource, "nope"), 0);
}

#[test]
fn gaps_wrong_subjects_and_contradictions_stop_the_fold() {
    let mut p = Projection::new();
    let e = Event::ApiScopeCreated(scope("read"));
    assert_eq!(
        p.apply(2, &e.subject(), e.clone()),
        Err(ProjectionError::Gap { at: 0, got: 2 })
    );
    assert!(matches!(
        p.apply(1, "signet.events.scope.other", e.clone()),
        Err(ProjectionError::Inconsistent { .. })
    ));
    p.apply(1, &e.subject(), e.clone()).unwrap();
    assert!(matches!(
        p.apply(2, &e.subject(), e),
        Err(ProjectionError::Inconsistent { .. })
    ));
    let gone = Event::ClientDeleted {
        client_id: "ghost".into(),
    };
    assert!(matches!(
        p.apply(2, &gone.subject(), gone),
        Err(ProjectionError::Inconsistent { .. })
    ));
    assert_eq!(p.seq(), 1, "a refused event changes nothing");
    let other_kind = Event::IdentityResourceReplaced(scope("read"));
    assert!(p.apply(2, &other_kind.subject(), other_kind).is_err());
}

#[test]
fn client_claims_are_prefixed_typed_and_grouped() {
    let mut c: Client = Client::new("svc");
    c.client_claims_prefix = Some("client_".into());
    let claim = |t: &str, v: &str, vt: Option<&str>| ClientClaim {
        kind: t.into(),
        value: v.into(),
        value_type: vt.map(Into::into),
    };
    c.claims = vec![
        claim("role", "a", None),
        claim("role", "b", None),
        claim(
            "level",
            "3",
            Some("http://www.w3.org/2001/XMLSchema#integer"),
        ),
    ];
    let e = ClientEntry::new(c);
    let v: serde_json::Value = serde_json::from_str(&format!("{{{}}}", e.claims_json)).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"client_role": ["a", "b"], "client_level": 3})
    );
}

#[test]
fn snapshot_round_trips() {
    let p = fold(vec![
        Event::ApiScopeCreated(scope("read")),
        Event::ApiResourceCreated(Box::new(resource("orders", &["read"]))),
    ])
    .unwrap();
    let q = Projection::from_snapshot(&p.to_snapshot()).unwrap();
    assert_eq!(q.seq(), 2);
    assert_eq!(q.audiences_of("read").len(), 1);
    assert_eq!(q.version(Aggregate::Scope, "read"), 1);
    assert_eq!(q.to_snapshot(), p.to_snapshot());
}

fn user(sub: &str) -> crate::user::UserRecord {
    crate::user::UserRecord {
        sub: sub.to_owned(),
        username: "alice".to_owned(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_owned(),
        claims: Map::new(),
        enabled: true,
        created_at: 1,
        updated_at: 1,
        totp: None,
        recovery_codes: Vec::new(),
        must_change_password: false,
        external_logins: Vec::new(),
        passkeys: Vec::new(),
        passkey_handle: None,
    }
}

/// Users are not held in memory: their events only advance the sequence, with the gap and
/// subject checks of every event, and leave no version behind.
#[test]
fn user_events_advance_the_sequence_and_nothing_else() {
    let mut p = fold(vec![
        Event::ApiScopeCreated(scope("read")),
        Event::UserCreated(Box::new(user("u1"))),
        Event::UserReplaced(Box::new(user("u1"))),
        Event::UserDeleted { sub: "u1".into() },
        Event::UserReplaced(Box::new(user("never-created"))),
        Event::UsernameClaimed {
            name: "n1".into(),
            sub: "u1".into(),
        },
        Event::UsernameReleased {
            name: "n1".into(),
            sub: "u1".into(),
        },
    ])
    .unwrap();
    assert_eq!(p.seq(), 7);
    assert_eq!(p.version(Aggregate::User, "u1"), 0);
    assert_eq!(p.version(Aggregate::Username, "n1"), 0);
    assert!(!p.to_snapshot().windows(2).any(|w| w == b"u1"));
    let e = Event::UserDeleted { sub: "u2".into() };
    assert_eq!(
        p.apply(9, &e.subject(), e.clone()),
        Err(ProjectionError::Gap { at: 7, got: 9 })
    );
    assert!(matches!(
        p.apply(8, "signet.events.user.u3", e.clone()),
        Err(ProjectionError::Inconsistent { .. })
    ));
    p.apply(8, "signet.events.user.u2", e).unwrap();
    assert_eq!(p.seq(), 8);
    let restored = Projection::from_snapshot(&p.to_snapshot()).unwrap();
    assert_eq!(restored.seq(), 8);
}

#[test]
fn registrations_and_initial_access_tokens_fold_and_survive_a_snapshot() {
    use crate::registration::{InitialAccessToken, RegisteredClient, RegistrationInfo};
    let token = InitialAccessToken {
        id: "t1".into(),
        description: None,
        sha256: "h".into(),
        created_at: 1,
        expires_at: 100,
        max_uses: Some(2),
        policy: Default::default(),
    };
    let mut client = Client::new("app");
    client.allowed_grant_types = vec![GrantType::ClientCredentials];
    let registered = RegisteredClient {
        client: client.clone(),
        registration: RegistrationInfo {
            token_sha256: "rat".into(),
            initial_access_token: "t1".into(),
            policy: Default::default(),
            token_endpoint_auth_method: "client_secret_basic".into(),
            application_type: "web".into(),
            issued_at: 5,
            software_statement_iss: None,
        },
    };
    let mut replaced = client.clone();
    replaced.client_name = Some("by an admin".into());
    let p = fold(vec![
        Event::InitialAccessTokenCreated(Box::new(token.clone())),
        Event::InitialAccessTokenUsed {
            id: "t1".into(),
            client_id: "app".into(),
        },
        Event::ClientRegistered(Box::new(registered.clone())),
        // An admin's replacement keeps the registration.
        Event::ClientReplaced(Box::new(replaced)),
    ])
    .unwrap();
    let entry = p.client("app").unwrap();
    assert_eq!(entry.registration.as_ref(), Some(&registered.registration));
    assert_eq!(entry.incarnation, 3);
    assert_eq!(p.initial_access_token("t1").unwrap().uses, 1);
    let q = Projection::from_snapshot(&p.to_snapshot()).unwrap();
    assert_eq!(
        q.client("app").unwrap().registration,
        entry.registration,
        "registrations survive a snapshot"
    );
    assert_eq!(q.initial_access_token("t1"), p.initial_access_token("t1"));
    // A registration update of an admin-created client, or a use of an unknown token,
    // contradicts the state.
    let mut admin_made = fold(vec![Event::ClientCreated(Box::new(client))]).unwrap();
    let e = Event::ClientRegistrationReplaced(Box::new(registered));
    assert!(matches!(
        admin_made.apply(2, &e.subject(), e),
        Err(ProjectionError::Inconsistent { .. })
    ));
    let e = Event::InitialAccessTokenUsed {
        id: "nope".into(),
        client_id: "app".into(),
    };
    assert!(matches!(
        admin_made.apply(2, &e.subject(), e),
        Err(ProjectionError::Inconsistent { .. })
    ));
}
