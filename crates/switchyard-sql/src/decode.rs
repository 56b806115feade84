//! Typed rows -> the page's JSON text, written straight into one buffer per page (no
//! `serde_json::Value` per row): integers as numbers, decimals exactly as strings,
//! booleans (also MySQL's `TINYINT(1)`), timestamps RFC 3339 (without a time zone read
//! as UTC), dates `YYYY-MM-DD`, times `hh:mm:ss[.ffffff]`, json inline, bytes base64,
//! null. Column names are escaped once per page; strings are escaped as they are copied.

use std::io::Write as _;

use base64::Engine as _;
use sqlx::{Column, Decode, Row, TypeInfo, ValueRef};
use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime, PrimitiveDateTime, Time};

use crate::{SqlError, TOTAL_COLUMN};

pub(crate) fn rfc3339(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC).format(&Rfc3339).unwrap_or_default()
}

/// A JSON string, escaped (writing to a `Vec` cannot fail).
fn string(out: &mut Vec<u8>, s: &str) {
    let _ = serde_json::to_writer(&mut *out, s);
}

fn integer(out: &mut Vec<u8>, n: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

fn float(out: &mut Vec<u8>, f: f64) {
    if f.is_finite() {
        let _ = serde_json::to_writer(&mut *out, &f);
    } else {
        // NaN and the infinities have no JSON number.
        string(out, &f.to_string());
    }
}

fn boolean(out: &mut Vec<u8>, b: bool) {
    out.extend_from_slice(if b { b"true" } else { b"false" });
}

fn bytes(out: &mut Vec<u8>, b: &[u8]) {
    let engine = base64::engine::general_purpose::STANDARD;
    let start = out.len() + 1;
    let len = base64::encoded_len(b.len(), true).expect("a row's value fits in memory");
    out.resize(start + len + 1, b'"');
    let written = engine.encode_slice(b, &mut out[start..start + len]).expect("sized by encoded_len");
    debug_assert_eq!(written, len);
}

/// RFC 3339 in UTC; a year RFC 3339 cannot write (outside 0-9999) is an empty string.
fn timestamp(out: &mut Vec<u8>, t: OffsetDateTime) {
    out.push(b'"');
    let start = out.len();
    if t.to_offset(time::UtcOffset::UTC).format_into(&mut *out, &Rfc3339).is_err() {
        out.truncate(start);
    }
    out.push(b'"');
}

fn time_of_day(out: &mut Vec<u8>, t: Time) {
    let (h, m, s, micro) = t.as_hms_micro();
    let _ = if micro == 0 { write!(out, "\"{h:02}:{m:02}:{s:02}\"") } else { write!(out, "\"{h:02}:{m:02}:{s:02}.{micro:06}\"") };
}

fn date(out: &mut Vec<u8>, d: Date) {
    let _ = write!(out, "\"{:04}-{:02}-{:02}\"", d.year(), d.month() as u8, d.day());
}

fn json<DB: sqlx::Database>(out: &mut Vec<u8>, raw: <DB as sqlx::Database>::ValueRef<'_>) -> Result<(), sqlx::error::BoxDynError>
where
    serde_json::Value: for<'r> Decode<'r, DB>,
{
    let value = <serde_json::Value as Decode<DB>>::decode(raw)?;
    serde_json::to_writer(&mut *out, &value)?;
    Ok(())
}

fn unreadable(column: &str, type_name: &str, why: impl std::fmt::Display) -> SqlError {
    SqlError::Failed { message: format!("column {column:?} of type {type_name} cannot be read: {why}") }
}

fn unsupported(column: &str, type_name: &str) -> SqlError {
    SqlError::Failed {
        message: format!(
            "column {column:?} has type {type_name}, which the gateway does not render; cast it in the query (for example to text)"
        ),
    }
}

/// The JSON keys of a result's columns (`"name":`), escaped once per page, and which
/// column is the count the page query carries ([`TOTAL_COLUMN`], not written).
struct Keys {
    keys: Vec<Vec<u8>>,
    total: Option<usize>,
}

impl Keys {
    /// Two columns of one name would lose one value without a word: compile refuses the
    /// duplicates it can see (aliases, column names), and this catches those the database
    /// named (`count(*), count(*)`).
    fn of<C: Column>(columns: &[C], counts: bool) -> Result<Self, SqlError> {
        let total = if counts { columns.iter().rposition(|c| c.name() == TOTAL_COLUMN) } else { None };
        let mut keys: Vec<Vec<u8>> = Vec::with_capacity(columns.len());
        for (i, column) in columns.iter().enumerate() {
            let name = column.name();
            if Some(i) != total && columns[..i].iter().enumerate().any(|(j, c)| Some(j) != total && c.name() == name) {
                return Err(SqlError::Failed {
                    message: format!(
                        "two result columns are named {name:?}: each row is an object keyed by column name; alias one (AS ...)"
                    ),
                });
            }
            let mut key = Vec::with_capacity(name.len() + 3);
            string(&mut key, name);
            key.push(b':');
            keys.push(key);
        }
        if counts && total.is_none() && !columns.is_empty() {
            return Err(SqlError::Failed { message: format!("the page query's {TOTAL_COLUMN} column is missing") });
        }
        Ok(Self { keys, total })
    }
}

/// Writes `rows` as a JSON array of objects to `out`; returns the count the first row
/// carried in [`TOTAL_COLUMN`] when `counts` (None for no row).
fn write_rows<R: Row>(
    rows: &[R],
    counts: bool,
    out: &mut Vec<u8>,
    total_of: impl Fn(&R, usize) -> Result<i64, SqlError>,
    mut cell: impl FnMut(&R, usize, &mut Vec<u8>) -> Result<(), SqlError>,
) -> Result<Option<i64>, SqlError> {
    out.push(b'[');
    let Some(first) = rows.first() else {
        out.push(b']');
        return Ok(None);
    };
    let keys = Keys::of(first.columns(), counts)?;
    let total = keys.total.map(|i| total_of(first, i)).transpose()?;
    for (n, row) in rows.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        out.push(b'{');
        let mut written = 0;
        for (i, key) in keys.keys.iter().enumerate() {
            if Some(i) == keys.total {
                continue;
            }
            if written > 0 {
                out.push(b',');
            }
            out.extend_from_slice(key);
            cell(row, i, out)?;
            written += 1;
        }
        out.push(b'}');
    }
    out.push(b']');
    Ok(total)
}

fn total<R: Row>(row: &R, i: usize) -> Result<i64, SqlError>
where
    i64: for<'r> Decode<'r, R::Database> + sqlx::Type<R::Database>,
    usize: sqlx::ColumnIndex<R>,
{
    row.try_get::<i64, _>(i).map_err(|e| SqlError::Failed { message: format!("the page query's {TOTAL_COLUMN} column: {e}") })
}

/// How a PostgreSQL column is written, from its type (one per column of a result).
#[derive(Clone, Copy)]
enum PgKind {
    Bool,
    Int2,
    Int4,
    Int8,
    Oid,
    Float4,
    Float8,
    Numeric,
    Text,
    Bytea,
    Json,
    TimestampTz,
    Timestamp,
    Date,
    Time,
    Uuid,
    Unsupported,
}

impl PgKind {
    fn of(type_name: &str) -> Self {
        match type_name {
            "BOOL" => Self::Bool,
            "INT2" => Self::Int2,
            "INT4" => Self::Int4,
            "INT8" => Self::Int8,
            "OID" => Self::Oid,
            "FLOAT4" => Self::Float4,
            "FLOAT8" => Self::Float8,
            "NUMERIC" => Self::Numeric,
            "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" | "\"CHAR\"" | "CITEXT" | "UNKNOWN" => Self::Text,
            "BYTEA" => Self::Bytea,
            "JSON" | "JSONB" => Self::Json,
            "TIMESTAMPTZ" => Self::TimestampTz,
            "TIMESTAMP" => Self::Timestamp,
            "DATE" => Self::Date,
            "TIME" => Self::Time,
            "UUID" => Self::Uuid,
            _ => Self::Unsupported,
        }
    }
}

/// The page's rows as a JSON array into `out`; the count they carried when `counts`.
pub(crate) fn postgres_rows(rows: &[sqlx::postgres::PgRow], counts: bool, out: &mut Vec<u8>) -> Result<Option<i64>, SqlError> {
    let kinds: Vec<PgKind> =
        rows.first().map(|row| row.columns().iter().map(|c| PgKind::of(c.type_info().name())).collect()).unwrap_or_default();
    write_rows(rows, counts, out, total, |row, i, out| postgres_cell(row, i, kinds[i], out))
}

fn postgres_cell(row: &sqlx::postgres::PgRow, i: usize, kind: PgKind, out: &mut Vec<u8>) -> Result<(), SqlError> {
    use sqlx::Postgres as P;
    let column = &row.columns()[i];
    let name = column.name();
    let raw = row.try_get_raw(i).map_err(|e| unreadable(name, "?", e))?;
    if raw.is_null() {
        out.extend_from_slice(b"null");
        return Ok(());
    }
    let type_info = column.type_info();
    let bad = |e| unreadable(name, type_info.name(), e);
    match kind {
        PgKind::Bool => boolean(out, <bool as Decode<P>>::decode(raw).map_err(bad)?),
        PgKind::Int2 => integer(out, <i16 as Decode<P>>::decode(raw).map_err(bad)?),
        PgKind::Int4 => integer(out, <i32 as Decode<P>>::decode(raw).map_err(bad)?),
        PgKind::Int8 => integer(out, <i64 as Decode<P>>::decode(raw).map_err(bad)?),
        PgKind::Oid => integer(out, <sqlx::postgres::types::Oid as Decode<P>>::decode(raw).map_err(bad)?.0),
        PgKind::Float4 => float(out, f64::from(<f32 as Decode<P>>::decode(raw).map_err(bad)?)),
        PgKind::Float8 => float(out, <f64 as Decode<P>>::decode(raw).map_err(bad)?),
        PgKind::Numeric => {
            out.push(b'"');
            pg_numeric_into(raw.as_bytes().map_err(bad)?, out).ok_or_else(|| bad("malformed NUMERIC".into()))?;
            out.push(b'"');
        }
        PgKind::Text => string(out, <&str as Decode<P>>::decode(raw).map_err(bad)?),
        PgKind::Bytea => bytes(out, <&[u8] as Decode<P>>::decode(raw).map_err(bad)?),
        PgKind::Json => json::<P>(out, raw).map_err(bad)?,
        PgKind::TimestampTz => timestamp(out, <OffsetDateTime as Decode<P>>::decode(raw).map_err(bad)?),
        PgKind::Timestamp => timestamp(out, <PrimitiveDateTime as Decode<P>>::decode(raw).map_err(bad)?.assume_utc()),
        PgKind::Date => date(out, <Date as Decode<P>>::decode(raw).map_err(bad)?),
        PgKind::Time => time_of_day(out, <Time as Decode<P>>::decode(raw).map_err(bad)?),
        PgKind::Uuid => uuid(out, raw.as_bytes().map_err(bad)?).ok_or_else(|| bad("malformed UUID".into()))?,
        PgKind::Unsupported => return Err(unsupported(name, type_info.name())),
    }
    Ok(())
}

/// The page's rows as a JSON array into `out`; the count they carried when `counts`.
pub(crate) fn mysql_rows(rows: &[sqlx::mysql::MySqlRow], counts: bool, out: &mut Vec<u8>) -> Result<Option<i64>, SqlError> {
    write_rows(rows, counts, out, total, mysql_cell)
}

fn mysql_cell(row: &sqlx::mysql::MySqlRow, i: usize, out: &mut Vec<u8>) -> Result<(), SqlError> {
    use sqlx::MySql as M;
    let column = &row.columns()[i];
    let name = column.name();
    let raw = row.try_get_raw(i).map_err(|e| unreadable(name, "?", e))?;
    if raw.is_null() {
        out.extend_from_slice(b"null");
        return Ok(());
    }
    // The value's type is its column's (sqlx copies it into the value).
    let type_name = column.type_info().name();
    let bad = |e| unreadable(name, type_name, e);
    match type_name {
        "BOOLEAN" => boolean(out, <bool as Decode<M>>::decode(raw).map_err(bad)?),
        "TINYINT" | "SMALLINT" | "MEDIUMINT" | "INT" | "BIGINT" | "YEAR" => integer(out, <i64 as Decode<M>>::decode(raw).map_err(bad)?),
        "TINYINT UNSIGNED" | "SMALLINT UNSIGNED" | "MEDIUMINT UNSIGNED" | "INT UNSIGNED" | "BIGINT UNSIGNED" => {
            integer(out, <u64 as Decode<M>>::decode(raw).map_err(bad)?)
        }
        "FLOAT" => float(out, f64::from(<f32 as Decode<M>>::decode(raw).map_err(bad)?)),
        "DOUBLE" => float(out, <f64 as Decode<M>>::decode(raw).map_err(bad)?),
        // The binary protocol sends DECIMAL as its decimal text: exact.
        "DECIMAL" => string(out, <&str as Decode<M>>::decode(raw).map_err(bad)?),
        "VARCHAR" | "CHAR" | "TEXT" | "TINYTEXT" | "MEDIUMTEXT" | "LONGTEXT" | "ENUM" | "SET" => {
            string(out, <&str as Decode<M>>::decode(raw).map_err(bad)?)
        }
        "VARBINARY" | "BINARY" | "BLOB" | "TINYBLOB" | "MEDIUMBLOB" | "LONGBLOB" | "BIT" | "GEOMETRY" => {
            bytes(out, <&[u8] as Decode<M>>::decode(raw).map_err(bad)?)
        }
        "JSON" => json::<M>(out, raw).map_err(bad)?,
        "TIMESTAMP" => timestamp(out, <OffsetDateTime as Decode<M>>::decode(raw).map_err(bad)?),
        "DATETIME" => timestamp(out, <PrimitiveDateTime as Decode<M>>::decode(raw).map_err(bad)?.assume_utc()),
        "DATE" => date(out, <Date as Decode<M>>::decode(raw).map_err(bad)?),
        "TIME" => time_of_day(out, <Time as Decode<M>>::decode(raw).map_err(bad)?),
        _ => return Err(unsupported(name, type_name)),
    }
    Ok(())
}

/// The page's rows as a JSON array into `out`; the count they carried when `counts`.
pub(crate) fn sqlite_rows(rows: &[sqlx::sqlite::SqliteRow], counts: bool, out: &mut Vec<u8>) -> Result<Option<i64>, SqlError> {
    // The declared type says boolean (per column); the value's own storage class says the rest.
    let booleans: Vec<bool> = rows
        .first()
        .map(|row| row.columns().iter().map(|c| c.type_info().name().eq_ignore_ascii_case("BOOLEAN")).collect())
        .unwrap_or_default();
    write_rows(rows, counts, out, total, |row, i, out| sqlite_cell(row, i, booleans[i], out))
}

fn sqlite_cell(row: &sqlx::sqlite::SqliteRow, i: usize, boolean_column: bool, out: &mut Vec<u8>) -> Result<(), SqlError> {
    use sqlx::Sqlite as S;
    let name = row.columns()[i].name();
    let raw = row.try_get_raw(i).map_err(|e| unreadable(name, "?", e))?;
    if raw.is_null() {
        out.extend_from_slice(b"null");
        return Ok(());
    }
    let storage: &'static str = match raw.type_info().name() {
        "INTEGER" | "BOOLEAN" | "INT8" => "INTEGER",
        "REAL" | "NUMERIC" => "REAL",
        "BLOB" => "BLOB",
        _ => "TEXT",
    };
    let bad = |e| unreadable(name, storage, e);
    match storage {
        "INTEGER" if boolean_column => boolean(out, <i64 as Decode<S>>::decode(raw).map_err(bad)? != 0),
        "INTEGER" => integer(out, <i64 as Decode<S>>::decode(raw).map_err(bad)?),
        "REAL" => float(out, <f64 as Decode<S>>::decode(raw).map_err(bad)?),
        "BLOB" => bytes(out, <&[u8] as Decode<S>>::decode(raw).map_err(bad)?),
        _ => string(out, <&str as Decode<S>>::decode(raw).map_err(bad)?),
    }
    Ok(())
}

fn uuid(out: &mut Vec<u8>, b: &[u8]) -> Option<()> {
    if b.len() != 16 {
        return None;
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    for (i, x) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push(b'-');
        }
        out.extend_from_slice(&[HEX[usize::from(x >> 4)], HEX[usize::from(x & 15)]]);
    }
    out.push(b'"');
    Some(())
}

/// PostgreSQL's binary NUMERIC (base-10000 digit groups, a weight, a sign and a display
/// scale) as exact decimal text, appended to `out` (None, and `out` as it was, when
/// malformed).
pub(crate) fn pg_numeric_into(b: &[u8], out: &mut Vec<u8>) -> Option<()> {
    let word = |i: usize| b.get(i..i + 2).map(|w| u16::from_be_bytes([w[0], w[1]]));
    let ndigits = usize::from(word(0)?);
    let weight = i32::from(word(2)? as i16);
    let sign = word(4)?;
    let dscale = usize::from(word(6)?);
    if b.len() < 8 + 2 * ndigits {
        return None;
    }
    let group = |i: i32| if i < 0 || i as usize >= ndigits { 0 } else { word(8 + 2 * i as usize).unwrap_or(0) };
    let special: &[u8] = match sign {
        0xC000 => b"NaN",
        0xD000 => b"Infinity",
        0xF000 => b"-Infinity",
        0x0000 | 0x4000 => b"",
        _ => return None,
    };
    if !special.is_empty() {
        out.extend_from_slice(special);
        return Some(());
    }
    let four = |out: &mut Vec<u8>, g: u16| {
        out.extend_from_slice(&[
            b'0' + (g / 1000 % 10) as u8,
            b'0' + (g / 100 % 10) as u8,
            b'0' + (g / 10 % 10) as u8,
            b'0' + (g % 10) as u8,
        ])
    };
    if sign == 0x4000 {
        out.push(b'-');
    }
    if weight < 0 {
        out.push(b'0');
    } else {
        integer(out, group(0));
        for i in 1..=weight {
            four(out, group(i));
        }
    }
    if dscale > 0 {
        out.push(b'.');
        let start = out.len();
        let mut i = weight + 1;
        while out.len() - start < dscale {
            four(out, group(i));
            i += 1;
        }
        out.truncate(start + dscale);
    }
    Some(())
}

/// [`pg_numeric_into`] as a `String`.
#[cfg(test)]
pub(crate) fn pg_numeric(b: &[u8]) -> Option<String> {
    let mut out = Vec::new();
    pg_numeric_into(b, &mut out)?;
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::{bytes, date, float, pg_numeric, string, time_of_day, timestamp, uuid};

    fn written(write: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = b"x".to_vec();
        write(&mut out);
        String::from_utf8(out).unwrap().split_off(1)
    }

    #[test]
    fn values_are_written_as_serde_json_writes_them() {
        for s in ["", "plain", "quote \" and backslash \\", "nul \0 tab \t newline \n", "\u{1f}\u{7f}", "unicode ’ é 🦀", "</script>"]
        {
            assert_eq!(written(|o| string(o, s)), serde_json::Value::from(s).to_string(), "{s:?}");
        }
        for f in [0.0, -0.0, 0.25, 12.5, 1e21, 1e-7, f64::MAX, 9007199254740993.0] {
            assert_eq!(written(|o| float(o, f)), serde_json::Value::from(f).to_string(), "{f}");
        }
        assert_eq!(written(|o| float(o, f64::NAN)), r#""NaN""#);
        assert_eq!(written(|o| float(o, f64::NEG_INFINITY)), r#""-inf""#);
        assert_eq!(written(|o| bytes(o, &[0x00, 0xff, 0x10])), r#""AP8Q""#);
        assert_eq!(written(|o| bytes(o, b"")), r#""""#);
        let uid = [0xa0, 0xee, 0xbc, 0x99, 0x9c, 0x0b, 0x4e, 0xf8, 0xbb, 0x6d, 0x6b, 0xb9, 0xbd, 0x38, 0x0a, 0x11];
        assert_eq!(written(|o| uuid(o, &uid).unwrap()), r#""a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11""#);
        assert!(uuid(&mut Vec::new(), &uid[1..]).is_none());
        let day = time::Date::from_calendar_date(2024, time::Month::May, 1).unwrap();
        let half_past = time::Time::from_hms_milli(12, 30, 0, 500).unwrap();
        let t = time::PrimitiveDateTime::new(day, half_past).assume_offset(time::UtcOffset::from_hms(2, 0, 0).unwrap());
        assert_eq!(written(|o| timestamp(o, t)), r#""2024-05-01T10:30:00.5Z""#);
        assert_eq!(written(|o| date(o, day)), r#""2024-05-01""#);
        assert_eq!(written(|o| time_of_day(o, time::Time::from_hms_milli(8, 15, 30, 500).unwrap())), r#""08:15:30.500000""#);
        assert_eq!(written(|o| time_of_day(o, time::Time::from_hms(8, 15, 30).unwrap())), r#""08:15:30""#);
    }

    fn encode(ndigits: u16, weight: i16, sign: u16, dscale: u16, digits: &[u16]) -> Vec<u8> {
        let mut b = Vec::new();
        for w in [ndigits, weight as u16, sign, dscale] {
            b.extend_from_slice(&w.to_be_bytes());
        }
        for d in digits {
            b.extend_from_slice(&d.to_be_bytes());
        }
        b
    }

    #[test]
    fn numeric_text_is_exact() {
        // 12345.6789 = [1, 2345, 6789], weight 1
        assert_eq!(pg_numeric(&encode(3, 1, 0, 4, &[1, 2345, 6789])).unwrap(), "12345.6789");
        // -0.0005 = [5], weight -1, dscale 4
        assert_eq!(pg_numeric(&encode(1, -1, 0x4000, 4, &[5])).unwrap(), "-0.0005");
        // 0.00000001 = [1], weight -2, dscale 8
        assert_eq!(pg_numeric(&encode(1, -2, 0, 8, &[1])).unwrap(), "0.00000001");
        // 10000 = [1], weight 1, dscale 0 (trailing group omitted)
        assert_eq!(pg_numeric(&encode(1, 1, 0, 0, &[1])).unwrap(), "10000");
        // 1.50 with dscale 2
        assert_eq!(pg_numeric(&encode(2, 0, 0, 2, &[1, 5000])).unwrap(), "1.50");
        assert_eq!(pg_numeric(&encode(0, 0, 0, 0, &[])).unwrap(), "0");
        assert_eq!(pg_numeric(&encode(0, 0, 0xC000, 0, &[])).unwrap(), "NaN");
    }
}
