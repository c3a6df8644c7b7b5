//! Micro-benchmarks of the hot path: encoding a notification, handing it to N members,
//! and joining/leaving a group. `cargo bench`; speed goals live here and in herald-bench,
//! never in tests.

#![allow(clippy::unwrap_used)] // fixed inputs, known valid

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use herald::hub::{Audience, Hub, Member};
use herald::protocol::{encode_notify, Data, Epoch, EventName, GroupName, Position};
use serde_json::value::RawValue;
use tokio_util::sync::CancellationToken;

fn encode(c: &mut Criterion) {
    let group = GroupName::parse("room:42").unwrap();
    let event = EventName::parse("chat.message").unwrap();
    let epoch = Epoch::random();
    let mut g = c.benchmark_group("encode_notify");
    for size in [16usize, 1024] {
        let data: Data = RawValue::from_string(format!(r#"{{"text":"{}"}}"#, "x".repeat(size)))
            .unwrap()
            .into();
        g.throughput(Throughput::Elements(1));
        g.bench_with_input(BenchmarkId::from_parameter(size), &data, |b, data| {
            b.iter(|| encode_notify(black_box(&group), &event, 17, &epoch, data))
        });
    }
    g.finish();
}

fn deliver(c: &mut Criterion) {
    let group = GroupName::parse("crowd").unwrap();
    let event = EventName::default_event();
    let data: Data = RawValue::from_string(r#"{"seq":1,"t":1700000000000000000}"#.into())
        .unwrap()
        .into();
    let epoch = Epoch::random();
    let frame = encode_notify(&group, &event, 1, &epoch, &data);
    let mut g = c.benchmark_group("hub_deliver");
    for members in [1_000usize, 10_000] {
        let hub = Hub::new();
        let handles: Vec<Member> = (0..members as u64)
            .map(|id| {
                let m = Member::new(id, 1024, CancellationToken::new());
                hub.join(&group, m.clone());
                m
            })
            .collect();
        let position = Position {
            offset: 0,
            epoch: epoch.clone(),
        };
        hub.synced(&group, position);
        let mut offset = 0;
        g.throughput(Throughput::Elements(members as u64));
        g.bench_function(BenchmarkId::from_parameter(members), |b| {
            b.iter(|| {
                // A new offset each time, as the broker would hand over.
                offset += 1;
                let out = hub.deliver(
                    &group,
                    offset,
                    &epoch,
                    black_box(&frame),
                    Audience::Everyone,
                );
                // Drain as a session would, so queues never fill up.
                for m in &handles {
                    black_box(m.take());
                }
                out
            })
        });
    }
    g.finish();
}

fn join_leave(c: &mut Criterion) {
    let hub = Hub::new();
    let group = GroupName::parse("busy").unwrap();
    for id in 0..1_000u64 {
        hub.join(&group, Member::new(id, 16, CancellationToken::new()));
    }
    let newcomer = Member::new(1_000_000, 16, CancellationToken::new());
    c.bench_function("join_leave_group_of_1000", |b| {
        b.iter(|| {
            hub.join(&group, newcomer.clone());
            hub.leave(&group, newcomer.id())
        })
    });
}

criterion_group!(benches, encode, deliver, join_leave);
criterion_main!(benches);
