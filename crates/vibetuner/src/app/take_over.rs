//! `db take-over`: what taking over a Vibetuner database meets, and the reversible changes
//! that prepare it.

use std::collections::BTreeMap;

use super::BuiltApp;
use crate::models::{
    EmailVerificationToken, OAuthAccount, User, users_holding_account, vibetuner_language,
};
use crate::store::bson::doc;
use crate::store::{Filter, Id, Index, Order, Query, Store, StoreError, Timestamp, Update};

/// Vibetuner's own indexes (its Beanie models' `Settings.indexes`), which must keep starting.
fn vibetuner_indexes() -> Vec<(&'static str, Index)> {
    vec![
        (
            "oauth_accounts",
            Index::on(["provider", "provider_user_id"]),
        ),
        ("email_verification_tokens", Index::on(["token"])),
        ("email_verification_tokens", Index::on(["email"])),
        ("email_verification_tokens", Index::on(["expires_at"])),
    ]
}

/// One thing the takeover meets, for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// What it is about, e.g. `index`, `duplicate address`, `oauth account`, `pending link`.
    pub topic: &'static str,
    /// What was found and what to do.
    pub message: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}] {}", self.topic, self.message)
    }
}

impl BuiltApp {
    /// Checks the database for what taking over a Vibetuner database meets: indexes in the way
    /// of the app's or of Vibetuner's, addresses that differ only in case, OAuth accounts no
    /// user (or several) links, magic links Vibetuner sent that will not work here, and
    /// languages Vibetuner rejects. Changes nothing.
    pub async fn vibetuner_findings(&self) -> Result<Vec<Finding>, StoreError> {
        let store = self.store();
        let mut findings: Vec<Finding> = self
            .index_conflicts()
            .await?
            .into_iter()
            .map(|c| Finding {
                topic: "index",
                message: format!(
                    "{c}; this app will not start until the existing index is dropped (only if \
                     Vibetuner no longer runs on this database)"
                ),
            })
            .collect();
        for (collection, vibetuner) in vibetuner_indexes() {
            for conflict in store
                .collection(collection)
                .index_conflicts(std::slice::from_ref(&vibetuner))
                .await?
            {
                findings.push(Finding {
                    topic: "index",
                    message: format!(
                        "{collection}: the database has {}, Vibetuner declares {vibetuner}, so \
                         Vibetuner will not start; drop {} (an earlier version of this framework \
                         made it) to run Vibetuner again",
                        conflict.existing,
                        conflict.existing.index_name()
                    ),
                });
            }
        }
        findings.extend(duplicate_addresses(store).await?);
        for (account, holders) in account_links(store).await? {
            let a = &account.data;
            let who = format!(
                "{} account {} ({})",
                a.provider, a.provider_user_id, account.id
            );
            let message = match (a.user_id, holders.as_slice()) {
                (None, []) => format!(
                    "{who} belongs to no user; its owner gets a new user at their next sign-in \
                     with it unless the provider reports a verified address of an existing user"
                ),
                (None, [holder]) => format!(
                    "{who} is linked only by user {holder}'s oauth_accounts (Vibetuner's link); \
                     --apply records it on the account (user_id), as the next sign-in would"
                ),
                (_, [_, _, ..]) => format!(
                    "{who} is held by several users ({}); remove it from all but one user's \
                     oauth_accounts",
                    holders
                        .iter()
                        .map(Id::to_hex)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                _ => continue,
            };
            findings.push(Finding {
                topic: "oauth account",
                message,
            });
        }
        let pending = store
            .models::<EmailVerificationToken>()
            .count(&Filter::eq("used", false).and(Filter::gt("expires_at", Timestamp::now())))
            .await?;
        if pending > 0 {
            findings.push(Finding {
                topic: "pending link",
                message: format!(
                    "{pending} magic link(s) are unused and unexpired; links Vibetuner sent will \
                     not work here (this app stores tokens hashed): their recipients request a \
                     new one"
                ),
            });
        }
        for user in store.models::<User>().find(&Query::all()).await? {
            if let Some(language) = &user.data.user_settings.language
                && !vibetuner_language(language)
            {
                findings.push(Finding {
                    topic: "language",
                    message: format!(
                        "user {} has language {language:?}, which Vibetuner rejects (two-letter \
                         codes only); set VIBETUNER_COMPAT=true while both run, and have the \
                         user choose again",
                        user.id
                    ),
                });
            }
        }
        Ok(findings)
    }

    /// Makes the reversible changes a takeover needs: records on each OAuth account the one
    /// user whose `oauth_accounts` holds it (`user_id`; undo with `$unset`). Returns what was
    /// done. Indexes are left to start-up, which refuses to run while any conflicts.
    pub async fn take_over_vibetuner(&self) -> Result<Vec<String>, StoreError> {
        let store = self.store();
        let accounts = store.models::<OAuthAccount>();
        let mut done = Vec::new();
        for (account, holders) in account_links(store).await? {
            if let (None, [holder]) = (account.data.user_id, holders.as_slice()) {
                let claimed = accounts
                    .collection()
                    .update_one(
                        Filter::eq("_id", account.id).and(Filter::eq("user_id", None::<Id>)),
                        Update::set(doc! { "user_id": *holder }),
                    )
                    .await?;
                if claimed.is_some() {
                    done.push(format!(
                        "oauth account {} ({} {}): user_id set to {holder}",
                        account.id, account.data.provider, account.data.provider_user_id
                    ));
                }
            }
        }
        Ok(done)
    }
}

/// Users whose addresses differ only in case.
async fn duplicate_addresses(store: &Store) -> Result<Vec<Finding>, StoreError> {
    let mut by_address: BTreeMap<String, Vec<(String, Id)>> = BTreeMap::new();
    let oldest_first = Query::all().sort("_id", Order::Asc);
    for user in store.models::<User>().find(&oldest_first).await? {
        if let Some(email) = &user.data.email {
            by_address
                .entry(email.to_lowercase())
                .or_default()
                .push((email.clone(), user.id));
        }
    }
    Ok(by_address
        .into_values()
        .filter(|users| users.len() > 1)
        .map(|users| Finding {
            topic: "duplicate address",
            message: format!(
                "{} are one address ignoring case; sign-in picks the oldest ({}); merge the \
                 others into it or delete them",
                users
                    .iter()
                    .map(|(e, id)| format!("{e} ({id})"))
                    .collect::<Vec<_>>()
                    .join(", "),
                users[0].1
            ),
        })
        .collect())
}

/// Every OAuth account with the users whose `oauth_accounts` hold it.
async fn account_links(
    store: &Store,
) -> Result<Vec<(crate::store::Record<OAuthAccount>, Vec<Id>)>, StoreError> {
    let mut links = Vec::new();
    for account in store.models::<OAuthAccount>().find(&Query::all()).await? {
        let holders = users_holding_account(store, account.id)
            .await?
            .into_iter()
            .map(|u| u.id)
            .collect();
        links.push((account, holders));
    }
    Ok(links)
}
