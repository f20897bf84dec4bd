//! SA-Forum names (`SaNameT`, often a DN such as `safMq=orders,safApp=shop`) as baton names
//! (`[A-Za-z0-9._-]`, not starting with `.`): every byte but `[A-Za-z0-9_-]` (so `.` too)
//! becomes `.XX` (its hex value), so different SA names stay different baton names.

use crate::types::{SaNameT, SA_MAX_NAME_LENGTH};

/// Why a name was refused.
pub(crate) enum BadName {
    /// A NULL pointer.
    Null,
    /// `length` is 0 or over `SA_MAX_NAME_LENGTH`.
    Length,
    /// Longer than baton's 200 characters once encoded.
    TooLong,
}

/// The baton name of an SA name.
///
/// # Safety
///
/// `name` is NULL or points to a readable `SaNameT`.
pub(crate) unsafe fn baton_name(name: *const SaNameT) -> Result<String, BadName> {
    // SAFETY: the caller's contract.
    let Some(n) = (unsafe { name.as_ref() }) else {
        return Err(BadName::Null);
    };
    let len = usize::from(n.length);
    if len == 0 || len > SA_MAX_NAME_LENGTH {
        return Err(BadName::Length);
    }
    let mut out = String::with_capacity(len);
    for &b in &n.value[..len] {
        // `.` is always escaped: it starts every escape, so a name that holds `.XX` stays
        // apart from one with the byte XX (review: "a.2Cb" and "a,b" were one queue).
        let plain = b.is_ascii_alphanumeric() || b == b'_' || b == b'-';
        if plain {
            out.push(b as char);
        } else {
            out.push_str(&format!(".{b:02X}"));
        }
    }
    if out.len() > baton::MAX_NAME {
        return Err(BadName::TooLong);
    }
    Ok(out)
}

/// The SA name of a baton name made by [`baton_name`] (`.XX` decoded), cut to
/// `SA_MAX_NAME_LENGTH`.
pub(crate) fn sa_name(name: &str) -> SaNameT {
    let b = name.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'.', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    out.truncate(SA_MAX_NAME_LENGTH);
    let mut n = SaNameT {
        length: out.len() as u16,
        value: [0; SA_MAX_NAME_LENGTH],
    };
    n.value[..out.len()].copy_from_slice(&out);
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> SaNameT {
        let mut n = SaNameT {
            length: s.len() as u16,
            value: [0; SA_MAX_NAME_LENGTH],
        };
        n.value[..s.len()].copy_from_slice(s.as_bytes());
        n
    }

    /// `baton_name` of a name on the stack.
    fn encoded(s: &str) -> Option<String> {
        // SAFETY: a valid SaNameT on the stack.
        unsafe { baton_name(&name(s)) }.ok()
    }

    #[test]
    fn dns_become_valid_distinct_baton_names() {
        let a = encoded("safMq=orders,safApp=shop").unwrap();
        assert_eq!(a, "safMq.3Dorders.2CsafApp.3Dshop");
        assert!(baton::check_queue_name(&a).is_ok());
        let b = encoded("safMq=orders.safApp=shop").unwrap();
        assert_ne!(a, b);
        assert_ne!(encoded("a,b"), encoded("a.2Cb"));
        assert_eq!(encoded("a.b").unwrap(), "a.2Eb");
        assert_eq!(encoded("plain").unwrap(), "plain");
        assert_eq!(encoded(".x").unwrap(), ".2Ex");
        // SAFETY: NULL is allowed.
        assert!(unsafe { baton_name(std::ptr::null()) }.is_err());
        let mut long = name("x");
        long.length = 300;
        // SAFETY: a valid SaNameT whose length field lies.
        assert!(unsafe { baton_name(&long) }.is_err());
        let back = sa_name(&a);
        assert_eq!(
            &back.value[..back.length as usize],
            b"safMq=orders,safApp=shop"
        );
    }
}
