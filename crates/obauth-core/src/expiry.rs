//! Token bookkeeping without I/O: when a token is fresh, due for refresh, or expired.

use std::time::{Duration, Instant};

/// The longest lifetime obauth believes; a larger `expires_in` is capped to it, so that
/// no arithmetic on a hostile value can overflow.
pub const MAX_LIFETIME: Duration = Duration::from_secs(366 * 24 * 60 * 60);

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
    /// The schedule of a token that was requested at `requested_at` with `expires_in`.
    ///
    /// Pass the time the request was *sent*, not when the answer arrived: the server's
    /// clock started before the answer travelled back.
    pub fn schedule(&self, requested_at: Instant, expires_in: Duration) -> TokenSchedule {
        let lifetime = expires_in.min(MAX_LIFETIME);
        let skew = fraction(lifetime, self.skew_fraction).min(self.max_skew);
        let window = fraction(lifetime, self.refresh_fraction).min(self.max_refresh_window);
        let usable = lifetime.saturating_sub(skew);
        let fresh = usable.saturating_sub(window);
        TokenSchedule {
            refresh_at: add(requested_at, fresh),
            expires_at: add(requested_at, usable),
        }
    }

    /// The same from `expires_in` seconds as the server sent it.
    pub fn schedule_secs(&self, requested_at: Instant, expires_in: u64) -> TokenSchedule {
        self.schedule(requested_at, Duration::from_secs(expires_in))
    }
}

fn fraction(lifetime: Duration, fraction: f64) -> Duration {
    if fraction.is_finite() && fraction > 0.0 {
        Duration::try_from_secs_f64(lifetime.as_secs_f64() * fraction.min(1.0))
            .unwrap_or(Duration::ZERO)
    } else {
        Duration::ZERO
    }
}

fn add(at: Instant, by: Duration) -> Instant {
    // MAX_LIFETIME keeps `by` small; an Instant near the end of its range still can't panic.
    at.checked_add(by).unwrap_or(at)
}

/// When a token becomes due for refresh and when it is no longer served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenSchedule {
    refresh_at: Instant,
    expires_at: Instant,
}

impl TokenSchedule {
    /// Where the token stands at `now`.
    pub fn freshness(&self, now: Instant) -> Freshness {
        if now >= self.expires_at {
            Freshness::Expired
        } else if now >= self.refresh_at {
            Freshness::RefreshSoon
        } else {
            Freshness::Fresh
        }
    }

    /// From this instant a refresh is due.
    pub fn refresh_at(&self) -> Instant {
        self.refresh_at
    }

    /// From this instant the token is not served (the server's deadline less the skew).
    pub fn expires_at(&self) -> Instant {
        self.expires_at
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

    fn at(start: Instant, secs: u64) -> Instant {
        start + Duration::from_secs(secs)
    }

    #[test]
    fn worldline_300s_token() {
        let start = Instant::now();
        let schedule = ExpiryPolicy::default().schedule_secs(start, 300);
        assert_eq!(schedule.freshness(at(start, 0)), Freshness::Fresh);
        assert_eq!(schedule.freshness(at(start, 209)), Freshness::Fresh);
        assert_eq!(schedule.freshness(at(start, 210)), Freshness::RefreshSoon);
        assert_eq!(schedule.freshness(at(start, 269)), Freshness::RefreshSoon);
        assert_eq!(schedule.freshness(at(start, 270)), Freshness::Expired);
    }

    #[test]
    fn truelayer_hour_token() {
        let start = Instant::now();
        let schedule = ExpiryPolicy::default().schedule_secs(start, 3600);
        assert_eq!(schedule.refresh_at(), at(start, 3270));
        assert_eq!(schedule.expires_at(), at(start, 3570));
    }

    #[test]
    fn tiny_zero_and_huge_lifetimes() {
        let start = Instant::now();
        let policy = ExpiryPolicy::default();
        let ten = policy.schedule_secs(start, 10);
        assert_eq!(ten.expires_at(), at(start, 9));
        assert_eq!(ten.refresh_at(), at(start, 7));
        let zero = policy.schedule_secs(start, 0);
        assert_eq!(zero.freshness(start), Freshness::Expired);
        let huge = policy.schedule_secs(start, u64::MAX);
        assert_eq!(huge.freshness(at(start, 365 * 24 * 3600)), Freshness::Fresh);
        let odd = ExpiryPolicy {
            skew_fraction: f64::NAN,
            refresh_fraction: -1.0,
            ..policy
        };
        assert_eq!(odd.schedule_secs(start, 60).expires_at(), at(start, 60));
    }
}
