//! One household: the elder's daily routine, the incidents planned for the home, and
//! the events its devices send.
//!
//! The routine is built as a list of things the elder (or a visitor) does — walk into a
//! room, open the door, get into bed, use water, switch on the cooker — day by day with
//! a cursor. Incidents then cut out part of that list and add their own acts, and mark
//! devices silent for a while. Finally every device turns the acts it can see, plus its
//! own periodic reports, into contract events.

use std::collections::{BTreeMap, BTreeSet};
use std::f64::consts::TAU;

use serde_json::{json, Value};

use super::clock::{
    daytime_deadline, local_midnight, time_of_day, weekday, DAY_MS, HOUR_MS, MINUTE_MS,
};
use super::district::battery_powered;
use super::plan::Planned;
use super::rng::{between, chance, int, mins, pick, rng_for, secs, tag, uni, SimRng};
use super::{Expectation, Household, Incident, IncidentKind, Millis, SimConfig, SimEvent, ROOMS};

pub(crate) struct Output {
    pub events: Vec<SimEvent>,
    pub incidents: Vec<Incident>,
}

/// Silence the default `no-activity-daytime` rule allows (inside 07:00–22:00).
const DAYTIME_SILENCE: Millis = 4 * HOUR_MS;
/// Silence the default `no-water-use` rule allows.
const WATER_SILENCE: Millis = 24 * HOUR_MS;
/// Slack added to every deadline in an expectation.
const SLACK: Millis = 15 * MINUTE_MS;
/// Instant alarms must appear within this.
const INSTANT: Millis = 60_000;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Place {
    Bedroom = 0,
    Bathroom = 1,
    Kitchen = 2,
    LivingRoom = 3,
}

impl Place {
    fn name(self) -> &'static str {
        ROOMS[self as usize]
    }
}

/// Something a person does that a sensor can see.
#[derive(Clone, Copy, Debug)]
enum Act {
    Motion(Place),
    Door(bool),
    Bed(bool),
    Sos,
    Fall(f64),
    Smoke(bool),
    Gas(bool),
    Leak(bool),
}

#[derive(Clone, Copy, Debug)]
struct Timed {
    at: Millis,
    act: Act,
}

/// Water drawn at one instant (long flows are one entry per minute).
#[derive(Clone, Copy, Debug)]
struct Water {
    at: Millis,
    litres: f64,
}

/// An appliance on the kitchen plug drawing `watts` for `dur`.
#[derive(Clone, Copy, Debug)]
struct Power {
    at: Millis,
    dur: Millis,
    watts: f64,
}

/// The elder's habits (times of day are offsets from local midnight).
#[derive(Clone, Copy, Debug)]
struct Profile {
    wake: Millis,
    sleep: Millis,
    lunch: Millis,
    dinner: Millis,
    carer_days: [bool; 7],
    outing_p: f64,
    visitor_p: f64,
    nap_p: f64,
    shower_every: u32,
    shower_phase: u32,
    temp_base: f64,
    standby_w: f64,
    pir_hold: Millis,
    water_start_l: f64,
    energy_start_kwh: f64,
}

impl Profile {
    fn draw(r: &mut SimRng) -> Profile {
        const CARER_PATTERNS: [[bool; 7]; 4] = [
            [true, false, true, false, true, false, false],
            [false, true, false, true, false, true, false],
            [true, false, false, true, false, true, false],
            [false, true, false, false, true, false, true],
        ];
        let shower_every = int(r, 2, 3) as u32;
        Profile {
            wake: mins(r, 6.0 * 60.0 + 20.0, 7.0 * 60.0 + 20.0),
            sleep: mins(r, 21.0 * 60.0 + 30.0, 22.0 * 60.0 + 30.0),
            lunch: mins(r, 11.0 * 60.0 + 30.0, 12.0 * 60.0),
            dinner: mins(r, 17.0 * 60.0 + 30.0, 18.0 * 60.0 + 15.0),
            carer_days: CARER_PATTERNS[pick(r, CARER_PATTERNS.len())],
            outing_p: uni(r, 0.7, 0.9),
            visitor_p: uni(r, 0.1, 0.3),
            nap_p: uni(r, 0.3, 0.7),
            shower_every,
            shower_phase: int(r, 0, i64::from(shower_every) - 1) as u32,
            temp_base: uni(r, 19.0, 23.0),
            standby_w: uni(r, 1.5, 5.0),
            pir_hold: secs(r, 90.0, 240.0),
            water_start_l: uni(r, 50.0, 900.0) * 1000.0,
            energy_start_kwh: uni(r, 500.0, 8000.0),
        }
    }
}

/// Indexes of the household's devices, by role.
#[derive(Debug, Default)]
struct Devs {
    sos: Option<usize>,
    fall: Option<usize>,
    pir: [Option<usize>; 4],
    door: Option<usize>,
    bed: Option<usize>,
    smoke: Option<usize>,
    gas: Option<usize>,
    leak: Option<usize>,
    water: Option<usize>,
    power: Option<usize>,
    wearable: Option<usize>,
}

impl Devs {
    fn of(h: &Household) -> Devs {
        let mut d = Devs::default();
        for (i, dev) in h.devices.iter().enumerate() {
            let slot = match dev.kind {
                "sos" => &mut d.sos,
                "fall" => &mut d.fall,
                "door" => &mut d.door,
                "bed" => &mut d.bed,
                "smoke" => &mut d.smoke,
                "gas" => &mut d.gas,
                "water_leak" => &mut d.leak,
                "water_meter" => &mut d.water,
                "power_meter" => &mut d.power,
                "wearable" => &mut d.wearable,
                "motion" => {
                    let room = dev.room.as_deref().unwrap_or("living_room");
                    match ROOMS.iter().position(|r| *r == room) {
                        Some(k) => &mut d.pir[k],
                        None => continue,
                    }
                }
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(i);
            }
        }
        d
    }
}

/// When the day's fixed points happened.
#[derive(Clone, Copy, Debug)]
struct DayInfo {
    mid: Millis,
    wake: Millis,
    breakfast: (Millis, Millis),
    lunch: (Millis, Millis),
    dinner: (Millis, Millis),
    /// Got into bed for the night.
    sleep: Millis,
}

/// The routine's cursor within a day.
struct Cur {
    t: Millis,
    last_bath: Millis,
    bath_gap: Millis,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Slot {
    Morning,
    Afternoon,
    Evening,
}

#[derive(Clone, Copy)]
enum Meal {
    Breakfast,
    Lunch,
    Dinner,
}

/// Details of an incident that are only known once the events exist.
enum Fix {
    None,
    /// `start` is the last sign of life before this instant.
    StartAtLastActivityBefore(Millis),
    /// Each device must be reported offline: its last event before `from` + 3 heartbeats.
    Offline {
        devices: Vec<usize>,
        from: Millis,
    },
}

struct Draft {
    kind: IncidentKind,
    start: Millis,
    end: Millis,
    expected: Vec<Expectation>,
    fix: Fix,
    /// Why an inactivity alarm raised during the incident is acceptable.
    consequence: String,
}

#[derive(Clone, Copy)]
struct BatteryPlan {
    device: usize,
    t0: Millis,
    replaced: Millis,
}

type Raw = (usize, Millis, &'static str, Value);

struct Home<'a> {
    cfg: &'a SimConfig,
    idx: u64,
    hh: &'a Household,
    dev: Devs,
    prof: Profile,
    base: Millis,
    end: Millis,
    hb: Millis,
    acts: Vec<Timed>,
    water: Vec<Water>,
    power: Vec<Power>,
    days: Vec<DayInfo>,
    /// Per device: `[from, to)` intervals in which it sends nothing.
    silent: Vec<Vec<(Millis, Millis)>>,
    /// Intervals without mains power (no standby draw).
    no_power: Vec<(Millis, Millis)>,
    /// Events added by incidents (battery reports, heartbeats after an outage).
    extra: Vec<Raw>,
    battery: Option<BatteryPlan>,
    drafts: Vec<Draft>,
}

fn expect(rule: &str, device: Option<&str>, must: bool, within: Millis, note: &str) -> Expectation {
    Expectation {
        rule_id: rule.to_owned(),
        device: device.map(str::to_owned),
        must,
        within_ms: within.max(0),
        note: note.to_owned(),
    }
}

fn round_to(v: f64, decimals: i32) -> f64 {
    let f = 10f64.powi(decimals);
    (v * f).round() / f
}

fn kwh(watts: f64, ms: Millis) -> f64 {
    watts * ms as f64 / 3.6e9
}

fn overlap(a: (Millis, Millis), b: (Millis, Millis)) -> Millis {
    (a.1.min(b.1) - a.0.max(b.0)).max(0)
}

fn quiet_days(planned: &[Planned]) -> BTreeSet<u32> {
    let mut q = BTreeSet::new();
    for p in planned {
        match p.kind {
            IncidentKind::FallWithPendant
            | IncidentKind::FallNoButton
            | IncidentKind::Smoke
            | IncidentKind::Gas
            | IncidentKind::WaterLeak => {
                q.insert(p.day);
            }
            IncidentKind::CollapseInBed => {
                q.insert(p.day + 1);
            }
            IncidentKind::AwayNotSet | IncidentKind::AwaySet => {
                q.insert(p.day);
                q.insert(p.day + p.span);
            }
            _ => {}
        }
    }
    q
}

pub(crate) fn simulate(
    cfg: &SimConfig,
    index: usize,
    hh: &Household,
    planned: &[Planned],
) -> Output {
    let idx = index as u64;
    let base = local_midnight(cfg.start);
    let end = cfg.end();
    let mut home = Home {
        cfg,
        idx,
        hh,
        dev: Devs::of(hh),
        prof: Profile::draw(&mut rng_for(cfg.seed, tag::PROFILE, idx, 0)),
        base,
        end,
        hb: cfg.heartbeat_ms(),
        acts: Vec::new(),
        water: Vec::new(),
        power: Vec::new(),
        days: Vec::new(),
        silent: vec![Vec::new(); hh.devices.len()],
        no_power: Vec::new(),
        extra: Vec::new(),
        battery: None,
        drafts: Vec::new(),
    };
    let quiet = quiet_days(planned);
    let n_days = (end - base + DAY_MS - 1).div_euclid(DAY_MS).max(0) as u32;
    let mut prev_sleep = None;
    for d in 0..n_days {
        let info = home.day(d, quiet.contains(&d), prev_sleep);
        prev_sleep = Some(info.sleep);
        home.days.push(info);
    }
    for p in planned {
        home.incident(p);
    }
    let events = home.emit();
    let incidents = home.finish(&events);
    Output { events, incidents }
}

impl Home<'_> {
    // ----- recording -------------------------------------------------------------

    fn act(&mut self, at: Millis, act: Act) {
        self.acts.push(Timed { at, act });
    }

    fn motion(&mut self, at: Millis, room: Place) {
        self.act(at, Act::Motion(room));
    }

    fn use_water(&mut self, at: Millis, litres: f64) {
        self.water.push(Water { at, litres });
    }

    fn use_power(&mut self, at: Millis, dur: Millis, watts: f64) {
        self.power.push(Power { at, dur, watts });
    }

    /// Remove everything the people in the home did in `[from, to)`.
    fn cut(&mut self, from: Millis, to: Millis) {
        self.acts.retain(|a| a.at < from || a.at >= to);
        self.water.retain(|w| w.at < from || w.at >= to);
        self.cut_power(from, to);
    }

    fn cut_power(&mut self, from: Millis, to: Millis) {
        self.power.retain(|p| p.at < from || p.at >= to);
        for p in &mut self.power {
            if p.at < from && p.at + p.dur > from {
                p.dur = from - p.at;
            }
        }
    }

    fn device_id(&self, i: usize) -> &str {
        self.hh.devices.get(i).map_or("", |d| d.id.as_str())
    }

    // ----- the routine -----------------------------------------------------------

    fn day(&mut self, d: u32, quiet: bool, prev_sleep: Option<Millis>) -> DayInfo {
        let mut rng = rng_for(self.cfg.seed, tag::DAY, self.idx, u64::from(d));
        let r = &mut rng;
        let p = self.prof;
        let mid = self.base + i64::from(d) * DAY_MS;
        let wd = weekday(mid) as usize;
        let weekend = wd >= 5;

        let mut wake = mid + p.wake + mins(r, -25.0, 25.0) + mins(r, -10.0, 10.0);
        let (lo, hi) = if weekend {
            wake += mins(r, 15.0, 45.0);
            (6 * 60 + 15, 8 * 60 + 30)
        } else {
            (6 * 60, 8 * 60)
        };
        wake = wake.clamp(mid + lo * MINUTE_MS, mid + hi * MINUTE_MS);
        let night_from = prev_sleep.map_or(mid, |s| s + HOUR_MS);
        self.night(r, night_from, wake - 30 * MINUTE_MS);

        // Getting up.
        self.act(wake, Act::Bed(false));
        self.motion(wake + secs(r, 10.0, 60.0), Place::Bedroom);
        self.motion(wake + mins(r, 2.0, 5.0), Place::Bathroom);
        self.use_water(wake + mins(r, 4.0, 7.0), uni(r, 6.0, 9.0));
        self.use_water(wake + mins(r, 7.0, 12.0), uni(r, 4.0, 8.0));
        self.motion(wake + mins(r, 12.0, 18.0), Place::LivingRoom);
        let mut c = Cur {
            t: wake + 18 * MINUTE_MS,
            last_bath: wake,
            bath_gap: mins(r, 120.0, 240.0),
        };

        // What kind of day.
        let carer = !quiet && p.carer_days[wd] && chance(r, 0.9);
        let outing = !quiet && chance(r, p.outing_p);
        let outing_morning = outing && !carer && chance(r, 0.5);
        let outing_afternoon = outing && !outing_morning;
        let outing_len = if chance(r, 0.85) {
            mins(r, 60.0, 180.0)
        } else {
            mins(r, 180.0, 210.0)
        };
        let visitor = if quiet || !chance(r, p.visitor_p) {
            None
        } else if !carer && !outing_morning {
            Some(Slot::Morning)
        } else if !outing_afternoon {
            Some(Slot::Afternoon)
        } else {
            Some(Slot::Evening)
        };
        let nap = !quiet && chance(r, p.nap_p);
        let shower = d % p.shower_every.max(1) == p.shower_phase;
        let lunch_at = mid + p.lunch + mins(r, -20.0, 20.0);
        let dinner_at = mid + p.dinner + mins(r, -20.0, 20.0);
        let sleep_at =
            (mid + p.sleep + mins(r, -30.0, 30.0)).clamp(mid + 21 * HOUR_MS, mid + 23 * HOUR_MS);

        let b = c.t + mins(r, 3.0, 15.0);
        self.idle(r, &mut c, b);
        let breakfast = self.meal(r, &mut c, Meal::Breakfast);

        // Morning.
        if carer {
            let a = c.t + mins(r, 20.0, 60.0);
            self.idle(r, &mut c, a);
            let stay = mins(r, 30.0, 60.0);
            self.carer(r, &mut c, stay);
        }
        if outing_morning {
            let s = c.t + mins(r, 10.0, 60.0);
            self.idle(r, &mut c, s);
            self.outing(r, &mut c, outing_len);
        }
        if visitor == Some(Slot::Morning) {
            let a = c.t + mins(r, 15.0, 60.0);
            if a + 45 * MINUTE_MS < lunch_at {
                self.idle(r, &mut c, a);
                let stay = mins(r, 30.0, 120.0);
                self.visit(r, &mut c, stay);
            }
        }
        let l = lunch_at.max(c.t + mins(r, 5.0, 15.0));
        self.idle(r, &mut c, l);
        let lunch = self.meal(r, &mut c, Meal::Lunch);

        // Afternoon.
        if nap {
            let s = c.t + mins(r, 20.0, 45.0);
            self.idle(r, &mut c, s);
            let len = mins(r, 30.0, 90.0);
            self.nap(r, &mut c, len);
        }
        if outing_afternoon {
            let s = c.t + mins(r, 15.0, 60.0);
            self.idle(r, &mut c, s);
            self.outing(r, &mut c, outing_len);
        }
        if visitor == Some(Slot::Afternoon) {
            let a = c.t + mins(r, 15.0, 45.0);
            if a + 45 * MINUTE_MS < dinner_at {
                self.idle(r, &mut c, a);
                let stay = mins(r, 30.0, 120.0);
                self.visit(r, &mut c, stay);
            }
        }
        let dn = dinner_at.max(c.t + mins(r, 5.0, 15.0));
        self.idle(r, &mut c, dn);
        let dinner = self.meal(r, &mut c, Meal::Dinner);

        // Evening.
        if visitor == Some(Slot::Evening) {
            let a = c.t + mins(r, 10.0, 30.0);
            self.idle(r, &mut c, a);
            let stay = mins(r, 30.0, 90.0);
            self.visit(r, &mut c, stay);
        }
        if shower {
            let s = c.t + mins(r, 30.0, 90.0);
            if s + 30 * MINUTE_MS < sleep_at {
                self.idle(r, &mut c, s);
                self.shower(r, &mut c);
            }
        }
        let bedtime = sleep_at.max(c.t + mins(r, 15.0, 30.0)) - mins(r, 10.0, 20.0);
        self.idle(r, &mut c, bedtime);
        let sleep = self.bedtime(r, &mut c);
        DayInfo {
            mid,
            wake,
            breakfast,
            lunch,
            dinner,
            sleep,
        }
    }

    /// 0–2 bathroom visits at night, each back in bed within 20 minutes.
    fn night(&mut self, r: &mut SimRng, from: Millis, to: Millis) {
        let n = match uni(r, 0.0, 1.0) {
            x if x < 0.35 => 0,
            x if x < 0.8 => 1,
            _ => 2,
        };
        let last = to - 25 * MINUTE_MS;
        if last <= from {
            return;
        }
        let mut times = (0..n).map(|_| between(r, from, last)).collect::<Vec<_>>();
        times.sort_unstable();
        let mut prev: Option<Millis> = None;
        for v in times {
            if prev.is_some_and(|p| v - p < 40 * MINUTE_MS) {
                continue;
            }
            prev = Some(v);
            self.act(v, Act::Bed(false));
            self.motion(v + secs(r, 10.0, 40.0), Place::Bedroom);
            self.motion(v + secs(r, 60.0, 150.0), Place::Bathroom);
            self.use_water(v + mins(r, 3.0, 5.0), uni(r, 6.0, 9.0));
            self.use_water(v + mins(r, 5.0, 7.0), uni(r, 0.6, 1.2));
            self.motion(v + mins(r, 7.0, 11.0), Place::Bedroom);
            self.act(v + mins(r, 12.0, 18.0), Act::Bed(true));
        }
    }

    /// At home and awake until `until`: living-room motion every 20–60 minutes, the
    /// bathroom every 2–4 hours, now and then a cup of tea.
    fn idle(&mut self, r: &mut SimRng, c: &mut Cur, until: Millis) {
        loop {
            let next = c.t + mins(r, 20.0, 60.0);
            if next > until - 3 * MINUTE_MS {
                break;
            }
            c.t = next;
            if c.t - c.last_bath >= c.bath_gap {
                self.motion(c.t, Place::Bathroom);
                self.use_water(c.t + mins(r, 2.0, 4.0), uni(r, 6.0, 9.0));
                self.use_water(c.t + mins(r, 4.0, 5.0), uni(r, 0.6, 1.2));
                self.motion(c.t + mins(r, 5.0, 7.0), Place::LivingRoom);
                c.t += 7 * MINUTE_MS;
                c.last_bath = c.t;
                c.bath_gap = mins(r, 120.0, 240.0);
            } else if chance(r, 0.12) {
                self.motion(c.t, Place::Kitchen);
                self.use_water(c.t + secs(r, 20.0, 60.0), uni(r, 0.6, 1.0));
                self.use_power(
                    c.t + secs(r, 60.0, 90.0),
                    mins(r, 3.0, 4.0),
                    uni(r, 1500.0, 2000.0),
                );
                self.motion(c.t + mins(r, 5.0, 7.0), Place::LivingRoom);
                c.t += 7 * MINUTE_MS;
            } else {
                self.motion(c.t, Place::LivingRoom);
            }
        }
        c.t = c.t.max(until);
    }

    fn meal(&mut self, r: &mut SimRng, c: &mut Cur, meal: Meal) -> (Millis, Millis) {
        let (prep, watts, wash, eat, dishes) = match meal {
            Meal::Breakfast => (
                (8.0, 15.0),
                (700.0, 1200.0),
                (1.5, 3.0),
                (12.0, 20.0),
                (2.0, 3.0),
            ),
            Meal::Lunch | Meal::Dinner => (
                (25.0, 40.0),
                (800.0, 1600.0),
                (4.0, 8.0),
                (15.0, 25.0),
                (4.0, 6.0),
            ),
        };
        let s = c.t;
        let prep = mins(r, prep.0, prep.1);
        self.motion(s, Place::Kitchen);
        self.use_power(s + mins(r, 1.0, 3.0), prep, uni(r, watts.0, watts.1));
        self.use_water(s + mins(r, 2.0, 5.0), uni(r, wash.0, wash.1));
        self.motion(s + prep / 2, Place::Kitchen);
        self.motion(s + prep + MINUTE_MS, Place::Kitchen);
        let eat = mins(r, eat.0, eat.1);
        self.motion(s + prep + eat / 2, Place::Kitchen);
        let done = s + prep + eat;
        self.use_water(done + mins(r, 1.0, 4.0), uni(r, dishes.0, dishes.1));
        self.motion(done + mins(r, 1.0, 3.0), Place::Kitchen);
        c.t = done + 5 * MINUTE_MS;
        (s, c.t)
    }

    fn outing(&mut self, r: &mut SimRng, c: &mut Cur, len: Millis) {
        let s = c.t;
        self.act(s, Act::Door(true));
        self.act(s + secs(r, 15.0, 60.0), Act::Door(false));
        let back = s + len;
        self.act(back, Act::Door(true));
        self.act(back + secs(r, 10.0, 40.0), Act::Door(false));
        self.motion(back + secs(r, 50.0, 90.0), Place::LivingRoom);
        c.t = back + 2 * MINUTE_MS;
    }

    /// The carer: cleans, checks the kitchen and bathroom.
    fn carer(&mut self, r: &mut SimRng, c: &mut Cur, stay: Millis) {
        let a = c.t;
        self.act(a, Act::Door(true));
        self.act(a + secs(r, 15.0, 40.0), Act::Door(false));
        self.motion(a + secs(r, 50.0, 90.0), Place::LivingRoom);
        self.motion(a + mins(r, 5.0, 12.0), Place::Kitchen);
        self.use_water(a + mins(r, 10.0, 20.0), uni(r, 8.0, 15.0));
        self.motion(a + mins(r, 15.0, 25.0), Place::Bathroom);
        let mut t = a + 25 * MINUTE_MS;
        while t + 5 * MINUTE_MS < a + stay {
            self.motion(t, Place::LivingRoom);
            t += mins(r, 8.0, 12.0);
        }
        self.act(a + stay, Act::Door(true));
        self.act(a + stay + secs(r, 15.0, 40.0), Act::Door(false));
        c.t = a + stay + MINUTE_MS;
    }

    /// A visitor: tea in the living room.
    fn visit(&mut self, r: &mut SimRng, c: &mut Cur, stay: Millis) {
        let a = c.t;
        self.act(a, Act::Door(true));
        self.act(a + secs(r, 15.0, 40.0), Act::Door(false));
        self.motion(a + MINUTE_MS, Place::LivingRoom);
        self.motion(a + mins(r, 3.0, 6.0), Place::Kitchen);
        self.use_water(a + mins(r, 4.0, 7.0), uni(r, 0.8, 1.5));
        self.use_power(
            a + mins(r, 5.0, 8.0),
            mins(r, 3.0, 4.0),
            uni(r, 1500.0, 2000.0),
        );
        let mut t = a + 12 * MINUTE_MS;
        while t + 5 * MINUTE_MS < a + stay {
            self.motion(t, Place::LivingRoom);
            t += mins(r, 10.0, 20.0);
        }
        self.act(a + stay, Act::Door(true));
        self.act(a + stay + secs(r, 15.0, 40.0), Act::Door(false));
        c.t = a + stay + MINUTE_MS;
    }

    fn nap(&mut self, r: &mut SimRng, c: &mut Cur, len: Millis) {
        let s = c.t;
        self.motion(s, Place::Bedroom);
        self.act(s + secs(r, 30.0, 90.0), Act::Bed(true));
        self.act(s + len, Act::Bed(false));
        self.motion(s + len + secs(r, 20.0, 60.0), Place::Bedroom);
        self.motion(s + len + mins(r, 2.0, 4.0), Place::LivingRoom);
        c.t = s + len + 4 * MINUTE_MS;
    }

    fn shower(&mut self, r: &mut SimRng, c: &mut Cur) {
        let s = c.t;
        self.motion(s, Place::Bathroom);
        self.use_water(s + mins(r, 8.0, 12.0), uni(r, 30.0, 50.0));
        self.motion(s + mins(r, 13.0, 18.0), Place::Bathroom);
        self.motion(s + mins(r, 19.0, 22.0), Place::Bedroom);
        c.t = s + 22 * MINUTE_MS;
        c.last_bath = c.t;
    }

    /// Bathroom, then into bed; returns when the bed sensor says occupied.
    fn bedtime(&mut self, r: &mut SimRng, c: &mut Cur) -> Millis {
        let s = c.t;
        self.motion(s, Place::Bathroom);
        self.use_water(s + mins(r, 1.0, 3.0), uni(r, 6.0, 9.0));
        self.use_water(s + mins(r, 3.0, 6.0), uni(r, 1.0, 2.0));
        self.motion(s + mins(r, 6.0, 8.0), Place::Bedroom);
        let sleep = s + mins(r, 9.0, 15.0);
        self.act(sleep, Act::Bed(true));
        c.t = sleep;
        sleep
    }

    /// Someone lets themselves in, goes through `rooms`, stays, and leaves.
    fn helper(&mut self, r: &mut SimRng, at: Millis, stay: Millis, rooms: &[Place]) {
        self.act(at, Act::Door(true));
        self.act(at + secs(r, 15.0, 40.0), Act::Door(false));
        let mut t = at + secs(r, 50.0, 90.0);
        for room in rooms {
            self.motion(t, *room);
            t += mins(r, 1.0, 3.0);
        }
        let mut k = 0;
        while t + 5 * MINUTE_MS < at + stay {
            self.motion(
                t,
                if k % 2 == 0 {
                    Place::LivingRoom
                } else {
                    Place::Kitchen
                },
            );
            k += 1;
            t += mins(r, 8.0, 12.0);
        }
        self.use_water(at + stay / 2, uni(r, 2.0, 5.0));
        self.act(at + stay, Act::Door(true));
        self.act(at + stay + secs(r, 15.0, 40.0), Act::Door(false));
    }

    // ----- incidents -------------------------------------------------------------

    fn home_devices(&self) -> Vec<usize> {
        (0..self.hh.devices.len())
            .filter(|&i| Some(i) != self.dev.wearable)
            .collect()
    }

    /// Silence `devices` in `[from, to)`; each says hello again within 90 s.
    fn outage(&mut self, r: &mut SimRng, devices: &[usize], from: Millis, to: Millis) {
        for &i in devices {
            if let Some(s) = self.silent.get_mut(i) {
                s.push((from, to));
            }
            self.extra
                .push((i, to + secs(r, 5.0, 90.0), "heartbeat", json!({})));
        }
    }

    fn incident(&mut self, p: &Planned) {
        let d = p.day as usize;
        let Some(info) = self.days.get(d).copied() else {
            return;
        };
        let mut rng = rng_for(self.cfg.seed, tag::INCIDENT, self.idx, u64::from(p.day));
        let r = &mut rng;
        let hb = self.hb;
        let draft = match p.kind {
            IncidentKind::FallWithPendant => {
                let (Some(pendant), Some(detector)) =
                    (self.dev.sos, self.dev.fall.or(self.dev.wearable))
                else {
                    return;
                };
                let fall = between(
                    r,
                    info.breakfast.1 + 15 * MINUTE_MS,
                    info.dinner.0 - 150 * MINUTE_MS,
                );
                let carer = fall + mins(r, 30.0, 90.0);
                let stay = mins(r, 30.0, 60.0);
                self.cut(fall, carer);
                self.motion(fall - secs(r, 30.0, 120.0), Place::Bathroom);
                self.act(fall, Act::Fall(round_to(uni(r, 0.75, 0.98), 2)));
                let press = secs(r, 3.0, 20.0);
                self.act(fall + press, Act::Sos);
                self.helper(r, carer, stay, &[Place::LivingRoom, Place::Bathroom]);
                let waited = (carer - fall) / MINUTE_MS;
                Draft {
                    kind: p.kind,
                    start: fall,
                    end: carer + stay,
                    expected: vec![
                        expect(
                            "sos",
                            Some(self.device_id(pendant)),
                            true,
                            INSTANT,
                            &format!("SOS pressed {} s after the fall", press / 1000),
                        ),
                        expect(
                            "fall",
                            Some(self.device_id(detector)),
                            true,
                            INSTANT,
                            &format!("fall in the bathroom; the carer arrives after {waited} min"),
                        ),
                    ],
                    fix: Fix::None,
                    consequence: "consequence of the fall: acceptable".into(),
                }
            }
            IncidentKind::FallNoButton => {
                let fall = (info.mid + mins(r, 9.0 * 60.0, 14.5 * 60.0))
                    .max(info.breakfast.1 + 10 * MINUTE_MS);
                let found = fall + 6 * HOUR_MS;
                let stay = mins(r, 30.0, 60.0);
                self.cut(fall, found);
                self.helper(
                    r,
                    found,
                    stay,
                    &[Place::LivingRoom, Place::Bedroom, Place::Bathroom],
                );
                Draft {
                    kind: p.kind,
                    start: fall,
                    end: found + stay,
                    expected: vec![expect(
                        "no-activity-daytime",
                        None,
                        true,
                        DAYTIME_SILENCE + SLACK,
                        "daytime fall without pressing the button: no sign of life for 6 h \
                         until a visitor finds the elder; start is the last sign of life",
                    )],
                    fix: Fix::StartAtLastActivityBefore(found),
                    consequence: "consequence of the fall: acceptable".into(),
                }
            }
            IncidentKind::CollapseInBed => {
                let Some(next) = self.days.get(d + 1).copied() else {
                    return;
                };
                let sleep = info.sleep;
                let found = next.mid + 12 * HOUR_MS + mins(r, 0.0, 30.0);
                let stay = mins(r, 30.0, 60.0);
                self.cut(sleep + 1, found);
                self.helper(r, found, stay, &[Place::LivingRoom, Place::Bedroom]);
                self.act(found + mins(r, 4.0, 10.0), Act::Bed(false));
                let deadline = next.mid + 7 * HOUR_MS + DAYTIME_SILENCE + SLACK;
                Draft {
                    kind: p.kind,
                    start: sleep,
                    end: found + stay,
                    expected: vec![expect(
                        "no-activity-daytime",
                        None,
                        true,
                        deadline - sleep,
                        "went to bed and did not get up; found at noon. Deadline: 07:00 + 4 h \
                         + 15 min the next morning",
                    )],
                    fix: Fix::None,
                    consequence: "consequence of the collapse: acceptable".into(),
                }
            }
            IncidentKind::Smoke | IncidentKind::Gas | IncidentKind::WaterLeak => {
                let (device, alarm_on, alarm_off, rule, at, what) = match p.kind {
                    IncidentKind::Smoke => (
                        self.dev.smoke,
                        Act::Smoke(true),
                        Act::Smoke(false),
                        "smoke",
                        info.dinner.0 + mins(r, 5.0, 15.0),
                        "smoke from the cooker while making dinner",
                    ),
                    IncidentKind::Gas => (
                        self.dev.gas,
                        Act::Gas(true),
                        Act::Gas(false),
                        "gas",
                        info.lunch.0 + mins(r, 2.0, 10.0),
                        "gas escaping while cooking lunch",
                    ),
                    _ => (
                        self.dev.leak,
                        Act::Leak(true),
                        Act::Leak(false),
                        "water-leak",
                        between(
                            r,
                            info.breakfast.1 + 30 * MINUTE_MS,
                            info.dinner.0 - HOUR_MS,
                        ),
                        "a pipe leaks in the bathroom",
                    ),
                };
                let Some(device) = device else {
                    return;
                };
                let off = at + mins(r, 10.0, 30.0);
                self.act(at, alarm_on);
                self.act(off, alarm_off);
                if p.kind == IncidentKind::WaterLeak {
                    self.motion(at + mins(r, 1.0, 8.0), Place::Bathroom);
                    let mut t = at;
                    while t < off {
                        self.use_water(t, uni(r, 1.5, 2.5));
                        t += MINUTE_MS;
                    }
                    self.motion(off - secs(r, 20.0, 60.0), Place::Bathroom);
                } else {
                    self.motion(at + secs(r, 20.0, 60.0), Place::Kitchen);
                    self.act(at + mins(r, 2.0, 4.0), Act::Door(true));
                    self.act(off + mins(r, 1.0, 5.0), Act::Door(false));
                }
                Draft {
                    kind: p.kind,
                    start: at,
                    end: off,
                    expected: vec![expect(
                        rule,
                        Some(self.device_id(device)),
                        true,
                        INSTANT,
                        &format!("{what}; clears after {} min", (off - at) / MINUTE_MS),
                    )],
                    fix: Fix::None,
                    consequence: "consequence of the incident: acceptable".into(),
                }
            }
            IncidentKind::TapLeftRunning => {
                let Some(meter) = self.dev.water else {
                    return;
                };
                let at = info.mid + mins(r, 8.0 * 60.0, 12.0 * 60.0);
                let end = at + 8 * HOUR_MS;
                self.motion(at - secs(r, 20.0, 60.0), Place::Kitchen);
                let mut t = at;
                while t < end {
                    self.use_water(t, uni(r, 5.5, 6.5));
                    t += MINUTE_MS;
                }
                Draft {
                    kind: p.kind,
                    start: at,
                    end,
                    expected: vec![expect(
                        "tap-left-running",
                        Some(self.device_id(meter)),
                        true,
                        2 * HOUR_MS,
                        "not detected by default rules yet (issue 4 adds a rule): ~6 L/min \
                         for 8 h; should be flagged within 2 h",
                    )],
                    fix: Fix::None,
                    consequence: "consequence of the incident: acceptable".into(),
                }
            }
            IncidentKind::AwayNotSet | IncidentKind::AwaySet => {
                let Some(back_day) = self.days.get(d + p.span as usize).copied() else {
                    return;
                };
                let leave = info.breakfast.1 + mins(r, 20.0, 90.0);
                let back = back_day.mid + mins(r, 14.0 * 60.0, 18.0 * 60.0);
                self.cut(leave, back);
                self.act(leave, Act::Door(true));
                self.act(leave + secs(r, 15.0, 60.0), Act::Door(false));
                self.act(back, Act::Door(true));
                self.act(back + secs(r, 10.0, 40.0), Act::Door(false));
                self.motion(back + secs(r, 50.0, 90.0), Place::LivingRoom);
                self.motion(back + mins(r, 5.0, 10.0), Place::Kitchen);
                self.use_water(back + mins(r, 6.0, 10.0), uni(r, 1.0, 2.0));
                self.use_power(
                    back + mins(r, 8.0, 12.0),
                    mins(r, 3.0, 4.0),
                    uni(r, 1500.0, 2000.0),
                );
                self.motion(back + mins(r, 15.0, 20.0), Place::LivingRoom);
                let days = p.span;
                let consequence = if p.kind == IncidentKind::AwayNotSet {
                    format!(
                        "elder away at the family's for {days} days without away mode: the \
                         classic false alarm, expected"
                    )
                } else {
                    format!(
                        "elder away for {days} days, away mode set; away mode arrives with \
                         issue 4, until then this alarm still fires (expected false alarm)"
                    )
                };
                Draft {
                    kind: p.kind,
                    start: leave,
                    end: back,
                    expected: Vec::new(),
                    fix: Fix::None,
                    consequence,
                }
            }
            IncidentKind::BatteryDies => {
                let candidates = (0..self.hh.devices.len())
                    .filter(|&i| {
                        Some(i) != self.dev.wearable && battery_powered(self.hh.devices[i].kind)
                    })
                    .collect::<Vec<_>>();
                let Some(&device) = candidates.get(pick(r, candidates.len())) else {
                    return;
                };
                let t0 = info.mid + mins(r, 8.0 * 60.0, 10.0 * 60.0);
                let t1 = t0 + mins(r, 20.0 * 60.0, 23.0 * 60.0);
                let t2 = t1 + mins(r, 20.0 * 60.0, 23.0 * 60.0);
                let dead = t2 + mins(r, 60.0, 360.0);
                let replaced = (local_midnight(dead) + DAY_MS + mins(r, 10.0 * 60.0, 16.0 * 60.0))
                    .max(dead + 3 * hb + HOUR_MS);
                for (at, percent) in [(t0, 20), (t1, 10), (t2, 5), (replaced, 100)] {
                    self.extra
                        .push((device, at, "battery", json!({ "percent": percent })));
                }
                self.extra.push((
                    device,
                    replaced + secs(r, 5.0, 30.0),
                    "heartbeat",
                    json!({}),
                ));
                if let Some(s) = self.silent.get_mut(device) {
                    s.push((dead + 1, replaced));
                }
                self.battery = Some(BatteryPlan {
                    device,
                    t0,
                    replaced,
                });
                Draft {
                    kind: p.kind,
                    start: t0,
                    end: replaced,
                    expected: vec![expect(
                        "low-battery",
                        Some(self.device_id(device)),
                        true,
                        DAY_MS,
                        "battery reports 20 % → 10 % → 5 % over two days",
                    )],
                    fix: Fix::Offline {
                        devices: vec![device],
                        from: dead + 1,
                    },
                    consequence: "consequence of the dead device: acceptable".into(),
                }
            }
            IncidentKind::HomeOffline => {
                let from = info.mid + mins(r, 8.0 * 60.0, 18.0 * 60.0);
                let to = from + (4 * HOUR_MS).max(3 * hb);
                let devices = self.home_devices();
                self.outage(r, &devices, from, to);
                Draft {
                    kind: p.kind,
                    start: from,
                    end: to,
                    expected: Vec::new(),
                    fix: Fix::Offline { devices, from },
                    consequence: "the home gateway is down, so the hub sees no sign of life: \
                                  acceptable consequence"
                        .into(),
                }
            }
            IncidentKind::VillagePowerCut => {
                let Some((from, to)) = p.cut else {
                    return;
                };
                let devices = self.home_devices();
                self.outage(r, &devices, from, to);
                self.no_power.push((from, to));
                self.cut_power(from, to);
                let village = p.village.as_deref().unwrap_or("?");
                Draft {
                    kind: p.kind,
                    start: from,
                    end: to,
                    expected: Vec::new(),
                    fix: Fix::Offline { devices, from },
                    consequence: format!(
                        "power cut in village {village} (households {}): the hub sees no sign \
                         of life, acceptable consequence",
                        p.group.join(", ")
                    ),
                }
            }
        };
        self.drafts.push(draft);
    }

    // ----- device events ---------------------------------------------------------

    fn emit(&mut self) -> Vec<SimEvent> {
        let mut ev: Vec<Raw> = Vec::new();
        self.acts.sort_by_key(|a| a.at);
        self.emit_acts(&mut ev);
        for i in 0..self.hh.devices.len() {
            self.emit_device(i, &mut ev);
        }
        self.emit_water(&mut ev);
        self.emit_power(&mut ev);
        ev.append(&mut self.extra);
        let (start, end) = (self.cfg.start, self.end);
        let mut out = ev
            .into_iter()
            .filter(|(i, at, _, _)| {
                *at >= start
                    && *at < end
                    && !self
                        .silent
                        .get(*i)
                        .is_some_and(|s| s.iter().any(|&(a, b)| a <= *at && *at < b))
            })
            .map(|(i, at, kind, fields)| SimEvent {
                at,
                device: self.device_id(i).to_owned(),
                kind,
                fields,
            })
            .collect::<Vec<_>>();
        out.sort_by_key(|e| e.at);
        out
    }

    fn emit_acts(&self, ev: &mut Vec<Raw>) {
        let hold = self.prof.pir_hold;
        let mut until: [Option<Millis>; 4] = [None; 4];
        let motion = |room: Place, on: bool| json!({ "occupancy": on, "room": room.name() });
        for a in &self.acts {
            let (device, kind, fields) = match a.act {
                Act::Motion(room) => {
                    let k = room as usize;
                    let Some(dev) = self.dev.pir[k] else {
                        continue;
                    };
                    match until[k] {
                        // Still within the hold time: the sensor just stays occupied.
                        Some(u) if a.at < u => {
                            until[k] = Some(a.at + hold);
                            continue;
                        }
                        Some(u) => ev.push((dev, u, "motion", motion(room, false))),
                        None => {}
                    }
                    until[k] = Some(a.at + hold);
                    (Some(dev), "motion", motion(room, true))
                }
                Act::Door(open) => (self.dev.door, "door", json!({ "open": open })),
                Act::Bed(occupied) => (self.dev.bed, "bed", json!({ "occupied": occupied })),
                Act::Sos => (self.dev.sos, "sos", json!({})),
                Act::Fall(confidence) => (
                    self.dev.fall.or(self.dev.wearable),
                    "fall",
                    json!({ "confidence": confidence }),
                ),
                Act::Smoke(alarm) => (self.dev.smoke, "smoke", json!({ "alarm": alarm })),
                Act::Gas(alarm) => (self.dev.gas, "gas", json!({ "alarm": alarm })),
                Act::Leak(leak) => (self.dev.leak, "water_leak", json!({ "leak": leak })),
            };
            if let Some(dev) = device {
                ev.push((dev, a.at, kind, fields));
            }
        }
        for (k, u) in until.iter().enumerate() {
            if let (Some(u), Some(dev)) = (u, self.dev.pir[k]) {
                let room = [
                    Place::Bedroom,
                    Place::Bathroom,
                    Place::Kitchen,
                    Place::LivingRoom,
                ][k];
                ev.push((dev, *u, "motion", motion(room, false)));
            }
        }
    }

    /// Sleep intervals (bed at night until getting up), for the wearable's heart rate.
    fn sleep_spans(&self) -> Vec<(Millis, Millis)> {
        let mut spans = Vec::with_capacity(self.days.len() + 1);
        let mut from = self.base;
        for day in &self.days {
            spans.push((from, day.wake));
            from = day.sleep;
        }
        spans.push((from, self.end));
        spans
    }

    /// Heartbeats, temperature, battery and heart rate of device `i`.
    fn emit_device(&self, i: usize, ev: &mut Vec<Raw>) {
        let Some(device) = self.hh.devices.get(i) else {
            return;
        };
        let mut rng = rng_for(self.cfg.seed, tag::DEVICE, self.idx, i as u64);
        let r = &mut rng;
        let (base, end, hb) = (self.base, self.end, self.hb);

        let mut t = base + between(r, 0, hb);
        while t < end {
            ev.push((i, t, "heartbeat", json!({})));
            t += (hb as f64 * uni(r, 1.0, 1.1)).round() as Millis;
        }

        if device.kind == "motion" && device.room.as_deref() == Some("living_room") {
            let mut t = base + between(r, 0, HOUR_MS);
            let mut drift = 0.0;
            let mut day = -1;
            while t < end {
                let dd = (t - base).div_euclid(DAY_MS);
                if dd != day {
                    drift = (drift + uni(r, -0.4, 0.4)).clamp(-1.5, 1.5);
                    day = dd;
                }
                let hours = time_of_day(t) as f64 / HOUR_MS as f64;
                let c = self.prof.temp_base
                    + drift
                    + 2.0 * ((hours - 9.0) / 24.0 * TAU).sin()
                    + uni(r, -0.3, 0.3);
                ev.push((
                    i,
                    t,
                    "temperature",
                    json!({ "celsius": round_to(c.clamp(16.0, 26.0), 1) }),
                ));
                t += HOUR_MS + secs(r, -30.0, 30.0);
            }
        }

        if battery_powered(device.kind) {
            let n_days = self.days.len() as i64;
            if device.kind == "wearable" {
                // Charged every night.
                for dd in 0..n_days {
                    let t = base + dd * DAY_MS + mins(r, 7.0 * 60.0, 9.0 * 60.0);
                    ev.push((i, t, "battery", json!({ "percent": int(r, 82, 100) })));
                }
            } else {
                let phase = between(r, 0, DAY_MS);
                let mut level = uni(r, 55.0, 100.0);
                let drain = uni(r, 0.3, 0.9);
                let plan = self.battery.filter(|b| b.device == i);
                let mut replaced = false;
                for dd in 0..n_days {
                    let t = base + dd * DAY_MS + phase;
                    level -= drain;
                    if level < 30.0 {
                        level = 100.0;
                    }
                    let mut shown = level;
                    if let Some(b) = plan {
                        if t < b.t0 {
                            let days_before = (b.t0 - t) as f64 / DAY_MS as f64;
                            shown = shown.min(25.0 + 3.0 * days_before);
                        } else if t < b.replaced {
                            continue;
                        } else if !replaced {
                            replaced = true;
                            level = 100.0 - drain * ((t - b.replaced) as f64 / DAY_MS as f64);
                            shown = level;
                        }
                    }
                    ev.push((i, t, "battery", json!({ "percent": shown.round() as i64 })));
                }
            }
        }

        if device.kind == "wearable" {
            let spans = self.sleep_spans();
            let mut t = base + mins(r, 0.0, 20.0);
            while t < end {
                let k = spans.partition_point(|s| s.1 <= t);
                let asleep = spans.get(k).is_some_and(|s| s.0 <= t);
                let bpm = if asleep {
                    uni(r, 60.0, 68.0)
                } else {
                    uni(r, 64.0, 90.0)
                };
                ev.push((i, t, "heart_rate", json!({ "bpm": bpm.round() as i64 })));
                t += mins(r, 20.0, 30.0);
            }
        }
    }

    /// Cumulative water meter readings every 30–60 minutes.
    fn emit_water(&mut self, ev: &mut Vec<Raw>) {
        let Some(i) = self.dev.water else {
            return;
        };
        let mut rng = rng_for(self.cfg.seed, tag::DEVICE, self.idx, 1000 + i as u64);
        let r = &mut rng;
        self.water.sort_by_key(|w| w.at);
        let mut total = self.prof.water_start_l;
        let mut k = 0;
        let mut t = self.base + mins(r, 0.0, 60.0);
        while t < self.end {
            while let Some(w) = self.water.get(k).filter(|w| w.at < t) {
                total += w.litres;
                k += 1;
            }
            ev.push((
                i,
                t,
                "water_meter",
                json!({ "total_m3": round_to(total / 1000.0, 4) }),
            ));
            t += mins(r, 30.0, 60.0);
        }
    }

    /// Kitchen plug: a reading every 30–60 minutes and whenever an appliance switches.
    fn emit_power(&mut self, ev: &mut Vec<Raw>) {
        let Some(i) = self.dev.power else {
            return;
        };
        let mut rng = rng_for(self.cfg.seed, tag::DEVICE, self.idx, 2000 + i as u64);
        let r = &mut rng;
        self.power.sort_by_key(|p| p.at);
        let mut times = Vec::new();
        let mut t = self.base + mins(r, 0.0, 60.0);
        while t < self.end {
            times.push(t);
            t += mins(r, 30.0, 60.0);
        }
        for p in &self.power {
            times.push(p.at + secs(r, 1.0, 3.0));
            times.push(p.at + p.dur + secs(r, 1.0, 3.0));
        }
        times.sort_unstable();
        let standby = self.prof.standby_w;
        let mut next = 0;
        let mut active: Vec<Power> = Vec::new();
        let mut done = 0.0;
        for t in times {
            while let Some(p) = self.power.get(next).filter(|p| p.at < t) {
                active.push(*p);
                next += 1;
            }
            let mut partial = 0.0;
            let mut drawing = 0.0;
            active.retain(|p| {
                if p.at + p.dur <= t {
                    done += kwh(p.watts, p.dur);
                    false
                } else {
                    partial += kwh(p.watts, t - p.at);
                    drawing += p.watts;
                    true
                }
            });
            let unpowered = self
                .no_power
                .iter()
                .map(|&cut| overlap(cut, (self.base, t)))
                .sum::<Millis>();
            let total = self.prof.energy_start_kwh
                + kwh(standby, t - self.base - unpowered)
                + done
                + partial;
            let watts = (standby + drawing + uni(r, -0.3, 0.3)).max(0.0);
            ev.push((
                i,
                t,
                "power_meter",
                json!({ "total_kwh": round_to(total, 3), "power_w": round_to(watts, 1) }),
            ));
        }
    }

    // ----- expectations ----------------------------------------------------------

    fn finish(&mut self, events: &[SimEvent]) -> Vec<Incident> {
        let (all, water) = activity(events);
        let offline_after = 3 * self.hb + SLACK;
        let mut drafts = std::mem::take(&mut self.drafts);
        for draft in &mut drafts {
            match &draft.fix {
                Fix::None => {}
                Fix::StartAtLastActivityBefore(t) => {
                    let k = all.partition_point(|a| a < t);
                    if let Some(&last) = k.checked_sub(1).and_then(|k| all.get(k)) {
                        draft.start = last;
                    }
                }
                Fix::Offline { devices, from } => {
                    for &dv in devices {
                        let id = self.device_id(dv);
                        let last = events
                            .iter()
                            .filter(|e| e.device == id && e.at < *from)
                            .map(|e| e.at)
                            .max()
                            .unwrap_or(*from);
                        let note = match draft.kind {
                            IncidentKind::BatteryDies => {
                                "battery flat: the device goes silent; offline after 3 missed \
                                 heartbeats"
                            }
                            IncidentKind::HomeOffline => {
                                "home gateway down: every home device silent (the cellular \
                                 wearable keeps reporting)"
                            }
                            _ => "power cut: every home device silent",
                        };
                        draft.expected.push(expect(
                            "device-offline",
                            Some(id),
                            true,
                            last + offline_after - draft.start,
                            note,
                        ));
                    }
                }
            }
        }

        // Inactivity alarms the events would raise during an incident are listed as
        // acceptable consequences.
        let start = self.cfg.start;
        let mut raises = Vec::new();
        for due in inactivity_raises(&all, start, self.end, |t| {
            daytime_deadline(t, DAYTIME_SILENCE)
        }) {
            raises.push(("no-activity-daytime", due));
        }
        for due in inactivity_raises(&water, start, self.end, |t| t + WATER_SILENCE) {
            raises.push(("no-water-use", due));
        }
        for (rule, due) in raises {
            let Some(draft) = drafts
                .iter_mut()
                .find(|d| d.start <= due && due <= d.end + HOUR_MS)
            else {
                continue;
            };
            if draft.expected.iter().any(|e| e.rule_id == rule) {
                continue;
            }
            let within = due - draft.start + SLACK;
            let note = draft.consequence.clone();
            draft
                .expected
                .push(expect(rule, None, false, within, &note));
        }

        drafts
            .into_iter()
            .map(|d| Incident {
                id: String::new(),
                kind: d.kind,
                household: self.hh.id.clone(),
                start: d.start,
                end: d.end,
                expected: d.expected,
            })
            .collect()
    }
}

/// Signs of life as the rules count them: all classes, and water use alone.
fn activity(events: &[SimEvent]) -> (Vec<Millis>, Vec<Millis>) {
    let mut all = Vec::new();
    let mut water = Vec::new();
    let mut meters: BTreeMap<&str, f64> = BTreeMap::new();
    let num = |e: &SimEvent, k: &str| e.fields.get(k).and_then(Value::as_f64);
    for e in events {
        let active = match e.kind {
            "motion" => e.fields.get("occupancy").and_then(Value::as_bool) == Some(true),
            "door" | "bed" | "sos" => true,
            "water_meter" => {
                let Some(v) = num(e, "total_m3") else {
                    continue;
                };
                let rose = meters
                    .insert(&e.device, v)
                    .is_some_and(|prev| v - prev >= 0.0005 - 1e-9);
                if rose {
                    water.push(e.at);
                }
                rose
            }
            "power_meter" => {
                let Some(v) = num(e, "total_kwh") else {
                    continue;
                };
                let rose = meters
                    .insert(&e.device, v)
                    .is_some_and(|prev| v - prev >= 0.01 - 1e-9);
                rose || num(e, "power_w").is_some_and(|w| w > 30.0)
            }
            _ => false,
        };
        if active {
            all.push(e.at);
        }
    }
    (all, water)
}

/// When an inactivity rule would raise, given sorted activity times.
fn inactivity_raises(
    times: &[Millis],
    since: Millis,
    end: Millis,
    deadline: impl Fn(Millis) -> Millis,
) -> Vec<Millis> {
    let mut out = Vec::new();
    let mut last = since;
    for &t in times.iter().chain(std::iter::once(&end)) {
        let due = deadline(last);
        if due <= t && due < end {
            out.push(due);
        }
        last = last.max(t);
    }
    out
}
