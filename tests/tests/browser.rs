//! A real browser (headless Chromium over WebDriver) signs in to the generated app: login form,
//! the dev outbox's link, the profile page. Also proves the CSP nonce lets the bundle run.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{ClientBuilder, Locator};
use vibetuner_e2e::{Server, free_port, generated_app};

/// A chromedriver process on a free port, killed on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start() -> Self {
        let port = free_port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start chromedriver ({e}). Install it with scripts/prerequisites.sh \
                     (apt-get install chromium chromium-driver)"
                )
            });
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn chromium_binary() -> String {
    [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ]
    .into_iter()
    .find(|p| std::path::Path::new(p).exists())
    .unwrap_or("chromium")
    .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signs_in_through_the_login_form_and_the_dev_outbox() {
    let app = generated_app();
    let server = Server::start(&app.binary, &app.dir, &[]).expect("the app starts");
    let driver = Driver::start();
    let capabilities = serde_json::json!({
        "goog:chromeOptions": {
            "binary": chromium_binary(),
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--window-size=1200,900"
            ]
        }
    });
    let browser = ClientBuilder::rustls()
        .expect("TLS roots")
        .capabilities(capabilities.as_object().unwrap().clone())
        .connect(&driver.url)
        .await
        .expect("a WebDriver session");

    let result = async {
        browser.goto(&format!("{}/user/", server.base)).await?;
        let url = browser.current_url().await?;
        assert_eq!(
            url.path(),
            "/auth/login",
            "anonymous visitors are sent to log in"
        );
        assert_eq!(url.query(), Some("next=%2Fuser%2F"));
        let htmx: serde_json::Value = browser.execute("return typeof window.htmx", vec![]).await?;
        assert_eq!(
            htmx, "object",
            "the bundle ran under the CSP (nonce accepted)"
        );

        browser
            .find(Locator::Css("input[name=email]"))
            .await?
            .send_keys("browser@example.com")
            .await?;
        browser
            .find(Locator::Css("form[action='/auth/magic-link-login'] button"))
            .await?
            .click()
            .await?;
        let heading = browser.wait().for_element(Locator::Css("h1")).await?;
        assert_eq!(heading.text().await?, "Check your email");

        browser
            .goto(&format!("{}/_dev/outbox", server.base))
            .await?;
        browser
            .wait()
            .for_element(Locator::Css("a.outbox-link"))
            .await?
            .click()
            .await?;
        let email = browser
            .wait()
            .for_element(Locator::Id("profile-email"))
            .await?;
        assert_eq!(email.text().await?, "browser@example.com");
        assert_eq!(browser.current_url().await?.path(), "/user/");
        let nav = browser.find(Locator::Id("nav-user")).await?;
        assert_eq!(nav.text().await?, "browser");
        Ok::<(), fantoccini::error::CmdError>(())
    }
    .await;
    let _ = browser.close().await;
    result.expect("the browser flow");
    drop(server);
}
