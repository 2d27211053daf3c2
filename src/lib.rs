//! Sluice: a Kafka-model streaming broker, thread-per-core on io_uring.
//!
//! Module map (see DESIGN.md): `record` owns the Kafka v2 RecordBatch format,
//! `storage` owns the on-disk partition log.
pub mod api;
pub mod record;
pub mod storage;
pub mod watermark;
