//! smux protocol version 1 (xtaci/smux v1.5.16, as vendored by the official client) over the data
//! channel, both ends: frames, stream table, and the [`Mux`] session. Sans-IO: no sockets, no
//! clock, no data-channel messages (SPEC §6.7).

mod frame;
mod session;
mod stream;
mod table;

pub use frame::{Cmd, Frame, FrameDecoder, FrameError, HEADER_LEN, MAX_FRAME_SIZE, VERSION};
pub use session::{
    KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT, Keepalive, MAX_RECEIVE_BUFFER, MAX_STREAMS, Mux,
    MuxCloseReason, MuxConfig, MuxError, MuxEvent, MuxRole,
};
pub use stream::{Stream, StreamId, StreamState};
pub use table::StreamTable;
