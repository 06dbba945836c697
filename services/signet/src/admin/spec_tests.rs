use serde_json::json;

use super::*;

fn yaml(text: &str) -> Vec<Value> {
    flatten(parse_values(text, Format::Yaml).unwrap())
}

fn rendered(problems: &[Problem]) -> Vec<String> {
    let src = Source::File(PathBuf::from("objects.yaml"));
    problems.iter().map(|p| p.render(&src)).collect()
}

const GOOD: &str = "\
- kind: ApiScope
  spec: {name: orders.read}
- kind: Client
  spec:
    clientId: backend
    allowedGrantTypes: [client_credentials]
    clientSecrets: [{value: backend-secret-0123456789}]
    allowedScopes: [orders.read]
    accessTokenLifetime: 600
";

#[test]
fn format_from_extension_then_content() {
    let f = |p: &str| Source::from_arg(Path::new(p)).format_hint();
    assert_eq!(f("a.json"), Some(Format::Json));
    assert_eq!(f("a.YML"), Some(Format::Yaml));
    assert_eq!(f("a.yaml"), Some(Format::Yaml));
    assert_eq!(f("a.txt"), None);
    assert_eq!(f("-"), None);
    assert_eq!(Source::from_arg(Path::new("-")), Source::Stdin);
    assert_eq!(detect(None, "  \n[{\"kind\": 1}]"), Format::Json);
    assert_eq!(detect(None, "\u{feff}{}"), Format::Json);
    assert_eq!(detect(None, "- kind: Client"), Format::Yaml);
    assert_eq!(detect(Some(Format::Yaml), "{}"), Format::Yaml);
}

#[test]
fn lists_streams_and_arrays_give_the_same_objects() {
    let list = yaml(GOOD);
    assert_eq!(list.len(), 2);
    let stream = yaml(
        "---\nkind: ApiScope\nspec: {name: orders.read}\n---\n# empty next\n---\n- kind: Client\n  spec:\n    clientId: backend\n    allowedGrantTypes: [client_credentials]\n    clientSecrets: [{value: backend-secret-0123456789}]\n    allowedScopes: [orders.read]\n    accessTokenLifetime: 600\n",
    );
    assert_eq!(stream, list);
    let json_text = serde_json::to_string(&list).unwrap();
    assert_eq!(
        flatten(parse_values(&json_text, Format::Json).unwrap()),
        list
    );
    // Several JSON values one after another.
    let concatenated = format!("{}\n{}", list[0], list[1]);
    assert_eq!(
        flatten(parse_values(&concatenated, Format::Json).unwrap()),
        list
    );
    // Numbers stay numbers, quoted numbers stay strings.
    // YAML 1.2: `no`, `on`, `007` and `1_000` stay strings.
    let v = yaml("kind: X\nspec: {a: 600, b: '600', c: true, d: no, e: on, f: 007, g: 1_000}\n");
    assert_eq!(
        v[0]["spec"],
        json!({"a": 600, "b": "600", "c": true, "d": "no", "e": "on", "f": "007", "g": "1_000"})
    );
}

#[test]
fn syntax_errors_are_one_line() {
    let p = parse_values("- kind: Client\n  spec: {clientId: [\n", Format::Yaml).unwrap_err();
    assert!(p.rule.starts_with("invalid YAML"), "{p:?}");
    assert!(!p.rule.contains('\n'), "{p:?}");
    let p = parse_values("[{\"kind\": }]", Format::Json).unwrap_err();
    assert!(p.rule.starts_with("line 1 column"), "{p:?}");
    assert!(!p.rule.contains('\n'));
    let src = Source::File(PathBuf::from("x.json"));
    assert!(p.render(&src).starts_with("x.json: line 1 column"));
}

#[test]
fn good_objects_get_their_defaults() {
    let docs = check_all(&yaml(GOOD)).unwrap();
    assert_eq!(docs.len(), 2);
    assert_eq!(
        (docs[0].kind, docs[0].id.as_str()),
        (Kind::ApiScope, "orders.read")
    );
    let backend = &docs[1];
    assert_eq!(backend.index, 2);
    assert!(backend.has_secrets);
    let desired = backend.desired();
    assert_eq!(desired["accessTokenLifetime"], 600);
    assert_eq!(desired["requirePkce"], true, "defaults are filled in");
    assert_eq!(
        desired["clientSecrets"],
        json!([{"description": null, "expiration": null, "type": "SharedSecret"}]),
        "secrets are compared without their values"
    );
    assert!(!desired.to_string().contains("backend-secret"));
    // The body sent is the one written.
    assert_eq!(
        backend.body["clientSecrets"][0]["value"],
        "backend-secret-0123456789"
    );
    assert!(backend.body.get("requirePkce").is_none());
}

#[test]
fn every_problem_names_object_kind_id_and_field() {
    let items = yaml(
        "\
- kind: ApiScope
  spec: {name: ok.scope}
- kind: Client
  spec:
    clientId: bad-lifetime
    allowedGrantTypes: [client_credentials]
    clientSecrets: [{value: s-0123456789}]
    accessTokenLifetime: 0
- kind: Client
  spec: {clientId: typo, allowedGrantTypes: [client_credentials], redirectUri: x}
- kind: Clients
  spec: {clientId: x}
- kind: ApiScope
- kind: ApiResource
  spec: {name: api, scopes: [a, a]}
  apiVersion: v1
- just a string
- kind: Client
  spec: {clientId: pw, allowedGrantTypes: [password]}
",
    );
    let lines = rendered(&check_all(&items).unwrap_err());
    let expect = [
        "objects.yaml: object 2 (Client bad-lifetime): accessTokenLifetime: must be a positive number of seconds",
        "objects.yaml: object 3 (Client typo): redirectUri: unknown field `redirectUri`",
        "objects.yaml: object 4: kind: \"Clients\" is not one of Client, ApiResource, ApiScope, IdentityResource, InitialAccessToken",
        "objects.yaml: object 5 (ApiScope): spec: missing",
        "objects.yaml: object 6 (ApiResource api): apiVersion: unknown member (an object has only kind and spec)",
        "objects.yaml: object 7: must be a mapping with kind and spec",
        "objects.yaml: object 8 (Client pw): allowedGrantTypes[0]: unknown variant `password`",
    ];
    for e in expect {
        assert!(
            lines.iter().any(|l| l.starts_with(e)),
            "missing {e:?} in {lines:#?}"
        );
    }
    // The ApiResource with the unknown member is not checked further (one problem).
    assert_eq!(lines.iter().filter(|l| l.contains("object 6")).count(), 1);
    assert!(lines.iter().all(|l| !l.contains("object 1 ")), "{lines:#?}");
}

#[test]
fn duplicate_ids_and_shared_scope_names() {
    let items = yaml(
        "\
- {kind: ApiScope, spec: {name: a}}
- {kind: IdentityResource, spec: {name: a}}
- {kind: ApiScope, spec: {name: a}}
- {kind: Client, spec: {clientId: a, allowedGrantTypes: [client_credentials], clientSecrets: [{value: secret-0123456789abc}]}}
- {kind: Client, spec: {clientId: a, allowedGrantTypes: [client_credentials], clientSecrets: [{value: secret-0123456789abc}]}}
",
    );
    let lines = rendered(&check_all(&items).unwrap_err());
    assert_eq!(lines.len(), 3, "{lines:#?}");
    assert!(lines[0].starts_with("objects.yaml: object 2 (IdentityResource a): name: duplicate: \"a\" is also object 1 (ApiScope); API scopes and identity resources share one namespace"), "{lines:#?}");
    assert_eq!(
        lines[1],
        "objects.yaml: object 3 (ApiScope a): name: duplicate: \"a\" is also object 1"
    );
    assert_eq!(
        lines[2],
        "objects.yaml: object 5 (Client a): clientId: duplicate: \"a\" is also object 4"
    );
}

#[test]
fn offline_access_is_built_in() {
    let lines = rendered(
        &check_all(&yaml(
            "- {kind: IdentityResource, spec: {name: offline_access}}",
        ))
        .unwrap_err(),
    );
    assert_eq!(
        lines,
        ["objects.yaml: object 1 (IdentityResource offline_access): name: offline_access is built in"]
    );
}

#[test]
fn absent_secrets_matter_only_for_creation() {
    let docs = check_all(&yaml(
        "- {kind: Client, spec: {clientId: svc, allowedGrantTypes: [client_credentials]}}",
    ))
    .unwrap();
    let d = &docs[0];
    assert!(!d.has_secrets);
    assert!(d.desired().get("clientSecrets").is_none(), "not compared");
    let p = d.creation_problem().unwrap();
    assert_eq!(
        rendered(&[p]),
        ["objects.yaml: object 1 (Client svc): clientSecrets: a client_credentials client needs at least one secret with a value (or a jwksUri) (the object does not exist yet, so the file must hold its secrets)"]
    );
    // An explicit empty list is a real (failing) statement.
    let e = check_all(&yaml(
        "- {kind: Client, spec: {clientId: svc, allowedGrantTypes: [client_credentials], clientSecrets: []}}",
    ))
    .unwrap_err();
    assert_eq!(e[0].field.as_deref(), Some("clientSecrets"));
}

#[test]
fn single_objects_bare_or_wrapped() {
    let bare = json!({"name": "orders.read"});
    let d = single(&bare, Kind::ApiScope).unwrap();
    assert_eq!(d.id, "orders.read");
    let wrapped = json!({"kind": "ApiScope", "spec": {"name": "orders.read"}});
    assert_eq!(single(&wrapped, Kind::ApiScope).unwrap().body, bare);
    let e = single(&wrapped, Kind::Client).unwrap_err();
    assert_eq!(
        rendered(&e),
        ["objects.yaml: object 1 (ApiScope orders.read): kind: is ApiScope, but this command handles Client (use `signet admin apply -f`)"]
    );
    // A bare body with a member named `kind` is still a body (and refused by the model).
    let e = single(&json!({"name": "x", "kind": "y"}), Kind::ApiScope).unwrap_err();
    assert!(rendered(&e)[0].contains("unknown field `kind`"), "{e:?}");
    assert!(single(&json!([1]), Kind::ApiScope).is_err());
}

#[test]
fn load_reports_files_that_cannot_be_used() {
    let dir = tempfile::tempdir().unwrap();
    let missing = Source::File(dir.path().join("nope.yaml"));
    let f = load(&missing).unwrap_err();
    assert_eq!(f.exit, crate::admin::Exit::Usage);
    assert!(f.message.starts_with("cannot read "), "{f:?}");
    let empty = dir.path().join("empty.yaml");
    std::fs::write(&empty, "# nothing\n").unwrap();
    let f = load(&Source::File(empty)).unwrap_err();
    assert!(f.message.ends_with("holds no objects"), "{f:?}");
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, GOOD.replace("600", "-1")).unwrap();
    let f = load(&Source::File(bad.clone())).unwrap_err();
    assert_eq!(f.problems.len(), 1, "{f:?}");
    assert!(
        f.problems[0].starts_with(&format!(
            "{}: object 2 (Client backend): accessTokenLifetime: invalid value",
            bad.display()
        )),
        "{f:?}"
    );
    assert!(
        f.message.contains("1 problem); nothing was written"),
        "{f:?}"
    );
    let two = dir.path().join("two.json");
    std::fs::write(&two, r#"[{"name": "a"}, {"name": "b"}]"#).unwrap();
    let f = load_single(&Source::File(two), Kind::ApiScope).unwrap_err();
    assert!(f.message.contains("holds 2 objects"), "{f:?}");
}
