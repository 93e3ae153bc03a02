//! Modem profiles: the numbers of one radio modem type, read from a TOML file
//! in `firmware-profiles/` (embedded in the binary) or from a path.
//!
//! Every key is checked: unknown keys and impossible values are refused with
//! a message naming the key and the allowed range, because a wrong TXDELAY or
//! MTU does not fail loudly on air, it just wastes airtime or loses frames.

use std::fmt;
use std::path::Path;

use serde::Deserialize;

/// Profiles shipped with the binary: (name, TOML text).
const EMBEDDED: &[(&str, &str)] = &[
    (
        "direwolf-1200",
        include_str!("../firmware-profiles/direwolf-1200.toml"),
    ),
    (
        "direwolf-300-hf",
        include_str!("../firmware-profiles/direwolf-300-hf.toml"),
    ),
    (
        "direwolf-9600",
        include_str!("../firmware-profiles/direwolf-9600.toml"),
    ),
    (
        "mobilinkd-tnc4",
        include_str!("../firmware-profiles/mobilinkd-tnc4.toml"),
    ),
    ("rfd900x", include_str!("../firmware-profiles/rfd900x.toml")),
    (
        "sim-kiss-1200",
        include_str!("../firmware-profiles/sim-kiss-1200.toml"),
    ),
    (
        "sim-transparent-9600",
        include_str!("../firmware-profiles/sim-transparent-9600.toml"),
    ),
    ("tcp", include_str!("../firmware-profiles/tcp.toml")),
];

/// Dire Wolf 1.6 accepts KISS data frames of this many bytes (AX.25 frame without FCS).
pub const KISS_FRAME_MIN: usize = 15;
/// See [`KISS_FRAME_MIN`].
pub const KISS_FRAME_MAX: usize = 2123;
/// AX.25 UI header inside each KISS frame on amateur profiles:
/// destination (7) + source (7) + control (1) + PID (1).
pub const AX25_UI_HEADER: usize = 16;
/// Smallest MTU that still leaves room for a frame header and some payload.
pub const MTU_MIN: usize = 64;
/// Largest radiosync frame on a transparent link: one frame must fit the
/// frame layer's 16-bit length and a bit error costs the whole frame, so
/// frames past a few kilobytes only lose more.
pub const TRANSPARENT_MTU_MAX: usize = 4096;
/// The ARQ acknowledges one transmission with a 64-frame bitmap.
pub const MAX_FRAMES_PER_TRANSMISSION: u32 = 64;

/// Link framing towards the modem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Framing {
    /// KISS frames to a TNC; the TNC drops frames whose FCS fails.
    Kiss,
    /// A raw byte stream to a transparent radio that flips bits.
    Transparent,
}

/// Whether the radio can hear while it transmits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Duplex {
    /// It cannot: stations take turns.
    Half,
    /// It can.
    Full,
}

/// Reed-Solomon over GF(2^8): `parity` check bytes per `block` data bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fec {
    /// Parity bytes per block: even, 2..=64.
    pub parity: u32,
    /// Data bytes per block at most; block + parity <= 255.
    pub block: u32,
    /// Interleave the blocks of a frame byte by byte (against bursts); default off.
    #[serde(default)]
    pub interleave: bool,
}

/// UART parity bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Parity {
    /// No parity bit.
    None,
    /// Even parity.
    Even,
    /// Odd parity.
    Odd,
}

/// UART flow control.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlowControl {
    /// None.
    None,
    /// XON/XOFF; refused by the profile check because it eats bytes of binary frames.
    Software,
    /// RTS/CTS.
    Hardware,
}

/// Serial port settings for serial-attached modems.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Serial {
    /// Bit rate of the serial port (not the air), 50..=4000000.
    pub baud: u32,
    /// Data bits per character; must be 8.
    pub data_bits: u32,
    /// Parity bit.
    pub parity: Parity,
    /// Stop bits, 1 or 2.
    pub stop_bits: u32,
    /// None or hardware.
    pub flow_control: FlowControl,
}

/// Retransmission limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retry {
    /// Consecutive transmissions that get no answer before the link is lost.
    pub max_tries: u32,
    /// Upper bound of the exponential backoff added to the reply timeout.
    pub backoff_cap_ms: u32,
}

/// One modem type. Field meanings are in `docs/arq.md` and the shipped TOMLs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Profile name: a-z, 0-9 and '-'.
    pub name: String,
    /// One line on the modem and the link it makes.
    pub description: String,
    /// Where the numbers come from.
    pub source: String,
    /// KISS or transparent.
    pub framing: Framing,
    /// Needs a callsign; payloads are wrapped in AX.25 UI frames on KISS.
    pub amateur: bool,
    /// Air bit rate, bit/s.
    pub bitrate: u32,
    /// Time the modem keys up before the first frame (TXDELAY), 0..=2550 ms.
    pub txdelay_ms: u32,
    /// RX-to-TX switch time of the other side, including squelch and PTT tail.
    pub turnaround_ms: u32,
    /// p-persistence, 0..=255 (255 = transmit at once on a clear channel).
    pub persist: u32,
    /// p-persistence slot time, 0..=2550 ms.
    pub slottime_ms: u32,
    /// Whether the radio hears while it transmits. Checked but not used: the ARQ always
    /// takes turns.
    pub duplex: Duplex,
    /// Largest radiosync frame on air, bytes (after FEC, before link framing).
    pub mtu: usize,
    /// Airtime budget of one transmission, in full-size frames, 1..=64.
    pub max_frames_per_transmission: u32,
    /// Reed-Solomon FEC on every frame; `None` without.
    #[serde(default)]
    pub fec: Option<Fec>,
    /// Serial port settings; `None` when the modem is reached over KISS TCP only.
    #[serde(default)]
    pub serial: Option<Serial>,
    /// TCP port of a KISS-over-TCP modem (KISS framing only); `None` if serial only.
    #[serde(default)]
    pub kiss_tcp_port: Option<u16>,
    /// Not a modem: the session runs on a TCP connection to the peer itself
    /// (`sync --tcp`, `run --tcp-listen`); no serial port, no FEC.
    #[serde(default)]
    pub ip: bool,
    /// Slack the ARQ adds to every wait for an answer, ms (default 100: serial
    /// ports and TNC decoding). IP links set it to cover a round trip.
    #[serde(default = "default_margin_ms")]
    pub margin_ms: u32,
    /// Retransmission limits.
    pub retry: Retry,
}

fn default_margin_ms() -> u32 {
    100
}

/// A profile that could not be found, read or accepted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProfileError {
    /// Neither a file nor an embedded profile of this name.
    #[error("no modem profile file or name `{given}`; known profiles: {}", known.join(", "))]
    NotFound {
        /// The name or path given.
        given: String,
        /// Names of the embedded profiles.
        known: Vec<String>,
    },
    /// The profile file could not be read.
    #[error("cannot read modem profile {path}: {source}")]
    Read {
        /// Path of the file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The text is not valid TOML for a profile (syntax, unknown or missing key).
    #[error("modem profile {origin}: {message}")]
    Parse {
        /// The file or profile name.
        origin: String,
        /// The TOML parser's message.
        message: String,
    },
    /// A key has a value outside its allowed range.
    #[error("modem profile {origin}: key `{key}` = {value} is not allowed: {allowed}")]
    Invalid {
        /// The file or profile name.
        origin: String,
        /// The key, e.g. `fec.parity`.
        key: &'static str,
        /// The value given.
        value: String,
        /// What is allowed.
        allowed: String,
    },
}

impl Profile {
    /// The Reed-Solomon parameters as the frame layer takes them, checked.
    pub fn fec_params(&self) -> Result<Option<crate::frame::FecParams>, crate::frame::FecError> {
        let Some(f) = self.fec else { return Ok(None) };
        let params = crate::frame::FecParams {
            parity_bytes_per_block: f.parity as usize,
            block_data_len: f.block as usize,
            interleave: f.interleave,
        };
        params.validate()?;
        Ok(Some(params))
    }

    /// Load a profile from a path if one exists, else by name among the embedded profiles.
    pub fn load(name_or_path: &str) -> Result<Profile, ProfileError> {
        let path = Path::new(name_or_path);
        if path.is_file() {
            let text = std::fs::read_to_string(path).map_err(|source| ProfileError::Read {
                path: path.display().to_string(),
                source,
            })?;
            return Profile::parse(&text, &path.display().to_string());
        }
        match EMBEDDED.iter().find(|(name, _)| *name == name_or_path) {
            Some((name, text)) => Profile::parse(text, &format!("`{name}` (built in)")),
            None => Err(ProfileError::NotFound {
                given: name_or_path.to_string(),
                known: Profile::known_names().map(str::to_string).collect(),
            }),
        }
    }

    /// `load`, also returning the TOML text in force (for capture headers).
    pub fn load_with_text(name_or_path: &str) -> Result<(Profile, String), ProfileError> {
        let profile = Profile::load(name_or_path)?;
        let path = Path::new(name_or_path);
        let text = if path.is_file() {
            std::fs::read_to_string(path).unwrap_or_default()
        } else {
            EMBEDDED
                .iter()
                .find(|(name, _)| *name == name_or_path)
                .map(|(_, t)| t.to_string())
                .unwrap_or_default()
        };
        Ok((profile, text))
    }

    /// Names of the profiles embedded in the binary.
    pub fn known_names() -> impl Iterator<Item = &'static str> {
        EMBEDDED.iter().map(|(name, _)| *name)
    }

    /// Parse and validate TOML text; `origin` names the file or profile in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Profile, ProfileError> {
        let profile: Profile = toml::from_str(text).map_err(|e| ProfileError::Parse {
            origin: origin.to_string(),
            message: e.to_string(),
        })?;
        profile.validate(origin)?;
        Ok(profile)
    }

    /// Whether frames on this link name their receiver and sender
    /// (`frame::Route`): every radio link without AX.25 addresses, since any
    /// number of stations may share the channel. Amateur KISS frames carry
    /// callsigns instead; a TCP connection has one station at each end.
    pub fn routed(&self) -> bool {
        !(self.ip || (self.framing == Framing::Kiss && self.amateur))
    }

    /// Largest radiosync frame the link framing can carry.
    pub fn mtu_max(&self) -> usize {
        match self.framing {
            Framing::Kiss if self.amateur => KISS_FRAME_MAX - AX25_UI_HEADER,
            Framing::Kiss => KISS_FRAME_MAX,
            Framing::Transparent => TRANSPARENT_MTU_MAX,
        }
    }

    fn validate(&self, origin: &str) -> Result<(), ProfileError> {
        let bad = |key: &'static str, value: &dyn fmt::Display, allowed: String| {
            Err(ProfileError::Invalid {
                origin: origin.to_string(),
                key,
                value: value.to_string(),
                allowed,
            })
        };
        if self.name.is_empty()
            || !self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return bad(
                "name",
                &format!("{:?}", self.name),
                "a non-empty name of a-z, 0-9 and '-'".into(),
            );
        }
        if self.source.trim().is_empty() {
            return bad(
                "source",
                &"\"\"",
                "a note saying where the numbers come from".into(),
            );
        }
        if !(50..=10_000_000).contains(&self.bitrate) {
            return bad("bitrate", &self.bitrate, "50..=10000000 bit/s".into());
        }
        // KISS TXDELAY and SLOTTIME are one byte in 10 ms units.
        if self.txdelay_ms > 2550 {
            return bad("txdelay_ms", &self.txdelay_ms, "0..=2550 ms".into());
        }
        if self.slottime_ms > 2550 {
            return bad("slottime_ms", &self.slottime_ms, "0..=2550 ms".into());
        }
        if self.turnaround_ms > 10_000 {
            return bad("turnaround_ms", &self.turnaround_ms, "0..=10000 ms".into());
        }
        if !(10..=10_000).contains(&self.margin_ms) {
            return bad("margin_ms", &self.margin_ms, "10..=10000 ms".into());
        }
        if self.persist > 255 {
            return bad("persist", &self.persist, "0..=255".into());
        }
        let mtu_max = self.mtu_max();
        if !(MTU_MIN..=mtu_max).contains(&self.mtu) {
            let why = match self.framing {
                Framing::Kiss if self.amateur => format!(
                    "Dire Wolf takes KISS frames of {KISS_FRAME_MIN}..={KISS_FRAME_MAX} bytes, \
                     {AX25_UI_HEADER} of them the AX.25 UI header"
                ),
                Framing::Kiss => {
                    format!(
                        "Dire Wolf takes KISS frames of {KISS_FRAME_MIN}..={KISS_FRAME_MAX} bytes"
                    )
                }
                Framing::Transparent => "longest transparent frame".into(),
            };
            return bad(
                "mtu",
                &self.mtu,
                format!("{MTU_MIN}..={mtu_max} bytes for this framing ({why})"),
            );
        }
        if !(1..=MAX_FRAMES_PER_TRANSMISSION).contains(&self.max_frames_per_transmission) {
            return bad(
                "max_frames_per_transmission",
                &self.max_frames_per_transmission,
                format!("1..={MAX_FRAMES_PER_TRANSMISSION} (the ARQ acknowledgement bitmap)"),
            );
        }
        if let Some(fec) = &self.fec {
            if fec.parity == 0 || fec.parity % 2 != 0 || fec.parity > 64 {
                return bad(
                    "fec.parity",
                    &fec.parity,
                    "an even number 2..=64 (2 parity bytes correct one byte; src/frame's limit)"
                        .into(),
                );
            }
            if fec.block == 0 || fec.block + fec.parity > 255 {
                return bad(
                    "fec.block",
                    &fec.block,
                    format!(
                        "1..={} (block + parity <= 255 over GF(2^8))",
                        255 - fec.parity
                    ),
                );
            }
            // One RS block plus a frame header must fit in the MTU.
            if (fec.block + fec.parity) as usize > self.mtu {
                return bad(
                    "fec.block",
                    &fec.block,
                    format!(
                        "block + parity <= mtu ({}); lower the block or raise the mtu",
                        self.mtu
                    ),
                );
            }
        }
        if let Some(serial) = &self.serial {
            if !(50..=4_000_000).contains(&serial.baud) {
                return bad("serial.baud", &serial.baud, "50..=4000000".into());
            }
            if !(5..=8).contains(&serial.data_bits) {
                return bad("serial.data_bits", &serial.data_bits, "5..=8".into());
            }
            if !(1..=2).contains(&serial.stop_bits) {
                return bad("serial.stop_bits", &serial.stop_bits, "1 or 2".into());
            }
            // KISS and radiosync frames are binary: every byte needs 8 bits.
            if serial.data_bits != 8 {
                return bad(
                    "serial.data_bits",
                    &serial.data_bits,
                    "8 (frames are binary)".into(),
                );
            }
            // XON/XOFF would eat 0x11/0x13 bytes from binary frames.
            if serial.flow_control == FlowControl::Software {
                return bad(
                    "serial.flow_control",
                    &"\"software\"",
                    "\"none\" or \"hardware\" (XON/XOFF corrupts binary frames)".into(),
                );
            }
        }
        if let Some(port) = self.kiss_tcp_port {
            if self.framing != Framing::Kiss {
                return bad(
                    "kiss_tcp_port",
                    &port,
                    "only with framing = \"kiss\"".into(),
                );
            }
            if port == 0 {
                return bad("kiss_tcp_port", &port, "1..=65535".into());
            }
        }
        if self.ip
            && (self.serial.is_some() || self.fec.is_some() || self.framing != Framing::Transparent)
        {
            return bad(
                "ip",
                &self.ip,
                "only with framing = \"transparent\", no [serial] and no fec (TCP is the link)"
                    .into(),
            );
        }
        if !self.ip && self.serial.is_none() && self.kiss_tcp_port.is_none() {
            return bad(
                "serial",
                &"(absent)",
                "a [serial] table or kiss_tcp_port: the modem must be reachable".into(),
            );
        }
        if !(1..=100).contains(&self.retry.max_tries) {
            return bad("retry.max_tries", &self.retry.max_tries, "1..=100".into());
        }
        if !(100..=600_000).contains(&self.retry.backoff_cap_ms) {
            return bad(
                "retry.backoff_cap_ms",
                &self.retry.backoff_cap_ms,
                "100..=600000 ms".into(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_profile_loads_and_is_named_after_its_file() {
        let names: Vec<_> = Profile::known_names().collect();
        for required in [
            "direwolf-1200",
            "direwolf-9600",
            "mobilinkd-tnc4",
            "rfd900x",
            "sim-transparent-9600",
            "sim-kiss-1200",
        ] {
            assert!(names.contains(&required), "{required} missing");
        }
        for name in names {
            let p = Profile::load(name).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(p.name, name);
        }
        // Every file in firmware-profiles/ is embedded.
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/firmware-profiles");
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let stem = path.file_stem().unwrap().to_str().unwrap().to_string();
            assert!(
                Profile::known_names().any(|n| n == stem),
                "{stem} not embedded"
            );
            Profile::load(path.to_str().unwrap()).unwrap();
        }
    }

    #[test]
    fn simulator_profiles_have_the_agreed_numbers() {
        let t = Profile::load("sim-transparent-9600").unwrap();
        assert_eq!(
            (t.framing, t.bitrate, t.txdelay_ms),
            (Framing::Transparent, 9600, 100)
        );
        let k = Profile::load("sim-kiss-1200").unwrap();
        assert_eq!(
            (k.framing, k.bitrate, k.txdelay_ms),
            (Framing::Kiss, 1200, 300)
        );
        let dw = Profile::load("direwolf-1200").unwrap();
        assert_eq!(dw.kiss_tcp_port, Some(8001));
        assert!(dw.amateur);
    }

    #[test]
    fn unknown_name_lists_the_known_ones() {
        let e = Profile::load("no-such-modem").unwrap_err().to_string();
        assert!(
            e.contains("no-such-modem") && e.contains("direwolf-1200"),
            "{e}"
        );
    }

    fn base() -> String {
        EMBEDDED
            .iter()
            .find(|(n, _)| *n == "direwolf-1200")
            .unwrap()
            .1
            .to_string()
    }

    /// Replace the line starting with `key =` (first occurrence) by `line`.
    fn with(key: &str, line: &str) -> String {
        let text = base();
        let prefix = format!("{key} =");
        let mut done = false;
        let out: Vec<String> = text
            .lines()
            .map(|l| {
                if !done && l.trim_start().starts_with(&prefix) {
                    done = true;
                    line.to_string()
                } else {
                    l.to_string()
                }
            })
            .collect();
        assert!(done, "no key {key} in base profile");
        out.join("\n")
    }

    fn refused(text: &str, key: &str) {
        let e = Profile::parse(text, "test").unwrap_err().to_string();
        assert!(e.contains(key), "error does not name `{key}`: {e}");
    }

    #[test]
    fn bad_keys_and_values_are_refused_with_the_key_named() {
        refused(&format!("{}\ncolour = \"red\"\n", base()), "colour");
        refused(&with("bitrate", "bitrate = 0"), "bitrate");
        refused(&with("bitrate", "bitrate = -5"), "bitrate");
        refused(&with("bitrate", "bitrate = \"fast\""), "bitrate");
        refused(&with("mtu", "mtu = 2200"), "mtu");
        refused(&with("mtu", "mtu = 10"), "mtu");
        refused(&with("persist", "persist = 256"), "persist");
        refused(&with("txdelay_ms", "txdelay_ms = 3000"), "txdelay_ms");
        refused(&with("slottime_ms", "slottime_ms = 9999"), "slottime_ms");
        refused(
            &with("turnaround_ms", "turnaround_ms = 20000"),
            "turnaround_ms",
        );
        refused(&with("framing", "framing = \"hdlc\""), "framing");
        refused(&with("duplex", "duplex = \"simplex\""), "duplex");
        refused(
            &with(
                "max_frames_per_transmission",
                "max_frames_per_transmission = 0",
            ),
            "max_frames_per_transmission",
        );
        refused(
            &with(
                "max_frames_per_transmission",
                "max_frames_per_transmission = 65",
            ),
            "max_frames_per_transmission",
        );
        refused(&with("name", "name = \"Bad Name\""), "name");
        let text = base();
        let start = text.find("source = ").unwrap();
        let end = start + 12 + text[start + 12..].find("\"\"\"").unwrap() + 3;
        let blank = format!("{}source = \" \"{}", &text[..start], &text[end..]);
        refused(&blank, "source");
        refused(&with("max_tries", "max_tries = 0"), "retry.max_tries");
        refused(
            &with("backoff_cap_ms", "backoff_cap_ms = 10"),
            "retry.backoff_cap_ms",
        );
        refused(&with("baud", "baud = 0"), "serial.baud");
        refused(&with("data_bits", "data_bits = 7"), "serial.data_bits");
        refused(&with("stop_bits", "stop_bits = 3"), "serial.stop_bits");
        refused(&with("parity", "parity = \"mark\""), "parity");
        refused(
            &with("flow_control", "flow_control = \"software\""),
            "serial.flow_control",
        );
        refused(&with("kiss_tcp_port", "kiss_tcp_port = 0"), "kiss_tcp_port");
        refused(
            &with("kiss_tcp_port", "kiss_tcp_port = 70000"),
            "kiss_tcp_port",
        );
        refused(
            &base().replace("[retry]", "[retry]\nmax_retries = 3"),
            "max_retries",
        );
        // A missing key is named too.
        refused(&with("bitrate", ""), "bitrate");
    }

    #[test]
    fn fec_and_framing_limits() {
        let t = EMBEDDED
            .iter()
            .find(|(n, _)| *n == "sim-transparent-9600")
            .unwrap()
            .1;
        let fec = |s: &str| {
            let mut out = String::new();
            for l in t.lines() {
                if l.starts_with("fec =") {
                    out.push_str(s);
                } else {
                    out.push_str(l);
                }
                out.push('\n');
            }
            out
        };
        Profile::parse(&fec("fec = { parity = 16, block = 239 }"), "t").unwrap();
        refused(&fec("fec = { parity = 15, block = 200 }"), "fec.parity");
        refused(&fec("fec = { parity = 0, block = 200 }"), "fec.parity");
        refused(&fec("fec = { parity = 66, block = 100 }"), "fec.parity");
        refused(&fec("fec = { parity = 32, block = 224 }"), "fec.block");
        refused(&fec("fec = { parity = 16, block = 0 }"), "fec.block");
        refused(
            &fec("fec = { parity = 16, block = 200, depth = 4 }"),
            "depth",
        );
        // The transparent limit differs from the KISS one.
        let big = t
            .lines()
            .map(|l| {
                if l.starts_with("mtu =") {
                    "mtu = 4097"
                } else {
                    l
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        refused(&big, "mtu");
        let tcp = format!("kiss_tcp_port = 8001\n{t}");
        refused(&tcp, "kiss_tcp_port");
        // Amateur KISS leaves room for the AX.25 header.
        refused(&with("mtu", "mtu = 2110"), "mtu");
        let plain = with("amateur", "amateur = false").replace("mtu = ", "mtu = 2120 #");
        Profile::parse(&plain, "t").unwrap();
    }

    #[test]
    fn load_from_a_path_and_report_parse_errors_with_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mine.toml");
        std::fs::write(&path, with("name", "name = \"mine\"")).unwrap();
        assert_eq!(Profile::load(path.to_str().unwrap()).unwrap().name, "mine");
        std::fs::write(&path, "this is not toml ===").unwrap();
        let e = Profile::load(path.to_str().unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("mine.toml"), "{e}");
    }
}
