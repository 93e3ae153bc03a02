//! 16-bit sequence numbers compared in serial-number arithmetic (RFC 1982):
//! the window (64) is far below half the space, so wrap-around is unambiguous.

/// A message sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Seq(pub u16);

impl Seq {
    /// `self - other` as a signed distance.
    pub fn distance(self, other: Seq) -> i32 {
        i32::from(self.0.wrapping_sub(other.0) as i16)
    }

    /// `self + n`, wrapping at 2^16.
    pub fn plus(self, n: u16) -> Seq {
        Seq(self.0.wrapping_add(n))
    }

    /// True when `self` comes before `other` in serial-number order.
    pub fn before(self, other: Seq) -> bool {
        self.distance(other) < 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps() {
        assert_eq!(Seq(2).distance(Seq(65534)), 4);
        assert_eq!(Seq(65534).distance(Seq(2)), -4);
        assert!(Seq(65535).before(Seq(0)));
        assert!(!Seq(0).before(Seq(0)));
        assert_eq!(Seq(65535).plus(2), Seq(1));
    }
}
