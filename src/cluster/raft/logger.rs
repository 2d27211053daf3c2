//! raft-rs logs through `slog`; the broker logs through `tracing`. This
//! drain forwards one to the other (target `sluice::raft`), formatting a
//! record only when `tracing` would keep it.

use std::fmt::{self, Write as _};

use slog::{Drain, Key, Level, Never, OwnedKVList, Record, KV};

/// A slog drain that re-emits every record as a `tracing` event.
pub(crate) struct TracingDrain;

struct KvLine(String);

impl slog::Serializer for KvLine {
    fn emit_arguments(&mut self, key: Key, val: &fmt::Arguments<'_>) -> slog::Result {
        // Writing to a String cannot fail.
        let _ = write!(self.0, " {key}={val}");
        Ok(())
    }
}

fn line(record: &Record<'_>, values: &OwnedKVList) -> String {
    let mut kv = KvLine(format!("{}", record.msg()));
    // Serialization into a String cannot fail; a failure would only lose context.
    let _ = record.kv().serialize(record, &mut kv);
    let _ = values.serialize(record, &mut kv);
    kv.0
}

impl Drain for TracingDrain {
    type Ok = ();
    type Err = Never;

    fn log(&self, record: &Record<'_>, values: &OwnedKVList) -> Result<(), Never> {
        match record.level() {
            Level::Critical | Level::Error => {
                if tracing::enabled!(target: "sluice::raft", tracing::Level::ERROR) {
                    tracing::error!(target: "sluice::raft", "{}", line(record, values));
                }
            }
            Level::Warning => {
                if tracing::enabled!(target: "sluice::raft", tracing::Level::WARN) {
                    tracing::warn!(target: "sluice::raft", "{}", line(record, values));
                }
            }
            Level::Info => {
                if tracing::enabled!(target: "sluice::raft", tracing::Level::INFO) {
                    tracing::info!(target: "sluice::raft", "{}", line(record, values));
                }
            }
            Level::Debug => {
                if tracing::enabled!(target: "sluice::raft", tracing::Level::DEBUG) {
                    tracing::debug!(target: "sluice::raft", "{}", line(record, values));
                }
            }
            Level::Trace => {
                if tracing::enabled!(target: "sluice::raft", tracing::Level::TRACE) {
                    tracing::trace!(target: "sluice::raft", "{}", line(record, values));
                }
            }
        }
        Ok(())
    }
}

/// The logger handed to raft-rs for node `node_id`.
pub(crate) fn raft_logger(node_id: u64) -> slog::Logger {
    slog::Logger::root(TracingDrain, slog::o!("raft_id" => node_id))
}
