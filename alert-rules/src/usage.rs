//! A household's recent use of one meter kind: the sliding-window sums behind
//! `utility_low` and `utility_high` (issue 14, finding 4).
//!
//! The engine asks two questions, on every meter reading and every time it
//! recomputes the household's next timer (after every message from the home):
//!
//! * [`Usage::used_within`]: the use in the window ending at `t`;
//! * [`Usage::falls_to`]: the first instant the use in the window is down to a limit.
//!
//! The code before issue 14 answered the first by adding up every reading
//! kept and the second by doing that once per reading kept: a quadratic
//! cost per message, so a meter sending 1,000 readings in 0.4 s held up SOS
//! acknowledgements in other homes for 3.3-5.2 s, and after 3,000 the hub
//! never caught up (`cargo bench -p alert-rules` measures it). Here every
//! reading carries the running total of the use up to it, so both questions
//! are one binary search: O(log n) per question and O(1) amortised per
//! reading, with n capped at [`MAX_READINGS`].
//!
//! Decisions are those of the old code (the test-only [`reference`] keeps it,
//! and the property tests compare the two engine-wide), except in three
//! documented ways:
//!
//! * The use is summed exactly (in units of 2⁻⁸⁰) and rounded once, instead
//!   of in `f64` from the oldest reading in the window on, whose last bits
//!   depended on where the window started. A decision can only differ when
//!   the use is within that rounding error (some 10⁻¹⁶ of the use per
//!   reading) of a rule's limit; with amounts on a binary grid, where both
//!   sums are exact, decisions are identical.
//! * A meter sending more than [`MAX_READINGS`] readings with use within the
//!   longest window has neighbouring readings merged (see
//!   [`Usage::record_capped`]): some use counts a little late.
//! * A reading older than the newest use kept counts at the newest one's time
//!   (the old code kept it in arrival order, out of time order). The hub
//!   stamps readings when they arrive, so only replays and a clock stepping
//!   back can do this.

use std::collections::VecDeque;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Millis;

/// Readings showing use kept per household and meter kind, at most. 16,384
/// holds a meter reporting every minute for the longest window the rules
/// allow (192 hours: 11,520 readings) reading by reading; the device contract
/// suggests one every 15 minutes. Only a flood goes past it. At 32 bytes a
/// reading, a flooding meter costs at most 512 KiB of memory (and about
/// 400 KB of saved state), where the old code kept every reading of the
/// window (8 days of a flood).
pub(crate) const MAX_READINGS: usize = 16_384;

/// Use is counted in whole units of 2⁻⁸⁰ m³ (or kWh): every amount of at
/// least 2⁻²⁸ (4 microlitres, 4 mWh) is exact, smaller ones are rounded to
/// the nearest unit (10⁻²⁴), and sums of them are exact integers.
const UNITS: f64 = (1u128 << 80) as f64;

/// The most one reading (or merged bucket) counts for: 2³⁰, about 1.07·10⁹ m³
/// or kWh (the device contract allows rises up to 10⁹). Every rule limit is at
/// most 10⁶, so a window holding such an amount is above every limit with or
/// without the clamp: no decision changes, only the figure in the text. It
/// keeps a history's total below 2¹²⁷ units (16,384 · 2³⁰ · 2⁸⁰ = 2¹²⁴), so
/// running totals in `i128` never lose a difference, and keeps an infinite
/// rise (a total going from -10³⁰⁸ to 10³⁰⁸ through the engine's API) out of
/// the saved state: JSON has no infinity, the old code saved it as `null` and
/// could not load the state again.
const MAX_AMOUNT: f64 = (1u64 << 30) as f64;

/// An amount in units, clamped; 0 for anything not above 0 (and NaN).
fn units(amount: f64) -> i128 {
    if amount > 0.0 {
        (amount.min(MAX_AMOUNT) * UNITS).round() as i128
    } else {
        0
    }
}

/// Units back to an amount, rounded once.
fn amount(units: i128) -> f64 {
    units as f64 / UNITS
}

/// Readings showing use, oldest first, each with the running total of the use
/// up to and including it. Serialised as the old `[[time, amount], ...]` list.
/// Equal when they hold the same readings (wherever their totals start).
#[derive(Clone, Debug)]
#[cfg_attr(not(test), derive(Default))]
pub(crate) struct Usage {
    /// (time, running total in units), times never decreasing. Totals wrap
    /// (`i128`); only differences are used, and those are exact because the
    /// whole history holds less than 2¹²⁷ units (see [`MAX_AMOUNT`]).
    readings: VecDeque<(Millis, i128)>,
    /// The running total before the oldest reading kept.
    base: i128,
    /// Test builds only: this history is the old rescanning code instead
    /// (see [`reference::with`]).
    #[cfg(test)]
    reference: Option<reference::Rescan>,
}

/// Test builds: a history created inside [`reference::with`] is the old code.
#[cfg(test)]
impl Default for Usage {
    fn default() -> Usage {
        Usage {
            readings: VecDeque::new(),
            base: 0,
            reference: reference::active().then(reference::Rescan::default),
        }
    }
}

impl PartialEq for Usage {
    fn eq(&self, other: &Usage) -> bool {
        #[cfg(test)]
        if self.reference != other.reference {
            return false;
        }
        self.readings.len() == other.readings.len() && self.amounts().eq(other.amounts())
    }
}

impl Usage {
    /// (time, use in units) per reading, oldest first.
    fn amounts(&self) -> impl Iterator<Item = (Millis, i128)> + '_ {
        let mut prev = self.base;
        self.readings.iter().map(move |&(at, total)| {
            let u = total.wrapping_sub(prev);
            prev = total;
            (at, u)
        })
    }

    pub(crate) fn is_empty(&self) -> bool {
        #[cfg(test)]
        if let Some(r) = &self.reference {
            return r.usage.is_empty();
        }
        self.readings.is_empty()
    }

    /// The running total after the newest reading.
    fn end(&self) -> i128 {
        self.readings.back().map_or(self.base, |r| r.1)
    }

    /// The running total before the `i`-th reading kept (`i <= len`).
    fn before(&self, i: usize) -> i128 {
        i.checked_sub(1)
            .and_then(|j| self.readings.get(j))
            .map_or(self.base, |r| r.1)
    }

    /// A meter reading at `t` showing `used` since the meter's previous one
    /// (nothing is kept for none or 0), then every reading more than `keep`
    /// ms before `t` is dropped (the engine passes the longest window of the
    /// meter's rules).
    pub(crate) fn record(&mut self, t: Millis, used: Option<f64>, keep: i64) {
        self.record_capped(t, used, keep, MAX_READINGS);
    }

    /// [`Usage::record`] with a cap of `cap` readings (tests use small caps).
    ///
    /// A reading older than the newest kept counts at the newest one's time,
    /// so the history stays in time order.
    ///
    /// Past `cap` readings, neighbouring readings are merged: those in the
    /// same slot of `slot` ms (counted from the epoch) become one, stamped at
    /// the time of the latest of them and holding their sum rounded to `f64`
    /// precision. `slot` is the first power of two above `keep / (cap / 4)`,
    /// so at most `cap / 4 + 2` readings are left, and the same `keep` (the
    /// same rules) always gives the same grid: merging again never moves a
    /// reading out of its slot. Use therefore never leaves a window early and
    /// counts less than one slot late: less than `8 · keep / cap + 2` ms, with
    /// the real cap less than 1/2048 of the longest window (a slot is 33 s
    /// for 24 hours, 4.4 minutes for 192 hours). A merge costs O(cap) and
    /// comes at most once every `cap / 2` readings: O(1) amortised.
    pub(crate) fn record_capped(&mut self, t: Millis, used: Option<f64>, keep: i64, cap: usize) {
        let forget_until = t.saturating_sub(keep);
        #[cfg(test)]
        if let Some(r) = &mut self.reference {
            r.record(t, used, forget_until);
            return;
        }
        let u = used.map_or(0, units);
        if u > 0 {
            let at = self.readings.back().map_or(t, |r| r.0.max(t));
            let total = self.end().wrapping_add(u);
            self.readings.push_back((at, total));
        }
        while let Some(&(at, total)) = self.readings.front() {
            if at > forget_until {
                break;
            }
            self.base = total;
            self.readings.pop_front();
        }
        if self.readings.len() > cap {
            self.coarsen(keep, cap);
        }
    }

    /// Merge neighbouring readings (see [`Usage::record_capped`]). The grid
    /// only gets coarser than `4 · keep / cap` when the history spans more
    /// than `keep` (readings clamped to a later time, or an old saved state).
    fn coarsen(&mut self, keep: i64, cap: usize) {
        const WIDEST: i64 = 1 << 62;
        let quarter = i64::try_from(cap / 4).unwrap_or(i64::MAX).max(1);
        let want = (keep / quarter).saturating_add(1).clamp(2, WIDEST);
        let mut slot = i64::try_from((want as u64).next_power_of_two()).unwrap_or(WIDEST);
        loop {
            let merged = self.merged(slot);
            if merged.len() <= cap / 2 || slot >= WIDEST {
                self.readings = merged;
                return;
            }
            slot = slot.saturating_mul(2).min(WIDEST);
        }
    }

    /// The readings merged into `slot`-ms slots.
    fn merged(&self, slot: i64) -> VecDeque<(Millis, i128)> {
        let mut out = VecDeque::new();
        let mut total = self.base;
        let mut push = |at: Millis, sum: i128| {
            // Rounded to f64 precision, so the saved amount is exactly what is kept.
            total = total.wrapping_add(units(amount(sum)));
            out.push_back((at, total));
        };
        let mut open: Option<(i64, Millis, i128)> = None;
        for (at, u) in self.amounts() {
            let key = at.div_euclid(slot);
            match &mut open {
                Some((k, t, sum)) if *k == key => {
                    *t = at;
                    *sum = sum.saturating_add(u);
                }
                _ => {
                    if let Some((_, t, sum)) = open.take() {
                        push(t, sum);
                    }
                    open = Some((key, at, u));
                }
            }
        }
        if let Some((_, t, sum)) = open {
            push(t, sum);
        }
        out
    }

    /// Use within `(t - window, t]` (and any later readings: only past ones
    /// exist when the engine asks).
    pub(crate) fn used_within(&self, t: Millis, window: i64) -> f64 {
        #[cfg(test)]
        if let Some(r) = &self.reference {
            return r.used_within(t, window);
        }
        let from = t.saturating_sub(window);
        let i = self.readings.partition_point(|r| r.0 <= from);
        amount(self.end().wrapping_sub(self.before(i)))
    }

    /// Earliest `x >= not_before` at which the use within `(x - window, x]`
    /// is below `limit` (`strict`) or at most `limit`, given no new readings.
    /// The use only changes when a reading leaves the window, at its time
    /// plus `window`, and only shrinks: the answer is `not_before` or the
    /// first reading after which what is left is low enough.
    pub(crate) fn falls_to(
        &self,
        limit: f64,
        strict: bool,
        window: i64,
        not_before: Millis,
    ) -> Millis {
        #[cfg(test)]
        if let Some(r) = &self.reference {
            return r.falls_to(limit, strict, window, not_before);
        }
        let ok = |v: f64| if strict { v < limit } else { v <= limit };
        if ok(self.used_within(not_before, window)) {
            return not_before;
        }
        // What is left after reading i shrinks with i; the first i where it is
        // low enough (for a reading sharing its millisecond with later ones,
        // the millisecond's last reading is low enough too, and none before).
        let end = self.end();
        let i = self
            .readings
            .partition_point(|r| !ok(amount(end.wrapping_sub(r.1))));
        match self.readings.get(i) {
            Some(r) => r.0.saturating_add(window),
            // Only for a limit of 0 or less (the rules refuse those) or NaN.
            None => self
                .readings
                .back()
                .map_or(not_before, |r| r.0.saturating_add(window).max(not_before)),
        }
    }

    /// A history as saved: `(time, amount)` pairs.
    fn from_saved(mut saved: Vec<(Millis, Option<f64>)>) -> Usage {
        #[cfg(test)]
        if reference::active() {
            let usage = saved
                .into_iter()
                .map(|(t, a)| (t, a.unwrap_or(f64::INFINITY)))
                .collect();
            return Usage {
                reference: Some(reference::Rescan { usage }),
                ..Usage::default()
            };
        }
        // The code before issue 14 kept readings in arrival order, which a
        // replay or a clock stepping back could put out of time order.
        saved.sort_by_key(|r| r.0);
        let mut u = Usage::default();
        for (at, a) in saved {
            // `null`: an infinite amount, saved by the old code.
            let q = units(a.unwrap_or(MAX_AMOUNT));
            if q > 0 {
                let total = u.end().wrapping_add(q);
                u.readings.push_back((at, total));
            }
        }
        if u.readings.len() > MAX_READINGS {
            let span = match (u.readings.front(), u.readings.back()) {
                (Some(a), Some(b)) => b.0.saturating_sub(a.0),
                _ => 0,
            };
            u.coarsen(span, MAX_READINGS);
        }
        u
    }
}

impl Serialize for Usage {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[cfg(test)]
        if let Some(r) = &self.reference {
            return r.usage.serialize(serializer);
        }
        serializer.collect_seq(self.amounts().map(|(at, u)| (at, amount(u))))
    }
}

impl<'de> Deserialize<'de> for Usage {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Usage, D::Error> {
        Vec::<(Millis, Option<f64>)>::deserialize(deserializer).map(Usage::from_saved)
    }
}

/// The code before issue 14, kept as the test oracle: a list of readings in
/// arrival order, rescanned for every question.
#[cfg(test)]
pub(crate) mod reference {
    use std::cell::Cell;
    use std::collections::VecDeque;

    use crate::Millis;

    thread_local! {
        static ACTIVE: Cell<bool> = const { Cell::new(false) };
    }

    /// Whether histories created now are [`Rescan`]s.
    pub(crate) fn active() -> bool {
        ACTIVE.with(Cell::get)
    }

    /// Runs `f` with every history created in it (new, or loaded from JSON)
    /// answering with the old code: an engine driven only inside `with`
    /// decides exactly as the engine did before issue 14.
    pub(crate) fn with<T>(f: impl FnOnce() -> T) -> T {
        struct Restore(bool);
        impl Drop for Restore {
            fn drop(&mut self) {
                ACTIVE.with(|a| a.set(self.0));
            }
        }
        let _restore = Restore(ACTIVE.with(|a| a.replace(true)));
        f()
    }

    #[derive(Clone, Debug, Default, PartialEq)]
    pub(crate) struct Rescan {
        /// Use per reading (time, amount > 0), in arrival order.
        pub(crate) usage: VecDeque<(Millis, f64)>,
    }

    impl Rescan {
        /// `apply_reading` before issue 14: push, then prune from the front.
        pub(crate) fn record(&mut self, t: Millis, used: Option<f64>, forget_until: Millis) {
            if let Some(used) = used {
                if used > 0.0 {
                    self.usage.push_back((t, used));
                }
            }
            while self
                .usage
                .front()
                .is_some_and(|(at, _)| *at <= forget_until)
            {
                self.usage.pop_front();
            }
        }

        /// Use within `(t - window, t]` (only past readings exist, so up to now).
        pub(crate) fn used_within(&self, t: Millis, window: i64) -> f64 {
            let from = t.saturating_sub(window);
            self.usage
                .iter()
                .filter(|(at, _)| *at > from)
                .map(|(_, a)| a)
                .sum()
        }

        /// Earliest `x >= not_before` at which the use within `(x - window, x]`
        /// is below `limit` (`strict`) or at most `limit`, given no new readings.
        /// The use only changes when a reading leaves the window, so those
        /// instants are the only candidates.
        pub(crate) fn falls_to(
            &self,
            limit: f64,
            strict: bool,
            window: i64,
            not_before: Millis,
        ) -> Millis {
            let ok = |x: Millis| {
                let v = self.used_within(x, window);
                if strict {
                    v < limit
                } else {
                    v <= limit
                }
            };
            if ok(not_before) {
                return not_before;
            }
            for (at, _) in &self.usage {
                let x = at.saturating_add(window);
                if x > not_before && ok(x) {
                    return x;
                }
            }
            // Unreachable for a positive limit: once every reading has left the window the use is 0.
            self.usage.back().map_or(not_before, |(at, _)| {
                at.saturating_add(window).max(not_before)
            })
        }
    }
}

#[cfg(test)]
mod equivalence;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::reference::Rescan;
    use super::*;
    use proptest::prelude::*;

    /// 1/1024: amounts on this grid add up exactly in f64, in any order.
    const GRID: f64 = 1.0 / 1024.0;

    #[derive(Clone, Debug)]
    enum Op {
        /// Time step (ms), amount in 1/1024ths (0: a reading without use), how much to keep (ms).
        Read(i64, u32, i64),
        Used(i64, i64),
        Falls(u32, bool, i64, i64),
    }

    fn op() -> impl Strategy<Value = Op> {
        let dt = prop_oneof![3 => Just(0i64), 3 => 0i64..20, 2 => 0i64..500, 1 => 0i64..100_000];
        let keep = prop_oneof![Just(0i64), 1i64..50, 50i64..2_000, Just(i64::MAX)];
        // Query instants relative to the latest reading, including the extremes.
        let at = prop_oneof![
            4 => -3_000i64..3_000,
            1 => Just(i64::MIN),
            1 => Just(i64::MAX),
            1 => any::<i64>(),
        ];
        let window =
            prop_oneof![4 => 1i64..2_000, 1 => Just(0i64), 1 => Just(i64::MAX), 1 => any::<i64>()];
        prop_oneof![
            4 => (dt, prop_oneof![1 => Just(0u32), 4 => 1u32..4096, 1 => 1u32..(1 << 20)], keep)
                .prop_map(|(d, a, k)| Op::Read(d, a, k)),
            2 => (at.clone(), window.clone()).prop_map(|(t, w)| Op::Used(t, w)),
            2 => (0u32..8192, any::<bool>(), window, at).prop_map(|(l, s, w, nb)| Op::Falls(l, s, w, nb)),
        ]
    }

    /// Start times: ordinary, and near either end of time (saturation).
    fn start() -> impl Strategy<Value = Millis> {
        prop_oneof![
            Just(1_704_067_200_000i64),
            Just(i64::MAX - 50_000),
            Just(i64::MIN + 10)
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1_000, ..ProptestConfig::default() })]

        /// Readings in time order (any number in one millisecond), pruned
        /// as the engine prunes, and every question answered exactly as the
        /// old rescanning code answers it, whatever the instant, window and
        /// limit (saturating at either end of time included).
        #[test]
        fn answers_like_the_rescan(start in start(), ops in prop::collection::vec(op(), 1..120)) {
            let mut new = Usage::default();
            let mut old = Rescan::default();
            let mut t = start;
            for op in ops {
                match op {
                    Op::Read(dt, a, keep) => {
                        t = t.saturating_add(dt);
                        let used = Some(f64::from(a) * GRID);
                        new.record(t, used, keep);
                        old.record(t, used, t.saturating_sub(keep));
                    }
                    Op::Used(q, w) => {
                        let q = t.saturating_add(q);
                        prop_assert_eq!(new.used_within(q, w), old.used_within(q, w), "at {} window {}", q, w);
                    }
                    Op::Falls(l, strict, w, nb) => {
                        let limit = f64::from(l) * GRID;
                        let nb = t.saturating_add(nb);
                        prop_assert_eq!(
                            new.falls_to(limit, strict, w, nb),
                            old.falls_to(limit, strict, w, nb),
                            "limit {} strict {} window {} not_before {}", limit, strict, w, nb
                        );
                    }
                }
                prop_assert_eq!(new.readings.len(), old.usage.len());
            }
            // The saved form is the old one, value for value.
            prop_assert_eq!(serde_json::to_string(&new).unwrap(), serde_json::to_string(&old.usage).unwrap());
            let back: Usage = serde_json::from_str(&serde_json::to_string(&new).unwrap()).unwrap();
            prop_assert_eq!(back, new);
        }

        /// Past the cap: the history stays within it, no use leaves a window
        /// early, and none counts later than the documented bound (one slot,
        /// less than `8 · keep / cap + 2` ms).
        #[test]
        fn a_capped_history_is_bounded_and_late_by_less_than_a_slot(
            quarter in 1usize..16,
            steps in prop::collection::vec((0i64..400, 1u32..64), 1..600),
            keep in 1_000i64..200_000,
            probes in prop::collection::vec(-250_000i64..1_000, 1..40),
        ) {
            let cap = 4 * quarter;
            let mut new = Usage::default();
            // The same readings, pruned the same way / never pruned.
            let mut pruned = Rescan::default();
            let mut ever = Rescan::default();
            let mut t = 1_704_067_200_000i64;
            for (dt, a) in steps {
                t += dt;
                let used = Some(f64::from(a) * GRID);
                new.record_capped(t, used, keep, cap);
                pruned.record(t, used, t - keep);
                ever.record(t, used, i64::MIN);
                prop_assert!(new.readings.len() <= cap);
            }
            let late = 8 * keep / cap as i64 + 2;
            for p in probes {
                let b = t + p;
                // The use after `b` (a window of 0 ending at `b`): at least
                // what the exact history still holds after `b`, at most what
                // was ever used after `b - late`.
                let counted = new.used_within(b, 0);
                prop_assert!(counted >= pruned.used_within(b, 0), "{} < truth after {}", counted, b);
                prop_assert!(counted <= ever.used_within(b - late, 0), "{} counts use {} ms late or more", counted, late);
            }
            let back: Usage = serde_json::from_str(&serde_json::to_string(&new).unwrap()).unwrap();
            prop_assert_eq!(back, new);
        }
    }

    #[test]
    fn a_flood_is_capped_and_merges_only_past_the_cap() {
        let mut u = Usage::default();
        let t0 = 1_704_067_200_000i64;
        let keep = 24 * 3_600_000;
        // A reading a minute for a day: kept reading by reading.
        for i in 0..1_440 {
            let t = t0 + i * 60_000;
            u.record(t, Some(0.001), keep);
        }
        assert_eq!(u.readings.len(), 1_440);
        // Then 100,000 readings in 40 s.
        let t1 = t0 + 1_440 * 60_000;
        for i in 0..100_000 {
            let t = t1 + i * 2 / 5;
            u.record(t, Some(0.001), keep);
        }
        assert!(u.readings.len() <= MAX_READINGS, "{}", u.readings.len());
        // Nothing lost: 101,440 litres minus the first reading, which left the window.
        let used = u.used_within(t1 + 40_000, keep);
        assert!((used - 101.439).abs() < 1e-9, "{used}");
        // The minute readings before the flood were not merged (slots of seconds).
        assert_eq!(u.readings[1].0 - u.readings[0].0, 60_000);
    }

    #[test]
    fn infinite_and_huge_amounts_are_clamped_and_survive_json() {
        let mut u = Usage::default();
        u.record(10, Some(f64::INFINITY), 100);
        u.record(20, Some(5e300), 100);
        u.record(30, Some(0.25), 100);
        let json = serde_json::to_string(&u).unwrap();
        assert_eq!(json, "[[10,1073741824.0],[20,1073741824.0],[30,0.25]]");
        let back: Usage = serde_json::from_str(&json).unwrap();
        assert_eq!(back, u);
        // What the old code saved for an infinite amount loads as the clamp.
        let old: Usage = serde_json::from_str("[[10,null],[30,0.25]]").unwrap();
        assert_eq!(old.used_within(30, 100), MAX_AMOUNT + 0.25);
    }

    #[test]
    fn an_old_history_out_of_time_order_is_sorted_on_load() {
        let u: Usage = serde_json::from_str("[[30,0.5],[10,0.25],[20,0.125]]").unwrap();
        assert_eq!(
            serde_json::to_string(&u).unwrap(),
            "[[10,0.25],[20,0.125],[30,0.5]]"
        );
        assert_eq!(u.used_within(25, 10), 0.625);
        assert_eq!(u.falls_to(0.5, false, 100, 0), 120);
    }

    #[test]
    fn a_late_reading_counts_at_the_newest_time() {
        let mut u = Usage::default();
        u.record(100, Some(0.5), 1_000);
        u.record(40, Some(0.25), 1_000);
        assert_eq!(serde_json::to_string(&u).unwrap(), "[[100,0.5],[100,0.25]]");
        assert_eq!(u.falls_to(0.1, true, 50, 0), 150);
    }
}
