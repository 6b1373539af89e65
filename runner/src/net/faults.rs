//! Network faults of covnet's own switch: per-link loss, delay, jitter and
//! rate limit, decided by pure code that the switch drives.
//!
//! A machine's *link* is the cable between each of its NICs and the switch.
//! Faults apply to both directions of that cable separately: frames the
//! machine sends and frames it receives each go through one [`Shaper`]. So a
//! `delay` of 200 ms on machine `a` adds at least 400 ms to the round trip of
//! a ping between `a` and a machine without faults (and 800 ms between two
//! machines with that delay).
//!
//! A frame passes the stages in this order:
//!
//! 1. **loss**: dropped with probability `loss` percent, drawn from a
//!    [`FaultRng`] seeded from the run's seed, the port and the direction,
//!    so a run is repeatable given its seed;
//! 2. **rate**: a [`TokenBucket`] of `rate` bits/s holding one full-size
//!    frame ([`BURST_BYTES`]); frames that find no tokens wait in a FIFO
//!    queue of at most [`QUEUE_BYTES`] and are dropped beyond it;
//! 3. **delay**: released `delay` ± a uniform `jitter` after leaving the
//!    bucket. Jitter never reorders: a frame is never released before the
//!    frame ahead of it on the same link (like a real cable, and like
//!    netem with a rate).
//!
//! Everything takes the current time as an argument, so tests drive it with
//! a fake clock.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use covnet_runner::net::faults::{LinkFaults, Shaper, Verdict};
//! let faults = LinkFaults { delay: Duration::from_millis(200), ..LinkFaults::default() };
//! let t0 = Instant::now();
//! let mut shaper = Shaper::new(faults, 42, t0);
//! assert_eq!(shaper.admit(t0, 100), Verdict::Deliver(t0 + Duration::from_millis(200)));
//! ```

/// Environment variable that fixes the seed of the switch's fault PRNGs
/// (loss and jitter), so that a run repeats the drops of an earlier one.
pub const FAULT_SEED_ENV: &str = "COVNET_NET_SEED";

use std::fmt;
use std::num::NonZeroU64;
use std::time::{Duration, Instant};

/// Longest `delay` or `jitter` a link may have.
pub const MAX_DELAY: Duration = Duration::from_secs(60);
/// Lowest `rate`, in bits per second.
pub const MIN_RATE: u64 = 8_000;
/// Depth of the token bucket: one full-size Ethernet frame.
pub const BURST_BYTES: u64 = 1514;
/// Bytes that may wait for tokens on one direction of a link; frames that
/// would queue beyond this are dropped (tail drop).
pub const QUEUE_BYTES: u64 = 64 * 1024;
/// Frames that may wait in the delay stage of one direction of a link;
/// more are dropped.
pub const MAX_DELAYED_FRAMES: usize = 100_000;

const NANOS: i128 = 1_000_000_000;

/// The faults of one machine's link (see the module docs). The default is
/// a perfect link.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LinkFaults {
    /// Percentage of frames dropped, per direction, `0.0..=100.0`.
    pub loss: f64,
    /// Time added to every frame, per direction.
    pub delay: Duration,
    /// Each frame's delay varies uniformly within `delay ± jitter` (never
    /// below zero, never reordering).
    pub jitter: Duration,
    /// Bandwidth limit in bits per second, per direction (`None`: none).
    pub rate: Option<NonZeroU64>,
}

impl LinkFaults {
    /// True for a perfect link (nothing to shape).
    pub fn is_perfect(&self) -> bool {
        self.loss <= 0.0 && self.delay.is_zero() && self.jitter.is_zero() && self.rate.is_none()
    }

    /// Checks every value's range.
    pub fn validate(&self) -> Result<(), FaultError> {
        if !(0.0..=100.0).contains(&self.loss) {
            return Err(FaultError::LossOutOfRange { loss: self.loss });
        }
        for (field, value) in [("delay", self.delay), ("jitter", self.jitter)] {
            if value > MAX_DELAY {
                return Err(FaultError::DelayTooLong { field, value });
            }
        }
        if let Some(rate) = self.rate {
            if rate.get() < MIN_RATE {
                return Err(FaultError::RateTooLow { rate: rate.get() });
            }
        }
        Ok(())
    }
}

impl fmt::Display for LinkFaults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_perfect() {
            return f.write_str("perfect link");
        }
        let mut parts = Vec::new();
        if self.loss > 0.0 {
            parts.push(format!("loss {}%", self.loss));
        }
        if !self.delay.is_zero() {
            parts.push(format!("delay {:?}", self.delay));
        }
        if !self.jitter.is_zero() {
            parts.push(format!("jitter {:?}", self.jitter));
        }
        if let Some(r) = self.rate {
            parts.push(format!("rate {} bit/s", r.get()));
        }
        f.write_str(&parts.join(", "))
    }
}

/// A fault setting or partition that cannot be applied.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum FaultError {
    /// `loss` outside 0..=100.
    #[error("loss {loss} is not a percentage in 0..=100")]
    LossOutOfRange {
        /// The value given.
        loss: f64,
    },
    /// `delay` or `jitter` above [`MAX_DELAY`].
    #[error("{field} {value:?} is longer than the maximum of {MAX_DELAY:?}")]
    DelayTooLong {
        /// `delay` or `jitter`.
        field: &'static str,
        /// The value given.
        value: Duration,
    },
    /// A rate below [`MIN_RATE`].
    #[error("rate {rate} bit/s is below the minimum of {MIN_RATE} bit/s")]
    RateTooLow {
        /// The value given, bits/s.
        rate: u64,
    },
    /// A rate that is not a number with a unit.
    #[error("rate `{text}` is not a rate like \"1mbit\", \"512kbit\", \"1gbit\" or \"64000bit\"")]
    InvalidRate {
        /// The text given.
        text: String,
    },
    /// A duration that does not parse.
    #[error("{field} `{text}` is not a duration like \"200ms\" or \"1s\"")]
    InvalidDuration {
        /// `delay` or `jitter`.
        field: &'static str,
        /// The text given.
        text: String,
    },
    /// A key a link setting does not have.
    #[error("unknown link setting `{key}` (known: loss, delay, jitter, rate)")]
    UnknownSetting {
        /// The key.
        key: String,
    },
    /// A value of the wrong type.
    #[error("link setting `{key}` has the wrong type: expected {expected}")]
    WrongType {
        /// The key.
        key: String,
        /// What it should be.
        expected: &'static str,
    },
    /// A partition names a machine that is not in the network.
    #[error("no machine `{name}` in the network")]
    UnknownMachine {
        /// The name.
        name: String,
    },
    /// A partition names a machine in two groups.
    #[error("machine `{name}` is in two partition groups")]
    DuplicateMachine {
        /// The name.
        name: String,
    },
    /// The machines are not on a covnet switch.
    #[error("this network has no covnet switch to apply faults to")]
    NoSwitch,
}

/// Parses a rate: a number (decimals allowed) and a unit `bit`, `kbit`,
/// `mbit` or `gbit` (powers of 1000, as in `tc`), case-insensitive.
pub fn parse_rate(text: &str) -> Result<NonZeroU64, FaultError> {
    let bad = || FaultError::InvalidRate {
        text: text.to_owned(),
    };
    let t = text.trim().to_ascii_lowercase();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(bad)?;
    let (num, unit) = t.split_at(split);
    let scale: f64 = match unit.trim() {
        "bit" => 1.0,
        "kbit" => 1e3,
        "mbit" => 1e6,
        "gbit" => 1e9,
        _ => return Err(bad()),
    };
    let value: f64 = num.parse().map_err(|_| bad())?;
    let bits = (value * scale).round();
    if !bits.is_finite() || !(1.0..=1e15).contains(&bits) {
        return Err(bad());
    }
    // In range by the check above.
    let bits = NonZeroU64::new(bits as u64).ok_or_else(bad)?;
    if bits.get() < MIN_RATE {
        return Err(FaultError::RateTooLow { rate: bits.get() });
    }
    Ok(bits)
}

/// Parses `delay` or `jitter` (humantime: "200ms", "1s", "0ms").
pub fn parse_delay(field: &'static str, text: &str) -> Result<Duration, FaultError> {
    let d = humantime::parse_duration(text.trim()).map_err(|_| FaultError::InvalidDuration {
        field,
        text: text.to_owned(),
    })?;
    if d > MAX_DELAY {
        return Err(FaultError::DelayTooLong { field, value: d });
    }
    Ok(d)
}

/// Which way a frame crosses a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From the machine into the switch.
    FromMachine,
    /// From the switch to the machine.
    ToMachine,
}

/// A small deterministic PRNG (SplitMix64): the same seed gives the same
/// drops and jitter.
#[derive(Debug, Clone)]
pub struct FaultRng(u64);

impl FaultRng {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        FaultRng(seed)
    }

    /// The generator of one direction of one port, derived from the run's
    /// seed so that streams are independent of each other's traffic.
    pub fn for_link(seed: u64, port: usize, direction: Direction) -> Self {
        let dir = match direction {
            Direction::FromMachine => 1u64,
            Direction::ToMachine => 2,
        };
        let mut mix = FaultRng(seed ^ (port as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let a = mix.next_u64();
        FaultRng(a ^ dir.wrapping_mul(0xD1B5_4A32_D192_ED03))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform number in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        // 53 random bits: exactly representable.
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `percent`/100 (always for 100, never for 0).
    pub fn chance(&mut self, percent: f64) -> bool {
        if percent <= 0.0 {
            return false;
        }
        if percent >= 100.0 {
            return true;
        }
        self.unit() * 100.0 < percent
    }
}

/// A token bucket with a FIFO queue, in exact integer arithmetic
/// (bit-nanoseconds), driven by the caller's clock.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: u64,
    /// Tokens in bit·ns (bits × 1e9); negative while frames are queued.
    tokens: i128,
    capacity: i128,
    queue_limit: i128,
    updated: Instant,
}

impl TokenBucket {
    /// A full bucket of `rate` bits/s holding `burst_bytes`, queueing at
    /// most `queue_bytes` behind it.
    pub fn new(rate: NonZeroU64, burst_bytes: u64, queue_bytes: u64, now: Instant) -> Self {
        let capacity = i128::from(burst_bytes) * 8 * NANOS;
        TokenBucket {
            rate: rate.get(),
            tokens: capacity,
            capacity,
            queue_limit: i128::from(queue_bytes) * 8 * NANOS,
            updated: now,
        }
    }

    /// Admits a frame of `len` bytes arriving at `now`: how long it waits
    /// for tokens (zero when it leaves at once), or `None` when the queue
    /// is full and it is dropped (the bucket is then unchanged).
    pub fn admit(&mut self, now: Instant, len: usize) -> Option<Duration> {
        let elapsed = now.saturating_duration_since(self.updated);
        self.updated = self.updated.max(now);
        let refill = i128::from(self.rate) * (elapsed.as_nanos() as i128);
        self.tokens = (self.tokens + refill).min(self.capacity);
        let need = (len as i128) * 8 * NANOS;
        let deficit = need - self.tokens;
        if deficit <= 0 {
            self.tokens -= need;
            return Some(Duration::ZERO);
        }
        if deficit > self.queue_limit {
            return None;
        }
        self.tokens -= need;
        let rate = i128::from(self.rate);
        // Round up: never leave before the tokens are there.
        let wait_ns = (deficit + rate - 1) / rate;
        Some(Duration::from_nanos(
            u64::try_from(wait_ns).unwrap_or(u64::MAX),
        ))
    }
}

/// What the fault layer does with one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Deliver it at this time.
    Deliver(Instant),
    /// Dropped by `loss`.
    Lost,
    /// Dropped: the rate limiter's queue (or the delay stage) is full.
    Overflow,
}

/// One direction of one link: loss, then rate, then delay and jitter.
#[derive(Debug, Clone)]
pub struct Shaper {
    faults: LinkFaults,
    rng: FaultRng,
    bucket: Option<TokenBucket>,
    last_release: Option<Instant>,
}

impl Shaper {
    /// A shaper applying `faults`, drawing from `seed`, starting at `now`.
    pub fn new(faults: LinkFaults, seed: u64, now: Instant) -> Self {
        Shaper {
            faults,
            rng: FaultRng::new(seed),
            bucket: faults
                .rate
                .map(|r| TokenBucket::new(r, BURST_BYTES, QUEUE_BYTES, now)),
            last_release: None,
        }
    }

    /// The faults this shaper applies.
    pub fn faults(&self) -> &LinkFaults {
        &self.faults
    }

    /// Decides the fate of a frame of `len` bytes arriving at `now`.
    pub fn admit(&mut self, now: Instant, len: usize) -> Verdict {
        if self.rng.chance(self.faults.loss) {
            return Verdict::Lost;
        }
        let leaves = match self.bucket.as_mut() {
            None => now,
            Some(b) => match b.admit(now, len) {
                Some(wait) => now + wait,
                None => return Verdict::Overflow,
            },
        };
        let mut delay = self.faults.delay;
        let jitter = self.faults.jitter;
        if !jitter.is_zero() {
            // Uniform in [-jitter, +jitter].
            let span = jitter.as_nanos() as f64 * 2.0;
            let offset = (self.rng.unit() * span) as u128;
            let up = offset.saturating_sub(jitter.as_nanos());
            let down = jitter.as_nanos().saturating_sub(offset);
            delay = if up > 0 {
                delay + Duration::from_nanos(u64::try_from(up).unwrap_or(u64::MAX))
            } else {
                delay.saturating_sub(Duration::from_nanos(
                    u64::try_from(down).unwrap_or(u64::MAX),
                ))
            };
        }
        let mut release = leaves + delay;
        if let Some(last) = self.last_release {
            // FIFO: never overtake the frame ahead.
            release = release.max(last);
        }
        self.last_release = Some(release);
        Verdict::Deliver(release)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn rates_parse_with_units() {
        assert_eq!(parse_rate("1mbit").map(|r| r.get()), Ok(1_000_000));
        assert_eq!(parse_rate("1.5Mbit").map(|r| r.get()), Ok(1_500_000));
        assert_eq!(parse_rate("512kbit").map(|r| r.get()), Ok(512_000));
        assert_eq!(parse_rate("2gbit").map(|r| r.get()), Ok(2_000_000_000));
        assert_eq!(parse_rate("64000bit").map(|r| r.get()), Ok(64_000));
        for bad in ["", "1", "mbit", "1 mbps", "-1mbit", "1..2mbit", "1e3bit"] {
            assert!(
                matches!(parse_rate(bad), Err(FaultError::InvalidRate { .. })),
                "{bad}"
            );
        }
        assert_eq!(
            parse_rate("100bit"),
            Err(FaultError::RateTooLow { rate: 100 })
        );
    }

    #[test]
    fn delays_parse_and_are_bounded() {
        assert_eq!(parse_delay("delay", "200ms"), Ok(ms(200)));
        assert_eq!(parse_delay("jitter", "0ms"), Ok(Duration::ZERO));
        assert!(matches!(
            parse_delay("delay", "2h"),
            Err(FaultError::DelayTooLong { field: "delay", .. })
        ));
        assert!(matches!(
            parse_delay("jitter", "soon"),
            Err(FaultError::InvalidDuration {
                field: "jitter",
                ..
            })
        ));
    }

    #[test]
    fn validation_checks_ranges() {
        let ok = LinkFaults {
            loss: 100.0,
            delay: ms(1),
            jitter: ms(1),
            rate: NonZeroU64::new(MIN_RATE),
        };
        assert_eq!(ok.validate(), Ok(()));
        assert!(!ok.is_perfect());
        assert!(LinkFaults::default().is_perfect());
        let bad = LinkFaults {
            loss: 100.5,
            ..LinkFaults::default()
        };
        assert!(matches!(
            bad.validate(),
            Err(FaultError::LossOutOfRange { .. })
        ));
        let nan = LinkFaults {
            loss: f64::NAN,
            ..LinkFaults::default()
        };
        assert!(nan.validate().is_err());
    }

    #[test]
    fn rng_is_deterministic_per_seed_and_stream() {
        let a: Vec<u64> = (0..5)
            .scan(FaultRng::new(7), |r, _| Some(r.next_u64()))
            .collect();
        let b: Vec<u64> = (0..5)
            .scan(FaultRng::new(7), |r, _| Some(r.next_u64()))
            .collect();
        assert_eq!(a, b);
        let mut up = FaultRng::for_link(7, 3, Direction::FromMachine);
        let mut down = FaultRng::for_link(7, 3, Direction::ToMachine);
        let mut other = FaultRng::for_link(7, 4, Direction::FromMachine);
        let x = up.next_u64();
        assert_ne!(x, down.next_u64());
        assert_ne!(x, other.next_u64());
    }

    #[test]
    fn loss_rate_is_within_a_statistical_bound_for_a_fixed_seed() {
        // 20000 draws at 10%: the standard deviation is 0.3 points, so
        // 9%..11% is more than 3 sigma. The seed fixes the outcome.
        let mut rng = FaultRng::new(0xC0FFEE);
        let lost = (0..20_000).filter(|_| rng.chance(10.0)).count();
        assert!((1800..=2200).contains(&lost), "{lost} of 20000 lost");
        let mut again = FaultRng::new(0xC0FFEE);
        assert_eq!(lost, (0..20_000).filter(|_| again.chance(10.0)).count());
        let mut r = FaultRng::new(1);
        assert!((0..1000).all(|_| r.chance(100.0)));
        assert!((0..1000).all(|_| !r.chance(0.0)));
    }

    #[test]
    fn token_bucket_accounts_exactly_with_a_fake_clock() {
        let t0 = Instant::now();
        // 8000 bit/s = 1000 bytes/s; bucket holds 1000 bytes; queue 2000.
        let rate = NonZeroU64::new(8000).expect("nonzero");
        let mut b = TokenBucket::new(rate, 1000, 2000, t0);
        // The full bucket lets the first 1000 bytes through at once.
        assert_eq!(b.admit(t0, 600), Some(Duration::ZERO));
        assert_eq!(b.admit(t0, 400), Some(Duration::ZERO));
        // Empty: 500 bytes wait 0.5 s, the next 500 wait 1 s (FIFO).
        assert_eq!(b.admit(t0, 500), Some(ms(500)));
        assert_eq!(b.admit(t0, 500), Some(ms(1000)));
        // Queue holds 1000 bytes of debt; 1001 more would exceed 2000.
        assert_eq!(b.admit(t0, 1001), None, "beyond the queue: dropped");
        assert_eq!(b.admit(t0, 1000), Some(ms(2000)));
        assert_eq!(b.admit(t0, 1), None);
        // 3 s later the debt of 2000 bytes is paid and 1000 bytes refilled
        // (capped at the bucket size, not more).
        let t3 = t0 + ms(3000);
        assert_eq!(b.admit(t3, 1000), Some(Duration::ZERO));
        assert_eq!(b.admit(t3, 100), Some(ms(100)));
        // 10 s idle refills only up to the capacity.
        let t13 = t3 + ms(10_000);
        assert_eq!(b.admit(t13, 1000), Some(Duration::ZERO));
        assert_eq!(b.admit(t13, 8), Some(ms(8)));
    }

    #[test]
    fn token_bucket_rounds_waits_up() {
        let t0 = Instant::now();
        // 3 bytes/s: 1 byte takes 1/3 s, rounded up to the nanosecond.
        let rate = NonZeroU64::new(24).expect("nonzero");
        let mut b = TokenBucket::new(rate, 0, 100, t0);
        assert_eq!(b.admit(t0, 1), Some(Duration::from_nanos(333_333_334)));
    }

    #[test]
    fn delay_without_jitter_keeps_order_and_exact_times() {
        let t0 = Instant::now();
        let f = LinkFaults {
            delay: ms(200),
            ..LinkFaults::default()
        };
        let mut s = Shaper::new(f, 1, t0);
        for i in 0..10 {
            assert_eq!(s.admit(t0 + ms(i), 60), Verdict::Deliver(t0 + ms(200 + i)));
        }
    }

    #[test]
    fn jitter_stays_in_bounds_and_never_reorders() {
        let t0 = Instant::now();
        let f = LinkFaults {
            delay: ms(100),
            jitter: ms(50),
            ..LinkFaults::default()
        };
        // Frames 1 ms apart: jitter would reorder them, FIFO forbids it.
        let mut s = Shaper::new(f, 99, t0);
        let mut last = t0;
        for i in 0..1000 {
            let now = t0 + ms(i);
            let Verdict::Deliver(at) = s.admit(now, 60) else {
                panic!("no loss configured")
            };
            assert!(at >= last, "frame {i} overtook its predecessor");
            assert!(at >= now + ms(50), "frame {i} below delay - jitter");
            last = at;
        }
        // Frames 1 s apart are never held back: every delay is within
        // delay ± jitter and the draws cover both ends.
        let mut s = Shaper::new(f, 99, t0);
        let mut spread = (Duration::MAX, Duration::ZERO);
        for i in 0..1000 {
            let now = t0 + ms(1000 * i);
            let Verdict::Deliver(at) = s.admit(now, 60) else {
                panic!("no loss configured")
            };
            let d = at - now;
            assert!(d >= ms(50) && d <= ms(150), "delay {d:?} out of bounds");
            spread = (spread.0.min(d), spread.1.max(d));
        }
        assert!(
            spread.0 < ms(60) && spread.1 > ms(140),
            "jitter does not spread: {spread:?}"
        );
    }

    #[test]
    fn shaper_is_deterministic_given_the_seed() {
        let t0 = Instant::now();
        let f = LinkFaults {
            loss: 30.0,
            delay: ms(10),
            jitter: ms(5),
            rate: NonZeroU64::new(1_000_000),
        };
        let run = |seed| {
            let mut s = Shaper::new(f, seed, t0);
            (0..500)
                .map(|i| s.admit(t0 + ms(i), 1000))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(5), run(5));
        assert_ne!(run(5), run(6));
    }

    #[test]
    fn full_loss_drops_everything_and_rate_overflow_drops() {
        let t0 = Instant::now();
        let mut all = Shaper::new(
            LinkFaults {
                loss: 100.0,
                ..LinkFaults::default()
            },
            3,
            t0,
        );
        assert!((0..100).all(|_| all.admit(t0, 60) == Verdict::Lost));
        let mut slow = Shaper::new(
            LinkFaults {
                rate: NonZeroU64::new(MIN_RATE),
                ..LinkFaults::default()
            },
            3,
            t0,
        );
        let verdicts: Vec<Verdict> = (0..100).map(|_| slow.admit(t0, 1500)).collect();
        let overflow = verdicts.iter().filter(|v| **v == Verdict::Overflow).count();
        // Burst (1514) lets 1 through, the queue (64 KiB) holds 43 more.
        assert_eq!(overflow, 100 - 1 - (QUEUE_BYTES as usize / 1500));
    }
}
