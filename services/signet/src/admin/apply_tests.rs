use serde_json::json;

use super::*;
use crate::admin::spec::{check_all, flatten, parse_values, Format};

fn docs(yaml: &str) -> Vec<Doc> {
    check_all(&flatten(parse_values(yaml, Format::Yaml).unwrap())).unwrap()
}

/// What a server shows for the given objects (their specs with defaults, secrets as views).
fn server(objects: &[&Doc]) -> Current {
    let mut lists: HashMap<Kind, Vec<Value>> = Kind::ALL.iter().map(|k| (*k, Vec::new())).collect();
    for d in objects {
        let mut v = d.desired();
        if let Some(f) = d.kind.secrets_field() {
            // The server's own secrets (their description differs from the file's).
            v.as_object_mut().unwrap().insert(
                f.to_owned(),
                json!([{"description": "stored", "expiration": null, "type": "SharedSecret"}]),
            );
        }
        lists.get_mut(&d.kind).unwrap().push(v);
    }
    Current::from_lists(lists)
}

const FILE: &str = "\
- kind: Client
  spec:
    clientId: backend
    allowedGrantTypes: [client_credentials]
    clientSecrets: [{value: backend-secret-0123456789, description: v1}]
    allowedScopes: [orders.read]
- kind: ApiResource
  spec: {name: orders-api, scopes: [orders.read, orders.write]}
- kind: ApiScope
  spec: {name: orders.read}
- kind: IdentityResource
  spec: {name: tenant, userClaims: [tenant_id]}
- kind: ApiScope
  spec: {name: orders.write}
";

fn labels(steps: &[Step<'_>]) -> Vec<(String, &'static str)> {
    steps
        .iter()
        .map(|s| {
            (
                format!("{}/{}", s.doc.kind.cli_name(), s.doc.id),
                s.action.label(),
            )
        })
        .collect()
}

#[test]
fn everything_missing_is_created_in_dependency_order() {
    let docs = docs(FILE);
    let steps = plan(&docs, &Current::default(), Options::default()).unwrap();
    assert_eq!(
        labels(&steps),
        [
            ("api-scope/orders.read".to_owned(), "create"),
            ("api-scope/orders.write".to_owned(), "create"),
            ("identity-resource/tenant".to_owned(), "create"),
            ("api-resource/orders-api".to_owned(), "create"),
            ("client/backend".to_owned(), "create"),
        ]
    );
    assert_eq!(
        Summary::of(&steps),
        Summary {
            created: 5,
            replaced: 0,
            unchanged: 0
        }
    );
}

#[test]
fn what_the_server_shows_unchanged_is_unchanged() {
    let docs = docs(FILE);
    let all: Vec<&Doc> = docs.iter().collect();
    let mut current = server(&all);
    // The server's view of backend's secret matches the file's description.
    current
        .objects
        .get_mut(&Kind::Client)
        .unwrap()
        .get_mut("backend")
        .unwrap()["clientSecrets"] =
        json!([{"description": "v1", "expiration": null, "type": "SharedSecret"}]);
    // Members the CLI does not know are not compared.
    current
        .objects
        .get_mut(&Kind::ApiScope)
        .unwrap()
        .get_mut("orders.read")
        .unwrap()["futureField"] = json!(1);
    let steps = plan(&docs, &current, Options::default()).unwrap();
    assert!(
        steps.iter().all(|s| s.action == Action::Unchanged),
        "{steps:#?}"
    );
    // --replace-secrets replaces what has secrets in the file, and only that.
    let steps = plan(
        &docs,
        &current,
        Options {
            replace_secrets: true,
            ..Options::default()
        },
    )
    .unwrap();
    let replaced: Vec<_> = steps
        .iter()
        .filter_map(|s| match &s.action {
            Action::Replace(c) => Some((s.doc.id.as_str(), c[0].field.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(replaced, [("backend", "clientSecrets")]);
}

#[test]
fn differences_are_listed_field_by_field() {
    let docs = docs(FILE);
    let all: Vec<&Doc> = docs.iter().collect();
    let mut current = server(&all);
    let backend = current
        .objects
        .get_mut(&Kind::Client)
        .unwrap()
        .get_mut("backend")
        .unwrap();
    backend["clientSecrets"] =
        json!([{"description": "v1", "expiration": null, "type": "SharedSecret"}]);
    backend["accessTokenLifetime"] = json!(600);
    backend["allowedScopes"] = json!([]);
    let tenant = current
        .objects
        .get_mut(&Kind::IdentityResource)
        .unwrap()
        .get_mut("tenant")
        .unwrap();
    tenant.as_object_mut().unwrap().remove("displayName");
    tenant["enabled"] = json!(false);
    let steps = plan(&docs, &current, Options::default()).unwrap();
    let backend = steps.iter().find(|s| s.doc.id == "backend").unwrap();
    assert_eq!(
        backend.action,
        Action::Replace(vec![
            Change {
                field: "accessTokenLifetime".into(),
                old: json!(600),
                new: json!(3600)
            },
            Change {
                field: "allowedScopes".into(),
                old: json!([]),
                new: json!(["orders.read"])
            },
        ])
    );
    // A member the server lacks counts as null: displayName is null on both sides.
    let tenant = steps.iter().find(|s| s.doc.id == "tenant").unwrap();
    assert_eq!(
        tenant.action,
        Action::Replace(vec![Change {
            field: "enabled".into(),
            old: json!(false),
            new: json!(true)
        }])
    );
    assert_eq!(
        Summary::of(&steps),
        Summary {
            created: 0,
            replaced: 2,
            unchanged: 3
        }
    );
}

#[test]
fn secrets_are_compared_by_what_the_server_shows() {
    let docs = docs(FILE);
    let all: Vec<&Doc> = docs.iter().collect();
    let current = server(&all); // backend's stored secret has description "stored"
    let steps = plan(&docs, &current, Options::default()).unwrap();
    let backend = steps.iter().find(|s| s.doc.id == "backend").unwrap();
    match &backend.action {
        Action::Replace(c) => {
            assert_eq!(c.len(), 1);
            assert_eq!(c[0].field, "clientSecrets");
            assert!(
                !c[0].new.to_string().contains("backend-secret"),
                "no values in diffs"
            );
        }
        other => panic!("{other:?}"),
    }
    // Without the member, secrets are not compared (and the stored ones stay).
    let no_secrets = self::docs(
        "- {kind: Client, spec: {clientId: backend, allowedGrantTypes: [client_credentials], allowedScopes: [orders.read]}}\n- {kind: ApiScope, spec: {name: orders.read}}",
    );
    let all: Vec<&Doc> = no_secrets.iter().collect();
    let steps = plan(&no_secrets, &server(&all), Options::default()).unwrap();
    assert!(
        steps.iter().all(|s| s.action == Action::Unchanged),
        "{steps:#?}"
    );
    // ... even with --replace-secrets: there is nothing to replace them with.
    let steps = plan(
        &no_secrets,
        &server(&all),
        Options {
            replace_secrets: true,
            ..Options::default()
        },
    )
    .unwrap();
    assert!(steps.iter().all(|s| s.action == Action::Unchanged));
    // But such a client cannot be created.
    let only_scope: Vec<&Doc> = no_secrets
        .iter()
        .filter(|d| d.kind == Kind::ApiScope)
        .collect();
    let problems = plan(&no_secrets, &server(&only_scope), Options::default()).unwrap_err();
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].field.as_deref(), Some("clientSecrets"));
}

#[test]
fn references_must_exist_in_the_file_or_on_the_server() {
    let docs = docs(
        "\
- kind: Client
  spec:
    clientId: web
    allowedGrantTypes: [authorization_code]
    requireClientSecret: false
    redirectUris: ['https://app.example/cb']
    allowedScopes: [openid, orders.read, ghost, offline_access]
- kind: ApiResource
  spec: {name: api, scopes: [orders.read, openid, nowhere]}
- kind: ApiScope
  spec: {name: email}
",
    );
    let mut current = Current::from_lists([(
        Kind::IdentityResource,
        vec![json!({"name": "openid"}), json!({"name": "email"})],
    )]);
    current.objects.insert(
        Kind::ApiScope,
        [("orders.read".to_owned(), json!({"name": "orders.read"}))].into(),
    );
    let problems = plan(&docs, &current, Options::default()).unwrap_err();
    let fields: Vec<(usize, &str)> = problems
        .iter()
        .map(|p| {
            (
                p.object.as_ref().unwrap().index,
                p.field.as_deref().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        fields,
        [
            (1, "allowedScopes[2]"),
            (1, "allowedScopes[3]"),
            (2, "scopes[1]"),
            (2, "scopes[2]"),
            (3, "name"),
        ],
        "{problems:#?}"
    );
    assert!(problems[0]
        .rule
        .contains("\"ghost\" exists neither on the server nor in the file"));
    assert_eq!(
        problems[1].rule,
        "offline_access needs allowOfflineAccess: true"
    );
    assert_eq!(
        problems[2].rule,
        "\"openid\" is an IdentityResource, not an ApiScope"
    );
    assert!(problems[4]
        .rule
        .contains("exists on the server as an IdentityResource"));
}

#[test]
fn diff_ignores_fields_only_the_server_has() {
    let changes = diff(
        &json!({"a": 1, "b": [1], "c": null}),
        &json!({"a": 1, "b": [2], "z": 0}),
    );
    assert_eq!(
        changes,
        [Change {
            field: "b".into(),
            old: json!([2]),
            new: json!([1])
        }]
    );
    assert!(diff(&json!(1), &json!({})).is_empty());
}

#[test]
fn a_failure_midway_says_how_far_apply_got() {
    let docs = docs(FILE);
    let refused = Failure::new(Exit::Refused, "cannot create client/backend: nope");
    let f = stopped(refused.clone(), &docs[0], 2, 5);
    assert_eq!(f.exit, Exit::Refused);
    assert_eq!(
        f.message,
        "apply stopped at client/backend (object 1): cannot create client/backend: nope; 2 of 5 writes done, the rest not attempted"
    );
    // Before any write, the original cause keeps its exit code.
    let lost = Failure::new(Exit::Connect, "cannot connect");
    let f = stopped(lost, &docs[0], 0, 5);
    assert_eq!(f.exit, Exit::Connect);
    assert!(f.message.ends_with("nothing was written"));
}
