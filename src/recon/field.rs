//! GF(2^32) with the modulus x^32 + x^7 + x^3 + x^2 + 1 (irreducible: a test
//! checks it), and polynomials over it. Pure, portable, no tables.

/// Carry-less product of two field elements (up to 63 bits), four bits at a time.
fn clmul(a: u32, b: u32) -> u64 {
    let a = a as u64;
    let mut t = [0u64; 16];
    for i in 1..16 {
        t[i] = if i & 1 == 1 {
            t[i - 1] ^ a
        } else {
            t[i >> 1] << 1
        };
    }
    let mut r = 0u64;
    for k in (0..8).rev() {
        r = (r << 4) ^ t[((b >> (4 * k)) & 15) as usize];
    }
    r
}

/// Reduces a product of degree < 64 modulo the field polynomial.
fn reduce(r: u64) -> u32 {
    // x^32 = x^7 + x^3 + x^2 + 1: fold the high half down, twice (the first
    // fold leaves at most 7 bits above 32).
    let fold = |h: u64| h ^ (h << 2) ^ (h << 3) ^ (h << 7);
    let r = (r & 0xffff_ffff) ^ fold(r >> 32);
    ((r & 0xffff_ffff) ^ fold(r >> 32)) as u32
}

/// a × b in GF(2^32).
pub(crate) fn mul(a: u32, b: u32) -> u32 {
    reduce(clmul(a, b))
}

/// a² in GF(2^32).
pub(crate) fn square(a: u32) -> u32 {
    mul(a, a)
}

/// a^e in GF(2^32), by square-and-multiply.
pub(crate) fn pow(mut a: u32, mut e: u64) -> u32 {
    let mut r = 1;
    while e > 0 {
        if e & 1 == 1 {
            r = mul(r, a);
        }
        a = square(a);
        e >>= 1;
    }
    r
}

/// a⁻¹ (a ≠ 0): a^(2^32 - 2) by square-and-multiply.
pub(crate) fn inv(a: u32) -> u32 {
    debug_assert!(a != 0, "0 has no inverse");
    // 2^32 - 2 = 0b111…110: square, multiply by a, 31 times, then square once.
    let mut r = a;
    for _ in 0..30 {
        r = mul(square(r), a);
    }
    square(r)
}

/// A polynomial over GF(2^32), lowest coefficient first, no trailing zeros.
pub(crate) type Poly = Vec<u32>;

pub(crate) fn trim(p: &mut Poly) {
    while p.last() == Some(&0) {
        p.pop();
    }
}

/// p mod m (m monic, non-empty), in place.
fn rem_monic(p: &mut Poly, m: &[u32]) {
    let dm = m.len() - 1;
    while p.len() > dm {
        let top = p.len() - 1;
        let c = p[top];
        if c != 0 {
            let shift = top - dm;
            for (i, &mi) in m[..dm].iter().enumerate() {
                p[shift + i] ^= mul(c, mi);
            }
        }
        p.pop();
    }
    trim(p);
}

/// The monic multiple of p (p non-zero).
fn monic(mut p: Poly) -> Poly {
    let lead = *p.last().expect("non-zero polynomial");
    if lead != 1 {
        let li = inv(lead);
        for c in p.iter_mut() {
            *c = mul(*c, li);
        }
    }
    p
}

/// Monic gcd of a and b (not both zero).
fn gcd(mut a: Poly, mut b: Poly) -> Poly {
    trim(&mut a);
    trim(&mut b);
    while !b.is_empty() {
        let m = monic(b);
        rem_monic(&mut a, &m);
        b = a;
        a = m;
    }
    monic(a)
}

/// q = p / m for monic m that divides p exactly.
fn div_exact(p: &[u32], m: &[u32]) -> Poly {
    let dm = m.len() - 1;
    let mut r = p.to_vec();
    let mut q = vec![0u32; p.len() - dm];
    for k in (0..q.len()).rev() {
        let c = r[k + dm];
        q[k] = c;
        if c != 0 {
            for (i, &mi) in m.iter().enumerate() {
                r[k + i] ^= mul(c, mi);
            }
        }
    }
    q
}

/// The roots of monic `p` if it splits into distinct linear factors over
/// GF(2^32); None otherwise. Berlekamp's trace algorithm: for a β, the
/// polynomial Σ (βx)^(2^i) mod p has as roots exactly the roots r of p with
/// Tr(βr) = 0, so a gcd splits p; a fresh β splits what the last did not.
pub(crate) fn roots(p: &[u32]) -> Option<Vec<u32>> {
    // p has distinct roots, all in the field, exactly when it divides
    // x^(2^32) - x. One pass of 32 squarings settles it before the splitting
    // (an overfull sketch's locator usually fails here, at 1/32 of the cost).
    if p.len() > 2 {
        let mut t: Poly = vec![0, 1];
        for _ in 0..32 {
            t = square_mod(&t, p);
        }
        if t != [0, 1] {
            return None;
        }
    }
    let mut out = Vec::with_capacity(p.len().saturating_sub(1));
    if !split(p.to_vec(), 0, &mut out) {
        return None;
    }
    Some(out)
}

fn split(p: Poly, depth: u32, out: &mut Vec<u32>) -> bool {
    match p.len() {
        0 => return false,
        1 => return true,
        // x + c: the root is c (characteristic 2).
        2 => {
            out.push(p[0]);
            return true;
        }
        _ => {}
    }
    // Every basis element β = x^depth (as a field element) tried, and still whole:
    // the roots are not distinct field elements.
    if depth >= 32 {
        return false;
    }
    let beta = 1u32 << depth;
    // t = Σ_{i<32} (βx)^(2^i) mod p, with (βx)^(2^i) by repeated squaring mod p.
    let mut term: Poly = vec![0, beta];
    rem_monic(&mut term, &p);
    let mut t = term.clone();
    for _ in 1..32 {
        term = square_mod(&term, &p);
        if t.len() < term.len() {
            t.resize(term.len(), 0);
        }
        for (a, b) in t.iter_mut().zip(&term) {
            *a ^= b;
        }
    }
    trim(&mut t);
    let g = gcd(p.clone(), t);
    let dg = g.len() - 1;
    if dg == 0 || dg == p.len() - 1 {
        return split(p, depth + 1, out);
    }
    let h = div_exact(&p, &g);
    split(g, depth + 1, out) && split(h, depth + 1, out)
}

/// a² mod m: squaring is linear in characteristic 2, Σ aᵢ² x^(2i).
fn square_mod(a: &[u32], m: &[u32]) -> Poly {
    let mut s = vec![0u32; (2 * a.len()).saturating_sub(1)];
    for (i, &c) in a.iter().enumerate() {
        s[2 * i] = square(c);
    }
    rem_monic(&mut s, m);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_modulus_is_irreducible() {
        // Rabin's test over GF(2) for degree 32 (only prime factor 2): x^(2^32) ≡ x
        // and gcd(x^(2^16) - x, f) = 1. In the field, x is the element 2.
        let x = 2u32;
        let mut t = x;
        let mut half = 0;
        for i in 1..=32 {
            t = square(t);
            if i == 16 {
                half = t;
            }
        }
        assert_eq!(t, x, "x^(2^32) = x");
        // gcd(x^(2^16) - x, f) = 1 ⇔ x^(2^16) ≠ x and no proper subfield holds x:
        // GF(2^16) is the only maximal subfield, and x ∈ GF(2^16) ⇔ x^(2^16) = x.
        assert_ne!(half, x);
    }

    #[test]
    fn field_laws_hold_on_samples() {
        let mut s = 0x1234_5678u32;
        let mut next = || {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            s
        };
        for _ in 0..2000 {
            let (a, b, c) = (next(), next(), next());
            assert_eq!(mul(a, b), mul(b, a));
            assert_eq!(mul(a, mul(b, c)), mul(mul(a, b), c));
            assert_eq!(mul(a, b ^ c), mul(a, b) ^ mul(a, c));
            if a != 0 {
                assert_eq!(mul(a, inv(a)), 1);
            }
        }
        // The multiplicative group has order 2^32 - 1.
        assert_eq!(pow(0xdead_beef, (1u64 << 32) - 1), 1);
    }

    #[test]
    fn roots_of_a_product_of_linear_factors_are_found() {
        let want: Vec<u32> = (1..=40u32).map(|i| i.wrapping_mul(0x9e37_79b9)).collect();
        let mut p: Poly = vec![1];
        for &r in &want {
            // p *= (x + r)
            let mut q = vec![0u32; p.len() + 1];
            for (i, &c) in p.iter().enumerate() {
                q[i + 1] ^= c;
                q[i] ^= mul(c, r);
            }
            p = q;
        }
        let mut got = roots(&p).expect("splits");
        got.sort_unstable();
        let mut want = want;
        want.sort_unstable();
        assert_eq!(got, want);
        // x² + x + c with Tr(c) = 1 has no root in the field: found out, not looped on.
        let c = (1..).find(|&c: &u32| trace(c) == 1).unwrap();
        assert_eq!(roots(&[c, 1, 1]), None);
    }

    fn trace(a: u32) -> u32 {
        let mut t = a;
        let mut s = a;
        for _ in 1..32 {
            t = square(t);
            s ^= t;
        }
        s
    }
}
