use serde_json::json;

use super::*;

#[test]
fn users_are_bare_bodies_or_user_documents() {
    let bare = json!({"username": "ann", "password": "ann password 1", "claims": {"email": "a@x.example"}});
    let d = check_user(&bare, 1, true).unwrap();
    assert_eq!((d.username.as_str(), d.sub.as_deref()), ("ann", None));
    let doc = json!({"kind": "User", "spec": {"sub": "s-1", "username": "ann2"}});
    let d = check_user(&doc, 2, false).unwrap();
    assert_eq!(
        (d.username.as_str(), d.sub.as_deref()),
        ("ann2", Some("s-1"))
    );
    assert!(!d.body.contains_key("sub"), "sub is the target, not sent");
    // Creating needs a password; a wrong kind, an unknown member or a short password are
    // refused naming the field.
    let e = check_user(&json!({"username": "ann"}), 3, true).unwrap_err();
    assert_eq!(e[0].field.as_deref(), Some("password"), "{e:?}");
    let e = check_user(&json!({"kind": "Client", "spec": {}}), 4, false).unwrap_err();
    assert_eq!(e[0].field.as_deref(), Some("kind"));
    let e = check_user(&json!({"username": "ann", "nickname": "a"}), 5, false).unwrap_err();
    assert_eq!(e[0].field.as_deref(), Some("nickname"), "{e:?}");
    let e = check_user(&json!({"username": "ann", "password": "short"}), 6, false).unwrap_err();
    assert_eq!(e[0].field.as_deref(), Some("password"), "{e:?}");
    assert!(check_user(&json!("ann"), 7, false).is_err());
}

#[test]
fn apply_compares_what_the_server_shows() {
    let doc = check_user(
        &json!({"username": "ann", "password": "ann password 1", "claims": {"email": "a@x.example"}}),
        1,
        false,
    )
    .unwrap();
    let same =
        json!({"sub": "s", "username": "ann", "claims": {"email": "a@x.example"}, "enabled": true});
    assert!(user_changes(&doc, &same, false).is_empty());
    assert_eq!(user_changes(&doc, &same, true), ["password"]);
    let other = json!({"sub": "s", "username": "Ann", "claims": {}, "enabled": false});
    assert_eq!(
        user_changes(&doc, &other, false),
        ["username", "claims", "enabled"]
    );
    let marked = json!({"sub": "s", "username": "ann", "claims": {"email": "a@x.example"},
        "enabled": true, "mustChangePassword": true});
    assert_eq!(user_changes(&doc, &marked, false), ["mustChangePassword"]);
}

#[test]
fn a_file_naming_one_user_twice_is_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users.yaml");
    std::fs::write(
        &path,
        "- {username: ann, password: ann password 1}\n- {username: ANN, password: ann password 2}\n",
    )
    .unwrap();
    let f = load_users(&Source::from_arg(&path), false, false).unwrap_err();
    assert_eq!(f.exit, Exit::Usage);
    assert!(f.problems[0].contains("object 2: username"), "{f:?}");
    let f = load_users(&Source::from_arg(&path), false, true).unwrap_err();
    assert!(f.problems[0].contains("this verb takes one"), "{f:?}");
}

#[test]
fn session_tables_show_where_when_and_which_apps() {
    let t = session_table(&[json!({
        "sid": "abc", "sub": "s", "authTime": 0, "expiresAt": 3600, "amr": ["pwd"],
        "userAgent": "Mozilla/5.0", "address": "192.0.2.1",
        "clients": [{"clientId": "app", "clientName": "App"}, {"clientId": "b", "clientName": "B"}],
    })]);
    let lines: Vec<&str> = t.lines().collect();
    assert!(lines[0].starts_with("SID"), "{t}");
    for part in [
        "abc",
        "1970-01-01T00:00:00Z",
        "1970-01-01T01:00:00Z",
        "192.0.2.1",
        "app,b",
        "Mozilla/5.0",
    ] {
        assert!(lines[1].contains(part), "{part}: {t}");
    }
}

#[test]
fn the_general_apply_points_users_to_user_apply() {
    let e = spec::check_all(&[json!({"kind": "User", "spec": {"username": "ann"}})]).unwrap_err();
    assert!(
        e.iter().any(|p| p.rule.contains("signet admin user apply")),
        "{e:?}"
    );
}
