//! The native client end to end: create a topic, produce 1000 keyed
//! records, consume them back and check every one.
//!
//! ```sh
//! cargo run --release -- serve                                   # a broker, in another terminal
//! cargo run --example client -- --bootstrap 127.0.0.1:9192       # this example
//! ```
//!
//! Flags: `--bootstrap HOST:PORT` (default 127.0.0.1:9192), `--topic`
//! (default `client-example`), `--partitions` (default 4), `--records`
//! (default 1000). Running it again reuses the topic and reads back only
//! the records this run produced.
//!
//! Everything runs on one glommio executor: the client is `!Send` and
//! lives on the thread that made it.
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use glommio::{LocalExecutorBuilder, Placement};
use sluice::api::{ErrorCode, TopicConfig};
use sluice::client::{
    partition_for_key, Client, ClientConfig, ClientError, Consumer, ConsumerConfig, Producer, ProducerConfig, SeekTo,
};

#[derive(Debug, Parser)]
struct Args {
    /// A broker to bootstrap from.
    #[arg(long, default_value = "127.0.0.1:9192")]
    bootstrap: String,
    /// The topic to create (or reuse).
    #[arg(long, default_value = "client-example")]
    topic: String,
    /// Partitions of a newly created topic.
    #[arg(long, default_value_t = 4)]
    partitions: u32,
    /// How many keyed records to produce.
    #[arg(long, default_value_t = 1000)]
    records: u32,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let ex = match LocalExecutorBuilder::new(Placement::Unbound).io_memory(1 << 20).make() {
        Ok(ex) => ex,
        Err(e) => {
            eprintln!("cannot start glommio: {e}");
            return ExitCode::FAILURE;
        }
    };
    match ex.run(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), ClientError> {
    // 1. Connect: fetches metadata; partitions are then reached on their
    //    owning shard's own port.
    let client = Client::connect(&args.bootstrap, ClientConfig::default()).await?;

    // 2. Create the topic (or reuse it).
    match client
        .create_topic(&args.topic, args.partitions, TopicConfig::default())
        .await
    {
        Ok(()) => println!("created topic {} with {} partitions", args.topic, args.partitions),
        Err(e) if e.code() == Some(ErrorCode::TopicAlreadyExists) => println!("reusing topic {}", args.topic),
        Err(e) => return Err(e),
    }
    let topic = client.describe_topic(&args.topic).await?;
    for p in &topic.partitions {
        println!(
            "  partition {} on shard {} (port {})",
            p.partition, p.shard, p.shard_port
        );
    }
    let partitions = topic.partitions.len() as u32;

    // 3. Produce: `send` queues each record at once and returns a future of
    //    its offset; batches leave per partition when full or after linger.
    let run_id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let producer = Producer::new(client.clone(), ProducerConfig::default());
    let started = Instant::now();
    let sends: Vec<_> = (0..args.records)
        .map(|i| {
            let key = Bytes::from(format!("key-{i}"));
            let value = Bytes::from(format!("value-{i}-run-{run_id}"));
            producer.send(&args.topic, Some(key), Some(value), Vec::new())
        })
        .collect();
    producer.flush().await;
    let mut first_offset: BTreeMap<u32, i64> = BTreeMap::new();
    for (i, sent) in sends.into_iter().enumerate() {
        let md = sent.await?;
        assert_eq!(
            md.partition,
            partition_for_key(format!("key-{i}").as_bytes(), partitions)
        );
        let first = first_offset.entry(md.partition).or_insert(md.offset);
        *first = (*first).min(md.offset);
    }
    println!("produced {} records in {:?}", args.records, started.elapsed());

    // 4. Consume them back from the first offset this run wrote per partition.
    let mut consumer = Consumer::new(client, ConsumerConfig::default());
    let assigned: Vec<u32> = first_offset.keys().copied().collect();
    consumer.assign(&args.topic, &assigned);
    for (&p, &offset) in &first_offset {
        consumer.seek(&args.topic, p, SeekTo::Offset(offset)).await?;
    }
    let suffix = format!("-run-{run_id}");
    let mut seen = vec![false; args.records as usize];
    let mut got = 0u32;
    let deadline = Instant::now() + Duration::from_secs(30);
    while got < args.records && Instant::now() < deadline {
        for r in consumer.poll(Duration::from_millis(500)).await? {
            let (Some(key), Some(value)) = (r.key.as_deref(), r.value.as_deref()) else {
                continue;
            };
            let value = String::from_utf8_lossy(value);
            let Some(i) = value
                .strip_suffix(suffix.as_str())
                .and_then(|v| v.strip_prefix("value-"))
                .and_then(|n| n.parse::<usize>().ok())
            else {
                continue; // another run's record
            };
            assert_eq!(key, format!("key-{i}").as_bytes(), "key and value travel together");
            assert_eq!(
                r.partition,
                partition_for_key(key, partitions),
                "keyed records land by murmur2"
            );
            if !std::mem::replace(&mut seen[i], true) {
                got += 1;
            }
        }
    }
    if got < args.records {
        return Err(ClientError::Invalid(format!(
            "read back {got} of {} records",
            args.records
        )));
    }
    println!("consumed all {got} records back in {:?}", started.elapsed());
    Ok(())
}
