//! PinSketch (Dodis, Ostrovsky, Reyzin, Smith; as in Bitcoin's minisketch):
//! a set of non-zero 32-bit items summarised by its odd power sums
//! s₁, s₃, …, s₂c₋₁ in GF(2^32). Capacity c costs 4c bytes; the sum of two
//! sketches is the sketch of the symmetric difference, which decodes to its
//! items whenever it holds at most c of them. A sketch of capacity c is the
//! first c sums of any larger one, so a sender can extend a sketch that did
//! not decode without repeating what it sent. Pure.

use super::field::{self, mul, pow, square, Poly};

/// A set sketch: the power sums s₁, s₃, … of its items, one per unit of capacity.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Sketch {
    sums: Vec<u32>,
}

impl Sketch {
    /// The sketch of `items` with `capacity` sums. Zero items are not
    /// representable: the caller maps its items away from 0.
    pub fn of(items: impl IntoIterator<Item = u32> + Clone, capacity: usize) -> Self {
        let mut s = Sketch {
            sums: vec![0; capacity],
        };
        for x in items {
            s.add_range(x, 0);
        }
        s
    }

    /// A sketch from its sums (as received).
    pub fn from_sums(sums: Vec<u32>) -> Self {
        Sketch { sums }
    }

    /// The sums s₁, s₃, …
    pub fn sums(&self) -> &[u32] {
        &self.sums
    }

    /// How many items the sketch can give back.
    pub fn capacity(&self) -> usize {
        self.sums.len()
    }

    /// Grows the sketch of `items` (the same items it was made of) to
    /// `capacity` sums; only the new sums are computed.
    pub fn extend(&mut self, items: impl IntoIterator<Item = u32>, capacity: usize) {
        let from = self.sums.len();
        if capacity <= from {
            return;
        }
        self.sums.resize(capacity, 0);
        for x in items {
            self.add_range(x, from);
        }
    }

    /// Adds x^(2k+1) to sums k = from.. (toggles x in or out of the set).
    fn add_range(&mut self, x: u32, from: usize) {
        if x == 0 || from >= self.sums.len() {
            return;
        }
        let x2 = square(x);
        let mut p = pow(x, 2 * from as u64 + 1);
        for s in &mut self.sums[from..] {
            *s ^= p;
            p = mul(p, x2);
        }
    }

    /// Adds `other` (the same capacity, or cut to the smaller): the result
    /// sketches the symmetric difference of the two sets.
    pub fn merge(&mut self, other: &Sketch) {
        self.sums.truncate(other.sums.len());
        for (a, b) in self.sums.iter_mut().zip(&other.sums) {
            *a ^= b;
        }
    }

    /// The items of the sketched set, if it holds at most `capacity` items
    /// (None when it holds more, in which case it is nearly always detected).
    /// The answer is checked: its own sketch equals this one.
    pub fn decode(&self) -> Option<Vec<u32>> {
        let c = self.sums.len();
        if self.sums.iter().all(|&s| s == 0) {
            return Some(Vec::new());
        }
        // All sums S₁..S₂c: the even ones are squares, S₂ₖ = Sₖ².
        let mut s = vec![0u32; 2 * c + 1];
        for j in 1..=2 * c {
            s[j] = if j % 2 == 1 {
                self.sums[j / 2]
            } else {
                square(s[j / 2])
            };
        }
        let locator = berlekamp_massey(&s[1..]);
        let l = locator.len() - 1;
        if l == 0 || l > c {
            return None;
        }
        // The locator is Π(1 - eᵢx): reversed, it is Π(x - eᵢ), monic.
        let reversed: Poly = locator.iter().rev().copied().collect();
        if reversed[0] == 0 {
            return None;
        }
        let mut items = field::roots(&reversed)?;
        if items.len() != l {
            return None;
        }
        items.sort_unstable();
        if items.windows(2).any(|w| w[0] == w[1]) || items[0] == 0 {
            return None;
        }
        (Sketch::of(items.iter().copied(), c) == *self).then_some(items)
    }
}

/// The shortest linear recurrence (connection polynomial, constant term 1)
/// generating `s`, trimmed so its degree is its length.
fn berlekamp_massey(s: &[u32]) -> Poly {
    let mut c: Poly = vec![1];
    let mut b: Poly = vec![1];
    let mut l = 0usize;
    let mut m = 1usize;
    let mut last = 1u32;
    for n in 0..s.len() {
        let mut d = s[n];
        for i in 1..=l.min(c.len() - 1) {
            d ^= mul(c[i], s[n - i]);
        }
        if d == 0 {
            m += 1;
            continue;
        }
        let coef = mul(d, field::inv(last));
        let t = c.clone();
        if c.len() < b.len() + m {
            c.resize(b.len() + m, 0);
        }
        for (i, &bi) in b.iter().enumerate() {
            c[i + m] ^= mul(coef, bi);
        }
        if 2 * l <= n {
            l = n + 1 - l;
            b = t;
            last = d;
            m = 1;
        } else {
            m += 1;
        }
    }
    c.resize(l + 1, 0);
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(seed: u64, n: usize) -> Vec<u32> {
        // splitmix64
        let mut s = seed << 40;
        (0..n)
            .map(|_| {
                s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
                let mut z = s;
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                ((z ^ (z >> 31)) as u32) | 1
            })
            .collect()
    }

    #[test]
    fn the_difference_of_two_sets_decodes_up_to_capacity() {
        let shared = items(1, 3000);
        let only_a = items(2, 40);
        let only_b = items(3, 25);
        let a: Vec<u32> = shared.iter().chain(&only_a).copied().collect();
        let b: Vec<u32> = shared.iter().chain(&only_b).copied().collect();
        let mut sa = Sketch::of(a.iter().copied(), 70);
        sa.merge(&Sketch::of(b.iter().copied(), 70));
        let mut got = sa.decode().expect("65 differences fit in 70");
        let mut want: Vec<u32> = only_a.iter().chain(&only_b).copied().collect();
        want.sort_unstable();
        got.sort_unstable();
        assert_eq!(got, want);
    }

    #[test]
    fn an_overfull_sketch_does_not_decode_and_extends_until_it_does() {
        let a = items(4, 500);
        let b = items(5, 20);
        let mut sa = Sketch::of(a.iter().copied(), 200);
        let mut sb = Sketch::of(b.iter().copied(), 200);
        let mut d = sa.clone();
        d.merge(&sb);
        assert_eq!(d.decode(), None, "520 items in a sketch of 200");
        sa.extend(a.iter().copied(), 600);
        sb.extend(b.iter().copied(), 600);
        assert_eq!(
            sa,
            Sketch::of(a.iter().copied(), 600),
            "extending = making anew"
        );
        sa.merge(&sb);
        assert_eq!(sa.decode().map(|v| v.len()), Some(520));
    }

    #[test]
    fn equal_sets_decode_to_nothing_and_one_item_to_itself() {
        let a = items(6, 100);
        let mut s = Sketch::of(a.iter().copied(), 8);
        s.merge(&Sketch::of(a.iter().rev().copied(), 8));
        assert_eq!(s.decode(), Some(vec![]));
        assert_eq!(Sketch::of([7u32], 1).decode(), Some(vec![7]));
        // Two items in a sketch of one sum decode as their sum: capacity is a promise
        // the caller keeps, and the session's final fingerprint check catches a miss.
        assert_eq!(Sketch::of([7u32, 9], 1).decode(), Some(vec![7 ^ 9]));
    }

    #[test]
    fn random_sums_never_decode_to_a_wrong_answer() {
        for seed in 0..200u64 {
            let sums = items(100 + seed, 12);
            let s = Sketch::from_sums(sums);
            if let Some(found) = s.decode() {
                assert_eq!(Sketch::of(found.iter().copied(), 12), s);
            }
        }
    }
}
