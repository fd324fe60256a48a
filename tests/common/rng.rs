//! A seeded generator for the chaos tests.

/// splitmix64: a small seeded generator, so a failing run can be replayed
/// (`SEGVAULT_CHAOS_SEED`).
pub struct Rng(pub u64);
impl Rng {
    /// Seeded from `SEGVAULT_CHAOS_SEED`, else `default`; prints the seed.
    pub fn from_env(default: u64) -> Rng {
        let seed: u64 = std::env::var("SEGVAULT_CHAOS_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default);
        eprintln!("chaos seed {seed} (set SEGVAULT_CHAOS_SEED to replay)");
        Rng(seed)
    }

    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}
