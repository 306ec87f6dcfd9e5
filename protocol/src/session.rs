//! The data-channel session state machine, usable in both roles (client and agent).
//!
//! Shaped like quinn-proto's `Connection`: inputs `handle_message(now, frame)` and
//! `handle_timeout(now)`; commands (`send_output`, `send_size`, `send_flag`, ...); outputs
//! drained after every input in this order: [`Session::poll_transmit`],
//! [`Session::poll_timeout`], [`Session::poll_event`]. It never reads a clock, a socket or OS
//! randomness: time arrives as `now`, message ids and nonces come from `SessionConfig::rng_seed`.
//!
//! What it owns: sequence numbers, acks, the reorder buffer, retransmission, publication flow
//! control, the handshake (both sides) and KMS payload encryption. What it must not do: the
//! websocket, the OpenDataChannelInput frame, PTYs, TCP, the terminal or AWS calls; those are
//! the drivers' jobs (the driver answers [`Event::KmsDataKeyRequired`] /
//! [`Event::KmsDecryptRequired`] by calling KMS and then [`Session::provide_data_key`]).
//!
//! State diagram (client role):
//!
//! ```text
//!  AwaitingFirstMessage --HandshakeRequest--> [AwaitingDataKey] --> AwaitingHandshakeComplete
//!          |                                      (KMS)                 |   ^ EncChallengeRequest
//!          |--Output (legacy shell)--> Ready <------HandshakeComplete---+---+
//!  any state --channel_closed / give-up / fatal--> Closed
//! ```
//!
//! Agent role: `SendingRequest` (or `Ready` when no handshake is needed) -> `AwaitingResponse`
//! -> [`AwaitingDataKey` -> `AwaitingChallengeResponse`] -> `Ready` -> `Closed`.
