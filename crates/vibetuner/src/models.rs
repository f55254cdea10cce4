//! The framework's own models, with Vibetuner's collection and field names so that an existing
//! Vibetuner MongoDB database can be read.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::store::bson::{Bson, doc};
use crate::store::{
    FieldError, Filter, Id, Index, Model, Order, Query, Record, Store, StoreError, Timestamp,
};

/// A reference to a document in another collection, stored as a DBRef (Beanie's `Link`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Link {
    /// The collection.
    #[serde(rename = "$ref")]
    pub collection: String,
    /// The document id.
    #[serde(rename = "$id")]
    pub id: Id,
}

impl Link {
    /// The link to an OAuth account, as Vibetuner's users hold them.
    pub fn oauth_account(id: Id) -> Self {
        Self {
            collection: OAuthAccount::COLLECTION.to_owned(),
            id,
        }
    }

    fn to_bson(&self) -> Bson {
        Bson::Document(doc! { "$ref": self.collection.clone(), "$id": self.id })
    }
}

/// Per-user preferences.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct UserSettings {
    /// Preferred language code, if chosen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
}

/// Whether Vibetuner's `LanguageAlpha2` accepts `code` (two lower-case ISO 639-1 letters).
pub(crate) fn vibetuner_language(code: &str) -> bool {
    code.len() == 2 && code.bytes().all(|b| b.is_ascii_lowercase())
}

/// The user with this address ignoring case, oldest first when several match. Vibetuner kept
/// the local part's case (`Bob.Mixed@example.com`); this framework stores new addresses
/// lower-cased, so the exact (indexed) match is tried first.
pub(crate) async fn user_by_email(
    store: &Store,
    email: &str,
) -> Result<Option<Record<User>>, StoreError> {
    let users = store.models::<User>();
    let lower = email.to_lowercase();
    if let Some(user) = users.find_one(Filter::eq("email", lower.clone())).await? {
        return Ok(Some(user));
    }
    let candidates = users
        .find(&Query::filter(Filter::search(["email"], lower.clone())).sort("_id", Order::Asc))
        .await?;
    Ok(candidates.into_iter().find(|u| {
        u.data
            .email
            .as_deref()
            .is_some_and(|e| e.to_lowercase() == lower)
    }))
}

/// The users whose `oauth_accounts` links hold this account, oldest first: the only link
/// Vibetuner keeps (it never sets `user_id` on the account).
pub(crate) async fn users_holding_account(
    store: &Store,
    account: Id,
) -> Result<Vec<Record<User>>, StoreError> {
    let link = Link::oauth_account(account).to_bson();
    store
        .models::<User>()
        .find(&Query::filter(Filter::contains("oauth_accounts", link)).sort("_id", Order::Asc))
        .await
}

/// A person who can sign in (`users`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct User {
    /// Email address, unique when present. New addresses are stored lower-cased; Vibetuner's
    /// keep the case they were typed in, and lookups ignore case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Avatar URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub picture: Option<String>,
    /// Linked OAuth accounts.
    #[serde(default)]
    pub oauth_accounts: Vec<Link>,
    /// Preferences.
    #[serde(default)]
    pub user_settings: UserSettings,
}

impl Model for User {
    const COLLECTION: &'static str = "users";
    fn indexes() -> Vec<Index> {
        // Sparse: users who signed in through a provider without a verified address have none.
        // Named apart from a plain `email_1` an existing database may hold (MongoDB refuses to
        // redefine an index under the same name).
        vec![Index::on(["email"]).unique().sparse().named("email_unique")]
    }
}

/// An account at an OAuth provider linked to a user (`oauth_accounts`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OAuthAccount {
    /// Provider name (`google`, `github`, ...).
    pub provider: String,
    /// The provider's id for the user.
    pub provider_user_id: String,
    /// Email reported by the provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Name reported by the provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Avatar reported by the provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub picture: Option<String>,
    /// The user this account signs in (not in Vibetuner, which searched users' link arrays).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<Id>,
}

impl Model for OAuthAccount {
    const COLLECTION: &'static str = "oauth_accounts";
    fn indexes() -> Vec<Index> {
        // Vibetuner has a plain `provider_1_provider_user_id_1`; MongoDB refuses a second index
        // on the same key pattern with other options, so the unique one lists the keys the
        // other way round.
        vec![
            Index::on(["provider_user_id", "provider"]).unique(),
            Index::on(["user_id"]),
        ]
    }
}

/// A magic-link token (`email_verification_tokens`); `token` holds only a hash. Expired tokens
/// are refused when read and removed by a TTL index on `expires_at` (Vibetuner never purges
/// them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EmailVerificationToken {
    /// The address the link was sent to.
    pub email: String,
    /// SHA-256 of the token, hex.
    pub token: String,
    /// When the link stops working.
    pub expires_at: Timestamp,
    /// Whether it was already used.
    #[serde(default)]
    pub used: bool,
}

impl Model for EmailVerificationToken {
    const COLLECTION: &'static str = "email_verification_tokens";
    fn indexes() -> Vec<Index> {
        // Vibetuner declares plain `token_1`, `email_1` and `expires_at_1`; ours must not take
        // those key patterns with other options. Tokens are 32 random bytes, so uniqueness needs
        // no index; the TTL index is descending, a key pattern of its own.
        vec![
            Index::on(["token", "used"]),
            Index::on(["email"]),
            Index::on(["expires_at"]).desc().ttl(Duration::ZERO),
        ]
    }
}

/// Type of a runtime configuration value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ValueType {
    /// Text.
    Str,
    /// Integer.
    Int,
    /// Floating point.
    Float,
    /// Boolean.
    Bool,
    /// Any JSON.
    Json,
}

/// A runtime configuration entry (`config_entries`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ConfigEntry {
    /// Unique key.
    pub key: String,
    /// The value (absent for secrets).
    #[serde(default)]
    pub value: serde_json::Value,
    /// How to interpret `value`.
    pub value_type: ValueType,
    /// For people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Whether the value is secret.
    #[serde(default)]
    pub is_secret: bool,
    /// Grouping in the admin UI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// Encrypted secret value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_value: Option<String>,
}

impl Model for ConfigEntry {
    const COLLECTION: &'static str = "config_entries";
    fn indexes() -> Vec<Index> {
        vec![Index::on(["key"]).unique()]
    }
    fn validate(&self) -> Result<(), FieldError> {
        if self.key.trim().is_empty() {
            return Err(FieldError::new("key", "must not be empty"));
        }
        Ok(())
    }
}

/// A task that failed its last retry (`dead_letters`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DeadLetter {
    /// Registered task name.
    pub task_name: String,
    /// The queue's id for the run.
    pub task_id: String,
    /// The task's arguments, as JSON.
    #[serde(default)]
    pub args: serde_json::Value,
    /// The last error message.
    pub error: String,
    /// The error's kind.
    #[serde(default)]
    pub error_type: String,
    /// Attempts made.
    pub tries: u32,
    /// When the last attempt failed.
    pub failed_at: Timestamp,
}

impl Model for DeadLetter {
    const COLLECTION: &'static str = "dead_letters";
    fn indexes() -> Vec<Index> {
        vec![Index::on(["task_name"]), Index::on(["failed_at"])]
    }
}

/// Upload state of a blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BlobStatus {
    /// Announced, not uploaded yet.
    Pending,
    /// Stored.
    Uploaded,
    /// Removed.
    Deleted,
    /// Failed.
    Error,
}

/// A stored file's metadata (`blobs`); the file lives at `namespace/id` in its bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Blob {
    /// Upload state.
    pub status: BlobStatus,
    /// Bucket name.
    pub bucket: String,
    /// MIME type.
    pub content_type: String,
    /// Name given by the uploader.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_filename: Option<String>,
    /// Folder-like prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// SHA-256 of the content, hex.
    pub checksum: String,
    /// Size in bytes.
    pub size: u64,
}

impl Model for Blob {
    const COLLECTION: &'static str = "blobs";
    fn indexes() -> Vec<Index> {
        vec![Index::on(["namespace"]), Index::on(["checksum"])]
    }
}
