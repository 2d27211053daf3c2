//! Consumer groups: the coordinator (join, sync, heartbeat, leave,
//! rebalance) and committed offsets on the internal offsets topic.
//!
//! - [`coordinator`]: the sans-IO group state machine (events in, actions
//!   out, time injected);
//! - [`assignor`]: the client-side partition assignors (range, round-robin,
//!   sticky) a group leader runs;
//! - [`consumer_protocol`]: Kafka's ConsumerProtocol subscription and
//!   assignment encodings, the opaque bytes members exchange through the
//!   coordinator;
//! - [`offsets`]: committed offsets, their records in the offsets topic and
//!   the view a coordinator rebuilds from them.
pub mod assignor;
pub mod consumer_protocol;
pub mod coordinator;
pub mod offsets;
