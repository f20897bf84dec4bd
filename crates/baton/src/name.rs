//! Queue names and domains.
//!
//! A name is 1 to 200 characters of `[A-Za-z0-9._-]` that does not start with `.`; a domain
//! follows the same rules. A domain keeps applications and test runs apart: two queues of the
//! same name in different domains are different queues.

use crate::error::OpenError;

/// The longest name or domain, in characters.
pub const MAX_NAME: usize = 200;
/// The environment variable that sets the default domain.
pub const DOMAIN_ENV: &str = "BATON_DOMAIN";
/// The domain used when none is given.
pub const DEFAULT_DOMAIN: &str = "default";

/// A validated namespace for queues.
///
/// # Examples
///
/// ```
/// let d = baton::Domain::new("test-42")?;
/// assert_eq!(d.as_str(), "test-42");
/// assert!(baton::Domain::new("../etc").is_err());
/// # Ok::<(), baton::OpenError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Domain(String);

impl Domain {
    /// A domain by name.
    ///
    /// # Errors
    ///
    /// [`OpenError::InvalidName`] if it breaks the naming rules.
    ///
    /// # Examples
    ///
    /// ```
    /// use baton::Domain;
    /// let d = Domain::new("trading")?;
    /// assert_eq!(d.as_str(), "trading");
    /// assert!(Domain::new("no/slashes").is_err());
    /// # Ok::<(), baton::OpenError>(())
    /// ```
    pub fn new(name: &str) -> Result<Domain, OpenError> {
        check("domain", name)?;
        Ok(Domain(name.to_string()))
    }

    /// The domain named by `BATON_DOMAIN`, or `default` when it is unset.
    ///
    /// # Errors
    ///
    /// [`OpenError::InvalidName`] if the variable holds an invalid name.
    ///
    /// # Examples
    ///
    /// ```
    /// use baton::{Domain, DEFAULT_DOMAIN, DOMAIN_ENV};
    /// // BATON_DOMAIN names the domain; unset, it is "default".
    /// let d = Domain::from_env()?;
    /// match std::env::var(DOMAIN_ENV) {
    ///     Ok(name) => assert_eq!(d.as_str(), name),
    ///     Err(_) => assert_eq!(d.as_str(), DEFAULT_DOMAIN),
    /// }
    /// # Ok::<(), baton::OpenError>(())
    /// ```
    pub fn from_env() -> Result<Domain, OpenError> {
        match std::env::var(DOMAIN_ENV) {
            Ok(v) => Domain::new(&v),
            Err(_) => Ok(Domain(DEFAULT_DOMAIN.to_string())),
        }
    }

    /// The domain's name.
    ///
    /// # Examples
    ///
    /// ```
    /// let d = baton::Domain::new("robots")?;
    /// assert_eq!(format!("{d}"), d.as_str());
    /// # Ok::<(), baton::OpenError>(())
    /// ```
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Domain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks a queue name.
///
/// # Errors
///
/// [`OpenError::InvalidName`] naming the rule broken.
///
/// # Examples
///
/// ```
/// use baton::check_queue_name;
/// assert!(check_queue_name("orders.eu-1").is_ok());
/// assert!(check_queue_name("").is_err());
/// assert!(check_queue_name("a/b").is_err());
/// ```
pub fn check_queue_name(name: &str) -> Result<(), OpenError> {
    check("queue name", name)
}

/// Checks a process group's name (the rules of a queue name).
pub(crate) fn check_group_name(name: &str) -> Result<(), OpenError> {
    check("process group name", name)
}

fn check(what: &'static str, name: &str) -> Result<(), OpenError> {
    let bad = |reason| {
        Err(OpenError::InvalidName {
            what,
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() > MAX_NAME {
        return bad("it is longer than 200 characters");
    }
    if name.starts_with('.') {
        return bad("it starts with '.'");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return bad("only letters, digits, '.', '_' and '-' are allowed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_allowed_characters() {
        check_queue_name("Orders.v2_eu-west").unwrap();
        check_queue_name(&"a".repeat(200)).unwrap();
    }

    #[test]
    fn rejects_each_broken_rule() {
        for bad in ["", ".hidden", "a/b", "../x", "sp ace", "é", "a~b", "a:b"] {
            assert!(
                matches!(check_queue_name(bad), Err(OpenError::InvalidName { .. })),
                "{bad:?} accepted"
            );
        }
        assert!(check_queue_name(&"a".repeat(201)).is_err());
    }

    #[test]
    fn domain_error_names_the_domain() {
        let e = Domain::new("a/b").unwrap_err().to_string();
        assert!(e.contains("domain") && e.contains("a/b"), "{e}");
    }
}
