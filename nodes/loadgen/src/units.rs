//! Simulated time versus real time, and the text forms of durations and week times.
//!
//! The simulator runs a working day faster than the wall clock: with a time scale `S`, one simulated
//! second lasts `1/S` real seconds. Everything the profiles describe (arrivals, handle times, patience,
//! wrap-up, service-level thresholds) is in simulated time; everything sent to the node and every timer is
//! in real time; every figure reported back is converted to simulated time, except latencies of the
//! router itself, which are real by nature. This module is the only place that converts between the two.
//!
//! It depends on nothing but `std`.

use std::fmt;
use std::time::Duration;

/// Seconds in a day and in a week, the periods of the arrival shapes.
pub const DAY_S: f64 = 86_400.0;
/// Seconds in a week.
pub const WEEK_S: f64 = 7.0 * DAY_S;

/// How much faster than the wall clock simulated time runs.
///
/// **Invariant:** the factor is finite and strictly positive (checked by [`TimeScale::new`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TimeScale(f64);

impl TimeScale {
    /// A time scale of `factor` simulated seconds per real second; `None` unless finite and positive.
    pub fn new(factor: f64) -> Option<Self> {
        (factor.is_finite() && factor > 0.0).then_some(Self(factor))
    }

    /// Simulated seconds per real second.
    pub fn factor(self) -> f64 {
        self.0
    }

    /// The real duration of `sim_s` simulated seconds.
    pub fn to_real(self, sim_s: f64) -> Duration {
        Duration::from_secs_f64((sim_s / self.0).max(0.0))
    }

    /// The simulated seconds that `real` lasts.
    pub fn to_sim_s(self, real: Duration) -> f64 {
        real.as_secs_f64() * self.0
    }

    /// Real milliseconds for a simulated duration, as the node's queue configuration wants them.
    ///
    /// A non-zero simulated duration never becomes zero, because zero means "use the default" or
    /// "no limit" in the node's configuration.
    pub fn to_real_ms(self, sim_s: f64) -> u64 {
        if sim_s <= 0.0 {
            return 0;
        }
        // Rounding to whole milliseconds is the node's resolution; the cast saturates on huge values.
        ((sim_s * 1000.0 / self.0).round() as u64).max(1)
    }

    /// Simulated seconds for real milliseconds reported by the node.
    pub fn real_ms_to_sim_s(self, real_ms: u64) -> f64 {
        real_ms as f64 / 1000.0 * self.0
    }
}

impl Default for TimeScale {
    fn default() -> Self {
        Self(1.0)
    }
}

/// Parses a duration such as `90`, `90s`, `250ms`, `5m`, `2h`, `1h30m` or `1.5h` (a bare number is
/// seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration".to_owned());
    }
    if let Ok(seconds) = text.parse::<f64>() {
        return seconds_to_duration(seconds, text);
    }
    let mut total_s = 0.0;
    let mut rest = text;
    while !rest.is_empty() {
        let number_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        if number_len == 0 {
            return Err(format!("`{text}`: expected a number before `{rest}`"));
        }
        let value: f64 =
            rest[..number_len].parse().map_err(|_| format!("`{text}`: bad number `{}`", &rest[..number_len]))?;
        rest = &rest[number_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let unit_s = match &rest[..unit_len] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" | "min" => 60.0,
            "h" => 3600.0,
            "d" => DAY_S,
            other => {
                return Err(format!("`{text}`: unknown unit `{other}` (use ms, s, m, h or d)"));
            }
        };
        rest = &rest[unit_len..];
        total_s += value * unit_s;
    }
    seconds_to_duration(total_s, text)
}

fn seconds_to_duration(seconds: f64, text: &str) -> Result<Duration, String> {
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("`{text}`: not a valid duration"))
}

/// Formats simulated seconds as `1h02m03s`, `4m05s`, `12.3s` or `850ms`, short and unambiguous.
pub fn format_sim_s(seconds: f64) -> String {
    if !seconds.is_finite() {
        return "-".to_owned();
    }
    if seconds < 1.0 {
        return format!("{:.0}ms", seconds * 1000.0);
    }
    if seconds < 60.0 {
        return format!("{seconds:.1}s");
    }
    let whole = seconds.round() as u64;
    let (hours, minutes, secs) = (whole / 3600, whole / 60 % 60, whole % 60);
    if hours > 0 { format!("{hours}h{minutes:02}m{secs:02}s") } else { format!("{minutes}m{secs:02}s") }
}

/// A moment of the week, in seconds since Monday 00:00 (simulated clock).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WeekTime(pub f64);

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

impl WeekTime {
    /// Parses `mon 09:00`, `sat 21:30` or `09:00` (Monday implied).
    pub fn parse(text: &str) -> Result<Self, String> {
        let lower = text.trim().to_ascii_lowercase();
        let (day, clock) = match lower.split_once(' ') {
            Some((day, clock)) => {
                let prefix = day.get(..3).unwrap_or(day);
                let index = DAY_NAMES
                    .iter()
                    .position(|name| *name == prefix)
                    .ok_or_else(|| format!("`{text}`: unknown day `{day}` (use mon..sun)"))?;
                (index, clock.trim().to_owned())
            }
            None => (0, lower),
        };
        let (hours, minutes) = clock.split_once(':').ok_or_else(|| format!("`{text}`: expected HH:MM"))?;
        let hours: u32 = hours.parse().map_err(|_| format!("`{text}`: bad hour"))?;
        let minutes: u32 = minutes.parse().map_err(|_| format!("`{text}`: bad minutes"))?;
        if hours > 23 || minutes > 59 {
            return Err(format!("`{text}`: time out of range"));
        }
        Ok(Self(day as f64 * DAY_S + f64::from(hours * 3600 + minutes * 60)))
    }

    /// The day of the week (0 = Monday) and hour of the day (0..24) of this moment.
    pub fn day_and_hour(self) -> (usize, usize) {
        let in_week = self.0.rem_euclid(WEEK_S);
        let day = ((in_week / DAY_S) as usize).min(6);
        let hour = (((in_week - day as f64 * DAY_S) / 3600.0) as usize).min(23);
        (day, hour)
    }

    /// This moment plus `sim_s` simulated seconds.
    pub fn plus(self, sim_s: f64) -> Self {
        Self(self.0 + sim_s)
    }
}

impl fmt::Display for WeekTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let in_week = self.0.rem_euclid(WEEK_S);
        let (day, _) = self.day_and_hour();
        let in_day = (in_week - day as f64 * DAY_S) as u64;
        write!(f, "{} {:02}:{:02}", DAY_NAMES[day], in_day / 3600, in_day / 60 % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("2x").is_err());
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("-3").is_err());
    }

    #[test]
    fn converts_between_simulated_and_real_time() {
        let scale = TimeScale::new(120.0).unwrap();
        assert_eq!(scale.to_real(3600.0), Duration::from_secs(30));
        assert!((scale.to_sim_s(Duration::from_secs(30)) - 3600.0).abs() < 1e-9);
        assert_eq!(scale.to_real_ms(20.0), 167);
        assert_eq!(scale.to_real_ms(0.0), 0);
        // A tiny but non-zero duration must not turn into "default" or "no limit".
        assert_eq!(scale.to_real_ms(0.001), 1);
        assert!((scale.real_ms_to_sim_s(500) - 60.0).abs() < 1e-9);
        assert!(TimeScale::new(0.0).is_none());
        assert!(TimeScale::new(f64::NAN).is_none());
    }

    #[test]
    fn formats_simulated_durations() {
        assert_eq!(format_sim_s(0.25), "250ms");
        assert_eq!(format_sim_s(12.34), "12.3s");
        assert_eq!(format_sim_s(245.0), "4m05s");
        assert_eq!(format_sim_s(3723.0), "1h02m03s");
    }

    #[test]
    fn parses_week_times() {
        let monday_nine = WeekTime::parse("mon 09:00").unwrap();
        assert_eq!(monday_nine, WeekTime(9.0 * 3600.0));
        assert_eq!(WeekTime::parse("09:00").unwrap(), monday_nine);
        let saturday = WeekTime::parse("Saturday 21:30").unwrap();
        assert_eq!(saturday.day_and_hour(), (5, 21));
        assert_eq!(saturday.to_string(), "sat 21:30");
        // Time wraps around the week: Sunday 23:00 plus two hours is Monday 01:00.
        let sunday = WeekTime::parse("sun 23:00").unwrap().plus(7200.0);
        assert_eq!(sunday.day_and_hour(), (0, 1));
        assert!(WeekTime::parse("mon 25:00").is_err());
        assert!(WeekTime::parse("xyz 10:00").is_err());
    }
}
