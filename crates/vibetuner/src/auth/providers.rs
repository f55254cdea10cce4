//! The OAuth providers an app's settings enable (always compiled, so an app built without the
//! `oauth` feature can say clearly that it cannot use them). The sign-in flow is in `oauth`.
//!
//! Settings per provider id `P` (upper-cased): `P_CLIENT_ID` and `P_CLIENT_SECRET` enable it;
//! `P_ISSUER_URL` (OIDC) or `P_AUTHORIZE_URL` + `P_TOKEN_URL` + `P_USERINFO_URL` (OAuth 2) say
//! where it lives (Google and GitHub have defaults); `P_SCOPES`, `P_NAME` and `P_EMAILS_URL`
//! are optional. `OAUTH_PROVIDERS=gitlab,acme` adds custom ids.

use serde::Serialize;

use crate::config::{ConfigError, Settings};

/// How a provider signs people in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderKind {
    /// OpenID Connect: endpoints from `{issuer}/.well-known/openid-configuration`.
    Oidc {
        /// The issuer URL.
        issuer: String,
    },
    /// Plain OAuth 2 with a userinfo endpoint.
    OAuth2 {
        /// Authorization endpoint.
        authorize_url: String,
        /// Token endpoint.
        token_url: String,
        /// Userinfo endpoint (JSON with `id`/`sub`, `email`, `name`/`login`, `picture`/`avatar_url`).
        userinfo_url: String,
        /// GitHub-style list of `{email, primary, verified}`, for verified addresses.
        emails_url: Option<String>,
    },
}

/// One configured provider.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    /// Id used in URLs (`google`).
    pub id: String,
    /// Name on the button (`Google`).
    pub name: String,
    /// Protocol and endpoints.
    pub kind: ProviderKind,
    /// OAuth client id.
    pub client_id: String,
    /// OAuth client secret.
    pub client_secret: String,
    /// Scopes requested.
    pub scopes: Vec<String>,
}

struct Preset {
    id: &'static str,
    name: &'static str,
    issuer: Option<&'static str>,
    authorize: Option<&'static str>,
    token: Option<&'static str>,
    userinfo: Option<&'static str>,
    emails: Option<&'static str>,
    scopes: &'static str,
}

const PRESETS: [Preset; 2] = [
    Preset {
        id: "google",
        name: "Google",
        issuer: Some("https://accounts.google.com"),
        authorize: None,
        token: None,
        userinfo: None,
        emails: None,
        scopes: "openid email profile",
    },
    Preset {
        id: "github",
        name: "GitHub",
        issuer: None,
        authorize: Some("https://github.com/login/oauth/authorize"),
        token: Some("https://github.com/login/oauth/access_token"),
        userinfo: Some("https://api.github.com/user"),
        emails: Some("https://api.github.com/user/emails"),
        scopes: "read:user user:email",
    },
];

/// Reads every enabled provider. Built-in ones without credentials are skipped; a custom id
/// listed in `OAUTH_PROVIDERS` without what it needs is an error naming the missing setting.
pub(super) fn providers_from_settings(
    settings: &Settings,
) -> Result<Vec<ProviderConfig>, ConfigError> {
    let source = &settings.source;
    let get = |key: String| source.value(&key).map(str::to_owned);
    let custom: Vec<String> = source
        .get("OAUTH_PROVIDERS")
        .unwrap_or_default()
        .split(',')
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect();
    let mut ids: Vec<String> = PRESETS.iter().map(|p| p.id.to_owned()).collect();
    ids.extend(
        custom
            .iter()
            .filter(|c| !ids.contains(c))
            .cloned()
            .collect::<Vec<_>>(),
    );
    let mut providers = Vec::new();
    for id in ids {
        let preset = PRESETS.iter().find(|p| p.id == id);
        let explicit = custom.contains(&id);
        if !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(ConfigError::Invalid {
                key: "OAUTH_PROVIDERS".into(),
                value: id,
                expected: "provider ids made of letters, digits, - and _".into(),
            });
        }
        let p = id.to_ascii_uppercase().replace('-', "_");
        let missing = |what: &str| ConfigError::Invalid {
            key: format!("{p}_{what}"),
            value: String::new(),
            expected: format!("set, because OAUTH_PROVIDERS lists {id}"),
        };
        let (Some(client_id), Some(client_secret)) = (
            get(format!("{p}_CLIENT_ID")),
            get(format!("{p}_CLIENT_SECRET")),
        ) else {
            if explicit {
                return Err(missing("CLIENT_ID and _CLIENT_SECRET"));
            }
            continue;
        };
        let pick = |key: &str, default: Option<&str>| {
            get(format!("{p}_{key}")).or_else(|| default.map(str::to_owned))
        };
        let issuer = pick("ISSUER_URL", preset.and_then(|p| p.issuer));
        let kind = match issuer {
            Some(issuer) => ProviderKind::Oidc { issuer },
            None => ProviderKind::OAuth2 {
                authorize_url: pick("AUTHORIZE_URL", preset.and_then(|p| p.authorize))
                    .ok_or_else(|| missing("ISSUER_URL or _AUTHORIZE_URL"))?,
                token_url: pick("TOKEN_URL", preset.and_then(|p| p.token))
                    .ok_or_else(|| missing("TOKEN_URL"))?,
                userinfo_url: pick("USERINFO_URL", preset.and_then(|p| p.userinfo))
                    .ok_or_else(|| missing("USERINFO_URL"))?,
                emails_url: pick("EMAILS_URL", preset.and_then(|p| p.emails)),
            },
        };
        let default_scopes = match (&kind, preset) {
            (_, Some(preset)) => preset.scopes,
            (ProviderKind::Oidc { .. }, None) => "openid email profile",
            (ProviderKind::OAuth2 { .. }, None) => "",
        };
        let scopes = pick("SCOPES", Some(default_scopes))
            .unwrap_or_default()
            .split([' ', ','])
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        let name = pick("NAME", preset.map(|p| p.name)).unwrap_or_else(|| id.clone());
        providers.push(ProviderConfig {
            id,
            name,
            kind,
            client_id,
            client_secret,
            scopes,
        });
    }
    Ok(providers)
}

/// A provider as the login page lists it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ProviderButton {
    id: String,
    name: String,
}

/// The login page's buttons for `configs`.
pub(crate) fn buttons(configs: &[ProviderConfig]) -> Vec<ProviderButton> {
    configs
        .iter()
        .map(|c| ProviderButton {
            id: c.id.clone(),
            name: c.name.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Source;

    fn providers(pairs: &[(&str, &str)]) -> Result<Vec<ProviderConfig>, ConfigError> {
        providers_from_settings(
            &Settings::from_source(Source::from_pairs(pairs.iter().copied())).unwrap(),
        )
    }

    #[test]
    fn presets_need_only_credentials_and_custom_ones_say_what_is_missing() {
        assert!(
            providers(&[]).unwrap().is_empty(),
            "nothing without credentials"
        );
        let found = providers(&[
            ("GOOGLE_CLIENT_ID", "g"),
            ("GOOGLE_CLIENT_SECRET", "gs"),
            ("GITHUB_CLIENT_ID", "h"),
        ])
        .unwrap();
        assert_eq!(found.len(), 1, "GitHub lacks its secret and is skipped");
        assert_eq!(found[0].name, "Google");
        assert_eq!(
            found[0].kind,
            ProviderKind::Oidc {
                issuer: "https://accounts.google.com".into()
            }
        );
        assert_eq!(found[0].scopes, ["openid", "email", "profile"]);

        let custom = providers(&[
            ("OAUTH_PROVIDERS", "Acme"),
            ("ACME_CLIENT_ID", "a"),
            ("ACME_CLIENT_SECRET", "s"),
            ("ACME_AUTHORIZE_URL", "https://acme.test/auth"),
            ("ACME_TOKEN_URL", "https://acme.test/token"),
            ("ACME_USERINFO_URL", "https://acme.test/me"),
            ("ACME_SCOPES", "profile,email"),
            ("ACME_NAME", "Acme SSO"),
        ])
        .unwrap();
        assert_eq!(custom[0].id, "acme");
        assert_eq!(custom[0].name, "Acme SSO");
        assert_eq!(custom[0].scopes, ["profile", "email"]);

        let err = providers(&[
            ("OAUTH_PROVIDERS", "acme"),
            ("ACME_CLIENT_ID", "a"),
            ("ACME_CLIENT_SECRET", "s"),
        ])
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("ACME_ISSUER_URL or _AUTHORIZE_URL"),
            "{err}"
        );
        let err = providers(&[("OAUTH_PROVIDERS", "a/b")]).unwrap_err();
        assert!(err.to_string().contains("OAUTH_PROVIDERS"), "{err}");
    }
}
