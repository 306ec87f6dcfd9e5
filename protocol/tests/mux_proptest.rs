//! Property tests of smux v1: frame round trips, decoding a frame stream cut anywhere, and a
//! client `Mux` and server `Mux` joined back to back carrying random data on several streams.

use std::collections::BTreeMap;
use std::time::Instant;

use postern_protocol::mux::{
    Cmd, Frame, FrameDecoder, MAX_FRAME_SIZE, Mux, MuxConfig, MuxEvent, StreamId,
};
use proptest::prelude::*;

fn frame_strategy(max_data: usize) -> impl Strategy<Value = Frame> {
    prop_oneof![
        any::<u32>().prop_map(|id| Frame::syn(StreamId::new(id))),
        any::<u32>().prop_map(|id| Frame::fin(StreamId::new(id))),
        Just(Frame::nop()),
        (
            any::<u32>(),
            proptest::collection::vec(any::<u8>(), 0..=max_data)
        )
            .prop_map(
                |(id, data)| Frame::psh(StreamId::new(id), data).expect("data within the cap")
            ),
    ]
}

/// Cuts `bytes` into pieces whose lengths cycle through `sizes` (each at least 1).
fn split(bytes: &[u8], sizes: &[usize]) -> Vec<Vec<u8>> {
    let mut pieces = Vec::new();
    let mut rest = bytes;
    let mut index = 0;
    while !rest.is_empty() {
        let size = sizes[index % sizes.len()].clamp(1, rest.len());
        let (piece, tail) = rest.split_at(size);
        pieces.push(piece.to_vec());
        rest = tail;
        index += 1;
    }
    pieces
}

/// One step of the back-to-back scenario.
#[derive(Debug, Clone)]
enum Step {
    /// Client writes `len` pattern bytes to its `stream % open` stream.
    ClientWrite { stream: usize, len: usize },
    /// Server writes `len` bytes to its `stream % accepted` stream.
    ServerWrite { stream: usize, len: usize },
    /// Move pending bytes both ways, cut into pieces of `piece` bytes.
    Pump { piece: usize },
}

fn step_strategy() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (any::<usize>(), 0usize..70_000).prop_map(|(stream, len)| Step::ClientWrite { stream, len }),
        2 => (any::<usize>(), 0usize..40_000).prop_map(|(stream, len)| Step::ServerWrite { stream, len }),
        2 => (1usize..=1024).prop_map(|piece| Step::Pump { piece }),
    ]
}

fn pattern(seed: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(31).wrapping_add(seed) % 251) as u8)
        .collect()
}

/// Moves everything `from` has queued into `to`, in pieces of `piece` bytes, and collects the
/// data `to` delivers.
fn pump(
    now: Instant,
    from: &mut Mux,
    to: &mut Mux,
    piece: usize,
    received: &mut BTreeMap<StreamId, Vec<u8>>,
) -> Vec<MuxEvent> {
    let mut others = Vec::new();
    while let Some(bytes) = from.poll_output() {
        for chunk in bytes.chunks(piece) {
            to.handle_input(now, chunk);
        }
    }
    while let Some(event) = to.poll_event() {
        match event {
            MuxEvent::Data(id, data) => received.entry(id).or_default().extend(data),
            other => others.push(other),
        }
    }
    others
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn frame_encode_decode_round_trips(frame in frame_strategy(MAX_FRAME_SIZE)) {
        let bytes = frame.encode();
        prop_assert_eq!(bytes.len(), frame.encoded_len());
        prop_assert_eq!(bytes[0], 1);
        prop_assert_eq!(bytes[1], frame.cmd().to_byte());
        let (decoded, used) = Frame::decode(&bytes, MAX_FRAME_SIZE).unwrap().unwrap();
        prop_assert_eq!(used, bytes.len());
        prop_assert_eq!(decoded, frame);
    }

    #[test]
    fn frame_stream_cut_anywhere_decodes_to_same_frames(
        frames in proptest::collection::vec(frame_strategy(3000), 0..40),
        sizes in proptest::collection::vec(1usize..2000, 1..20),
    ) {
        let mut wire = Vec::new();
        for frame in &frames {
            frame.encode_into(&mut wire);
        }
        let mut decoder = FrameDecoder::new();
        let mut decoded = Vec::new();
        for piece in split(&wire, &sizes) {
            decoder.push(&piece);
            while let Some(frame) = decoder.next_frame() {
                decoded.push(frame.unwrap());
            }
        }
        prop_assert_eq!(decoder.buffered(), 0);
        prop_assert_eq!(decoded, frames);
    }

    #[test]
    fn decoder_never_panics_on_garbage(
        bytes in proptest::collection::vec(any::<u8>(), 0..400),
        sizes in proptest::collection::vec(1usize..50, 1..8),
    ) {
        let mut decoder = FrameDecoder::new();
        for piece in split(&bytes, &sizes) {
            decoder.push(&piece);
            while let Some(result) = decoder.next_frame() {
                if result.is_err() {
                    break;
                }
            }
        }
        let now = Instant::now();
        let mut server = Mux::server(MuxConfig::new(), now);
        server.handle_input(now, &bytes);
        while server.poll_event().is_some() {}
    }

    #[test]
    fn client_and_server_back_to_back_deliver_every_stream_intact(
        streams in 1usize..5,
        steps in proptest::collection::vec(step_strategy(), 1..25),
    ) {
        let now = Instant::now();
        let mut client = Mux::client(MuxConfig::new(), now);
        let mut server = Mux::server(MuxConfig::new(), now);
        let opened: Vec<StreamId> = (0..streams).map(|_| client.open_stream().unwrap()).collect();
        let mut accepted = Vec::new();
        let mut sent_up: BTreeMap<StreamId, Vec<u8>> = BTreeMap::new();
        let mut sent_down: BTreeMap<StreamId, Vec<u8>> = BTreeMap::new();
        let mut got_up = BTreeMap::new();
        let mut got_down = BTreeMap::new();

        let mut all_steps = steps;
        all_steps.push(Step::Pump { piece: 1024 });
        for (index, step) in all_steps.into_iter().enumerate() {
            match step {
                Step::ClientWrite { stream, len } => {
                    let id = opened[stream % opened.len()];
                    let data = pattern(index, len);
                    prop_assert_eq!(client.write(id, &data), Ok(len));
                    sent_up.entry(id).or_default().extend(data);
                }
                Step::ServerWrite { stream, len } => {
                    if accepted.is_empty() {
                        continue;
                    }
                    let id = accepted[stream % accepted.len()];
                    let data = pattern(index + 7, len);
                    prop_assert_eq!(server.write(id, &data), Ok(len));
                    sent_down.entry(id).or_default().extend(data);
                }
                Step::Pump { piece } => {
                    for event in pump(now, &mut client, &mut server, piece, &mut got_up) {
                        match event {
                            MuxEvent::StreamOpened(id) => accepted.push(id),
                            other => prop_assert!(false, "server saw {:?}", other),
                        }
                    }
                    let events = pump(now, &mut server, &mut client, piece, &mut got_down);
                    prop_assert!(events.is_empty(), "client saw {:?}", events);
                }
            }
        }
        prop_assert_eq!(&accepted, &opened);
        sent_up.retain(|_, data| !data.is_empty());
        sent_down.retain(|_, data| !data.is_empty());
        prop_assert_eq!(got_up, sent_up);
        prop_assert_eq!(got_down, sent_down);

        // Closing each stream from the client reaches the server as a FIN.
        for id in &opened {
            client.close(*id).unwrap();
        }
        let mut ignored = BTreeMap::new();
        let closed: Vec<MuxEvent> = pump(now, &mut client, &mut server, 1024, &mut ignored);
        let expected: Vec<MuxEvent> = opened.iter().map(|id| MuxEvent::StreamClosed(*id)).collect();
        prop_assert_eq!(closed, expected);
        prop_assert!(!client.is_closed() && !server.is_closed());
        prop_assert_eq!(Cmd::from_byte(4), None);
    }
}
