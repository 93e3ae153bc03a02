//! Process-level tests of the `chansim` binary: two pty links, bytes or KISS frames through.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use radiosync::sim::{ChannelConfig, Mode};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(15);

struct Chansim {
    child: Child,
    _dir: tempfile::TempDir,
    a: PathBuf,
    b: PathBuf,
    stats: PathBuf,
}

impl Chansim {
    fn start(extra: &[&str]) -> Chansim {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("ttyA");
        let b = dir.path().join("ttyB");
        let stats = dir.path().join("stats.json");
        let child = Command::new(env!("CARGO_BIN_EXE_chansim"))
            .arg("--link-a")
            .arg(&a)
            .arg("--link-b")
            .arg(&b)
            .arg("--stats")
            .arg(&stats)
            .args(["--stats-interval-ms", "50", "--quiet"])
            .args(extra)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn chansim");
        let deadline = Instant::now() + WAIT;
        while !(a.exists() && b.exists() && stats.exists()) {
            assert!(
                Instant::now() < deadline,
                "chansim did not create its links"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        Chansim {
            child,
            _dir: dir,
            a,
            b,
            stats,
        }
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// SIGTERM, wait for exit, return the final stats.
    fn stop(mut self) -> Value {
        self.signal("TERM");
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                assert!(st.success(), "chansim exited with {st}");
                break;
            }
            assert!(Instant::now() < deadline, "chansim did not exit");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!self.a.exists() && !self.b.exists(), "links left behind");
        read_stats(&self.stats)
    }

    /// Waits until the periodically written stats satisfy `f`.
    fn wait_stats(&self, what: &str, f: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let v = read_stats(&self.stats);
            if f(&v) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {v}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Chansim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_stats(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn port(path: &Path) -> File {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(nix::fcntl::OFlag::O_NOCTTY.bits() | nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(path)
        .unwrap()
}

fn write_all(f: &mut File, mut data: &[u8]) {
    let deadline = Instant::now() + WAIT;
    while !data.is_empty() {
        match f.write(data) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(Instant::now() < deadline, "write stuck");
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) => panic!("write: {e}"),
        }
    }
}

/// Reads until `done` says so or `limit` passes.
fn read_until(f: &mut File, limit: Duration, done: impl Fn(&[u8]) -> bool) -> Vec<u8> {
    let deadline = Instant::now() + limit;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while !done(&out) && Instant::now() < deadline {
        match f.read(&mut buf) {
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(2))
            }
            Err(e) => panic!("read: {e}"),
        }
    }
    out
}

fn read_n(f: &mut File, n: usize) -> Vec<u8> {
    let got = read_until(f, WAIT, |b| b.len() >= n);
    assert_eq!(got.len(), n, "got {} of {n} bytes", got.len());
    got
}

fn pattern(n: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

const FAST: &[&str] = &["--bitrate", "1000000", "--txdelay-ms", "1", "--gap-ms", "1"];

#[test]
fn transparent_clean_both_ways() {
    let sim = Chansim::start(FAST);
    let (mut a, mut b) = (port(&sim.a), port(&sim.b));
    let ab = pattern(3000, 1);
    write_all(&mut a, &ab);
    assert_eq!(read_n(&mut b, ab.len()), ab);
    let ba = pattern(2000, 2);
    write_all(&mut b, &ba);
    assert_eq!(read_n(&mut a, ba.len()), ba);
    let st = sim.stop();
    assert_eq!(st["a_to_b"]["bytes_delivered"], 3000);
    assert_eq!(st["b_to_a"]["bytes_delivered"], 2000);
    assert_eq!(st["totals"]["bits_flipped"], 0);
    assert!(st["a_to_b"]["transmissions"].as_u64().unwrap() >= 1);
    assert!(st["totals"]["airtime_s"].as_f64().unwrap() > 0.0);
}

fn noisy_run(seed: &str) -> (Vec<u8>, Value) {
    let mut args = FAST.to_vec();
    args.extend(["--ber", "1e-3", "--seed", seed]);
    let sim = Chansim::start(&args);
    let (mut a, mut b) = (port(&sim.a), port(&sim.b));
    write_all(&mut a, &[0u8; 2000]);
    let got = read_n(&mut b, 2000);
    (got, sim.stop())
}

#[test]
fn transparent_bit_errors_are_deterministic_for_a_seed() {
    let (first, st) = noisy_run("9");
    let (second, _) = noisy_run("9");
    assert_eq!(first, second);
    let ones: u32 = first.iter().map(|b| b.count_ones()).sum();
    assert!(ones > 0);
    assert_eq!(st["a_to_b"]["bits_flipped"], ones);
    let (other, _) = noisy_run("10");
    assert_ne!(first, other);
}

fn kiss_encode(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0xC0, 0x00];
    for &b in data {
        match b {
            0xC0 => out.extend([0xDB, 0xDC]),
            0xDB => out.extend([0xDB, 0xDD]),
            _ => out.push(b),
        }
    }
    out.push(0xC0);
    out
}

fn kiss_decode(stream: &[u8]) -> Vec<Vec<u8>> {
    stream
        .split(|&b| b == 0xC0)
        .filter(|f| !f.is_empty())
        .map(|f| {
            assert_eq!(f[0], 0x00, "data frame on port 0");
            let mut out = Vec::new();
            let mut esc = false;
            for &b in &f[1..] {
                match (esc, b) {
                    (false, 0xDB) => esc = true,
                    (true, 0xDC) => (out.push(0xC0), esc = false).1,
                    (true, 0xDD) => (out.push(0xDB), esc = false).1,
                    (_, b) => out.push(b),
                }
            }
            out
        })
        .collect()
}

const KISS_FAST: &[&str] = &[
    "--mode",
    "kiss",
    "--bitrate",
    "1000000",
    "--txdelay-ms",
    "1",
    "--persist",
    "255",
    "--slottime-ms",
    "1",
];

fn frames(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let mut f = pattern(20 + i * 7, i as u32);
            f[3] = 0xC0; // escapes on the way in and out
            f[5] = 0xDB;
            f
        })
        .collect()
}

#[test]
fn kiss_mode_delivers_frames_without_loss() {
    let sim = Chansim::start(KISS_FAST);
    let (mut a, mut b) = (port(&sim.a), port(&sim.b));
    let sent = frames(20);
    let stream: Vec<u8> = sent.iter().flat_map(|f| kiss_encode(f)).collect();
    write_all(&mut a, &stream);
    let got = read_until(&mut b, WAIT, |s| kiss_decode(s).len() >= sent.len());
    assert_eq!(kiss_decode(&got), sent);
    // And back.
    write_all(&mut b, &kiss_encode(b"an answer of some length"));
    let back = read_until(&mut a, WAIT, |s| !kiss_decode(s).is_empty());
    assert_eq!(
        kiss_decode(&back),
        vec![b"an answer of some length".to_vec()]
    );
    let st = sim.stop();
    assert_eq!(st["a_to_b"]["frames_delivered"], 20);
    assert_eq!(st["b_to_a"]["frames_delivered"], 1);
    assert_eq!(st["totals"]["frames_dropped"], 0);
}

#[test]
fn kiss_mode_with_total_frame_loss_delivers_nothing() {
    let mut args = KISS_FAST.to_vec();
    args.extend(["--frame-loss", "1.0"]);
    let sim = Chansim::start(&args);
    let (mut a, mut b) = (port(&sim.a), port(&sim.b));
    let sent = frames(10);
    let stream: Vec<u8> = sent.iter().flat_map(|f| kiss_encode(f)).collect();
    write_all(&mut a, &stream);
    sim.wait_stats("all frames on air", |v| {
        v["a_to_b"]["frames_lost_random"] == 10 && v["a_to_b"]["transmissions"] != 0
    });
    assert!(read_until(&mut b, Duration::from_millis(200), |s| !s.is_empty()).is_empty());
    let st = sim.stop();
    assert_eq!(st["a_to_b"]["frames_sent"], 10);
    assert_eq!(st["a_to_b"]["frames_delivered"], 0);
    assert_eq!(st["totals"]["frames_dropped"], 10);
}

#[test]
fn kiss_airtime_in_stats_follows_the_model() {
    // Timing is the point here: 1200 bit/s, TXDELAY 300 ms, one 100-byte frame.
    let sim = Chansim::start(&["--mode", "kiss", "--persist", "255"]);
    let (mut a, mut b) = (port(&sim.a), port(&sim.b));
    let frame = pattern(100, 7);
    write_all(&mut a, &kiss_encode(&frame));
    let got = read_until(&mut b, WAIT, |s| !kiss_decode(s).is_empty());
    assert_eq!(kiss_decode(&got), vec![frame.clone()]);
    let st = sim.stop();
    let cfg = ChannelConfig {
        mode: Mode::Kiss,
        ..Default::default()
    };
    let expected = cfg.kiss_airtime([frame.as_slice()]).as_secs_f64();
    let airtime = st["a_to_b"]["airtime_s"].as_f64().unwrap();
    assert!((airtime - expected).abs() < 1e-6, "{airtime} vs {expected}");
    assert!(expected > 0.3 + 100.0 * 8.0 / 1200.0);
}

#[test]
fn scheduled_outage_cuts_then_restores_the_link() {
    let mut args = FAST.to_vec();
    args.extend(["--outage", "0:2"]);
    let sim = Chansim::start(&args);
    let (mut a, mut b) = (port(&sim.a), port(&sim.b));
    write_all(&mut a, &[1u8; 100]);
    sim.wait_stats("the bytes to be lost", |v| {
        v["a_to_b"]["bytes_lost_outage"] == 100
    });
    sim.wait_stats("the outage to end", |v| v["link_up"] == true);
    write_all(&mut a, &[2u8; 100]);
    assert_eq!(read_n(&mut b, 100), vec![2u8; 100]);
    let st = sim.stop();
    assert_eq!(st["a_to_b"]["bytes_delivered"], 100);
}

#[test]
fn sigusr1_toggles_the_link() {
    let sim = Chansim::start(FAST);
    let (mut a, mut b) = (port(&sim.a), port(&sim.b));
    sim.signal("USR1");
    sim.wait_stats("link down", |v| v["link_up"] == false);
    write_all(&mut a, &[3u8; 50]);
    sim.wait_stats("the bytes to be lost", |v| {
        v["a_to_b"]["bytes_lost_outage"] == 50
    });
    sim.signal("USR1");
    sim.wait_stats("link up", |v| v["link_up"] == true);
    write_all(&mut a, &[4u8; 50]);
    assert_eq!(read_n(&mut b, 50), vec![4u8; 50]);
    sim.stop();
}

#[test]
fn bad_options_are_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_chansim"))
        .args(["--link-a", "/tmp/x-a", "--link-b", "/tmp/x-b", "--ber", "2"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ber"), "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_chansim"))
        .args(["--link-a", "a", "--link-b", "b", "--outage", "5"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("START_S:DURATION_S"));
}

#[tokio::test]
async fn serial_transport_opens_the_simulator_links_and_reopens_them() {
    use radiosync::transport::{open, LinkSpec, SerialSettings};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let sim = Chansim::start(FAST);
    let spec = LinkSpec::Serial {
        path: sim.a.clone(),
        settings: SerialSettings::default(),
    };
    let mut b = port(&sim.b);
    for round in 0..2u8 {
        // A station that exits (or is killed) and starts again finds its port usable.
        let mut link = open(&spec).await.unwrap();
        let msg = [round; 64];
        link.write_all(&msg).await.unwrap();
        assert_eq!(read_n(&mut b, 64), msg);
        write_all(&mut b, b"reply");
        let mut got = [0u8; 5];
        tokio::time::timeout(WAIT, link.read_exact(&mut got))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&got, b"reply");
    }
    sim.stop();
}
