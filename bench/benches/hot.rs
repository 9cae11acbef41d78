//! Criterion micro-benchmarks of the lookup path's hot functions: address parsing, presence
//! envelope verification, a lookup-cache hit, and encoding a lookup answer (a local user's,
//! written around the stored envelope, and a remote one's, serialised from its parts).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use pd_federation::cache::{CacheConfig, LookupCache};
use pd_proto::wire::LookupResponse;
use pd_proto::{Address, Endpoint, Presence, SecretKey, Signed, now_micros};

const USER: &str = "bench@home.test";

fn signed_presence(key: &SecretKey, address: &Address) -> Signed<Presence> {
    let presence = Presence {
        address: address.clone(),
        endpoints: vec![Endpoint::parse("tcp://203.0.113.5:7000").unwrap()],
        seq: now_micros(),
        expires_at: now_micros() / 1_000_000 + 3600,
    };
    Signed::sign(key, &presence)
}

/// A local answer's body as the node writes it.
fn local_answer(key: &SecretKey, address: &Address, envelope: &str) -> Vec<u8> {
    let mut body = Vec::new();
    LookupResponse::write_local(
        &mut body,
        address,
        &key.public(),
        Some(envelope),
        None,
        3600,
    )
    .unwrap();
    body
}

fn hot(c: &mut Criterion) {
    let key = SecretKey::generate();
    let address = Address::parse(USER).unwrap();
    let signed = signed_presence(&key, &address);
    let envelope = serde_json::to_string(&signed).unwrap();

    c.bench_function("address parse", |b| {
        b.iter(|| Address::parse(black_box(USER)).unwrap())
    });

    let public = key.public();
    c.bench_function("envelope verify (presence)", |b| {
        b.iter(|| black_box(&signed).verify(&public, &address).unwrap())
    });

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let response: LookupResponse =
        serde_json::from_slice(&local_answer(&key, &address, &envelope)).unwrap();
    let cache = LookupCache::new(CacheConfig::default());
    runtime.block_on(cache.insert_found(address.clone(), response.clone()));
    c.bench_function("cache hit", |b| {
        b.iter(|| runtime.block_on(cache.get(black_box(&address))).unwrap())
    });

    c.bench_function("answer encode (local, stored envelope)", |b| {
        b.iter(|| local_answer(&key, black_box(&address), black_box(&envelope)))
    });
    c.bench_function("answer encode (remote, serde)", |b| {
        b.iter(|| serde_json::to_vec(black_box(&response)).unwrap())
    });
}

criterion_group!(benches, hot);
criterion_main!(benches);
