//! Proleptic Gregorian dates and days since the Unix epoch (Howard Hinnant's `days_from_civil`
//! and `civil_from_days`), without a date library: certificate validity in compile, and the
//! proxy's access-log and CloudEvent timestamps, which format a date without allocating.

/// Days since 1970-01-01 of `year-month-day` (negative before the epoch).
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `(year, month, day)` of the `days`-th day after 1970-01-01 (negative: before it).
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// `civil_from_days` for a day on or after the epoch, in the unsigned form the proxy's
/// formatters write digits from.
pub fn civil_from_epoch_days(days: u64) -> (u64, u64, u64) {
    let (year, month, day) = civil_from_days(i64::try_from(days).unwrap_or(i64::MAX / 2));
    (year.unsigned_abs(), month.unsigned_abs(), day.unsigned_abs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates_count_days_from_the_epoch() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(2038, 1, 19), 24_855);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        assert_eq!(civil_from_epoch_days(0), (1970, 1, 1));
        assert_eq!(civil_from_epoch_days(951_782_400 / 86_400), (2000, 2, 29));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }

    #[test]
    fn days_and_dates_round_trip_across_four_centuries() {
        for days in (-146_097..=3 * 146_097).step_by(17) {
            let (year, month, day) = civil_from_days(days);
            assert!((1..=12).contains(&month) && (1..=31).contains(&day), "{days}: {year}-{month}-{day}");
            assert_eq!(days_from_civil(year, month, day), days);
        }
    }
}
