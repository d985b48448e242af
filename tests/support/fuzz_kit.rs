//! The fuzzing engine the crates' `tests/fuzz.rs` share (included with `#[path]`): a
//! deterministic runner whose case count and seed a developer can raise
//! (`GEOTRACK_FUZZ_CASES`, `GEOTRACK_FUZZ_SEED`), the seed corpus of `tests/data/`, and the
//! mutations and noise made from it: bit flips, insertions of bytes and of the syntax's tokens,
//! deletions, repeats, truncation and splices of two seeds.

use std::fmt;
use std::path::Path;
use std::sync::LazyLock;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::test_runner::{Config, RngAlgorithm, RngSeed, TestError, TestRunner};

/// A fixed seed unless `GEOTRACK_FUZZ_SEED` says otherwise, `cases` unless
/// `GEOTRACK_FUZZ_CASES` does, and no failure persistence: CI runs never flake.
pub fn config(cases: u32, seed: u64) -> Config {
    let env = |name: &str| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    Config {
        cases: env("GEOTRACK_FUZZ_CASES").map_or(cases, |c| u32::try_from(c).unwrap_or(u32::MAX)),
        rng_algorithm: RngAlgorithm::ChaCha,
        rng_seed: RngSeed::Fixed(env("GEOTRACK_FUZZ_SEED").unwrap_or(seed)),
        failure_persistence: None,
        ..Config::default()
    }
}

/// Runs `test` on `cases` inputs; a panic inside is caught, shrunk and reported with its input.
pub fn run<S: Strategy>(
    seed: u64,
    cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    let mut runner = TestRunner::new(config(cases, seed));
    match runner.run(&strategy, test) {
        Ok(()) => {}
        Err(TestError::Fail(reason, input)) => panic!("{reason}\nminimal failing input: {input:?}"),
        Err(TestError::Abort(reason)) => panic!("aborted: {reason}"),
    }
}

/// Bytes shown as an escaped byte string in failure reports.
#[derive(Clone)]
pub struct Bytes(pub Vec<u8>);

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "b\"{}\"", self.0.escape_ascii())
    }
}

/// A directory of the workspace's `tests/data/`.
pub fn data_dir(dir: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/data")
        .join(dir)
}

/// Every file of the given directories of `tests/data/`, in name order.
pub fn read_seeds(dirs: &[&str]) -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    for dir in dirs {
        let entries = std::fs::read_dir(data_dir(dir)).unwrap_or_else(|e| panic!("{dir}: {e}"));
        let mut paths: Vec<_> = entries
            .map(|e| e.expect("directory entry").path())
            .filter(|p| p.is_file() && !p.ends_with("README.md"))
            .collect();
        paths.sort();
        seeds.extend(
            paths
                .iter()
                .map(|p| std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))),
        );
    }
    assert!(!seeds.is_empty(), "no seeds in {dirs:?}");
    seeds
}

pub type Corpus = LazyLock<Vec<Vec<u8>>>;

/// One change to a seed; positions are fractions of the current length.
#[derive(Debug, Clone)]
enum Edit {
    Flip { at: Index, bit: u8 },
    Byte { at: Index, byte: u8 },
    Token { at: Index, token: &'static str },
    Delete { at: Index, len: u8 },
    Repeat { at: Index, len: u8, times: u8 },
    Truncate { at: Index },
    Splice { at: Index, other: Index, from: Index },
}

fn edit(tokens: &'static [&'static str]) -> impl Strategy<Value = Edit> {
    prop_oneof![
        1 => (any::<Index>(), 0..8u8).prop_map(|(at, bit)| Edit::Flip { at, bit }),
        1 => (any::<Index>(), any::<u8>()).prop_map(|(at, byte)| Edit::Byte { at, byte }),
        3 => (any::<Index>(), select(tokens)).prop_map(|(at, token)| Edit::Token { at, token }),
        2 => (any::<Index>(), 1..32u8).prop_map(|(at, len)| Edit::Delete { at, len }),
        1 => (any::<Index>(), 1..16u8, 1..160u8).prop_map(|(at, len, times)| Edit::Repeat { at, len, times }),
        1 => any::<Index>().prop_map(|at| Edit::Truncate { at }),
        1 => (any::<Index>(), any::<Index>(), any::<Index>()).prop_map(|(at, other, from)| Edit::Splice {
            at,
            other,
            from
        }),
    ]
}

fn apply(seed: &[u8], edits: &[Edit], corpus: &[Vec<u8>]) -> Vec<u8> {
    let mut data = seed.to_vec();
    for edit in edits {
        // An insertion point in 0..=len, or a byte in 0..len.
        let point = |at: &Index, data: &[u8]| at.index(data.len() + 1);
        match edit {
            Edit::Flip { at, bit } if !data.is_empty() => {
                let k = at.index(data.len());
                data[k] ^= 1 << bit;
            }
            Edit::Byte { at, byte } => data.insert(point(at, &data), *byte),
            Edit::Token { at, token } => {
                let k = point(at, &data);
                data.splice(k..k, token.bytes());
            }
            Edit::Delete { at, len } => {
                let k = point(at, &data);
                data.drain(k..(k + usize::from(*len)).min(data.len()));
            }
            Edit::Repeat { at, len, times } if !data.is_empty() => {
                let k = at.index(data.len());
                let chunk = data[k..(k + usize::from(*len)).min(data.len())].to_vec();
                let copies = chunk.repeat(usize::from(*times));
                data.splice(k..k, copies);
            }
            Edit::Truncate { at } => data.truncate(point(at, &data)),
            Edit::Splice { at, other, from } => {
                let other = other.get::<Vec<u8>>(corpus);
                data.truncate(point(at, &data));
                data.extend_from_slice(&other[from.index(other.len() + 1)..]);
            }
            Edit::Flip { .. } | Edit::Repeat { .. } => {}
        }
    }
    data
}

/// A seed of `corpus` with up to five edits (none: the seed itself).
pub fn mutated(corpus: &'static Corpus, tokens: &'static [&'static str]) -> impl Strategy<Value = Bytes> {
    (any::<Index>(), vec(edit(tokens), 0..6)).prop_map(move |(seed, edits)| {
        let corpus: &[Vec<u8>] = corpus;
        Bytes(apply(seed.get::<Vec<u8>>(corpus), &edits, corpus))
    })
}

/// Arbitrary bytes, arbitrary text and soups of `tokens`.
pub fn noise(tokens: &'static [&'static str]) -> impl Strategy<Value = Bytes> {
    prop_oneof![
        1 => vec(any::<u8>(), 0..256).prop_map(Bytes),
        1 => any::<String>().prop_map(|s| Bytes(s.into_bytes())),
        2 => vec(select(tokens), 0..48).prop_map(|t| Bytes(t.concat().into_bytes())),
    ]
}

/// Noise or (three times as often) a mutated seed.
pub fn input(corpus: &'static Corpus, tokens: &'static [&'static str]) -> impl Strategy<Value = Bytes> {
    prop_oneof![1 => noise(tokens), 3 => mutated(corpus, tokens)]
}
