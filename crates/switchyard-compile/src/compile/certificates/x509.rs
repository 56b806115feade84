//! The two things compile reads from a leaf certificate that rustls does not hand out:
//! its validity period and its subjectAltName DNS names. webpki has parsed the
//! certificate before this runs (so the structure is sound); this walks the DER just far
//! enough, and refuses anything it does not expect instead of guessing.

use crate::calendar::days_from_civil;

/// What a leaf says about itself.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Leaf {
    pub not_before: i64,
    pub not_after: i64,
    /// dNSName entries of the subjectAltName, as written.
    pub dns_names: Vec<String>,
}

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const OID: u8 = 0x06;
const BOOLEAN: u8 = 0x01;
const OCTET_STRING: u8 = 0x04;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
const VERSION: u8 = 0xa0;
const EXTENSIONS: u8 = 0xa3;
const DNS_NAME: u8 = 0x82;
/// 2.5.29.17, subjectAltName.
const SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];

pub(super) fn leaf(der: &[u8]) -> Result<Leaf, String> {
    let mut certificate = Reader(der).expect(SEQUENCE)?;
    let mut tbs = certificate.expect(SEQUENCE)?;
    tbs.skip_if(VERSION)?;
    tbs.expect(INTEGER)?;
    tbs.expect(SEQUENCE)?; // signature algorithm
    tbs.expect(SEQUENCE)?; // issuer
    let mut validity = tbs.expect(SEQUENCE)?;
    let not_before = time(&mut validity)?;
    let not_after = time(&mut validity)?;
    tbs.expect(SEQUENCE)?; // subject
    tbs.expect(SEQUENCE)?; // subjectPublicKeyInfo
    let mut dns_names = Vec::new();
    while let Some((tag, mut body)) = tbs.next()? {
        if tag == EXTENSIONS {
            dns_names = subject_alt_names(body.expect(SEQUENCE)?)?;
        }
    }
    Ok(Leaf { not_before, not_after, dns_names })
}

fn subject_alt_names(mut extensions: Reader<'_>) -> Result<Vec<String>, String> {
    while let Some((_, mut extension)) = extensions.next()? {
        let id = extension.expect(OID)?;
        extension.skip_if(BOOLEAN)?;
        if id.0 != SUBJECT_ALT_NAME {
            continue;
        }
        let mut names = extension.expect(OCTET_STRING)?.expect(SEQUENCE)?;
        let mut found = Vec::new();
        while let Some((tag, name)) = names.next()? {
            if tag == DNS_NAME {
                found.push(std::str::from_utf8(name.0).map_err(|_| "a subjectAltName DNS name is not text")?.to_owned());
            }
        }
        return Ok(found);
    }
    Ok(Vec::new())
}

/// UTCTime (`YYMMDDHHMMSSZ`, years 1950-2049) or GeneralizedTime (`YYYYMMDDHHMMSSZ`) to
/// seconds since the epoch.
fn time(reader: &mut Reader<'_>) -> Result<i64, String> {
    let (tag, body) = reader.next()?.ok_or("validity: a time is missing")?;
    let text = std::str::from_utf8(body.0).map_err(|_| "validity: not a time")?;
    let digits = |range: std::ops::Range<usize>| -> Result<i64, String> {
        text.get(range)
            .filter(|d| d.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|d| d.parse().ok())
            .ok_or(format!("validity: bad time {text:?}"))
    };
    let (year, rest) = match (tag, text.len()) {
        (UTC_TIME, 13) => {
            let yy = digits(0..2)?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, 2)
        }
        (GENERALIZED_TIME, 15) => (digits(0..4)?, 4),
        _ => return Err(format!("validity: unsupported time {text:?}")),
    };
    if !text.ends_with('Z') {
        return Err(format!("validity: time {text:?} is not UTC"));
    }
    let (month, day) = (digits(rest..rest + 2)?, digits(rest + 2..rest + 4)?);
    let (hour, minute, second) = (digits(rest + 4..rest + 6)?, digits(rest + 6..rest + 8)?, digits(rest + 8..rest + 10)?);
    Ok(days_from_civil(year, month, day) * 86_400 + hour * 3_600 + minute * 60 + second)
}

/// DER elements one after another.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    /// The next element's tag and body, or None at the end.
    fn next(&mut self) -> Result<Option<(u8, Reader<'a>)>, String> {
        let Some((&tag, rest)) = self.0.split_first() else { return Ok(None) };
        let (&first, rest) = rest.split_first().ok_or("DER: truncated length")?;
        let (length, rest) = match first {
            0..=0x7f => (first as usize, rest),
            0x81..=0x84 => {
                let count = (first & 0x7f) as usize;
                let bytes = rest.get(..count).ok_or("DER: truncated length")?;
                (bytes.iter().fold(0usize, |n, b| (n << 8) | *b as usize), &rest[count..])
            }
            _ => return Err("DER: unsupported length".into()),
        };
        let body = rest.get(..length).ok_or("DER: truncated element")?;
        self.0 = &rest[length..];
        Ok(Some((tag, Reader(body))))
    }

    fn expect(&mut self, tag: u8) -> Result<Reader<'a>, String> {
        match self.next()? {
            Some((found, body)) if found == tag => Ok(body),
            Some((found, _)) => Err(format!("DER: expected tag {tag:#04x}, found {found:#04x}")),
            None => Err(format!("DER: expected tag {tag:#04x}, found the end")),
        }
    }

    /// Skips the next element when it has `tag` (an optional field).
    fn skip_if(&mut self, tag: u8) -> Result<(), String> {
        if self.0.first() == Some(&tag) {
            self.next()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_time_forms_are_read_and_others_refused() {
        let read = |tag: u8, text: &str| {
            let mut der = vec![tag, text.len() as u8];
            der.extend_from_slice(text.as_bytes());
            time(&mut Reader(&der))
        };
        assert_eq!(read(UTC_TIME, "700101000000Z"), Ok(0));
        assert_eq!(read(UTC_TIME, "380119031407Z"), Ok(2_147_483_647));
        assert_eq!(read(GENERALIZED_TIME, "20380119031407Z"), Ok(2_147_483_647));
        assert!(read(UTC_TIME, "7001010000Z").is_err());
        assert!(read(UTC_TIME, "700101000000+").is_err());
        assert!(read(OCTET_STRING, "700101000000Z").is_err());
    }

    #[test]
    fn truncated_der_is_an_error_not_a_panic() {
        for bad in [&[0x30u8][..], &[0x30, 0x05, 0x02], &[0x30, 0x85, 0, 0, 0, 0, 1], &[0x30, 0x82, 0x01]] {
            assert!(leaf(bad).is_err(), "{bad:?}");
        }
    }
}
