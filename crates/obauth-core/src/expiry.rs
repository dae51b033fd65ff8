//! Token bookkeeping without I/O: how old a token is, and whether it is fresh, due for
//! refresh, or expired.
//!
//! Time comes in as [`Now`], both clocks read together: the wall clock, which keeps
//! counting while a machine is suspended and which is what a stored record can carry, and
//! the monotonic clock, which never steps backwards. A token's [`Age`] grows by whichever
//! of the two moved further since it was last read, so neither a laptop waking from sleep
//! (the monotonic clock stopped) nor an NTP step backwards (the wall clock went back) makes
//! an old token look young. A wall clock stepped *forwards* makes tokens look older than
//! they are, which only refreshes them early.

use std::time::{Duration, Instant, SystemTime};

/// The longest lifetime obauth believes; a larger `expires_in` is capped to it, so that
/// no arithmetic on a hostile value can overflow.
pub const MAX_LIFETIME: Duration = Duration::from_secs(366 * 24 * 60 * 60);

/// Both clocks, read at one moment. The token machine takes time only as this input, so
/// that tests drive it with a fake clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Now {
    /// The wall clock: counts suspend, may step either way.
    pub wall: SystemTime,
    /// The monotonic clock: never steps back, may stop while the machine sleeps.
    pub mono: Instant,
}

impl Now {
    /// The system's clocks now.
    pub fn system() -> Self {
        Self {
            wall: SystemTime::now(),
            mono: Instant::now(),
        }
    }

    /// This moment moved on by `by` on both clocks (saturating), for tests and schedules.
    pub fn after(self, by: Duration) -> Self {
        Self {
            wall: self.wall.checked_add(by).unwrap_or(self.wall),
            mono: self.mono.checked_add(by).unwrap_or(self.mono),
        }
    }
}

/// How old a token is, tracked on both clocks (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Age {
    /// When `age` was last brought up to date.
    at: Now,
    age: Duration,
}

impl Age {
    /// A token whose request was sent at `sent`: age zero then.
    pub fn new(sent: Now) -> Self {
        Self {
            at: sent,
            age: Duration::ZERO,
        }
    }

    /// A token obtained (its request sent) at wall time `obtained`, as a stored record says,
    /// seen at `now`. A time in the future (another host's clock ahead, this one stepped
    /// back since, a record planted with a date to come) counts as that far in the past:
    /// a clock off by a few seconds costs a token a few seconds, and a record dated a day
    /// ahead is a day old, not fresh for a day.
    pub fn since(obtained: SystemTime, now: Now) -> Self {
        Self {
            at: now,
            age: now
                .wall
                .duration_since(obtained)
                .unwrap_or_else(|ahead| ahead.duration()),
        }
    }

    /// The age at `now`: the last known age plus the larger progress of the two clocks
    /// since then. A `now` from before the last reading adds nothing.
    pub fn at(&self, now: Now) -> Duration {
        let wall = now
            .wall
            .duration_since(self.at.wall)
            .unwrap_or(Duration::ZERO);
        let mono = now.mono.saturating_duration_since(self.at.mono);
        self.age.saturating_add(wall.max(mono))
    }

    /// Brings the age up to `now`, so that later readings measure from there. A `now` from
    /// before the last reading (a thread that read the clock earlier but came later) is
    /// ignored.
    pub fn advance(&mut self, now: Now) {
        if now.mono >= self.at.mono {
            self.age = self.at(now);
            self.at = now;
        }
    }

    /// The wall-clock time at which the age was last brought up to date.
    pub fn checked_at(&self) -> SystemTime {
        self.at.wall
    }
}

/// How early a token counts as due and as expired, scaled to its lifetime so that it
/// suits Worldline's 300 s tokens as well as TrueLayer's hour-long ones.
///
/// * *skew* = `min(max_skew, lifetime × skew_fraction)`: the token is treated as expired
///   this much before the server's deadline, to absorb clock skew and transit time.
/// * *refresh window* = `min(max_refresh_window, lifetime × refresh_fraction)`: before
///   that, the token is still served but a refresh is due.
///
/// Defaults: skew 30 s or 10 %, refresh window 5 min or 20 %. A 300 s token is fresh for
/// 210 s, due for 60 s, expired from 270 s; a 3600 s token is fresh for 3270 s.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ExpiryPolicy {
    /// Upper bound of the skew margin.
    pub max_skew: Duration,
    /// Skew margin as a fraction of the lifetime.
    pub skew_fraction: f64,
    /// Upper bound of the refresh window.
    pub max_refresh_window: Duration,
    /// Refresh window as a fraction of the lifetime.
    pub refresh_fraction: f64,
}

impl Default for ExpiryPolicy {
    fn default() -> Self {
        Self {
            max_skew: Duration::from_secs(30),
            skew_fraction: 0.1,
            max_refresh_window: Duration::from_secs(300),
            refresh_fraction: 0.2,
        }
    }
}

impl ExpiryPolicy {
    /// The windows of a token the server said lives `expires_in`.
    pub fn windows(&self, expires_in: Duration) -> Windows {
        let lifetime = expires_in.min(MAX_LIFETIME);
        let skew = fraction(lifetime, self.skew_fraction).min(self.max_skew);
        let window = fraction(lifetime, self.refresh_fraction).min(self.max_refresh_window);
        let usable = lifetime.saturating_sub(skew);
        Windows {
            fresh: usable.saturating_sub(window),
            usable,
        }
    }

    /// The same from `expires_in` seconds as the server sent it.
    pub fn windows_secs(&self, expires_in: u64) -> Windows {
        self.windows(Duration::from_secs(expires_in))
    }
}

fn fraction(lifetime: Duration, fraction: f64) -> Duration {
    // A fraction outside [0, 1] is clamped to it; one that is not a number is none at all.
    if fraction.is_finite() {
        Duration::try_from_secs_f64(lifetime.as_secs_f64() * fraction.clamp(0.0, 1.0))
            .unwrap_or(Duration::ZERO)
    } else {
        Duration::ZERO
    }
}

/// For how long, from its request, a token is fresh and for how long it is served at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Windows {
    /// Served without a second thought while younger than this.
    pub fresh: Duration,
    /// Served (with a refresh due) while younger than this; the server's lifetime less the
    /// skew margin.
    pub usable: Duration,
}

impl Windows {
    /// Where a token of age `age` stands.
    pub fn freshness(&self, age: Duration) -> Freshness {
        if age >= self.usable {
            Freshness::Expired
        } else if age >= self.fresh {
            Freshness::RefreshSoon
        } else {
            Freshness::Fresh
        }
    }
}

/// Where a token stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Freshness {
    /// Serve it.
    Fresh,
    /// Still valid: serve it, and refresh now (one caller) so the next one finds a new token.
    RefreshSoon,
    /// Do not serve it; fetch a new one first.
    Expired,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn worldline_300s_token() {
        let windows = ExpiryPolicy::default().windows_secs(300);
        assert_eq!(windows.freshness(secs(0)), Freshness::Fresh);
        assert_eq!(windows.freshness(secs(209)), Freshness::Fresh);
        assert_eq!(windows.freshness(secs(210)), Freshness::RefreshSoon);
        assert_eq!(windows.freshness(secs(269)), Freshness::RefreshSoon);
        assert_eq!(windows.freshness(secs(270)), Freshness::Expired);
    }

    #[test]
    fn truelayer_hour_token() {
        let windows = ExpiryPolicy::default().windows_secs(3600);
        assert_eq!(
            windows,
            Windows {
                fresh: secs(3270),
                usable: secs(3570)
            }
        );
    }

    #[test]
    fn fractions_scale_below_the_caps_and_the_caps_bind_above() {
        let policy = ExpiryPolicy::default();
        // 100 s: skew 10 % = 10 s (under 30 s), window 20 % = 20 s (under 300 s).
        assert_eq!(
            policy.windows_secs(100),
            Windows {
                fresh: secs(70),
                usable: secs(90)
            }
        );
        // 400 s: skew 30 s (10 % would be 40 s), window 80 s.
        assert_eq!(
            policy.windows_secs(400),
            Windows {
                fresh: secs(290),
                usable: secs(370)
            }
        );
        // A fraction of exactly 1 takes the whole lifetime; above 1 is capped to 1.
        let whole = ExpiryPolicy {
            max_skew: secs(1000),
            skew_fraction: 1.0,
            ..policy
        };
        assert_eq!(whole.windows_secs(60).usable, Duration::ZERO);
        let more = ExpiryPolicy {
            skew_fraction: 2.5,
            ..whole
        };
        assert_eq!(more.windows_secs(60).usable, Duration::ZERO);
    }

    #[test]
    fn tiny_zero_and_huge_lifetimes() {
        let policy = ExpiryPolicy::default();
        let ten = policy.windows_secs(10);
        assert_eq!(ten.usable, secs(9));
        assert_eq!(ten.fresh, secs(7));
        assert_eq!(
            policy.windows_secs(0).freshness(Duration::ZERO),
            Freshness::Expired
        );
        let huge = policy.windows_secs(u64::MAX);
        assert_eq!(huge.freshness(secs(365 * 24 * 3600)), Freshness::Fresh);
        let odd = ExpiryPolicy {
            skew_fraction: f64::NAN,
            refresh_fraction: -1.0,
            ..policy
        };
        assert_eq!(odd.windows_secs(60).usable, secs(60));
        assert_eq!(odd.windows_secs(60).fresh, secs(60));
        // An infinite fraction is no fraction at all, not the whole lifetime.
        let infinite = ExpiryPolicy {
            max_skew: secs(1000),
            skew_fraction: f64::INFINITY,
            ..policy
        };
        assert_eq!(infinite.windows_secs(60).usable, secs(60));
    }

    fn start() -> Now {
        Now {
            wall: SystemTime::UNIX_EPOCH + secs(1_000_000),
            mono: Instant::now(),
        }
    }

    #[test]
    fn age_counts_a_suspend_through_the_wall_clock() {
        let t0 = start();
        let mut age = Age::new(t0);
        // Asleep for an hour: the monotonic clock moved one second, the wall clock 3600.
        let woke = Now {
            wall: t0.wall + secs(3600),
            mono: t0.mono + secs(1),
        };
        assert_eq!(age.at(woke), secs(3600));
        age.advance(woke);
        assert_eq!(age.at(woke.after(secs(5))), secs(3605));
    }

    #[test]
    fn age_ignores_a_wall_clock_stepped_back() {
        let t0 = start();
        let mut age = Age::new(t0);
        let later = t0.after(secs(100));
        age.advance(later);
        // The wall clock steps back 50 s while 10 s pass.
        let stepped = Now {
            wall: later.wall + secs(10) - secs(60),
            mono: later.mono + secs(10),
        };
        assert_eq!(age.at(stepped), secs(110));
        age.advance(stepped);
        // From there on both clocks move together again.
        assert_eq!(age.at(stepped.after(secs(1))), secs(111));
    }

    #[test]
    fn a_stale_reading_neither_adds_nor_rewinds() {
        let t0 = start();
        let mut age = Age::new(t0.after(secs(10)));
        age.advance(t0.after(secs(20)));
        age.advance(t0.after(secs(15)));
        assert_eq!(age.at(t0.after(secs(15))), secs(10));
        assert_eq!(age.at(t0.after(secs(20))), secs(10));
        assert_eq!(age.at(t0.after(secs(25))), secs(15));
        assert_eq!(age.checked_at(), t0.after(secs(20)).wall);
    }

    #[test]
    fn records_age_from_their_wall_time() {
        let now = start();
        assert_eq!(Age::since(now.wall - secs(42), now).at(now), secs(42));
        // Written by a host whose clock runs ahead: as old as it is far ahead, never
        // younger than zero for as long as the date is to come.
        assert_eq!(Age::since(now.wall + secs(42), now).at(now), secs(42));
        let later = Now {
            wall: now.wall + secs(10),
            mono: now.mono + secs(10),
        };
        assert_eq!(Age::since(now.wall + secs(42), now).at(later), secs(52));
    }
}
