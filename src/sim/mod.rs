//! Everything simulated, in one place: the pure half-duplex channel model (`channel`: bit
//! errors, bursts, frame loss, TNC channel access, airtime), the host side of a simulated
//! TNC (`HostPorts`), two stations on the channel in virtual time for tests and benchmarks
//! (`pair`), and the channel between two byte streams on the wall clock for the demo
//! (`relay`). `tools/chansim` puts the same channel between two pseudo-terminals, with its
//! own KISS code so that it does not depend on the code it tests.

pub mod channel;
pub mod net;
pub mod pair;
pub mod relay;

pub use channel::{
    Burst, Channel, ChannelConfig, ChannelStats, Delivery, DirStats, Mode, Outage, Side, SimError,
};

use crate::frame::kiss::{KissCommand, KissDeframer, KissFrame};

/// The host ends of the channel's two ports. In KISS mode each station's KISS stream is
/// deframed as a TNC would (data frames go on air; commands and bad escapes do not) and
/// delivered frames come back KISS-encoded on port 0; in transparent mode bytes pass.
#[derive(Debug)]
pub struct HostPorts {
    mode: Mode,
    host: [KissDeframer; 2],
}

impl HostPorts {
    /// Host sides for a channel in `mode`, with empty KISS buffers.
    pub fn new(mode: Mode) -> HostPorts {
        HostPorts {
            mode,
            host: [KissDeframer::default(), KissDeframer::default()],
        }
    }

    /// A station wrote `bytes` to its port: what goes on air, in order.
    pub fn from_host(&mut self, side: Side, bytes: &[u8]) -> Vec<Vec<u8>> {
        match self.mode {
            Mode::Transparent => vec![bytes.to_vec()],
            Mode::Kiss => kiss_data_frames(&mut self.host[usize::from(side == Side::B)], bytes),
        }
    }

    /// What a station's port reads for data the channel delivered to it.
    pub fn to_host(&self, data: Vec<u8>) -> Vec<u8> {
        match self.mode {
            Mode::Transparent => data,
            Mode::Kiss => KissFrame::data(0, data).to_bytes().unwrap_or_default(),
        }
    }
}

/// What a TNC puts on air for `bytes` from its host: the KISS data frames
/// (commands and bad escapes stay off the air).
pub(crate) fn kiss_data_frames(d: &mut KissDeframer, bytes: &[u8]) -> Vec<Vec<u8>> {
    d.push(bytes);
    let mut frames = Vec::new();
    while let Some(r) = d.next() {
        if let Ok(KissFrame {
            command: KissCommand::Data(data),
            ..
        }) = r
        {
            frames.push(data);
        }
    }
    frames
}
