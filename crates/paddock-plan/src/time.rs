//! Time arithmetic on `metav1.Time` values. Planners never read a clock: `now` is an input.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// `t + d`, saturating at the end of representable time.
pub fn add(t: &Time, d: Duration) -> Time {
    let sd = SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX);
    Time(t.0.checked_add(sd).unwrap_or(Timestamp::MAX))
}

/// `t + secs` seconds (negative allowed), saturating.
pub fn add_seconds(t: &Time, secs: i64) -> Time {
    let sd = SignedDuration::from_secs(secs);
    Time(t.0.checked_add(sd).unwrap_or(if secs < 0 {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    }))
}

/// How long from `now` until `then`; zero when `then` is not after `now`.
pub fn until(now: &Time, then: &Time) -> Duration {
    let d = then.0.duration_since(now.0);
    if d.is_negative() {
        Duration::ZERO
    } else {
        d.unsigned_abs()
    }
}

/// How long since `then` (zero if `then` is in the future).
pub fn since(now: &Time, then: &Time) -> Duration {
    until(then, now)
}

/// `now` as RFC 3339 with nanoseconds as needed (Go's `time.RFC3339Nano`).
pub fn rfc3339_nano(now: &Time) -> String {
    now.0.to_string()
}

/// The smaller of two optional durations.
pub fn min_requeue(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Time {
        Time(Timestamp::from_second(s).expect("valid"))
    }

    #[test]
    fn arithmetic_saturates_and_clamps() {
        assert_eq!(until(&at(10), &at(15)), Duration::from_secs(5));
        assert_eq!(until(&at(15), &at(10)), Duration::ZERO);
        assert_eq!(since(&at(15), &at(10)), Duration::from_secs(5));
        assert_eq!(add_seconds(&at(10), -3), at(7));
        assert_eq!(
            add(&at(10), Duration::from_millis(1500)).0.as_millisecond(),
            11_500
        );
        assert_eq!(
            min_requeue(Some(Duration::from_secs(3)), Some(Duration::from_secs(2))),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            min_requeue(None, Some(Duration::from_secs(2))),
            Some(Duration::from_secs(2))
        );
    }

    #[test]
    fn rfc3339_nano_omits_zero_fraction() {
        assert_eq!(rfc3339_nano(&at(0)), "1970-01-01T00:00:00Z");
    }
}
