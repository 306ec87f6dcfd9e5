//! The stream table of one smux session: live streams by id and the client's id allocator.
//!
//! Decides nothing about frames or output; the session (`mux/session.rs`) drives it.

use std::collections::BTreeMap;

use super::stream::{Stream, StreamId, StreamState};

/// Live streams, and the next id the client will open.
///
/// Cap: at most `max_streams` live entries; [`StreamTable::insert`] refuses beyond that.
#[derive(Debug, Clone)]
pub struct StreamTable {
    streams: BTreeMap<StreamId, Stream>,
    /// Last id handed out; the client counter starts at 1 and adds 2 before each use
    /// (smux `session.go`, `newSession` and `OpenStream`), so the first id is 3.
    last_opened: u32,
    exhausted: bool,
    max_streams: usize,
}

impl StreamTable {
    /// An empty table holding at most `max_streams` live streams.
    pub fn new(max_streams: usize) -> Self {
        Self {
            streams: BTreeMap::new(),
            last_opened: 1,
            exhausted: false,
            max_streams,
        }
    }

    /// The next client stream id (3, 5, 7, ...), or `None` once the ids are used up or the table
    /// is full. The id is not yet in the table: call [`StreamTable::insert`].
    pub fn allocate(&mut self) -> Option<StreamId> {
        if self.exhausted || self.is_full() {
            return None;
        }
        match self.last_opened.checked_add(2) {
            Some(next) => {
                self.last_opened = next;
                Some(StreamId::new(next))
            }
            None => {
                // smux `OpenStream`: the id wrapped around, ErrGoAway from then on.
                self.exhausted = true;
                None
            }
        }
    }

    /// Adds a new open stream. Returns `false` (and changes nothing) when the id is live already
    /// or the table is full.
    pub fn insert(&mut self, id: StreamId) -> bool {
        if self.streams.contains_key(&id) || self.is_full() {
            return false;
        }
        self.streams.insert(id, Stream::new(id));
        true
    }

    /// The live stream with this id.
    pub fn get(&self, id: StreamId) -> Option<&Stream> {
        self.streams.get(&id)
    }

    /// The live stream with this id, mutably.
    pub fn get_mut(&mut self, id: StreamId) -> Option<&mut Stream> {
        self.streams.get_mut(&id)
    }

    /// The state of `id`; [`StreamState::Closed`] when it is not live.
    pub fn state(&self, id: StreamId) -> StreamState {
        self.streams
            .get(&id)
            .map_or(StreamState::Closed, Stream::state)
    }

    /// Forgets a stream; returns it if it was live.
    pub fn remove(&mut self, id: StreamId) -> Option<Stream> {
        self.streams.remove(&id)
    }

    /// Forgets every stream, returning their ids in ascending order.
    pub fn drain_ids(&mut self) -> Vec<StreamId> {
        let ids = self.streams.keys().copied().collect();
        self.streams.clear();
        ids
    }

    /// Live stream ids in ascending order.
    pub fn ids(&self) -> impl Iterator<Item = StreamId> + '_ {
        self.streams.keys().copied()
    }

    /// Number of live streams.
    pub fn len(&self) -> usize {
        self.streams.len()
    }

    /// Whether no stream is live.
    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }

    /// Whether the cap is reached.
    pub fn is_full(&self) -> bool {
        self.streams.len() >= self.max_streams
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_odd_ids_from_three() {
        let mut table = StreamTable::new(16);
        let ids: Vec<u32> = (0..4).map(|_| table.allocate().unwrap().get()).collect();
        assert_eq!(ids, [3, 5, 7, 9]);
    }

    #[test]
    fn allocation_stops_when_ids_wrap() {
        let mut table = StreamTable::new(16);
        table.last_opened = u32::MAX - 2;
        assert_eq!(table.allocate(), Some(StreamId::new(u32::MAX)));
        assert_eq!(table.allocate(), None);
        assert_eq!(table.allocate(), None);
    }

    #[test]
    fn insert_refuses_duplicates_and_overflow() {
        let mut table = StreamTable::new(2);
        assert!(table.insert(StreamId::new(3)));
        assert!(!table.insert(StreamId::new(3)));
        assert!(table.insert(StreamId::new(5)));
        assert!(!table.insert(StreamId::new(7)));
        assert_eq!(table.allocate(), None, "a full table allocates nothing");
        assert_eq!(table.len(), 2);
    }

    #[test]
    fn removed_stream_reads_as_closed() {
        let mut table = StreamTable::new(4);
        table.insert(StreamId::new(3));
        assert_eq!(table.state(StreamId::new(3)), StreamState::Open);
        assert!(table.remove(StreamId::new(3)).is_some());
        assert_eq!(table.state(StreamId::new(3)), StreamState::Closed);
        assert!(table.remove(StreamId::new(3)).is_none());
    }
}
