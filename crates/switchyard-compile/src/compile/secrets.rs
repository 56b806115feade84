//! Secrets that resources reference by name (`credentialsSecretRef`, and later token and
//! database-credential references): one lookup, one pair of reasons, for every kind.

use super::Rejection;
use crate::{Resources, reason};

/// The values of `keys` in Secret `namespace/name`, in the order asked; `field` names the
/// reference in messages. A missing Secret or key is `SecretNotFound` /
/// `SecretKeyNotFound` (for `ResolvedRefs=False`); no message ever holds a value.
pub(crate) fn lookup<'a>(
    resources: &'a Resources,
    namespace: &str,
    name: &str,
    keys: &[&str],
    field: &str,
) -> Result<Vec<&'a str>, Rejection> {
    let Some(secret) = resources.secrets.get(&(namespace.to_owned(), name.to_owned())) else {
        return Err(Rejection::new(reason::SECRET_NOT_FOUND, format!("{field}: Secret {namespace}/{name} does not exist")));
    };
    keys.iter()
        .map(|key| {
            secret.0.get(*key).map(String::as_str).ok_or_else(|| {
                Rejection::new(reason::SECRET_KEY_NOT_FOUND, format!("{field}: Secret {namespace}/{name} has no key {key:?}"))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SecretData;

    #[test]
    fn a_missing_secret_or_key_says_which_and_never_shows_a_value() {
        let mut resources = Resources::default();
        let data = SecretData([("username".to_owned(), "nacos".to_owned()), ("password".to_owned(), "s3cret".to_owned())].into());
        resources.secrets.insert(("shop".into(), "login".into()), data);
        let found = lookup(&resources, "shop", "login", &["username", "password"], "f").unwrap();
        assert_eq!(found, ["nacos", "s3cret"]);
        let missing = lookup(&resources, "shop", "other", &["username"], "f").unwrap_err();
        assert_eq!(missing.reason, reason::SECRET_NOT_FOUND);
        assert!(missing.message.contains("shop/other"), "{}", missing.message);
        let no_key = lookup(&resources, "shop", "login", &["token"], "f").unwrap_err();
        assert_eq!(no_key.reason, reason::SECRET_KEY_NOT_FOUND);
        assert!(!no_key.message.contains("s3cret") && no_key.message.contains("token"));
        let elsewhere = lookup(&resources, "other", "login", &["username"], "f").unwrap_err();
        assert_eq!(elsewhere.reason, reason::SECRET_NOT_FOUND, "a Secret is only found in the resource's own namespace");
    }
}
