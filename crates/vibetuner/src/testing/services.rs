//! The servers tests need (MongoDB, Redis): found from the environment, started in Docker, or
//! a failure saying what to set, never a silent skip.
//!
//! In order: `TEST_MONGODB_URL` / `TEST_REDIS_URL` when set; else, with the `testcontainers`
//! feature and a Docker engine that answers, a `mongo` / `redis` container shared by every test
//! process (named `vibetuner-test-mongodb` / `vibetuner-test-redis`, kept between runs; each test
//! uses a database of its own); else a panic naming the variable to set.

use std::time::Duration;

/// A server tests need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestService {
    /// A MongoDB server (`TEST_MONGODB_URL`, or the `mongo` image).
    MongoDb,
    /// A Redis server (`TEST_REDIS_URL`, or the `redis` image).
    Redis,
}

impl TestService {
    /// The environment variable holding its URL.
    pub fn variable(self) -> &'static str {
        match self {
            Self::MongoDb => "TEST_MONGODB_URL",
            Self::Redis => "TEST_REDIS_URL",
        }
    }

    fn example(self) -> &'static str {
        match self {
            Self::MongoDb => "mongodb://127.0.0.1:27017",
            Self::Redis => "redis://127.0.0.1:6379",
        }
    }
}

/// Why no server could be found for a [`TestService`].
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The variable is not set and containers are not compiled in.
    #[error(
        "{variable} is not set, so this test has no server. Set it (e.g. {variable}={example}), \
         run the tests with scripts/test.sh (it starts MongoDB and Redis), or enable the \
         `testcontainers` feature of vibetuner to have them started in Docker"
    )]
    NotSet {
        /// `TEST_MONGODB_URL` or `TEST_REDIS_URL`.
        variable: &'static str,
        /// A URL of the right form.
        example: &'static str,
    },
    /// The variable is not set and no Docker engine answers.
    #[error(
        "{variable} is not set and no Docker engine answers at {host} ({reason}). Set it (e.g. \
         {variable}={example}), start Docker (or point DOCKER_HOST at one), or run the tests \
         with scripts/test.sh"
    )]
    NoDocker {
        /// `TEST_MONGODB_URL` or `TEST_REDIS_URL`.
        variable: &'static str,
        /// A URL of the right form.
        example: &'static str,
        /// Where it looked: `DOCKER_HOST`, or the default socket.
        host: String,
        /// What the Docker client said.
        reason: String,
    },
    /// Docker answers but the container did not start.
    #[error(
        "{variable} is not set and the {image} container did not start in Docker ({reason}). \
         Set {variable} to a server of your own, or fix what Docker says"
    )]
    Container {
        /// `TEST_MONGODB_URL` or `TEST_REDIS_URL`.
        variable: &'static str,
        /// The image it tried.
        image: &'static str,
        /// What Docker said.
        reason: String,
    },
}

/// The URL of a server for tests: from the environment, else a container (feature
/// `testcontainers`), else a panic saying what to set: a test that needs a server never skips.
///
/// # Panics
/// When there is no server (the message says what to set).
pub fn service_url(service: TestService) -> String {
    try_service_url(service).unwrap_or_else(|e| panic!("{e}"))
}

/// [`service_url`] without the panic.
///
/// # Errors
/// [`ServiceError`] when there is no server, saying what to set.
pub fn try_service_url(service: TestService) -> Result<String, ServiceError> {
    match std::env::var(service.variable()) {
        Ok(url) if !url.is_empty() => Ok(url),
        _ => from_docker(service),
    }
}

#[cfg(not(feature = "testcontainers"))]
fn from_docker(service: TestService) -> Result<String, ServiceError> {
    Err(ServiceError::NotSet {
        variable: service.variable(),
        example: service.example(),
    })
}

#[cfg(feature = "testcontainers")]
fn from_docker(service: TestService) -> Result<String, ServiceError> {
    use std::sync::Mutex;
    // One container per service and process; the name shares it with the other test processes.
    static STARTED: Mutex<[Option<String>; 2]> = Mutex::new([None, None]);
    let mut started = STARTED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let slot = &mut started[service as usize];
    if let Some(url) = slot {
        return Ok(url.clone());
    }
    // Its own thread and runtime: tests call this from inside theirs.
    let url = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a Tokio runtime for the Docker client")
            .block_on(containers::start(service))
    })
    .join()
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
    *slot = Some(url.clone());
    Ok(url)
}

#[cfg(feature = "testcontainers")]
mod containers {
    use std::time::Duration;

    use testcontainers::core::{IntoContainerPort, WaitFor};
    use testcontainers::runners::AsyncRunner;
    use testcontainers::{GenericImage, ImageExt, ReuseDirective};

    use super::{ServiceError, TestService};

    struct Spec {
        /// `image:tag`.
        image: &'static str,
        name: &'static str,
        port: u16,
        ready: &'static str,
        scheme: &'static str,
    }

    fn spec(service: TestService) -> Spec {
        match service {
            TestService::MongoDb => Spec {
                image: "mongo:7",
                name: "vibetuner-test-mongodb",
                port: 27017,
                ready: "Waiting for connections",
                scheme: "mongodb",
            },
            TestService::Redis => Spec {
                image: "redis:7-alpine",
                name: "vibetuner-test-redis",
                port: 6379,
                ready: "Ready to accept connections",
                scheme: "redis",
            },
        }
    }

    /// Asks the Docker engine whether it answers, then starts (or finds) the named container.
    pub(super) async fn start(service: TestService) -> Result<String, ServiceError> {
        let no_docker = |reason: String| ServiceError::NoDocker {
            variable: service.variable(),
            example: service.example(),
            host: std::env::var("DOCKER_HOST")
                .unwrap_or_else(|_| "unix:///var/run/docker.sock".to_owned()),
            reason,
        };
        let docker = testcontainers::core::client::docker_client_instance()
            .await
            .map_err(|e| no_docker(e.to_string()))?;
        docker.ping().await.map_err(|e| no_docker(e.to_string()))?;
        let spec = spec(service);
        let mut reason = String::new();
        // Two test processes may create the shared container at once: the loser finds it.
        for attempt in 0..3 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            let (image, tag) = spec.image.split_once(':').expect("image:tag");
            let request = GenericImage::new(image, tag)
                .with_exposed_port(spec.port.tcp())
                .with_wait_for(WaitFor::message_on_stdout(spec.ready))
                .with_container_name(spec.name)
                .with_reuse(ReuseDirective::Always);
            match request.start().await {
                Ok(container) => {
                    let host = container.get_host().await;
                    let port = container.get_host_port_ipv4(spec.port).await;
                    match (host, port) {
                        (Ok(host), Ok(port)) => {
                            return Ok(format!("{}://{host}:{port}", spec.scheme));
                        }
                        (Err(e), _) | (_, Err(e)) => reason = e.to_string(),
                    }
                }
                Err(e) => reason = e.to_string(),
            }
        }
        Err(ServiceError::Container {
            variable: service.variable(),
            image: spec.image,
            reason,
        })
    }
}

/// A `redis-server` of the test's own on a free loopback port, to stop and start again on the
/// same port: for tests of what an app does while Redis is away. Killed when dropped.
///
/// # Panics
/// When `redis-server` is not installed or does not listen within 10 s.
pub struct OwnRedis {
    port: u16,
    persistent: bool,
    dir: tempfile::TempDir,
    child: Option<std::process::Child>,
}

impl OwnRedis {
    /// Starts one that keeps nothing on disk (a restart empties it).
    pub fn start() -> Self {
        Self::launch(false)
    }

    /// Starts one with an append-only file written on every command, as a deployment keeps
    /// Redis: a restart (even after a kill) brings its data back.
    pub fn persistent() -> Self {
        Self::launch(true)
    }

    fn launch(persistent: bool) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut redis = Self {
            port,
            persistent,
            dir: tempfile::tempdir().expect("a temporary folder for Redis"),
            child: None,
        };
        redis.restart();
        redis
    }

    /// Starts it (again) on its port, waiting until it listens.
    pub fn restart(&mut self) {
        let persistence: &[&str] = if self.persistent {
            &[
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ]
        } else {
            &["--save", "", "--appendonly", "no"]
        };
        let child = std::process::Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(persistence)
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server runs (scripts/prerequisites.sh installs it)");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not listen on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills it (SIGKILL, as a crash would); [`restart`](Self::restart) brings it back.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(all(test, feature = "testcontainers"))]
mod tests {
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;
    use std::process::Command;
    use std::sync::mpsc;

    use super::*;

    /// Set in the copy of this test binary that each case below runs: the service lookup then
    /// runs in a process whose environment the case chose, and prints its outcome.
    const CHILD: &str = "VIBETUNER_SERVICE_LOOKUP_CHILD";

    /// Runs the lookup for MongoDB in a child process with this `DOCKER_HOST` and no
    /// `TEST_MONGODB_URL`, returning what it printed.
    fn lookup_with_docker_host(docker_host: &str) -> String {
        let output = Command::new(std::env::current_exe().expect("the test binary"))
            .args([
                "testing::services::tests::a_missing_url_asks_docker_then_says_what_to_set",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, "1")
            .env("DOCKER_HOST", docker_host)
            .env_remove("TEST_MONGODB_URL")
            .output()
            .expect("the test binary runs");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        stdout
            .lines()
            .find_map(|l| l.split_once("lookup: ").map(|(_, outcome)| outcome))
            .unwrap_or_else(|| panic!("the child printed no outcome: {stdout}"))
            .to_owned()
    }

    /// A stand-in for a Docker engine on a loopback port: answers `/_ping` like one, refuses
    /// everything else, and reports each request line it got.
    fn engine_that_refuses_containers() -> (String, mpsc::Receiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let address = listener.local_addr().expect("its address");
        let (seen, requests) = mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(stream);
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                let mut header = String::new();
                while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
                    header.clear();
                }
                let (status, body) = if line.contains("/_ping") {
                    ("200 OK", "OK")
                } else {
                    (
                        "500 Internal Server Error",
                        r#"{"message":"no containers here"}"#,
                    )
                };
                let _ = seen.send(line.trim().to_owned());
                let _ = write!(
                    reader.get_mut(),
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        (format!("tcp://{address}"), requests)
    }

    #[test]
    fn a_missing_url_asks_docker_then_says_what_to_set() {
        if std::env::var_os(CHILD).is_some() {
            match try_service_url(TestService::MongoDb) {
                Ok(url) => println!("lookup: ok {url}"),
                Err(e) => println!("lookup: {e}"),
            }
            return;
        }

        // No engine at DOCKER_HOST: a failure naming the variable, not a skip.
        let closed = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port");
        let outcome = lookup_with_docker_host(&format!("tcp://{closed}"));
        assert!(
            outcome.starts_with(&format!(
                "TEST_MONGODB_URL is not set and no Docker engine answers at tcp://{closed}"
            )),
            "{outcome}"
        );
        assert!(outcome.contains("TEST_MONGODB_URL=mongodb://"), "{outcome}");

        // An engine that answers: the kit asks it for the shared mongo container, and says
        // what Docker refused.
        let (engine, requests) = engine_that_refuses_containers();
        let outcome = lookup_with_docker_host(&engine);
        assert!(
            outcome
                .starts_with("TEST_MONGODB_URL is not set and the mongo:7 container did not start"),
            "{outcome}"
        );
        let seen: Vec<String> = requests.try_iter().collect();
        assert!(seen.iter().any(|r| r.contains("/_ping")), "{seen:?}");
        assert!(
            seen.iter().any(|r| r.contains("vibetuner-test-mongodb")),
            "the engine was never asked for the mongo container: {seen:?}"
        );
    }
}
