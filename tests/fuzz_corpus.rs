//! The fuzz targets' properties (`fuzz/src/lib.rs`) on the stable toolchain: every input kept in
//! `fuzz/corpus/<target>/` (seeds and regressions found by libFuzzer) is replayed, then a
//! deterministic random-input loop mutates them, so the properties are checked on every CI run
//! even where `cargo fuzz` cannot build.

#[path = "../fuzz/src/lib.rs"]
mod checks;

use std::path::Path;
use std::time::{Duration, Instant};

type Check = fn(&[u8]);

const TARGETS: [(&str, Check); 6] = [
    ("digest", checks::check_digest),
    ("name", checks::check_name),
    ("reference", checks::check_reference),
    ("range", checks::check_range),
    ("content_range", checks::check_content_range),
    ("manifest", checks::check_manifest),
];

fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let p = e.unwrap().path();
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

/// Runs `check` on `input`, naming the input if it panics.
fn run(target: &str, what: &str, check: Check, input: &[u8]) {
    let r = std::panic::catch_unwind(|| check(input));
    if let Err(e) = r {
        let msg = e
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        panic!("fuzz property {target} broken by {what} {input:?}: {msg}");
    }
}

#[test]
fn fuzz_corpus_inputs_and_regressions_satisfy_the_parser_properties() {
    let mut total = 0;
    for (target, check) in TARGETS {
        let inputs = corpus(target);
        assert!(!inputs.is_empty(), "fuzz/corpus/{target} is empty");
        for (name, data) in &inputs {
            run(target, name, check, data);
        }
        total += inputs.len();
        println!("{target}: {} corpus input(s) replayed", inputs.len());
    }
    println!("{total} corpus inputs replayed");
}

/// xorshift64*: deterministic, so a failure names a reproducible input.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Bytes that matter to the grammars under test.
const INTERESTING: &[u8] =
    b"0123456789abcdefABCDEF:/.-_+=, \t\r\n\0{}[]\"\\%~bytes=sha256512blake3";

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(v.len() + 1);
        let byte = if rng.below(4) == 0 {
            rng.next() as u8
        } else {
            INTERESTING[rng.below(INTERESTING.len())]
        };
        match rng.below(5) {
            0 if at < v.len() => v[at] = byte,
            1 if at < v.len() => {
                v.remove(at);
            }
            2 => v.insert(at, byte),
            3 if !v.is_empty() => {
                // Duplicate a slice (grows numbers, repeats separators).
                let a = rng.below(v.len());
                let b = (a + 1 + rng.below(16)).min(v.len());
                let piece = v[a..b].to_vec();
                v.splice(at..at, piece);
            }
            _ => v.truncate(at),
        }
    }
    v
}

#[test]
fn random_mutations_of_the_corpus_satisfy_the_parser_properties() {
    const PER_TARGET: usize = 200_000;
    let budget = Duration::from_secs(20);
    let started = Instant::now();
    let mut rng = Rng(0x6b75_7261_2d66_757a);
    for (target, check) in TARGETS {
        let seeds = corpus(target);
        let t0 = Instant::now();
        let mut n = 0;
        while n < PER_TARGET && started.elapsed() < budget {
            let seed = &seeds[rng.below(seeds.len())].1;
            let input = mutate(&mut rng, seed);
            run(target, "mutated input", check, &input);
            n += 1;
        }
        println!(
            "{target}: {n} random inputs in {:.1}s",
            t0.elapsed().as_secs_f64()
        );
    }
}
