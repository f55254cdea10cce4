//! Shared by the in-process suites: a store on each backend.
//!
//! The MongoDB backend needs a server: `TEST_MONGODB_URL` (set by `scripts/test.sh`, which starts
//! SecantusDB). Without it the MongoDB tests fail with what to do; they never skip.
#![allow(dead_code)]

#[cfg(feature = "oauth")]
pub(crate) mod oauth_provider;

use std::sync::atomic::{AtomicU32, Ordering};

use vibetuner::Store;

/// Which backend a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    /// SQLite in a temporary folder.
    Embedded,
    /// The server at `TEST_MONGODB_URL`, in a database of its own.
    Mongo,
}

/// A store plus what keeps it alive.
pub(crate) struct TestStore {
    pub store: Store,
    pub backend: Backend,
    /// The SQLite file or the MongoDB database name.
    location: String,
    _dir: Option<tempfile::TempDir>,
}

impl TestStore {
    /// A test app whose store is this one (same SQLite file or MongoDB database).
    pub(crate) fn test_app(&self, app: vibetuner::App) -> vibetuner::testing::TestAppBuilder {
        let [(key, value)] = self.settings();
        vibetuner::testing::TestApp::builder(app).setting(&key, value)
    }

    /// The setting that points an app at this store (`DATA_DIR` or `MONGODB_URL`).
    pub(crate) fn settings(&self) -> [(String, String); 1] {
        match self.backend {
            Backend::Embedded => {
                let dir = std::path::Path::new(&self.location).parent().unwrap();
                [("DATA_DIR".into(), dir.display().to_string())]
            }
            Backend::Mongo => [(
                "MONGODB_URL".into(),
                format!("{}/{}", mongodb_url().trim_end_matches('/'), self.location),
            )],
        }
    }

    /// Another handle on the same data with its own connection, as another process would have.
    pub(crate) async fn second_handle(&self) -> Store {
        match self.backend {
            Backend::Embedded => Store::embedded(std::path::Path::new(&self.location)).unwrap(),
            #[cfg(feature = "mongodb")]
            Backend::Mongo => Store::mongo(&mongodb_url(), &self.location).await.unwrap(),
            #[cfg(not(feature = "mongodb"))]
            Backend::Mongo => unreachable!("MongoDB tests need the mongodb feature"),
        }
    }
}

/// The MongoDB URL for tests, or a panic saying how to get one.
pub(crate) fn mongodb_url() -> String {
    vibetuner::testing::service_url(vibetuner::testing::TestService::MongoDb)
}

/// A database name no other test uses.
pub(crate) fn unique_name(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}_{}_{}_{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A fresh, empty store on `backend`.
pub(crate) async fn store(backend: Backend) -> TestStore {
    match backend {
        Backend::Embedded => {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("store.sqlite3");
            let store = Store::embedded(&path).unwrap();
            TestStore {
                store,
                backend,
                location: path.display().to_string(),
                _dir: Some(dir),
            }
        }
        #[cfg(not(feature = "mongodb"))]
        Backend::Mongo => unreachable!("MongoDB tests need the mongodb feature"),
        #[cfg(feature = "mongodb")]
        Backend::Mongo => {
            let name = unique_name("vt");
            let store = Store::mongo(&mongodb_url(), &name).await.unwrap();
            store.ping().await.unwrap_or_else(|e| {
                panic!("the MongoDB server at TEST_MONGODB_URL does not answer: {e}")
            });
            TestStore {
                store,
                backend,
                location: name,
                _dir: None,
            }
        }
    }
}

/// Declares each listed `async fn name(TestStore)` as a test on both backends.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::support::store($crate::support::Backend::Embedded).await).await
                }
            )*
        }
        #[cfg(feature = "mongodb")]
        mod mongodb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::support::store($crate::support::Backend::Mongo).await).await
                }
            )*
        }
    };
}

/// Declares one test per listed variant of an enum, each running `$run(Enum::Variant)`:
/// `per_variant!(Kind, run: redis_run => Redis, store_run => Embedded)`.
#[macro_export]
macro_rules! per_variant {
    ($enum:ident, $run:ident: $($test:ident => $variant:ident),+ $(,)?) => {
        $(
            per_variant!(@gated $variant,
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    $run($enum::$variant).await;
                }
            );
        )+
    };
    // A `Mongo` or `Redis` variant exists only with the feature that brings that backend.
    (@gated Mongo, $item:item) => { #[cfg(feature = "mongodb")] $item };
    (@gated Redis, $item:item) => { #[cfg(feature = "redis")] $item };
    (@gated $other:ident, $item:item) => { $item };
}

/// The Redis URL for tests, or a panic saying how to get one.
pub(crate) fn redis_url() -> String {
    vibetuner::testing::service_url(vibetuner::testing::TestService::Redis)
}

/// Waits up to `secs` seconds for `check` to return `Some`, polling every 20 ms.
pub(crate) async fn eventually<T, F, Fut>(secs: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {secs}s waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

pub(crate) use vibetuner::testing::OwnRedis;

/// The fixture project (`tests/fixture`) every suite's app is built on.
pub(crate) const SOURCE: vibetuner::ProjectSource = vibetuner::ProjectSource {
    answers: include_str!("../../fixture/vibetuner.toml"),
    version: "1.2.3",
    manifest_dir: env!("CARGO_MANIFEST_DIR"),
};
