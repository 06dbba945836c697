//! TOTP verification (RFC 6238, issue 17's figure "TOTP verifications per second per
//! core"): `signet_core::mfa::totp::verify` on a 20-byte secret, which checks the three
//! steps of the drift window (a wrong code, the worst case: every step is computed).
//!
//! `cargo bench -p signet-core --bench totp` (the scripts' test command runs it once in
//! test mode).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use signet_core::mfa::totp;

fn verify(c: &mut Criterion) {
    let secret = [7u8; 20];
    let mut g = c.benchmark_group("totp");
    g.throughput(Throughput::Elements(1));
    let mut now = 1_800_000_000i64;
    g.bench_function("verify_wrong_code", |b| {
        b.iter(|| {
            now += 1;
            std::hint::black_box(totp::verify(&secret, "123456", now))
        })
    });
    g.finish();
}

criterion_group!(benches, verify);
criterion_main!(benches);
