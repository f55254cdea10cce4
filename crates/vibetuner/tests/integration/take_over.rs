//! Taking over a Vibetuner database: documents shaped as Vibetuner writes them and (on MongoDB)
//! Vibetuner's exact index specs; the app starts on them, signs existing users in as the same
//! users whatever the case of their address, leaves Vibetuner's indexes as they were, and
//! `db take-over` reports every planted problem.

use crate::support;
use crate::support::SOURCE;
use std::process::ExitCode;

use crate::support::{Backend, TestStore};
use vibetuner::models::User;
use vibetuner::store::bson::{Bson, DateTime, Document, doc, oid::ObjectId};
use vibetuner::store::{Filter, Id};
use vibetuner::{App, Store};

/// What the fixture planted.
struct Planted {
    bob: ObjectId,
    orphan_account: ObjectId,
}

fn minutes_from_now(minutes: i64) -> DateTime {
    DateTime::from_millis(DateTime::now().timestamp_millis() + minutes * 60_000)
}

/// Vibetuner's Beanie models' `Settings.indexes`, created as `init_beanie` creates them.
#[cfg(feature = "mongodb")]
async fn vibetuner_indexes(store: &Store) {
    let raw = store.mongodb().expect("a MongoDB store");
    for (coll, keys) in [
        (
            "oauth_accounts",
            doc! { "provider": 1, "provider_user_id": 1 },
        ),
        ("email_verification_tokens", doc! { "token": 1 }),
        ("email_verification_tokens", doc! { "email": 1 }),
        ("email_verification_tokens", doc! { "expires_at": 1 }),
    ] {
        raw.collection::<Document>(coll)
            .create_index(::mongodb::IndexModel::builder().keys(keys).build())
            .await
            .unwrap();
    }
}

/// Users, accounts and a pending link as Vibetuner 14 writes them (no `user_id` on accounts,
/// addresses in the case they were typed, raw tokens), with one problem of each kind.
async fn plant(store: &Store) -> Planted {
    let (bob, alice, dup) = (ObjectId::new(), ObjectId::new(), ObjectId::new());
    let (github, orphan_account) = (ObjectId::new(), ObjectId::new());
    let now = DateTime::now();
    let user = |id: ObjectId, email: &str, name: &str, accounts: Vec<Bson>, language: &str| {
        doc! {
            "_id": id, "email": email, "name": name, "oauth_accounts": accounts,
            "user_settings": { "language": language }, "db_insert_dt": now, "db_update_dt": now,
        }
    };
    let link = |id: ObjectId| Bson::Document(doc! { "$ref": "oauth_accounts", "$id": id });
    for doc in [
        user(bob, "Bob.Mixed@example.com", "Bob", vec![], "en"),
        user(
            alice,
            "alice@example.com",
            "Alice",
            vec![link(github)],
            "pt-BR",
        ),
        user(dup, "BOB.MIXED@example.com", "Bob again", vec![], "ca"),
    ] {
        store.collection("users").insert(doc).await.unwrap();
    }
    for (id, sub) in [(github, "111"), (orphan_account, "999")] {
        let account = doc! { "_id": id, "provider": "github", "provider_user_id": sub, "email": "old@example.com" };
        store
            .collection("oauth_accounts")
            .insert(account)
            .await
            .unwrap();
    }
    let token = doc! {
        "email": "alice@example.com", "token": "x".repeat(43), "expires_at": minutes_from_now(10),
        "used": false,
    };
    store
        .collection("email_verification_tokens")
        .insert(token)
        .await
        .unwrap();
    Planted {
        bob,
        orphan_account,
    }
}

/// The app on the planted data, built as the app binary's commands build it.
async fn built(test_store: &TestStore) -> vibetuner::BuiltApp {
    let dir = tempfile::tempdir().unwrap();
    let mut pairs = vec![
        ("ENVIRONMENT".to_owned(), "dev".to_owned()),
        ("DATA_DIR".to_owned(), dir.path().display().to_string()),
    ];
    pairs.extend(test_store.settings());
    let settings =
        vibetuner::Settings::from_source(vibetuner::config::Source::from_pairs(pairs)).unwrap();
    let app = App::new(SOURCE);
    let root = app.root();
    app.build(settings, &root).await.unwrap()
}

/// Runs the app binary's command line on the planted data, with the test's settings in place
/// of the process environment.
async fn run(test_store: &TestStore, args: &[&str]) -> ExitCode {
    let dir = tempfile::tempdir().unwrap();
    let mut env = vec![
        ("ENVIRONMENT".to_owned(), "dev".to_owned()),
        ("DATA_DIR".to_owned(), dir.path().display().to_string()),
    ];
    env.extend(test_store.settings());
    let argv = std::iter::once("app").chain(args.iter().copied());
    App::new(SOURCE).run_with_env(argv, env).await
}

async fn takeover(test_store: TestStore) {
    let store = test_store.store.clone();
    #[cfg(feature = "mongodb")]
    if test_store.backend == Backend::Mongo {
        vibetuner_indexes(&store).await;
    }
    let planted = plant(&store).await;

    // The report lists each planted problem, and --check fails on them.
    let report = built(&test_store).await.vibetuner_findings().await.unwrap();
    let text = report
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    for expected in [
        "[duplicate address] Bob.Mixed@example.com",
        "BOB.MIXED@example.com",
        "[oauth account] github account 111",
        "linked only by user",
        &format!(
            "github account 999 ({}) belongs to no user",
            planted.orphan_account
        ),
        "[pending link] 1 magic link(s)",
        "[language] user",
        "\"pt-BR\"",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }
    assert!(!text.contains("[index]"), "no index conflicts:\n{text}");
    let check = run(&test_store, &["db", "take-over", "--check"]).await;
    assert_eq!(check, ExitCode::FAILURE, "--check fails on findings");

    // The app starts on the data, without touching Vibetuner's indexes.
    let app = test_store
        .test_app(App::new(SOURCE))
        .setting("VIBETUNER_COMPAT", "true")
        .start()
        .await;
    #[cfg(feature = "mongodb")]
    if let Some(raw) = store.mongodb() {
        for (coll, name, keys) in [
            (
                "oauth_accounts",
                "provider_1_provider_user_id_1",
                doc! { "provider": 1, "provider_user_id": 1 },
            ),
            ("email_verification_tokens", "token_1", doc! { "token": 1 }),
            ("email_verification_tokens", "email_1", doc! { "email": 1 }),
            (
                "email_verification_tokens",
                "expires_at_1",
                doc! { "expires_at": 1 },
            ),
        ] {
            use futures_util::TryStreamExt;
            let found: Vec<::mongodb::IndexModel> = raw
                .collection::<Document>(coll)
                .list_indexes()
                .await
                .unwrap()
                .try_collect()
                .await
                .unwrap();
            let index = found
                .iter()
                .find(|i| i.options.as_ref().and_then(|o| o.name.as_deref()) == Some(name))
                .unwrap_or_else(|| panic!("Vibetuner's {coll}.{name} is gone"));
            let keys_found: Vec<(String, i64)> = index
                .keys
                .iter()
                .map(|(k, v)| (k.clone(), v.as_i32().map(i64::from).or(v.as_i64()).unwrap()))
                .collect();
            let keys_wanted: Vec<(String, i64)> = keys
                .iter()
                .map(|(k, v)| (k.clone(), i64::from(v.as_i32().unwrap())))
                .collect();
            assert_eq!(keys_found, keys_wanted, "{coll}.{name}");
            let options = index.options.clone().unwrap_or_default();
            assert!(!options.unique.unwrap_or(false), "{coll}.{name} unique");
            assert_eq!(options.expire_after, None, "{coll}.{name} TTL");
        }
    }

    // Signing in with the address in another case is Bob, not a new user.
    let users = store.models::<User>();
    let count = users.count(&Filter::All).await.unwrap();
    let client = app.sign_in("bob.mixed@example.com").await;
    assert_eq!(
        users.count(&Filter::All).await.unwrap(),
        count,
        "no new user"
    );
    let profile = client.get("/user/").await.text();
    assert!(profile.contains("Bob.Mixed@example.com"), "{profile}");

    // An empty name clears it; the language is saved as Vibetuner accepts it.
    let edited = client
        .post_form("/user/edit", &[("name", ""), ("language", "")])
        .await;
    assert_eq!(edited.status().as_u16(), 303, "{}", edited.text());
    let raw_bob = store
        .collection("users")
        .get(Id::from(planted.bob))
        .await
        .unwrap()
        .unwrap();
    assert!(!raw_bob.contains_key("name"), "name removed: {raw_bob}");
    assert_eq!(raw_bob.get_str("email").unwrap(), "Bob.Mixed@example.com");

    // --apply records Vibetuner's link on the account; the orphan stays reported.
    assert_eq!(
        run(&test_store, &["db", "take-over", "--apply"]).await,
        ExitCode::SUCCESS
    );
    let after = built(&test_store).await.vibetuner_findings().await.unwrap();
    let after = after
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(!after.contains("linked only by user"), "{after}");
    assert!(after.contains("belongs to no user"), "{after}");
    app.stop().await;
}

/// An index of the app's own name but other options: start-up refuses with every conflict in
/// plain words, creating and dropping nothing.
#[cfg(feature = "mongodb")]
async fn conflicting_index_is_reported(test_store: TestStore) {
    let raw = test_store.store.mongodb().unwrap();
    for (coll, keys, name) in [
        ("oauth_accounts", doc! { "user_id": 1 }, "mine"),
        (
            "email_verification_tokens",
            doc! { "token": 1, "used": 1 },
            "token_1_used_1",
        ),
    ] {
        let options = ::mongodb::options::IndexOptions::builder()
            .name(name.to_owned())
            .unique(true)
            .build();
        raw.collection::<Document>(coll)
            .create_index(
                ::mongodb::IndexModel::builder()
                    .keys(keys)
                    .options(options)
                    .build(),
            )
            .await
            .unwrap();
    }
    let built = built(&test_store).await;
    let error = built.start().await.unwrap_err().to_string();
    for expected in [
        "2 index(es)",
        "oauth_accounts: the database has mine {user_id: 1} unique, the app declares user_id_1 {user_id: 1} plain",
        "email_verification_tokens: the database has token_1_used_1 {token: 1, used: 1} unique",
        "dropIndex",
    ] {
        assert!(
            error.contains(expected),
            "{expected:?} missing from: {error}"
        );
    }
    let names: Vec<String> = raw
        .collection::<Document>("email_verification_tokens")
        .list_index_names()
        .await
        .unwrap();
    assert!(
        !names.iter().any(|n| n == "email_1"),
        "nothing created: {names:?}"
    );
    let findings = built.vibetuner_findings().await.unwrap();
    assert_eq!(findings.iter().filter(|f| f.topic == "index").count(), 2);
}

on_both_backends!(takeover);

#[cfg(feature = "mongodb")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicting_index_is_reported_on_mongodb() {
    conflicting_index_is_reported(support::store(Backend::Mongo).await).await;
}
