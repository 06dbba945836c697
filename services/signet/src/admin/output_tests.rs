use serde_json::json;

use super::*;
use crate::admin::apply::{plan, Change, Current, Options};
use crate::admin::spec::{check_all, Doc};

#[test]
fn tables_align_and_show_none() {
    let items = [
        json!({"clientId": "web", "clientName": "Web app", "enabled": true,
               "allowedGrantTypes": ["authorization_code"], "allowedScopes": ["openid", "profile"]}),
        json!({"clientId": "backend", "clientName": null, "enabled": false,
               "allowedGrantTypes": ["client_credentials"], "allowedScopes": []}),
    ];
    let t = table(Kind::Client, &items);
    assert_eq!(
        t,
        "\
CLIENT ID   NAME      ENABLED   GRANT TYPES          SCOPES
backend     <none>    false     client_credentials   <none>
web         Web app   true      authorization_code   openid,profile
"
    );
    assert_eq!(
        table(Kind::ApiScope, &[]),
        "NAME   DISPLAY NAME   ENABLED   REQUIRED   USER CLAIMS\n"
    );
    let r = table(
        Kind::ApiResource,
        &[
            json!({"name": "api", "enabled": true, "scopes": ["a"], "allowedAccessTokenSigningAlgorithms": ["ES256", "EdDSA"]}),
        ],
    );
    assert!(
        r.lines().nth(1).unwrap().ends_with("a        ES256,EdDSA"),
        "{r}"
    );
    assert_eq!(cell(Some(&json!(3600))), "3600");
    assert_eq!(cell(Some(&json!([{"a": 1}]))), "{\"a\":1}");
}

fn one_doc() -> Vec<Doc> {
    check_all(&[
        json!({"kind": "ApiScope", "spec": {"name": "orders.read", "displayName": "Read"}}),
    ])
    .unwrap()
}

#[test]
fn step_lines_and_summaries() {
    let docs = one_doc();
    let mut steps = plan(&docs, &Current::default(), Options::default()).unwrap();
    assert_eq!(
        step_lines(&steps[0], false),
        "api-scope/orders.read created"
    );
    assert_eq!(
        step_lines(&steps[0], true),
        "api-scope/orders.read created (dry run)"
    );
    steps[0].action = Action::Replace(vec![
        Change {
            field: "displayName".into(),
            old: json!("Old"),
            new: json!("Read"),
        },
        Change {
            field: "userClaims".into(),
            old: json!([]),
            new: json!(["a"]),
        },
    ]);
    assert_eq!(
        step_lines(&steps[0], true),
        "api-scope/orders.read replaced (dry run)\n    displayName: \"Old\" -> \"Read\"\n    userClaims: [] -> [\"a\"]"
    );
    steps[0].action = Action::Unchanged;
    assert_eq!(
        step_lines(&steps[0], true),
        "api-scope/orders.read unchanged"
    );
    let s = Summary {
        created: 1,
        replaced: 2,
        unchanged: 3,
    };
    assert_eq!(summary_line(s, false), "1 created, 2 replaced, 3 unchanged");
    assert_eq!(
        summary_line(s, true),
        "dry run: 1 to create, 2 to replace, 3 unchanged; nothing was written"
    );
}

#[test]
fn json_report() {
    let docs = one_doc();
    let steps = plan(&docs, &Current::default(), Options::default()).unwrap();
    let r = report(&steps, 1, false);
    assert_eq!(
        r,
        json!({"dryRun": false, "complete": true, "created": 1, "replaced": 0, "unchanged": 0,
               "objects": [{"kind": "ApiScope", "id": "orders.read", "object": 1,
                            "action": "create", "applied": true, "changes": []}]})
    );
    let r = report(&steps, 0, false);
    assert_eq!(
        (
            r["complete"].as_bool(),
            r["objects"][0]["applied"].as_bool()
        ),
        (Some(false), Some(false))
    );
    let r = report(&steps, 1, true);
    assert_eq!(r["objects"][0]["applied"], false);
}

#[test]
fn key_tables_sort_by_algorithm_then_state() {
    let items = [
        json!({"kid": "es256-old", "alg": "ES256", "state": "retired", "activatedAt": 1_700_000_000, "retiredAt": 1_800_000_000}),
        json!({"kid": "rs256-a", "alg": "RS256", "state": "active", "activatedAt": 1_800_000_000}),
        json!({"kid": "es256-new", "alg": "ES256", "state": "active", "activatedAt": 1_800_000_000}),
        json!({"kid": "es256-next", "alg": "ES256", "state": "published", "activatedAt": null}),
    ];
    assert_eq!(
        key_table(&items),
        "\
KID          ALG     STATE       ACTIVATED
es256-new    ES256   active      2027-01-15T08:00:00Z
es256-next   ES256   published   <none>
es256-old    ES256   retired     2023-11-14T22:13:20Z
rs256-a      RS256   active      2027-01-15T08:00:00Z
"
    );
    assert_eq!(key_table(&[]), "KID   ALG   STATE   ACTIVATED\n");
}
