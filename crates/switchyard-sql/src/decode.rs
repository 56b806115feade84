//! Typed row -> JSON: integers as numbers, decimals exactly as strings, booleans (also
//! MySQL's `TINYINT(1)`), timestamps RFC 3339 (without a time zone read as UTC), dates
//! `YYYY-MM-DD`, times `hh:mm:ss[.ffffff]`, json inline, bytes base64, null.

use base64::Engine as _;
use serde_json::{Map, Number, Value as Json};
use sqlx::{Column, Decode, Row, TypeInfo, ValueRef};
use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime, PrimitiveDateTime, Time};

use crate::SqlError;

pub(crate) fn rfc3339(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC).format(&Rfc3339).unwrap_or_default()
}

fn time_of_day(t: Time) -> String {
    let (h, m, s, micro) = t.as_hms_micro();
    if micro == 0 { format!("{h:02}:{m:02}:{s:02}") } else { format!("{h:02}:{m:02}:{s:02}.{micro:06}") }
}

fn date(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), d.month() as u8, d.day())
}

fn float(f: f64) -> Json {
    // NaN and the infinities have no JSON number.
    Number::from_f64(f).map_or_else(|| Json::String(f.to_string()), Json::Number)
}

fn bytes(b: &[u8]) -> Json {
    Json::String(base64::engine::general_purpose::STANDARD.encode(b))
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

/// One column into the row's object. Two columns of one name would lose one value
/// without a word: compile refuses the duplicates it can see (aliases, column names), and
/// this catches those the database named (`count(*), count(*)`).
fn put(object: &mut Map<String, Json>, name: &str, value: Json) -> Result<(), SqlError> {
    if object.insert(name.to_owned(), value).is_some() {
        return Err(SqlError::Failed {
            message: format!("two result columns are named {name:?}: each row is an object keyed by column name; alias one (AS ...)"),
        });
    }
    Ok(())
}

pub(crate) fn postgres_row(row: &sqlx::postgres::PgRow) -> Result<Json, SqlError> {
    use sqlx::Postgres as P;
    let mut object = Map::new();
    for (i, column) in row.columns().iter().enumerate() {
        let name = column.name();
        let raw = row.try_get_raw(i).map_err(|e| unreadable(name, "?", e))?;
        let type_name = raw.type_info().name().to_owned();
        let value = if raw.is_null() {
            Json::Null
        } else {
            let bad = |e| unreadable(name, &type_name, e);
            match type_name.as_str() {
                "BOOL" => Json::Bool(<bool as Decode<P>>::decode(raw).map_err(bad)?),
                "INT2" => Json::from(<i16 as Decode<P>>::decode(raw).map_err(bad)?),
                "INT4" => Json::from(<i32 as Decode<P>>::decode(raw).map_err(bad)?),
                "INT8" => Json::from(<i64 as Decode<P>>::decode(raw).map_err(bad)?),
                "OID" => Json::from(<sqlx::postgres::types::Oid as Decode<P>>::decode(raw).map_err(bad)?.0),
                "FLOAT4" => float(f64::from(<f32 as Decode<P>>::decode(raw).map_err(bad)?)),
                "FLOAT8" => float(<f64 as Decode<P>>::decode(raw).map_err(bad)?),
                "NUMERIC" => Json::String(pg_numeric(raw.as_bytes().map_err(bad)?).ok_or_else(|| bad("malformed NUMERIC".into()))?),
                "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" | "\"CHAR\"" | "CITEXT" | "UNKNOWN" => {
                    Json::String(<String as Decode<P>>::decode(raw).map_err(bad)?)
                }
                "BYTEA" => bytes(&<Vec<u8> as Decode<P>>::decode(raw).map_err(bad)?),
                "JSON" | "JSONB" => <Json as Decode<P>>::decode(raw).map_err(bad)?,
                "TIMESTAMPTZ" => Json::String(rfc3339(<OffsetDateTime as Decode<P>>::decode(raw).map_err(bad)?)),
                "TIMESTAMP" => Json::String(rfc3339(<PrimitiveDateTime as Decode<P>>::decode(raw).map_err(bad)?.assume_utc())),
                "DATE" => Json::String(date(<Date as Decode<P>>::decode(raw).map_err(bad)?)),
                "TIME" => Json::String(time_of_day(<Time as Decode<P>>::decode(raw).map_err(bad)?)),
                "UUID" => Json::String(uuid(raw.as_bytes().map_err(bad)?).ok_or_else(|| bad("malformed UUID".into()))?),
                _ => return Err(unsupported(name, &type_name)),
            }
        };
        put(&mut object, name, value)?;
    }
    Ok(Json::Object(object))
}

pub(crate) fn mysql_row(row: &sqlx::mysql::MySqlRow) -> Result<Json, SqlError> {
    use sqlx::MySql as M;
    let mut object = Map::new();
    for (i, column) in row.columns().iter().enumerate() {
        let name = column.name();
        let raw = row.try_get_raw(i).map_err(|e| unreadable(name, "?", e))?;
        let type_name = raw.type_info().name().to_owned();
        let value = if raw.is_null() {
            Json::Null
        } else {
            let bad = |e| unreadable(name, &type_name, e);
            match type_name.as_str() {
                "BOOLEAN" => Json::Bool(<bool as Decode<M>>::decode(raw).map_err(bad)?),
                "TINYINT" | "SMALLINT" | "MEDIUMINT" | "INT" | "BIGINT" | "YEAR" => {
                    Json::from(<i64 as Decode<M>>::decode(raw).map_err(bad)?)
                }
                "TINYINT UNSIGNED" | "SMALLINT UNSIGNED" | "MEDIUMINT UNSIGNED" | "INT UNSIGNED" | "BIGINT UNSIGNED" => {
                    Json::from(<u64 as Decode<M>>::decode(raw).map_err(bad)?)
                }
                "FLOAT" => float(f64::from(<f32 as Decode<M>>::decode(raw).map_err(bad)?)),
                "DOUBLE" => float(<f64 as Decode<M>>::decode(raw).map_err(bad)?),
                // The binary protocol sends DECIMAL as its decimal text: exact.
                "DECIMAL" => Json::String(<&str as Decode<M>>::decode(raw).map_err(bad)?.to_owned()),
                "VARCHAR" | "CHAR" | "TEXT" | "TINYTEXT" | "MEDIUMTEXT" | "LONGTEXT" | "ENUM" | "SET" => {
                    Json::String(<String as Decode<M>>::decode(raw).map_err(bad)?)
                }
                "VARBINARY" | "BINARY" | "BLOB" | "TINYBLOB" | "MEDIUMBLOB" | "LONGBLOB" | "BIT" | "GEOMETRY" => {
                    bytes(&<Vec<u8> as Decode<M>>::decode(raw).map_err(bad)?)
                }
                "JSON" => <Json as Decode<M>>::decode(raw).map_err(bad)?,
                "TIMESTAMP" => Json::String(rfc3339(<OffsetDateTime as Decode<M>>::decode(raw).map_err(bad)?)),
                "DATETIME" => Json::String(rfc3339(<PrimitiveDateTime as Decode<M>>::decode(raw).map_err(bad)?.assume_utc())),
                "DATE" => Json::String(date(<Date as Decode<M>>::decode(raw).map_err(bad)?)),
                "TIME" => Json::String(time_of_day(<Time as Decode<M>>::decode(raw).map_err(bad)?)),
                _ => return Err(unsupported(name, &type_name)),
            }
        };
        put(&mut object, name, value)?;
    }
    Ok(Json::Object(object))
}

pub(crate) fn sqlite_row(row: &sqlx::sqlite::SqliteRow) -> Result<Json, SqlError> {
    use sqlx::Sqlite as S;
    let mut object = Map::new();
    for (i, column) in row.columns().iter().enumerate() {
        let name = column.name();
        // The declared type says boolean; the value's own storage class says the rest.
        let declared = column.type_info().name().to_ascii_uppercase();
        let raw = row.try_get_raw(i).map_err(|e| unreadable(name, "?", e))?;
        if raw.is_null() {
            put(&mut object, name, Json::Null)?;
            continue;
        }
        let storage = raw.type_info().name().to_owned();
        let bad = |e| unreadable(name, &storage, e);
        let value = match storage.as_str() {
            "INTEGER" | "BOOLEAN" | "INT8" if declared == "BOOLEAN" => Json::Bool(<i64 as Decode<S>>::decode(raw).map_err(bad)? != 0),
            "INTEGER" | "BOOLEAN" | "INT8" => Json::from(<i64 as Decode<S>>::decode(raw).map_err(bad)?),
            "REAL" | "NUMERIC" => float(<f64 as Decode<S>>::decode(raw).map_err(bad)?),
            "BLOB" => bytes(&<Vec<u8> as Decode<S>>::decode(raw).map_err(bad)?),
            _ => Json::String(<String as Decode<S>>::decode(raw).map_err(bad)?),
        };
        put(&mut object, name, value)?;
    }
    Ok(Json::Object(object))
}

fn uuid(b: &[u8]) -> Option<String> {
    if b.len() != 16 {
        return None;
    }
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Some(format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32]))
}

/// PostgreSQL's binary NUMERIC (base-10000 digit groups, a weight, a sign and a display
/// scale) as exact decimal text.
pub(crate) fn pg_numeric(b: &[u8]) -> Option<String> {
    let word = |i: usize| b.get(i..i + 2).map(|w| u16::from_be_bytes([w[0], w[1]]));
    let ndigits = usize::from(word(0)?);
    let weight = i32::from(word(2)? as i16);
    let sign = word(4)?;
    let dscale = usize::from(word(6)?);
    let digits: Vec<u16> = (0..ndigits).map(|i| word(8 + 2 * i)).collect::<Option<_>>()?;
    match sign {
        0xC000 => return Some("NaN".into()),
        0xD000 => return Some("Infinity".into()),
        0xF000 => return Some("-Infinity".into()),
        0x0000 | 0x4000 => {}
        _ => return None,
    }
    let group = |i: i32| if i < 0 { 0 } else { digits.get(i as usize).copied().unwrap_or(0) };
    let mut text = String::new();
    if sign == 0x4000 {
        text.push('-');
    }
    if weight < 0 {
        text.push('0');
    } else {
        for i in 0..=weight {
            if i == 0 { text.push_str(&group(i).to_string()) } else { text.push_str(&format!("{:04}", group(i))) }
        }
    }
    if dscale > 0 {
        let mut fraction = String::new();
        let mut i = weight + 1;
        while fraction.len() < dscale {
            fraction.push_str(&format!("{:04}", group(i)));
            i += 1;
        }
        fraction.truncate(dscale);
        text.push('.');
        text.push_str(&fraction);
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::pg_numeric;

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
