//! The trace of a run: one line per kernel call, scheduling decision, signal delivery
//! and child event, and a hash over all of them.

use std::fmt::Write as _;

/// FNV-1a, 64 bits: stable across platforms and releases, unlike `std`'s hasher.
fn fnv1a(hash: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(hash, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// The lines of a run and their running hash.
#[derive(Clone, Debug)]
pub struct Trace {
    lines: Vec<String>,
    keep: bool,
    hash: u64,
    count: u64,
}

impl Trace {
    /// An empty trace; `keep` says whether the lines are stored or only hashed.
    pub fn new(keep: bool) -> Trace {
        Trace {
            lines: Vec::new(),
            keep,
            hash: FNV_OFFSET,
            count: 0,
        }
    }

    /// Appends a line.
    pub fn push(&mut self, line: String) {
        self.hash = fnv1a(self.hash, line.as_bytes());
        self.hash = fnv1a(self.hash, b"\n");
        self.count += 1;
        if self.keep {
            self.lines.push(line);
        }
    }

    /// The hash of every line so far.
    pub fn hash(&self) -> u64 {
        self.hash
    }

    /// How many lines were recorded (also when they are not kept).
    pub fn len(&self) -> u64 {
        self.count
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The kept lines (empty when only hashing).
    pub fn lines(&self) -> &[String] {
        &self.lines
    }

    /// The kept lines as one text, one per line.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for line in &self.lines {
            let _ = writeln!(out, "{line}");
        }
        out
    }
}
