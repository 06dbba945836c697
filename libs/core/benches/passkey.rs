//! Passkey sign-in verification, server side (issue 17's figure "passkey sign-ins per
//! second per core"): what a node does with an assertion once it has the ceremony state
//! and the credential: parse the browser's JSON, decode the state and the stored public
//! key, and verify (challenge, origin, RP ID hash, flags, counter, ES256 signature) with
//! `signet_core::passkey`. The assertion is made in the setup of each iteration by a
//! software P-256 authenticator (not timed); store and event-log round trips are not in it.
//!
//! `cargo bench -p signet-core --bench passkey` (the scripts' test command runs it once in
//! test mode).

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use signet_core::passkey::{self, Assertion, PasskeyFactor, RelyingParty};

#[path = "../src/passkey/soft.rs"]
mod soft;

/// What the software authenticator puts in a response to `challenge`.
fn claims(challenge: &str) -> soft::Claims<'_> {
    soft::Claims {
        origin: "https://id.example.com",
        rp_id: "id.example.com",
        challenge,
        flags: soft::UP | soft::UV,
        counter: 0,
    }
}

fn sign_in(c: &mut Criterion) {
    let issuer = url::Url::parse("https://id.example.com").unwrap();
    let rp = RelyingParty::new(&issuer, "Signet").unwrap();
    let handle = passkey::new_user_handle();
    let key = soft::SoftKey::generate();
    let started = rp.start_registration(&handle, "bench", &[]).unwrap();
    let r = rp
        .finish_registration(
            &started.state,
            key.register(&claims(&started.challenge)).as_bytes(),
        )
        .unwrap();
    let factor = PasskeyFactor {
        id: r.id,
        name: "bench".into(),
        public_key: r.public_key,
        state: r.state,
        sign_count: 0,
        created_at: 0,
        last_used_at: None,
    };
    let mut g = c.benchmark_group("passkey");
    g.throughput(Throughput::Elements(1));
    g.bench_function("verify_es256_assertion", |b| {
        b.iter_batched(
            || {
                let s = rp.start_authentication().unwrap();
                let json = key.assert(&claims(&s.challenge), &handle);
                (s.state, json)
            },
            |(state, json)| {
                let a = Assertion::parse(json.as_bytes()).unwrap();
                let done = rp
                    .finish_authentication(&state, &a, &handle, &factor)
                    .unwrap();
                std::hint::black_box(done)
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, sign_in);
criterion_main!(benches);
