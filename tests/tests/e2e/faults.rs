//! Faults, with real processes: the app killed (SIGKILL) while clients write keeps every write
//! it acknowledged, and MongoDB going away makes `/health/ready` answer 503 until it is back,
//! then the app carries on without a restart (against `TEST_MONGODB_URL` when
//! `TEST_MONGODB_STOP` and `TEST_MONGODB_START` give the commands; see [`Mongo`]). (A worker killed mid-task and Redis going away
//! are in `worker.rs` and the framework's `jobs.rs`.)

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use vibetuner_e2e::{Server, free_port, scratch_dir};

const BIN: &str = env!("CARGO_BIN_EXE_jobs_app");

/// Polls `check` every 200 ms until it gives a value; panics after `secs` naming `what`.
async fn until<T>(secs: u64, what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `GET /marks/{key}` on `base`: the marks stored under `key`.
async fn marks(client: &reqwest::Client, base: &str, key: &str) -> Vec<Value> {
    let res = client
        .get(format!("{base}/marks/{key}"))
        .send()
        .await
        .expect("the server answers");
    assert_eq!(res.status(), 200, "GET /marks/{key}");
    res.json::<Vec<Value>>().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_killed_mid_write_keeps_every_write_it_acknowledged() {
    let dir = scratch_dir("kill-mid-write");
    let data = dir.join("data");
    let env = [("DATA_DIR", data.to_str().unwrap())];
    let server = Server::start(Path::new(BIN), &dir, &env).expect("the server starts");
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let client = reqwest::Client::new();
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (client, base, acked) = (client.clone(), server.base.clone(), acknowledged.clone());
            tokio::spawn(async move {
                for n in 0.. {
                    let key = format!("w{w}-{n}");
                    let acknowledged = match client.post(format!("{base}/marks/{key}")).send().await
                    {
                        Ok(res) if res.status() == 200 => res.text().await.is_ok(),
                        _ => false,
                    };
                    // Killed: this write and every later one may be lost, never an earlier one.
                    if !acknowledged {
                        return;
                    }
                    acked.lock().unwrap().push(key);
                }
            })
        })
        .collect();
    until(60, "200 acknowledged writes", async || {
        (acknowledged.lock().unwrap().len() >= 200).then_some(())
    })
    .await;
    let status = server
        .signal_and_wait("KILL")
        .expect("the server is killed");
    assert!(!status.success(), "killed, not exited: {status}");
    for writer in writers {
        writer.await.unwrap();
    }

    let restarted = Server::start(Path::new(BIN), &dir, &env).expect("it starts on the same data");
    let acked = acknowledged.lock().unwrap().clone();
    assert!(acked.len() >= 200);
    let mut lost = Vec::new();
    for key in &acked {
        let found = marks(&client, &restarted.base, key).await;
        if found.len() != 1 || found[0]["stage"] != "written" {
            lost.push(key.clone());
        }
    }
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    let res = client
        .post(format!("{}/marks/after-restart", restarted.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "and the store takes writes again");
}

/// The MongoDB server the outage test stops and starts again: the one at `TEST_MONGODB_URL`
/// when `TEST_MONGODB_STOP` and `TEST_MONGODB_START` say how (shell commands, such as
/// `systemctl stop mongod`; run the test alone then: the other suites use that server too),
/// else a SecantusDB of the test's own on the same port and data each time.
enum Mongo {
    Own(OwnMongo),
    Given {
        url: String,
        stop: String,
        start: String,
    },
}

impl Mongo {
    fn start(dir: &Path) -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        match (
            var("TEST_MONGODB_URL"),
            var("TEST_MONGODB_STOP"),
            var("TEST_MONGODB_START"),
        ) {
            (Some(url), Some(stop), Some(start)) => Self::Given { url, stop, start },
            (_, None, None) => Self::Own(OwnMongo::start(free_port(), &dir.join("mongo"))),
            _ => panic!(
                "set TEST_MONGODB_URL, TEST_MONGODB_STOP and TEST_MONGODB_START together (the server and the commands that stop and start it), or none of the last two"
            ),
        }
    }

    /// The URL of database `name` on the server.
    fn url(&self, name: &str) -> String {
        let base = match self {
            Self::Own(own) => format!("mongodb://127.0.0.1:{}", own.port),
            Self::Given { url, .. } => url.trim_end_matches('/').to_owned(),
        };
        format!("{base}/{name}")
    }

    fn stop(&mut self) {
        match self {
            Self::Own(own) => own.stop(),
            Self::Given { stop, .. } => shell(stop),
        }
    }

    fn restart(&mut self) {
        match self {
            Self::Own(own) => own.restart(),
            Self::Given { start, .. } => shell(start),
        }
    }
}

/// Runs `command` with `sh -c`; panics unless it succeeds.
fn shell(command: &str) {
    let status = Command::new("sh")
        .args(["-c", command])
        .status()
        .unwrap_or_else(|e| panic!("cannot run sh -c {command:?}: {e}"));
    assert!(status.success(), "{command:?} failed: {status}");
}

/// A SecantusDB (MongoDB wire protocol) server of this test's own, so it can be killed and
/// started again on the same port and data.
struct OwnMongo {
    child: Child,
    port: u16,
    storage: PathBuf,
}

impl OwnMongo {
    fn start(port: u16, storage: &Path) -> Self {
        let child = Command::new("secantusd-py")
            .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--log-level", "WARNING"])
            .arg("--storage-path")
            .arg(storage)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start secantusd-py ({e}): run scripts/prerequisites.sh --test (pip install SecantusDB)")
            });
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "secantusd-py did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Self {
            child,
            port,
            storage: storage.to_owned(),
        }
    }

    /// Stops the server (SIGTERM, as a restart or a failover does; what a killed database
    /// loses is the database's own durability, not the app's) and waits for it to go.
    fn stop(&mut self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -TERM secantusd-py");
        self.child.wait().unwrap();
    }

    fn restart(&mut self) {
        *self = Self::start(self.port, &self.storage.clone());
    }
}

impl Drop for OwnMongo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET /health/ready`: the status and the `mongodb` service's report.
async fn ready(client: &reqwest::Client, base: &str) -> (u16, Value) {
    let res = client
        .get(format!("{base}/health/ready"))
        .send()
        .await
        .expect("/health/ready answers, database or not");
    let status = res.status().as_u16();
    let body: Value = res.json().await.unwrap();
    (status, body["services"]["mongodb"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongodb_going_away_makes_the_app_not_ready_until_it_is_back() {
    let dir = scratch_dir("mongo-down");
    let mut mongo = Mongo::start(&dir);
    let url = mongo.url(&format!("faults_{}", std::process::id()));
    let env = [("MONGODB_URL", url.as_str())];
    let server = Server::start(Path::new(BIN), &dir, &env).expect("the server starts");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    assert_eq!(ready(&client, &server.base).await.0, 200);
    let write = |key: &'static str| {
        let (client, base) = (client.clone(), server.base.clone());
        async move {
            client
                .post(format!("{base}/marks/{key}"))
                .send()
                .await
                .expect("the server answers")
        }
    };
    assert_eq!(write("before").await.status(), 200);

    mongo.stop();
    let report = until(30, "/health/ready to answer 503", async || {
        let (status, report) = ready(&client, &server.base).await;
        (status == 503).then_some(report)
    })
    .await;
    assert_eq!(report["status"], "error", "{report}");
    let refused = write("while-down").await;
    assert!(
        refused.status().is_server_error(),
        "a write without its database fails: {}",
        refused.status()
    );
    let body = refused.text().await.unwrap();
    assert!(!body.is_empty(), "with a reason");

    mongo.restart();
    until(60, "/health/ready to answer 200 again", async || {
        (ready(&client, &server.base).await.0 == 200).then_some(())
    })
    .await;
    let kept = marks(&client, &server.base, "before").await;
    assert_eq!(kept.len(), 1, "the write from before the outage: {kept:?}");
    assert_eq!(
        write("after").await.status(),
        200,
        "writes work again, no restart"
    );
}
