//! Test support: one fault-injecting [`EventStore`] wrapper.
//!
//! This module exists so that the durability tests (a commit that fails, an
//! acknowledgement lost after the commit, a rival writer slipped in between
//! a decision and its append) all inject their faults through one wrapper
//! with a hook, instead of each test file hand-writing a delegating store
//! that must be kept in step with the trait. It is behind the `testing`
//! feature: not part of the production API.

use crate::{
    AppendOutcome, AppendRequest, EventIter, EventStore, Hash, Head, InlineWriter, JsonEventIter,
    NodeId, Position, RecordedEvent, StoreError, StreamVersion,
};

/// What the hook asks the wrapper to do with one `append_batch` call.
#[derive(Debug)]
pub enum Fault {
    /// Fail with this error without touching the store (nothing committed).
    BeforeCommit(StoreError),
    /// Commit through the inner store, then report this error as if the
    /// acknowledgement was lost on the way back.
    AfterCommit(StoreError),
}

/// The hook: called before every append (`append` and `append_batch`) with
/// the requests; `None` lets the append through untouched. It may also run
/// side effects, e.g. a rival writer's append on another handle.
pub type Hook = Box<dyn Fn(&[AppendRequest]) -> Option<Fault> + Send + Sync>;

/// An [`EventStore`] that delegates everything to `inner`, letting a hook
/// inject a fault into (or run code just before) each append.
pub struct FaultyStore {
    inner: Box<dyn EventStore>,
    hook: Hook,
}

impl FaultyStore {
    /// Wrap `inner`; `hook` decides, per append, whether to inject a fault.
    pub fn new(
        inner: Box<dyn EventStore>,
        hook: impl Fn(&[AppendRequest]) -> Option<Fault> + Send + Sync + 'static,
    ) -> FaultyStore {
        FaultyStore {
            inner,
            hook: Box::new(hook),
        }
    }

    /// The error of a dropped connection, for hooks to inject.
    pub fn connection_reset() -> StoreError {
        StoreError::Io(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "injected fault",
        ))
    }
}

impl EventStore for FaultyStore {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    fn append_batch(
        &self,
        requests: Vec<AppendRequest>,
    ) -> Result<Vec<Result<AppendOutcome, StoreError>>, StoreError> {
        match (self.hook)(&requests) {
            None => self.inner.append_batch(requests),
            Some(Fault::BeforeCommit(e)) => Err(e),
            Some(Fault::AfterCommit(e)) => {
                self.inner.append_batch(requests)?;
                Err(e)
            }
        }
    }
    fn append_batch_inline(
        &self,
        requests: Vec<AppendRequest>,
        inline: &mut dyn InlineWriter,
    ) -> Result<Vec<Result<AppendOutcome, StoreError>>, StoreError> {
        match (self.hook)(&requests) {
            None => self.inner.append_batch_inline(requests, inline),
            Some(Fault::BeforeCommit(e)) => Err(e),
            Some(Fault::AfterCommit(e)) => {
                self.inner.append_batch_inline(requests, inline)?;
                Err(e)
            }
        }
    }
    fn stream_version(&self, stream_id: &str) -> Result<StreamVersion, StoreError> {
        self.inner.stream_version(stream_id)
    }
    fn read_stream(
        &self,
        stream_id: &str,
        after_version: StreamVersion,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner.read_stream(stream_id, after_version)
    }
    fn read_all(&self, after: Position) -> Result<EventIter<'_>, StoreError> {
        self.inner.read_all(after)
    }

    fn read_all_json(&self, after: Position) -> Result<JsonEventIter<'_>, StoreError> {
        self.inner.read_all_json(after)
    }
    fn stream_ids(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.inner.stream_ids(prefix)
    }
    fn head(&self) -> Result<Option<Head>, StoreError> {
        self.inner.head()
    }
    fn find_idempotent(&self, key: &str) -> Result<Option<Vec<RecordedEvent>>, StoreError> {
        self.inner.find_idempotent(key)
    }
    fn import_batch(&self, events: &[RecordedEvent]) -> Result<(), StoreError> {
        self.inner.import_batch(events)
    }
    fn merkle_nodes(&self, ids: &[NodeId]) -> Result<Vec<Option<Hash>>, StoreError> {
        self.inner.merkle_nodes(ids)
    }
}
