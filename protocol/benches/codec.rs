//! Codec throughput: encoding and decoding a 1 KiB `output_stream_data` message (the official
//! agent's chunk size, SPEC.md §5), reported in payload bytes per second.
// criterion_group! expands to an undocumented public function.
#![allow(missing_docs)]

use criterion::{BenchmarkId, Criterion, Throughput, black_box, criterion_group, criterion_main};
use postern_protocol::{ClientMessage, MessageId, MessageType, PayloadType, SequenceNumber};

fn codec(c: &mut Criterion) {
    let message = output_message(PAYLOAD_LEN);
    let frame = message.encode().expect("a 1 KiB payload is under the cap");
    let mut group = c.benchmark_group("codec");
    group.throughput(Throughput::Bytes(PAYLOAD_LEN as u64));
    group.bench_function(BenchmarkId::new("encode", PAYLOAD_LEN), |b| {
        let mut out = Vec::with_capacity(frame.len());
        b.iter(|| {
            out.clear();
            black_box(&message).encode_into(&mut out).unwrap();
            black_box(&out);
        });
    });
    group.bench_function(BenchmarkId::new("decode", PAYLOAD_LEN), |b| {
        b.iter(|| ClientMessage::decode(black_box(&frame)).unwrap());
    });
    group.bench_function(BenchmarkId::new("encode_decode", PAYLOAD_LEN), |b| {
        b.iter(|| {
            let frame = black_box(&message).encode().unwrap();
            ClientMessage::decode(&frame).unwrap()
        });
    });
    group.finish();
}

fn output_message(len: usize) -> ClientMessage {
    ClientMessage {
        message_type: MessageType::OutputStreamData,
        schema_version: 1,
        created_date: 1_700_000_000_000,
        sequence_number: SequenceNumber(42),
        flags: 0,
        message_id: MessageId::from_random_bytes([0x5a; 16]),
        payload_type: PayloadType::Output,
        payload: (0..len).map(|i| (i % 251) as u8).collect(),
    }
}

const PAYLOAD_LEN: usize = 1024;

criterion_group!(benches, codec);
criterion_main!(benches);
