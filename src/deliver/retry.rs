//! Retry policy: the backoff schedule, its jitter and how `Retry-After` bends it.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// The longest wait a target's `Retry-After` can ask for; longer requests are cut to this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60 * 60);

/// The jitter used by [`RetryPolicy::default`] and [`RetryPolicy::parse`]: ±20 %.
pub const DEFAULT_JITTER: f64 = 0.2;

/// When to try a failed delivery again.
///
/// `schedule[i]` is the wait before retry `i + 1`. Past the end of the schedule the last step
/// repeats until the webhook's `retries` cap is reached. Each wait is spread by ±`jitter`
/// (a fraction, `0.2` = ±20 %) so that deliveries failing together do not retry together.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Wait before each retry, in order; never empty, no step is zero.
    pub schedule: Vec<Duration>,
    /// Random spread of each wait as a fraction of it, in `0.0..1.0`.
    pub jitter: f64,
}

/// Why a retry schedule or policy was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RetryPolicyError {
    /// The schedule has no steps.
    #[error("the retry schedule is empty: give at least one wait, e.g. `10s,1m,5m`")]
    Empty,
    /// A step is not a number followed by a unit.
    #[error("`{step}` is not a wait: write a whole number and a unit (ms, s, m or h), e.g. `30s`")]
    BadStep {
        /// The step as written.
        step: String,
    },
    /// A step's unit is not one of ms, s, m, h.
    #[error("`{step}` has unknown unit `{unit}`: use ms, s, m or h")]
    UnknownUnit {
        /// The step as written.
        step: String,
        /// The unit as written.
        unit: String,
    },
    /// A step is zero, which would retry in a tight loop.
    #[error("`{step}` is zero: every wait must be longer than 0")]
    Zero {
        /// The step as written.
        step: String,
    },
    /// A step is too long to represent.
    #[error("`{step}` is too long")]
    TooLong {
        /// The step as written.
        step: String,
    },
    /// The jitter fraction is outside `0.0..1.0`.
    #[error("jitter {0} is out of range: it must be at least 0 and below 1")]
    BadJitter(f64),
}

impl RetryPolicy {
    /// A policy from its parts, validated: a non-empty schedule without zero steps and a
    /// jitter in `0.0..1.0`.
    pub fn try_new(schedule: Vec<Duration>, jitter: f64) -> Result<Self, RetryPolicyError> {
        if schedule.is_empty() {
            return Err(RetryPolicyError::Empty);
        }
        if let Some(zero) = schedule.iter().find(|d| d.is_zero()) {
            return Err(RetryPolicyError::Zero {
                step: format_duration(*zero),
            });
        }
        if !(0.0..1.0).contains(&jitter) {
            return Err(RetryPolicyError::BadJitter(jitter));
        }
        Ok(Self { schedule, jitter })
    }

    /// Parses a comma-separated schedule such as `10s,1m,5m` (units `ms`, `s`, `m`, `h`;
    /// spaces around steps are allowed), with the [`DEFAULT_JITTER`].
    pub fn parse(text: &str) -> Result<Self, RetryPolicyError> {
        let schedule = text
            .split(',')
            .map(str::trim)
            .filter(|step| !step.is_empty())
            .map(parse_duration)
            .collect::<Result<Vec<_>, _>>()?;
        Self::try_new(schedule, DEFAULT_JITTER)
    }

    /// The same schedule with another jitter (validated).
    pub fn with_jitter(self, jitter: f64) -> Result<Self, RetryPolicyError> {
        Self::try_new(self.schedule, jitter)
    }

    /// How long to wait after `attempt` attempts (1-based: `1` after the first try) before the
    /// next one, or `None` when the delivery has used up its `max_retries`.
    ///
    /// The scheduled step is jittered; a `Retry-After` from the target can lengthen the wait
    /// (up to [`MAX_RETRY_AFTER`]) but never shorten it below the jittered step, so one target
    /// cannot make whc hammer it or park a delivery for days.
    pub fn delay_after(
        &self,
        attempt: u32,
        max_retries: u32,
        retry_after: Option<Duration>,
    ) -> Option<Duration> {
        if attempt == 0 || attempt > max_retries {
            return None;
        }
        let index = usize::try_from(attempt - 1).unwrap_or(usize::MAX);
        let step = self.schedule.get(index).or(self.schedule.last()).copied()?;
        let jittered = self.jitter(step);
        let asked = retry_after.map_or(Duration::ZERO, |d| d.min(MAX_RETRY_AFTER));
        Some(jittered.max(asked))
    }

    /// `step` spread uniformly over `step × (1 ± jitter)`.
    fn jitter(&self, step: Duration) -> Duration {
        if self.jitter == 0.0 {
            return step;
        }
        let factor = 1.0 + self.jitter * (fastrand::f64() * 2.0 - 1.0);
        // `try_from` rather than `mul_f64`: a huge step must not panic, it just stays as is.
        Duration::try_from_secs_f64(step.as_secs_f64() * factor).unwrap_or(step)
    }
}

impl Default for RetryPolicy {
    /// 10 s, 30 s, 2 m, 10 m, 30 m, 1 h, 3 h, 6 h with ±20 % jitter: about 11 hours from the
    /// first failure to the eighth retry, so an endpoint down overnight still gets its events.
    fn default() -> Self {
        const MIN: u64 = 60;
        const HOUR: u64 = 60 * MIN;
        let schedule = [
            10,
            30,
            2 * MIN,
            10 * MIN,
            30 * MIN,
            HOUR,
            3 * HOUR,
            6 * HOUR,
        ]
        .into_iter()
        .map(Duration::from_secs)
        .collect();
        Self {
            schedule,
            jitter: DEFAULT_JITTER,
        }
    }
}

impl FromStr for RetryPolicy {
    type Err = RetryPolicyError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl fmt::Display for RetryPolicy {
    /// The schedule in the form [`RetryPolicy::parse`] reads, e.g. `10s,1m,5m`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let steps: Vec<String> = self.schedule.iter().map(|d| format_duration(*d)).collect();
        f.write_str(&steps.join(","))
    }
}

/// One duration, a whole number then a unit (`ms`, `s`, `m`, `h`), such as a schedule step
/// (`30s`) or a timeout; zero is refused.
pub fn parse_duration(step: &str) -> Result<Duration, RetryPolicyError> {
    let digits_end = step
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(step.len());
    let (number, unit) = step.split_at(digits_end);
    let bad = || RetryPolicyError::BadStep { step: step.into() };
    if number.is_empty() || unit.is_empty() {
        return Err(bad());
    }
    let too_long = || RetryPolicyError::TooLong { step: step.into() };
    let number: u64 = number.parse().map_err(|_| too_long())?;
    let millis_per_unit = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => {
            return Err(RetryPolicyError::UnknownUnit {
                step: step.into(),
                unit: unit.into(),
            });
        }
    };
    let millis = number.checked_mul(millis_per_unit).ok_or_else(too_long)?;
    if millis == 0 {
        return Err(RetryPolicyError::Zero { step: step.into() });
    }
    Ok(Duration::from_millis(millis))
}

/// A duration in the largest unit that writes it exactly, e.g. `90s`, `2m`, `150ms`.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    match ms {
        0 => "0s".into(),
        _ if ms.is_multiple_of(3_600_000) => format!("{}h", ms / 3_600_000),
        _ if ms.is_multiple_of(60_000) => format!("{}m", ms / 60_000),
        _ if ms.is_multiple_of(1_000) => format!("{}s", ms / 1_000),
        _ => format!("{ms}ms"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn exact(text: &str) -> RetryPolicy {
        RetryPolicy::parse(text).unwrap().with_jitter(0.0).unwrap()
    }

    #[test]
    fn parses_every_unit() {
        let policy = RetryPolicy::parse("250ms, 10s,1m ,2h").unwrap();
        assert_eq!(
            policy.schedule,
            [Duration::from_millis(250), secs(10), secs(60), secs(7200)]
        );
        assert_eq!(policy.jitter, DEFAULT_JITTER);
        assert_eq!(policy.to_string(), "250ms,10s,1m,2h");
        assert_eq!(
            "10s,1m".parse::<RetryPolicy>().unwrap(),
            exact("10s,1m").with_jitter(0.2).unwrap()
        );
    }

    #[test]
    fn refuses_bad_schedules_with_a_reason() {
        use RetryPolicyError::*;
        assert_eq!(RetryPolicy::parse(""), Err(Empty));
        assert_eq!(RetryPolicy::parse(" , "), Err(Empty));
        assert_eq!(
            RetryPolicy::parse("10s,0m"),
            Err(Zero { step: "0m".into() })
        );
        assert_eq!(
            RetryPolicy::parse("10x"),
            Err(UnknownUnit {
                step: "10x".into(),
                unit: "x".into()
            })
        );
        assert_eq!(RetryPolicy::parse("10"), Err(BadStep { step: "10".into() }));
        assert_eq!(RetryPolicy::parse("s"), Err(BadStep { step: "s".into() }));
        assert_eq!(
            RetryPolicy::parse("-1s"),
            Err(BadStep { step: "-1s".into() })
        );
        assert_eq!(
            RetryPolicy::parse("99999999999999999999h"),
            Err(TooLong {
                step: "99999999999999999999h".into()
            })
        );
        assert_eq!(
            RetryPolicy::try_new(vec![secs(1)], 1.0),
            Err(BadJitter(1.0))
        );
        assert!(RetryPolicy::try_new(vec![secs(1)], f64::NAN).is_err());
        assert_eq!(RetryPolicy::try_new(vec![], 0.1), Err(Empty));
        assert!(
            Zero { step: "0m".into() }
                .to_string()
                .contains("longer than 0")
        );
    }

    #[test]
    fn follows_the_schedule_then_repeats_the_last_step_until_the_cap() {
        let policy = exact("1s,5s");
        assert_eq!(policy.delay_after(1, 4, None), Some(secs(1)));
        assert_eq!(policy.delay_after(2, 4, None), Some(secs(5)));
        assert_eq!(policy.delay_after(3, 4, None), Some(secs(5)));
        assert_eq!(policy.delay_after(4, 4, None), Some(secs(5)));
        assert_eq!(policy.delay_after(5, 4, None), None);
        assert_eq!(policy.delay_after(1, 0, None), None);
        assert_eq!(policy.delay_after(0, 3, None), None);
        assert_eq!(policy.delay_after(u32::MAX, u32::MAX, None), Some(secs(5)));
    }

    #[test]
    fn retry_after_lengthens_but_never_shortens_and_is_clamped() {
        let policy = exact("10s");
        assert_eq!(policy.delay_after(1, 3, Some(secs(7))), Some(secs(10)));
        assert_eq!(policy.delay_after(1, 3, Some(secs(70))), Some(secs(70)));
        assert_eq!(
            policy.delay_after(1, 3, Some(secs(86_400))),
            Some(MAX_RETRY_AFTER)
        );
        // A schedule step longer than the clamp is kept: the clamp only limits the target.
        assert_eq!(
            exact("6h").delay_after(1, 3, Some(secs(86_400))),
            Some(secs(6 * 3600))
        );
        // Exhausted stays exhausted whatever the target asks.
        assert_eq!(policy.delay_after(4, 3, Some(secs(1))), None);
    }

    #[test]
    fn jitter_stays_within_its_bounds_and_varies() {
        let policy = RetryPolicy::try_new(vec![secs(100)], 0.2).unwrap();
        let delays: Vec<Duration> = (0..1000)
            .map(|_| policy.delay_after(1, 1, None).unwrap())
            .collect();
        assert!(delays.iter().all(|d| *d >= secs(80) && *d <= secs(120)));
        assert!(delays.iter().any(|d| *d < secs(95)));
        assert!(delays.iter().any(|d| *d > secs(105)));
    }

    #[test]
    fn huge_steps_do_not_panic() {
        let policy = RetryPolicy::try_new(vec![Duration::MAX], 0.5).unwrap();
        assert!(policy.delay_after(1, 1, Some(Duration::MAX)).is_some());
    }

    #[test]
    fn default_is_documented_and_valid() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.to_string(), "10s,30s,2m,10m,30m,1h,3h,6h");
        assert_eq!(
            RetryPolicy::try_new(policy.schedule.clone(), policy.jitter),
            Ok(policy)
        );
    }
}
