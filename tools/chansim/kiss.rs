//! KISS framing as a TNC sees it from the host side (tool-local: the library's own KISS code
//! lives in `frame`; the simulator must not depend on the code it is used to test).

pub const FEND: u8 = 0xC0;
pub const FESC: u8 = 0xDB;
pub const TFEND: u8 = 0xDC;
pub const TFESC: u8 = 0xDD;

/// Splits a host byte stream into KISS frames: (command byte, unescaped data).
#[derive(Debug)]
pub struct Deframer {
    buf: Vec<u8>,
    in_frame: bool,
    escaped: bool,
    /// Discarding an oversized frame until the next FEND.
    overflow: bool,
    max: usize,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Item {
    Frame {
        command: u8,
        data: Vec<u8>,
    },
    /// Too long or with a bad escape: what a TNC silently drops.
    Rejected,
}

impl Deframer {
    pub fn new(max_frame: usize) -> Self {
        Deframer {
            buf: Vec::new(),
            in_frame: false,
            escaped: false,
            overflow: false,
            max: max_frame,
        }
    }

    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<Item>) {
        for &b in bytes {
            if b == FEND {
                if self.overflow {
                    out.push(Item::Rejected);
                } else if self.in_frame && !self.buf.is_empty() {
                    let command = self.buf[0];
                    out.push(Item::Frame {
                        command,
                        data: self.buf[1..].to_vec(),
                    });
                }
                self.buf.clear();
                self.in_frame = true;
                self.escaped = false;
                self.overflow = false;
                continue;
            }
            if !self.in_frame || self.overflow {
                continue;
            }
            let byte = if self.escaped {
                self.escaped = false;
                match b {
                    TFEND => FEND,
                    TFESC => FESC,
                    _ => {
                        self.overflow = true;
                        continue;
                    }
                }
            } else if b == FESC {
                self.escaped = true;
                continue;
            } else {
                b
            };
            // +1 for the command byte.
            if self.buf.len() > self.max {
                self.overflow = true;
                continue;
            }
            self.buf.push(byte);
        }
    }
}

/// One KISS data frame on port 0.
pub fn encode(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 4);
    out.push(FEND);
    out.push(0x00);
    for &b in data {
        match b {
            FEND => out.extend_from_slice(&[FESC, TFEND]),
            FESC => out.extend_from_slice(&[FESC, TFESC]),
            _ => out.push(b),
        }
    }
    out.push(FEND);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(max: usize, chunks: &[&[u8]]) -> Vec<Item> {
        let mut d = Deframer::new(max);
        let mut out = Vec::new();
        for c in chunks {
            d.push(c, &mut out);
        }
        out
    }

    #[test]
    fn roundtrip_with_escapes_across_chunks() {
        let data = [1, FEND, 2, FESC, 3];
        let enc = encode(&data);
        assert_eq!(enc, [FEND, 0, 1, FESC, TFEND, 2, FESC, TFESC, 3, FEND]);
        let (a, b) = enc.split_at(4);
        assert_eq!(
            items(100, &[a, b]),
            vec![Item::Frame {
                command: 0,
                data: data.to_vec()
            }]
        );
    }

    #[test]
    fn garbage_before_first_fend_and_empty_frames_are_skipped() {
        let got = items(100, &[&[9, 9, FEND, FEND, 0x10, 7, FEND]]);
        assert_eq!(
            got,
            vec![Item::Frame {
                command: 0x10,
                data: vec![7]
            }]
        );
    }

    #[test]
    fn oversized_and_badly_escaped_frames_are_rejected() {
        let got = items(
            3,
            &[&[FEND, 0, 1, 2, 3, 4, FEND, 0, FESC, 1, FEND, 0, 5, FEND]],
        );
        assert_eq!(
            got,
            vec![
                Item::Rejected,
                Item::Rejected,
                Item::Frame {
                    command: 0,
                    data: vec![5]
                }
            ]
        );
    }
}
