//! smux v1 against `smux_frames.json`, produced by xtaci/smux v1.5.16 (the official client's
//! copy): every client and server frame byte-exact, the client's SYN+PSH bytes accepted by our
//! server end, the 40000-byte split, NOP, and the version 2 UPD frame refused.

use std::time::Instant;

use postern_protocol::mux::{
    Cmd, Frame, FrameDecoder, FrameError, MAX_FRAME_SIZE, MAX_RECEIVE_BUFFER, Mux, MuxCloseReason,
    MuxConfig, MuxEvent, StreamId,
};
use postern_protocol::testkit::vectors::{hex, hex_field, load_json, str_field};
use serde_json::Value;

#[test]
fn default_config_matches_smux_defaults() {
    let config = &load_json("smux_frames.json")["default_config"];
    assert_eq!(config["Version"], 1);
    assert_eq!(config["MaxFrameSize"].as_u64(), Some(MAX_FRAME_SIZE as u64));
    assert_eq!(
        config["MaxReceiveBuffer"].as_u64(),
        Some(MAX_RECEIVE_BUFFER as u64)
    );
    assert_eq!(config["KeepAliveInterval"], "10s");
    assert_eq!(config["KeepAliveTimeout"], "30s");
}

#[test]
fn every_client_frame_encodes_and_decodes_byte_exact() {
    let frames = frames("client_frames", 7);
    for case in &frames {
        check_frame(case);
    }
}

#[test]
fn every_server_frame_encodes_and_decodes_byte_exact() {
    let frames = frames("server_frames", 2);
    for case in &frames {
        check_frame(case);
    }
}

#[test]
fn client_mux_emits_the_recorded_frames() {
    let frames = frames("client_frames", 7);
    let now = Instant::now();
    let mut client = Mux::client(MuxConfig::new().with_keepalive(), now);

    let first = client.open_stream().unwrap();
    assert_eq!(first, StreamId::new(3));
    assert_eq!(
        client.poll_output().unwrap(),
        hex_field(&frames[0], "frame_hex")
    );

    let request = str_field(&frames[1], "data_text").as_bytes();
    assert_eq!(client.write(first, request), Ok(request.len()));
    assert_eq!(
        client.poll_output().unwrap(),
        hex_field(&frames[1], "frame_hex")
    );

    assert_eq!(client.write(first, &[0x42; 40_000]), Ok(40_000));
    let big = client.poll_output().unwrap();
    let first_header = hex_field(&frames[2], "header_hex");
    let second_header = hex_field(&frames[3], "header_hex");
    assert_eq!(big.len(), total_bytes(&frames[2]) + total_bytes(&frames[3]));
    assert_eq!(big[..8], first_header[..]);
    assert_eq!(big[total_bytes(&frames[2])..][..8], second_header[..]);

    client.close(first).unwrap();
    assert_eq!(
        client.poll_output().unwrap(),
        hex_field(&frames[4], "frame_hex")
    );

    assert_eq!(client.open_stream(), Ok(StreamId::new(5)));
    assert_eq!(
        client.poll_output().unwrap(),
        hex_field(&frames[5], "frame_hex")
    );

    client.handle_timeout(client.poll_timeout().unwrap());
    assert_eq!(
        client.poll_output().unwrap(),
        hex_field(&frames[6], "frame_hex")
    );
}

#[test]
fn forty_thousand_byte_write_splits_into_32768_and_7232() {
    let frames = frames("client_frames", 7);
    let lengths: Vec<u64> = frames[2..4]
        .iter()
        .map(|case| case["length"].as_u64().unwrap())
        .collect();
    assert_eq!(lengths, [32768, 7232]);

    let mut client = Mux::client(MuxConfig::new(), Instant::now());
    let id = client.open_stream().unwrap();
    client.poll_output();
    client.write(id, &[7; 40_000]).unwrap();
    let decoded = decode_all(&client.poll_output().unwrap()).unwrap();
    let sizes: Vec<usize> = decoded.iter().map(|frame| frame.data().len()).collect();
    assert_eq!(sizes, [32768, 7232]);
}

#[test]
fn server_mux_accepts_client_syn_plus_psh() {
    let file = load_json("smux_frames.json");
    let bytes = hex(file["client_syn_plus_psh_hex"].as_str().unwrap());
    let expected = &file["server_received"];
    let id =
        StreamId::new(u32::try_from(expected["accepted_stream_id"].as_u64().unwrap()).unwrap());
    let text = str_field(expected, "data_text").as_bytes().to_vec();

    // Whole, and cut at every position (frame boundaries are unrelated to message boundaries).
    for cut in 0..=bytes.len() {
        let now = Instant::now();
        let mut server = Mux::server(MuxConfig::new(), now);
        server.handle_input(now, &bytes[..cut]);
        server.handle_input(now, &bytes[cut..]);
        let events: Vec<MuxEvent> = std::iter::from_fn(|| server.poll_event()).collect();
        assert_eq!(
            events,
            [MuxEvent::StreamOpened(id), MuxEvent::Data(id, text.clone())],
            "cut at {cut}"
        );
    }
}

#[test]
fn server_mux_emits_the_recorded_reply_and_fin() {
    let file = load_json("smux_frames.json");
    let frames = frames("server_frames", 2);
    let now = Instant::now();
    let mut server = Mux::server(MuxConfig::new(), now);
    server.handle_input(now, &hex(file["client_syn_plus_psh_hex"].as_str().unwrap()));
    let id = StreamId::new(3);
    let reply = str_field(&frames[0], "data_text").as_bytes();
    server.write(id, reply).unwrap();
    server.close(id).unwrap();
    let mut expected = hex_field(&frames[0], "frame_hex");
    expected.extend(hex_field(&frames[1], "frame_hex"));
    assert_eq!(server.poll_output().unwrap(), expected);
}

#[test]
fn client_mux_delivers_the_recorded_server_frames() {
    let frames = frames("server_frames", 2);
    let now = Instant::now();
    let mut client = Mux::client(MuxConfig::new(), now);
    let id = client.open_stream().unwrap();
    let mut wire = hex_field(&frames[0], "frame_hex");
    wire.extend(hex_field(&frames[1], "frame_hex"));
    for chunk in wire.chunks(5) {
        client.handle_input(now, chunk);
    }
    let mut data = Vec::new();
    let mut closed = false;
    while let Some(event) = client.poll_event() {
        match event {
            MuxEvent::Data(stream, bytes) if stream == id => data.extend(bytes),
            MuxEvent::StreamClosed(stream) if stream == id => closed = true,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(data, str_field(&frames[0], "data_text").as_bytes());
    assert!(closed);
}

#[test]
fn v2_upd_frame_is_rejected() {
    let file = load_json("smux_frames.json");
    let upd = hex(file["v2_upd_example_not_used"]["frame_hex"]
        .as_str()
        .unwrap());
    assert_eq!(upd[1], 4, "the vector is a cmdUPD frame");

    assert_eq!(decode_all(&upd), Err(FrameError::BadVersion { found: 2 }));
    let mut as_v1 = upd.clone();
    as_v1[0] = 1;
    assert_eq!(decode_all(&as_v1), Err(FrameError::BadCmd { found: 4 }));

    let now = Instant::now();
    let mut server = Mux::server(MuxConfig::new(), now);
    server.handle_input(now, &upd);
    assert_eq!(
        server.poll_event(),
        Some(MuxEvent::Closed(MuxCloseReason::Protocol(
            FrameError::BadVersion { found: 2 }
        )))
    );
    assert!(server.is_closed());
}

fn frames(key: &str, expected: usize) -> Vec<Value> {
    let file = load_json("smux_frames.json");
    let frames = file[key]
        .as_array()
        .unwrap_or_else(|| panic!("smux_frames.json: no {key:?}"))
        .clone();
    assert_eq!(frames.len(), expected, "smux_frames.json: {key} count");
    frames
}

fn check_frame(case: &Value) {
    let description = str_field(case, "description");
    let cmd = Cmd::from_byte(u8::try_from(case["cmd"].as_u64().unwrap()).unwrap()).unwrap();
    assert_eq!(
        cmd.to_string(),
        str_field(case, "cmd_name"),
        "{description}"
    );
    assert_eq!(case["version"], 1, "{description}");
    let stream = StreamId::new(u32::try_from(case["stream_id"].as_u64().unwrap()).unwrap());
    let length = usize::try_from(case["length"].as_u64().unwrap()).unwrap();
    let data = match case.get("data_text") {
        Some(text) => text.as_str().unwrap().as_bytes().to_vec(),
        None => vec![0x5a; length],
    };
    assert_eq!(data.len(), length, "{description}");
    let frame = match cmd {
        Cmd::Syn => Frame::syn(stream),
        Cmd::Fin => Frame::fin(stream),
        Cmd::Nop => Frame::nop(),
        Cmd::Psh => Frame::psh(stream, data).unwrap(),
    };
    assert_eq!(frame.stream_id(), stream, "{description}");
    let encoded = frame.encode();
    assert_eq!(encoded.len(), total_bytes(case), "{description}");
    assert_eq!(
        encoded[..8],
        hex_field(case, "header_hex")[..],
        "{description}"
    );
    if case.get("frame_hex").is_some() {
        assert_eq!(encoded, hex_field(case, "frame_hex"), "{description}");
    }
    let (decoded, used) = Frame::decode(&encoded, MAX_FRAME_SIZE).unwrap().unwrap();
    assert_eq!((decoded, used), (frame, encoded.len()), "{description}");
}

fn total_bytes(case: &Value) -> usize {
    usize::try_from(case["total_bytes"].as_u64().unwrap()).unwrap()
}

fn decode_all(bytes: &[u8]) -> Result<Vec<Frame>, FrameError> {
    let mut decoder = FrameDecoder::new();
    decoder.push(bytes);
    let frames = std::iter::from_fn(|| decoder.next_frame())
        .take(1000)
        .collect::<Result<Vec<_>, _>>()?;
    assert_eq!(decoder.buffered(), 0, "trailing bytes");
    Ok(frames)
}
