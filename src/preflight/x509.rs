//! The one thing the preflight reads from a certificate itself: its validity period. rustls
//! checks chains, names and keys, but reports a validity only when a chain is verified, and a
//! certificate without a configured CA must still be checked. A small DER walk to the one field.

/// `notBefore` and `notAfter`, in seconds since the Unix epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Validity {
    pub not_before: i64,
    pub not_after: i64,
}

const SEQUENCE: u8 = 0x30;
const VERSION: u8 = 0xa0;
const INTEGER: u8 = 0x02;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;

/// Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version OPTIONAL, serialNumber,
/// signature, issuer, validity SEQUENCE { notBefore, notAfter }, ... }, ... } (RFC 5280 4.1).
pub fn validity(der: &[u8]) -> Result<Validity, String> {
    let (cert, _) = expect(der, SEQUENCE)?;
    let (mut tbs, _) = expect(cert, SEQUENCE)?;
    if tbs.first() == Some(&VERSION) {
        tbs = tlv(tbs)?.2;
    }
    let (_serial, rest) = expect(tbs, INTEGER)?;
    let (_signature, rest) = expect(rest, SEQUENCE)?;
    let (_issuer, rest) = expect(rest, SEQUENCE)?;
    let (validity, _) = expect(rest, SEQUENCE)?;
    let (not_before, rest) = time(validity)?;
    let (not_after, _) = time(rest)?;
    Ok(Validity {
        not_before,
        not_after,
    })
}

/// One tag-length-value: (tag, content, what follows).
fn tlv(der: &[u8]) -> Result<(u8, &[u8], &[u8]), String> {
    let cut = || "the certificate's DER encoding is cut short".to_string();
    let (&tag, rest) = der.split_first().ok_or_else(cut)?;
    let (&first, mut rest) = rest.split_first().ok_or_else(cut)?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let bytes = usize::from(first & 0x7f);
        if bytes == 0 || bytes > 4 || rest.len() < bytes {
            return Err("the certificate has a DER length it cannot have".into());
        }
        let len = rest[..bytes]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        rest = &rest[bytes..];
        len
    };
    if rest.len() < len {
        return Err(cut());
    }
    Ok((tag, &rest[..len], &rest[len..]))
}

fn expect(der: &[u8], want: u8) -> Result<(&[u8], &[u8]), String> {
    let (tag, content, rest) = tlv(der)?;
    if tag != want {
        return Err(format!(
            "the certificate is not shaped as X.509 (tag {tag:#04x} where {want:#04x} belongs)"
        ));
    }
    Ok((content, rest))
}

/// UTCTime (`YYMMDDHHMMSSZ`, years 1950-2049) or GeneralizedTime (`YYYYMMDDHHMMSSZ`).
fn time(der: &[u8]) -> Result<(i64, &[u8]), String> {
    let (tag, content, rest) = tlv(der)?;
    // ASCII only: the slicing below is by byte.
    let text = std::str::from_utf8(content)
        .ok()
        .filter(|t| t.is_ascii())
        .unwrap_or("");
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let (year, rest_of) = match (tag, text.len()) {
        (UTC_TIME, 13) if digits(&text[..12]) => {
            let yy: i64 = text[..2].parse().unwrap_or(0);
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, &text[2..])
        }
        (GENERALIZED_TIME, 15) if digits(&text[..14]) => {
            (text[..4].parse().unwrap_or(0), &text[4..])
        }
        _ => {
            return Err(format!(
                "the certificate's validity time {text:?} is not UTC"
            ));
        }
    };
    if !rest_of.ends_with('Z') {
        return Err(format!(
            "the certificate's validity time {text:?} is not UTC"
        ));
    }
    let n = |i: usize| -> i64 { rest_of[i..i + 2].parse().unwrap_or(0) };
    let (month, day, hour, minute, second) = (n(0), n(2), n(4), n(6), n(8));
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return Err(format!(
            "the certificate's validity time {text:?} is not a date"
        ));
    }
    let days = crate::civil::days_from_civil(year, month, day);
    Ok((days * 86_400 + hour * 3600 + minute * 60 + second, rest))
}

pub use crate::civil::date;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_or_foreign_der_is_an_error_not_a_panic() {
        // A validity whose time has a two-byte character where the last digits belong.
        let utf8_time = [
            0x30, 0x1a, 0x30, 0x18, 0x02, 0x01, 0x01, 0x30, 0x00, 0x30, 0x00, 0x30, 0x0f, 0x17,
            0x0d, b'2', b'6', b'0', b'1', b'0', b'1', b'0', b'0', b'0', b'0', b'0', 0xc3, 0xa9,
        ];
        for bad in [
            &[][..],
            &[0x30],
            &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff],
            &[0x02, 0x01, 0x00],
            &utf8_time,
        ] {
            assert!(validity(bad).is_err(), "{bad:?}");
        }
    }
}
