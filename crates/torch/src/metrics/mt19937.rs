//! numpy's legacy `RandomState` as far as KID's subset sampling needs it, so subsets are
//! the ones torch-fidelity draws (`np.random.RandomState(seed).choice(n, m, replace=False)`):
//! the MT19937 generator (Matsumoto and Nishimura 1998) seeded by `init_genrand`
//! (numpy's `mt19937_seed`), `random_interval` (numpy's `distributions.c`: a bit mask and
//! rejection) and the Fisher-Yates shuffle of `RandomState.permutation`.

const N: usize = 624;
const M: usize = 397;

/// The MT19937 state, as numpy's `mt19937_state`.
#[derive(Debug, Clone)]
pub struct Mt19937 {
    key: [u32; N],
    pos: usize,
}

impl Mt19937 {
    /// `np.random.RandomState(seed)`: Knuth's initialization of the 624 words.
    #[must_use]
    pub fn new(seed: u32) -> Self {
        let mut key = [0u32; N];
        key[0] = seed;
        for i in 1..N {
            let prev = key[i - 1];
            // Exact: i < 624 fits u32.
            #[allow(clippy::cast_possible_truncation)]
            let i32 = i as u32;
            key[i] = 1_812_433_253u32.wrapping_mul(prev ^ (prev >> 30)).wrapping_add(i32);
        }
        Self { key, pos: N }
    }

    /// The next 32-bit output (`genrand_int32`, numpy's `mt19937_next32`).
    pub fn next_u32(&mut self) -> u32 {
        if self.pos == N {
            self.regenerate();
        }
        let mut y = self.key[self.pos];
        self.pos += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    fn regenerate(&mut self) {
        for i in 0..N {
            let y = (self.key[i] & 0x8000_0000) | (self.key[(i + 1) % N] & 0x7fff_ffff);
            let mag = if y & 1 == 1 { 0x9908_b0df } else { 0 };
            self.key[i] = self.key[(i + M) % N] ^ (y >> 1) ^ mag;
        }
        self.pos = 0;
    }

    /// A uniform integer in `0..=max` (`random_interval`, 32-bit branch: `max` < 2^32).
    pub fn interval(&mut self, max: u32) -> u32 {
        if max == 0 {
            return 0;
        }
        let mask = u32::MAX >> max.leading_zeros();
        loop {
            let value = self.next_u32() & mask;
            if value <= max {
                return value;
            }
        }
    }

    /// `RandomState.choice(n, m, replace=False)`: the first `m` entries of
    /// `permutation(n)`, which shuffles `arange(n)` from the back.
    ///
    /// # Panics
    /// If `n` is 2^32 or more (numpy would switch to 64-bit draws); features never are.
    pub fn choice(&mut self, n: usize, m: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let j = self.interval(u32::try_from(i).expect("fewer than 2^32 items"));
            order.swap(i, j as usize);
        }
        order.truncate(m);
        order
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_numpy_random_state() {
        // numpy 2.4: b = MT19937(); b._legacy_seeding(2020); b.random_raw(3)
        let mut rng = Mt19937::new(2020);
        assert_eq!([rng.next_u32(), rng.next_u32(), rng.next_u32()], [4_236_026_720, 639_299_976, 3_751_189_827]);
        // np.random.RandomState(2020).permutation(37)
        let perm = [
            15, 26, 22, 21, 31, 13, 23, 2, 17, 25, 1, 14, 20, 35, 4, 12, 36, 5, 6, 30, 18, 11, 19, 9, 10, 28, 0, 16,
            24, 7, 33, 29, 27, 34, 3, 8, 32,
        ];
        assert_eq!(Mt19937::new(2020).choice(37, 37), perm);
        // r = RandomState(2020); r.choice(10, 4, replace=False), r.choice(7, 7, replace=False)
        let mut rng = Mt19937::new(2020);
        assert_eq!(rng.choice(10, 4), [2, 4, 9, 1]);
        assert_eq!(rng.choice(7, 7), [4, 3, 1, 2, 5, 6, 0]);
    }
}
