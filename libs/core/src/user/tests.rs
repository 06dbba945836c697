use serde_json::json;

use super::*;
use crate::events::{Aggregate, Event};
use crate::validation::from_json;

const PASSWORD: &str = "correct horse battery staple";

fn new_user(body: Value) -> Result<CheckedUser, ValidationErrors> {
    from_json::<NewUser>(body.to_string().as_bytes())?.check()
}

fn fields(e: &ValidationErrors) -> Vec<&str> {
    e.errors.iter().map(|f| f.field.as_str()).collect()
}

#[test]
fn a_full_body_is_accepted_and_normalized() {
    let u = new_user(json!({
        "username": "Alice",
        "password": PASSWORD,
        "claims": {
            "name": "Alice Liddell",
            "given_name": "Alice",
            "email": "alice@example.com",
            "email_verified": true,
            "phone_number": "+33 1 23 45 67 89",
            "phone_number_verified": false,
            "address": {"street_address": "1 Rabbit Hole", "country": "UK", "region": null},
            "picture": "https://example.com/a.png",
            "birthdate": "0000-05-04",
            "updated_at": 1700000000,
            "nickname": null,
            "department": {"name": "wonder", "floors": [1, 2]},
            "tags": ["a", "b"],
            "x-null": null
        }
    }))
    .unwrap();
    assert_eq!(u.username, "Alice");
    assert_eq!(u.username_key(), "alice");
    assert!(u.enabled, "enabled defaults to true");
    assert!(
        u.claims.get("nickname").is_none(),
        "a standard claim set to null is left out"
    );
    assert_eq!(
        u.claims["x-null"],
        Value::Null,
        "custom claims keep any value"
    );
    assert_eq!(
        u.claims["address"],
        json!({"street_address": "1 Rabbit Hole", "country": "UK"})
    );
    assert_eq!(u.claims["department"]["floors"], json!([1, 2]));
    // Claims and enabled are optional.
    let u = new_user(json!({"username": "bob", "password": PASSWORD, "enabled": false})).unwrap();
    assert!(u.claims.is_empty() && !u.enabled);
}

#[test]
fn bad_bodies_name_the_field_and_never_echo_the_password() {
    let secret = "s3cr3t!"; // 7 characters: too short.
    let e = new_user(json!({"username": "alice", "password": secret})).unwrap_err();
    assert_eq!(fields(&e), ["password"]);
    assert!(!format!("{e:?}{e}").contains(secret), "{e:?}");
    // A password of the wrong type is refused without echoing it.
    let e = from_json::<NewUser>(br#"{"username": "a", "password": 12345678901}"#).unwrap_err();
    assert_eq!(fields(&e), ["password"]);
    assert!(!format!("{e:?}").contains("12345678901"), "{e:?}");
    let e = from_json::<NewUser>(br#"{"username": "a"}"#).unwrap_err();
    assert_eq!(fields(&e), ["password"]);
    let e = from_json::<NewUser>(br#"{"username": "a", "password": "xxxxxxxx", "bogus": 1}"#)
        .unwrap_err();
    assert!(e.errors[0].rule.contains("bogus"), "{e:?}");
    let long = "p".repeat(PASSWORD_MAX + 1);
    let e = new_user(json!({"username": "a", "password": long})).unwrap_err();
    assert_eq!(fields(&e), ["password"]);
    assert!(!e.errors[0].rule.contains("ppp"));

    for bad in ["", " alice", "alice\t", "al\u{0}ice", "a\nb"] {
        let e = new_user(json!({"username": bad, "password": PASSWORD})).unwrap_err();
        assert_eq!(fields(&e), ["username"], "{bad:?}");
    }
    let e = new_user(json!({"username": "é".repeat(USERNAME_MAX + 1), "password": PASSWORD}))
        .unwrap_err();
    assert_eq!(fields(&e), ["username"]);
    assert!(new_user(json!({"username": "é".repeat(USERNAME_MAX), "password": PASSWORD})).is_ok());

    let cases = [
        (json!({"email_verified": "yes"}), "claims.email_verified"),
        (
            json!({"phone_number_verified": 1}),
            "claims.phone_number_verified",
        ),
        (json!({"name": 5}), "claims.name"),
        (json!({"email": "not-an-email"}), "claims.email"),
        (json!({"website": "ftp://x"}), "claims.website"),
        (json!({"picture": "/relative.png"}), "claims.picture"),
        (json!({"birthdate": "1990-13-01"}), "claims.birthdate"),
        (json!({"updated_at": "yesterday"}), "claims.updated_at"),
        (json!({"updated_at": 1.5}), "claims.updated_at"),
        (json!({"address": "1 Main St"}), "claims.address"),
        (json!({"address": {"street": "x"}}), "claims.address.street"),
        (
            json!({"address": {"country": 44}}),
            "claims.address.country",
        ),
        (json!({"": 1}), "claims"),
    ];
    for (claims, field) in cases {
        let e =
            new_user(json!({"username": "a", "password": PASSWORD, "claims": claims})).unwrap_err();
        assert_eq!(fields(&e), [field], "{claims}");
    }
    for claim in PROTOCOL_CLAIMS {
        let e = new_user(json!({"username": "a", "password": PASSWORD, "claims": {*claim: "x"}}))
            .unwrap_err();
        assert_eq!(fields(&e), [format!("claims.{claim}")]);
        assert!(e.errors[0].rule.contains("protocol claim"));
    }
    let big = "x".repeat(CLAIMS_MAX_BYTES);
    let e = new_user(json!({"username": "a", "password": PASSWORD, "claims": {"bio": big}}))
        .unwrap_err();
    assert_eq!(fields(&e), ["claims"]);
    // Every broken rule is reported.
    let e = new_user(json!({
        "username": "",
        "password": "short",
        "claims": {"sub": "x", "email_verified": "no"}
    }))
    .unwrap_err();
    assert_eq!(e.errors.len(), 4, "{e:?}");
}

#[test]
fn replacement_password_is_optional() {
    let r: UserReplacement = from_json(br#"{"username": "Alice"}"#).unwrap();
    let checked = r.check().unwrap();
    assert!(checked.password.is_none());
    let r: UserReplacement = from_json(br#"{"username": "Alice", "password": "short"}"#).unwrap();
    assert_eq!(fields(&r.check().unwrap_err()), ["password"]);
}

#[test]
fn hashing_round_trips_and_hides_the_password() {
    let salt = [7u8; 16];
    let phc = hash_password(PASSWORD, &salt).unwrap();
    assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
    assert!(!phc.contains(PASSWORD));
    assert_eq!(phc, hash_password(PASSWORD, &salt).unwrap(), "pure");
    assert_ne!(phc, hash_password(PASSWORD, &[8u8; 16]).unwrap(), "salted");
    assert!(verify_password(&phc, PASSWORD));
    assert!(!verify_password(&phc, "correct horse battery stapl"));
    assert!(!verify_password("not a phc string", PASSWORD));
    dummy_verify(PASSWORD);
    assert!(!format!("{:?}", Password::new(PASSWORD)).contains("horse"));
}

#[test]
fn records_events_and_views() {
    let checked =
        new_user(json!({"username": "Alice", "password": PASSWORD, "claims": {"email": "a@b.c"}}))
            .unwrap();
    let sub = sub_from_bytes(&[0xff; 16]);
    assert_eq!(sub.len(), 22);
    assert!(sub
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    let phc = hash_password(PASSWORD, &[1; 16]).unwrap();
    let record = UserRecord::new(sub.clone(), checked, phc.clone(), 100);
    assert!(
        !format!("{record:?}").contains(&phc),
        "Debug hides the hash"
    );

    let event = Event::UserCreated(Box::new(record.clone()));
    assert_eq!(event.aggregate(), (Aggregate::User, sub.as_str()));
    assert_eq!(event.subject(), format!("signet.events.user.{sub}"));
    let json: Value = serde_json::from_slice(&event.to_json()).unwrap();
    assert_eq!(json["type"], "user.created");
    assert_eq!(json["data"]["passwordHash"], phc.as_str());
    assert_eq!(json["data"]["createdAt"], 100);
    assert!(!json.to_string().contains(PASSWORD));
    assert_eq!(Event::from_json(&event.to_json()).unwrap(), event);

    let replacement: UserReplacement =
        from_json(br#"{"username": "alice2", "enabled": false}"#).unwrap();
    let replaced = record.replaced(replacement.check().unwrap(), None, 200);
    assert_eq!(replaced.password_hash, phc, "no password: the hash stays");
    assert_eq!((replaced.created_at, replaced.updated_at), (100, 200));
    assert!(replaced.claims.is_empty() && !replaced.enabled);
    let event = Event::UserReplaced(Box::new(replaced));
    assert_eq!(Event::from_json(&event.to_json()).unwrap(), event);

    let deleted = Event::UserDeleted { sub: sub.clone() };
    assert_eq!(
        String::from_utf8(deleted.to_json()).unwrap(),
        format!(r#"{{"type":"user.deleted","data":{{"sub":"{sub}"}}}}"#)
    );
    assert_eq!(Event::from_json(&deleted.to_json()).unwrap(), deleted);

    let view = serde_json::to_value(record.view()).unwrap();
    assert_eq!(
        view.as_object().unwrap().keys().collect::<Vec<_>>(),
        [
            "claims",
            "createdAt",
            "enabled",
            "factors",
            "mustChangePassword",
            "sub",
            "updatedAt",
            "username"
        ]
    );
    assert!(!view.to_string().contains("argon2"));
}

#[test]
fn usernames_are_precis_normalized_and_never_mix_scripts() {
    // A Cyrillic "о" (U+043E) in "bob": it would pass for bob.
    let e = new_user(json!({"username": "b\u{43e}b", "password": "a long password"})).unwrap_err();
    assert_eq!(fields(&e), ["username"]);
    // Full-width letters and case fold to one key (RFC 8265 UsernameCaseMapped).
    assert_eq!(username_key("ＢＯＢ"), "bob");
    // ... and so to one username aggregate, whose id is a safe subject token.
    assert_eq!(username_id("ＢＯＢ"), username_id("bob"));
    assert_ne!(username_id("bob"), username_id("bobby"));
    let subject = Aggregate::Username.subject(&username_id("a.b *>"));
    assert!(!subject["signet.events.username.".len()..].contains(['.', '*', '>', ' ', '~']));
    assert_eq!(username_key("Hana Smith"), "hana smith");
    // A name wholly in another script is its own name.
    assert!(
        new_user(json!({"username": "\u{431}\u{43e}\u{431}", "password": "a long password"}))
            .is_ok()
    );
    // Symbols outside the IdentifierClass are refused.
    let e =
        new_user(json!({"username": "bob\u{2603}", "password": "a long password"})).unwrap_err();
    assert_eq!(fields(&e), ["username"]);
}
