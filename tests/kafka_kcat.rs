//! kcat (librdkafka) against the Kafka listener of a real broker: `-L`
//! lists a topic created with the native client, `-P` produces keyed lines
//! with acks=all, acks=1 (lz4) and acks=0, and `-C` reads every one back
//! unchanged. kcat must be installed (CI installs it); without it this
//! test fails and says so.

mod common;

use std::io::{Read, Write};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{create_topic_cli, wait_bounded, Broker};

/// Longest any one kcat run may take.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);
const PARTITIONS: u32 = 3;

fn kcat() -> &'static str {
    let found = Command::new("kcat")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "kcat is not installed: `apt-get install -y kcat` (CI installs it in .ci/run)"
    );
    "kcat"
}

/// Runs `cmd` with `stdin`, killing it after `RUN_TIMEOUT`.
fn run(cmd: &mut Command, stdin: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut input = child.stdin.take().expect("stdin");
    let stdin = stdin.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = out.read_to_end(&mut buf);
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = err.read_to_end(&mut buf);
        buf
    });
    let status = wait_bounded(&mut child, &format!("{cmd:?}"), RUN_TIMEOUT);
    feeder.join().expect("feeder");
    Output {
        status,
        stdout: reader.join().expect("stdout reader"),
        stderr: err_reader.join().expect("stderr reader"),
    }
}

fn ok(cmd: &mut Command, stdin: &[u8]) -> String {
    let out = run(cmd, stdin);
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

fn lines(prefix: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("{prefix}-key-{i}:{prefix} value {i} {}", "x".repeat(i % 13)))
        .collect()
}

#[test]
fn kcat_lists_produces_and_consumes() {
    let kcat = kcat();
    let broker = Broker::start(2, &[]);
    let kafka = broker.kafka_bootstrap();
    create_topic_cli(&broker, "kc", PARTITIONS);

    let listing = ok(Command::new(kcat).args(["-b", &kafka, "-L", "-m", "30"]), b"");
    assert!(listing.contains(&format!("broker 0 at {kafka}")), "{listing}");
    assert!(
        listing.contains(&format!("topic \"kc\" with {PARTITIONS} partitions")),
        "{listing}"
    );
    for p in 0..PARTITIONS {
        assert!(
            listing.contains(&format!("partition {p}, leader 0, replicas: 0, isrs: 0")),
            "{listing}"
        );
    }

    let mut expected = Vec::new();
    for (prefix, extra) in [
        ("all", vec![]),
        ("one", vec!["-X", "acks=1", "-z", "lz4"]),
        ("zero", vec!["-X", "acks=0"]),
    ] {
        let batch = lines(prefix, 150);
        let input = batch.join("\n") + "\n";
        ok(
            Command::new(kcat)
                .args(["-b", &kafka, "-P", "-t", "kc", "-K:", "-m", "30"])
                .args(extra),
            input.as_bytes(),
        );
        expected.extend(batch);
    }
    expected.sort();

    // -c waits for exactly that many records, so acks=0 records are not raced.
    let count = expected.len().to_string();
    let consume = |args: &[&str]| {
        let text = ok(
            Command::new(kcat)
                .args([
                    "-b",
                    &kafka,
                    "-C",
                    "-t",
                    "kc",
                    "-o",
                    "beginning",
                    "-f",
                    "%k:%s\n",
                    "-m",
                    "30",
                ])
                .args(args),
            b"",
        );
        let mut got: Vec<String> = text.lines().map(str::to_string).collect();
        got.sort();
        got
    };
    assert_eq!(consume(&["-c", &count]), expected);
    // And -e stops at the end, having read the same records and no more.
    assert_eq!(consume(&["-e"]), expected);
}
