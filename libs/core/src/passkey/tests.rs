use super::soft::{Claims, SoftKey, UP, UV};
use super::*;

const ORIGIN: &str = "https://id.example.com";

fn rp() -> RelyingParty {
    RelyingParty::new(
        &url::Url::parse("https://id.example.com/auth").unwrap(),
        "Signet",
    )
    .unwrap()
}

fn claims<'a>(challenge: &'a str) -> Claims<'a> {
    Claims {
        origin: ORIGIN,
        rp_id: "id.example.com",
        challenge,
        flags: UP | UV,
        counter: 0,
    }
}

/// Registers a soft key; returns it, the user handle and the stored factor.
fn registered(counter: u32) -> (SoftKey, String, PasskeyFactor) {
    let rp = rp();
    let handle = new_user_handle();
    let started = rp.start_registration(&handle, "bob", &[]).unwrap();
    let key = SoftKey::generate();
    let mut c = claims(&started.challenge);
    c.counter = counter;
    let response = key.register(&c);
    assert_eq!(
        registration_challenge(response.as_bytes()).unwrap(),
        started.challenge
    );
    let r = rp
        .finish_registration(&started.state, response.as_bytes())
        .unwrap();
    let factor = PasskeyFactor {
        id: r.id,
        name: "laptop".into(),
        public_key: r.public_key,
        state: r.state,
        sign_count: r.sign_count,
        created_at: 0,
        last_used_at: None,
    };
    (key, handle, factor)
}

#[test]
fn rp_id_is_the_issuer_host_and_origin_exact() {
    let rp = rp();
    assert_eq!(rp.rp_id(), "id.example.com");
    assert_eq!(rp.origin(), ORIGIN);
    let local = RelyingParty::new(&url::Url::parse("http://localhost:8080").unwrap(), "x").unwrap();
    assert_eq!(local.origin(), "http://localhost:8080");
    assert_eq!(
        RelyingParty::new(&url::Url::parse("http://127.0.0.1:8080").unwrap(), "x").unwrap_err(),
        PasskeyError::NoDomain
    );
}

#[test]
fn options_ask_for_a_discoverable_verified_credential() {
    let rp = rp();
    let (_, handle, existing) = registered(0);
    let s = rp
        .start_registration(&handle, "bob", std::slice::from_ref(&existing))
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&s.options).unwrap();
    let pk = v.get("publicKey").unwrap_or(&v);
    assert_eq!(pk["rp"]["id"], "id.example.com");
    assert_eq!(pk["rp"]["name"], "Signet");
    assert_eq!(pk["user"]["id"], handle.as_str());
    assert_eq!(pk["authenticatorSelection"]["residentKey"], "required");
    assert_eq!(pk["authenticatorSelection"]["userVerification"], "required");
    assert_eq!(pk["excludeCredentials"][0]["id"], existing.id.as_str());
    let algs: Vec<i64> = pk["pubKeyCredParams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["alg"].as_i64().unwrap())
        .collect();
    for alg in [-7, -8, -257] {
        assert!(algs.contains(&alg), "{algs:?}");
    }
    let a = rp.start_authentication().unwrap();
    let v: serde_json::Value = serde_json::from_str(&a.options).unwrap();
    assert_eq!(v["userVerification"], "required");
    assert_eq!(v["rpId"], "id.example.com");
    assert_eq!(v["challenge"], a.challenge.as_str());
}

#[test]
fn a_registered_key_signs_in_and_the_counter_moves() {
    let rp = rp();
    let (key, handle, mut factor) = registered(1);
    let s = rp.start_authentication().unwrap();
    let mut c = claims(&s.challenge);
    c.counter = 2;
    let a = Assertion::parse(key.assert(&c, &handle).as_bytes()).unwrap();
    assert_eq!(a.challenge().unwrap(), s.challenge);
    assert_eq!(a.user_handle(), handle);
    assert_eq!(a.credential_id(), factor.id);
    let done = rp
        .finish_authentication(&s.state, &a, &handle, &factor)
        .unwrap();
    assert_eq!(done.sign_count, 2);
    factor.state = done.state;
    factor.sign_count = done.sign_count;
    // The same counter again: a clone, or a replay with a fresh challenge.
    let s = rp.start_authentication().unwrap();
    let a = Assertion::parse(key.assert(&claims(&s.challenge).tap(2), &handle).as_bytes()).unwrap();
    assert_eq!(
        rp.finish_authentication(&s.state, &a, &handle, &factor)
            .unwrap_err(),
        PasskeyError::CounterWentBack
    );
}

trait Tap {
    fn tap(self, counter: u32) -> Self;
}
impl Tap for Claims<'_> {
    fn tap(mut self, counter: u32) -> Self {
        self.counter = counter;
        self
    }
}

#[test]
fn a_zero_counter_authenticator_passes() {
    let rp = rp();
    let (key, handle, factor) = registered(0);
    for _ in 0..2 {
        let s = rp.start_authentication().unwrap();
        let a = Assertion::parse(key.assert(&claims(&s.challenge), &handle).as_bytes()).unwrap();
        assert_eq!(
            rp.finish_authentication(&s.state, &a, &handle, &factor)
                .unwrap()
                .sign_count,
            0
        );
    }
}

#[test]
fn wrong_origin_rp_id_challenge_flags_and_key_are_refused() {
    let rp = rp();
    let (key, handle, factor) = registered(0);
    let refused = |c: Claims<'_>, k: &SoftKey, h: &str, f: &PasskeyFactor, state: &str| {
        let a = Assertion::parse(k.assert(&c, h).as_bytes()).unwrap();
        rp.finish_authentication(state, &a, h, f).unwrap_err()
    };
    let s = rp.start_authentication().unwrap();
    let mut c = claims(&s.challenge);
    c.origin = "https://evil.example.com";
    assert_eq!(
        refused(c, &key, &handle, &factor, &s.state),
        PasskeyError::WrongRelyingParty
    );
    let mut c = claims(&s.challenge);
    c.origin = "https://id.example.com:8443";
    assert_eq!(
        refused(c, &key, &handle, &factor, &s.state),
        PasskeyError::WrongRelyingParty
    );
    let mut c = claims(&s.challenge);
    c.rp_id = "example.com";
    assert_eq!(
        refused(c, &key, &handle, &factor, &s.state),
        PasskeyError::WrongRelyingParty
    );
    let mut c = claims(&s.challenge);
    c.flags = UP;
    assert_eq!(
        refused(c, &key, &handle, &factor, &s.state),
        PasskeyError::UserNotVerified
    );
    let other = rp.start_authentication().unwrap();
    assert!(matches!(
        refused(claims(&other.challenge), &key, &handle, &factor, &s.state),
        PasskeyError::Refused(_)
    ));
    // Another key presenting this credential's id.
    let mut thief = SoftKey::generate();
    thief.credential_id = key.credential_id.clone();
    assert!(matches!(
        refused(claims(&s.challenge), &thief, &handle, &factor, &s.state),
        PasskeyError::Refused(_)
    ));
    // An assertion naming another user than the credential's.
    let (_, other_handle, _) = registered(0);
    let a = Assertion::parse(key.assert(&claims(&s.challenge), &other_handle).as_bytes()).unwrap();
    assert_eq!(
        rp.finish_authentication(&s.state, &a, &handle, &factor)
            .unwrap_err(),
        PasskeyError::UnknownCredential
    );
    assert!(Assertion::parse(b"{}").is_err());
    assert_eq!(
        rp.finish_authentication(
            "AAAA",
            &Assertion::parse(key.assert(&claims(&s.challenge), &handle).as_bytes()).unwrap(),
            &handle,
            &factor
        )
        .unwrap_err(),
        PasskeyError::BadState
    );
}

#[test]
fn registration_checks_origin_and_flags() {
    let rp = rp();
    let handle = new_user_handle();
    let key = SoftKey::generate();
    let s = rp.start_registration(&handle, "bob", &[]).unwrap();
    let mut c = claims(&s.challenge);
    c.origin = "http://id.example.com";
    assert_eq!(
        rp.finish_registration(&s.state, key.register(&c).as_bytes())
            .unwrap_err(),
        PasskeyError::WrongRelyingParty
    );
    let mut c = claims(&s.challenge);
    c.flags = UP;
    assert_eq!(
        rp.finish_registration(&s.state, key.register(&c).as_bytes())
            .unwrap_err(),
        PasskeyError::UserNotVerified
    );
    assert_eq!(
        rp.finish_registration(&s.state, b"[]").unwrap_err(),
        PasskeyError::Malformed
    );
}

#[test]
fn names_are_cleaned() {
    assert_eq!(clean_name("  my\u{7}laptop "), Some("mylaptop".into()));
    assert_eq!(clean_name(" \n "), None);
    assert_eq!(clean_name(&"x".repeat(100)).unwrap().len(), MAX_NAME);
}
