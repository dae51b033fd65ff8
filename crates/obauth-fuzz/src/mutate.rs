//! A small deterministic mutator, for running the targets on a fixed budget without
//! libFuzzer: the same seed always gives the same inputs, so a failure in CI replays.
//!
//! It does what a coverage-guided fuzzer does to a seed, without the coverage: flips bits,
//! writes interesting bytes, inserts and deletes runs, repeats a run, splices in another
//! seed, and drops in tokens that parsers of JSON, forms, URLs and PEM care about.

/// splitmix64: a tiny, good-enough generator for choosing mutations.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator started at `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`0` when `n` is `0`).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            // The modulo bias is irrelevant for choosing mutations.
            (self.next_u64() % n as u64) as usize
        }
    }
}

/// Tokens that steer parsers into their corners.
const TOKENS: &[&[u8]] = &[
    b"\"",
    b"\\",
    b"\\u0000",
    b"\\ud800",
    b"{",
    b"}",
    b"[",
    b"]",
    b":",
    b",",
    b"null",
    b"true",
    b"-1",
    b"0",
    b"1e999",
    b"18446744073709551616",
    b"-9223372036854775809",
    b"\"expires_in\":",
    b"\"access_token\":\"",
    b"\"error\":\"",
    b"\"error_description\":\"",
    b"%",
    b"%00",
    b"%zz",
    b"&",
    b"=",
    b"?",
    b"#",
    b"+",
    b"\r\n",
    b"\n\n",
    b"\xff",
    b"\xc3",
    b"\xe2\x80\xae",
    b"-----BEGIN ",
    b"-----END ",
    b"-----",
    b"CERTIFICATE",
    b"PRIVATE KEY",
    b"RSA PRIVATE KEY",
    b"Proc-Type: ",
    b"http://",
    b"https://",
    b"[::1]",
    b":99999",
    b"@",
    b"/",
    b"..",
    b"state=",
    b"code=",
    b"error=",
    b"retry-after: ",
    b"content-type: text/html\n",
    b"\x30\x82\xff\xff",
    b"\x02\x01\x00",
    b"\x81\x80",
];

const INTERESTING: &[u8] = &[0, 1, 0x7f, 0x80, 0xff, b' ', b'"', b'\\', b'%', b'0', b'9'];

/// One mutant of `seed`, drawing a splice partner from `others` (which may be empty).
pub fn mutate(seed: &[u8], others: &[Vec<u8>], rng: &mut Rng) -> Vec<u8> {
    let mut out = seed.to_vec();
    let rounds = 1 + rng.below(4);
    for _ in 0..rounds {
        let len = out.len();
        match rng.below(8) {
            0 if len > 0 => {
                let at = rng.below(len);
                out[at] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let at = rng.below(len);
                out[at] = INTERESTING[rng.below(INTERESTING.len())];
            }
            2 => {
                let at = rng.below(len + 1);
                let count = 1 + rng.below(8);
                let bytes: Vec<u8> = (0..count).map(|_| rng.next_u64() as u8).collect();
                out.splice(at..at, bytes);
            }
            3 if len > 0 => {
                let at = rng.below(len);
                let end = (at + 1 + rng.below(16)).min(len);
                out.drain(at..end);
            }
            4 if len > 0 => {
                // Repeat a run: deep nesting, long values.
                let at = rng.below(len);
                let end = (at + 1 + rng.below(8)).min(len);
                let run = out[at..end].to_vec();
                let times = 1 + rng.below(64);
                for _ in 0..times {
                    out.splice(at..at, run.iter().copied());
                }
            }
            5 if !others.is_empty() => {
                let other = &others[rng.below(others.len())];
                let from = rng.below(other.len() + 1);
                let to = from + rng.below(other.len() - from + 1);
                let at = rng.below(len + 1);
                out.splice(at..at, other[from..to].iter().copied());
            }
            6 if len > 0 => {
                // Cut: a truncated body.
                out.truncate(rng.below(len));
            }
            _ => {
                let token = TOKENS[rng.below(TOKENS.len())];
                let at = rng.below(len + 1);
                out.splice(at..at, token.iter().copied());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_mutants() {
        let seed = b"{\"access_token\":\"a\",\"expires_in\":3600}".to_vec();
        let run = |n| {
            let mut rng = Rng::new(n);
            (0..50)
                .map(|_| mutate(&seed, std::slice::from_ref(&seed), &mut rng))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
        assert!(run(7).iter().any(|mutant| *mutant != seed));
    }
}
