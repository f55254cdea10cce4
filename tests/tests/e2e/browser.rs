//! A real browser (headless Chromium over WebDriver) signs in to the generated app: login form,
//! the dev outbox's link, the profile page. Also proves the CSP nonce lets the bundle run, and
//! follows `vibetuner dev`'s live reload: a template edit reloads the page, a CSS build swaps
//! the stylesheet in place, a broken Rust build shows the compiler's error over the page and a
//! fixed one brings the new server's page.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::error::CmdError;
use fantoccini::{ClientBuilder, Locator};
use vibetuner_e2e::{Dev, Server, dev_serving, edit_file, free_port, generated_app};

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
    let browser = open_browser(&driver).await;

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

        submit_sign_in(&browser, &server, "browser@example.com").await?;
        let email = browser
            .wait()
            .for_element(Locator::Id("profile-email"))
            .await?;
        assert_eq!(email.text().await?, "browser@example.com");
        assert_eq!(browser.current_url().await?.path(), "/user/");
        let nav = browser.find(Locator::Id("nav-user")).await?;
        assert_eq!(nav.text().await?, "browser");
        Ok::<(), CmdError>(())
    }
    .await;
    let _ = browser.close().await;
    result.expect("the browser flow");
    drop(server);
}

/// Signs `browser` in as `email` through the login form and the dev outbox.
async fn sign_in(
    browser: &fantoccini::Client,
    server: &Server,
    email: &str,
) -> Result<(), CmdError> {
    // The profile asks for a sign-in and is where the link leads back to.
    browser.goto(&format!("{}/user/", server.base)).await?;
    submit_sign_in(browser, server, email).await?;
    browser
        .wait()
        .for_element(Locator::Id("profile-email"))
        .await?;
    Ok(())
}

/// On the login page: asks for a link for `email`, opens it from the dev outbox and confirms.
async fn submit_sign_in(
    browser: &fantoccini::Client,
    server: &Server,
    email: &str,
) -> Result<(), CmdError> {
    fill(browser, "input[name=email]", email).await?;
    click(browser, "form[action='/auth/magic-link-login'] button").await?;
    // Wait for the next page's heading: the login page has an h1 too.
    wait_for(browser, "//h1[normalize-space()='Check your email']").await?;
    browser
        .goto(&format!("{}/_dev/outbox", server.base))
        .await?;
    browser
        .wait()
        .for_element(Locator::Css("a.outbox-link"))
        .await?
        .click()
        .await?;
    confirm_sign_in(browser, email).await
}

/// On the page a sign-in link opens, checks the button names `email` and presses it.
async fn confirm_sign_in(browser: &fantoccini::Client, email: &str) -> Result<(), CmdError> {
    let button = browser
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Id("confirm-sign-in"))
        .await?;
    assert_eq!(button.text().await?, format!("Sign in as {email}"));
    button.click().await
}

/// Opens a headless Chromium session on `driver`.
/// Types `text` into the element matching `css`.
async fn fill(browser: &fantoccini::Client, css: &str, text: &str) -> Result<(), CmdError> {
    browser.find(Locator::Css(css)).await?.send_keys(text).await
}

/// Clicks the element matching `css`.
async fn click(browser: &fantoccini::Client, css: &str) -> Result<(), CmdError> {
    browser.find(Locator::Css(css)).await?.click().await
}

/// Waits (up to 20 s) for an element matching `xpath`.
async fn wait_for(browser: &fantoccini::Client, xpath: &str) -> Result<(), CmdError> {
    browser
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::XPath(xpath))
        .await
        .map(drop)
}

async fn open_browser(driver: &Driver) -> fantoccini::Client {
    // Both ring (the app's stack) and aws-lc-rs (fantoccini's) are linked: pick one for rustls.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let capabilities = serde_json::json!({
        "goog:chromeOptions": {
            "binary": chromium_binary(),
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--window-size=1200,900"
            ]
        }
    });
    ClientBuilder::rustls()
        .expect("TLS roots")
        .capabilities(capabilities.as_object().unwrap().clone())
        .connect(&driver.url)
        .await
        .expect("a WebDriver session")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_note_created_in_one_browser_appears_live_in_another() {
    let app = generated_app();
    let server = Server::start(&app.binary, &app.dir, &[]).expect("the app starts");
    let driver = Driver::start();
    let writer = open_browser(&driver).await;
    let reader = open_browser(&driver).await;
    let result = async {
        // Notes belong to their author: the same user in two browsers.
        sign_in(&reader, &server, "live@example.com").await?;
        sign_in(&writer, &server, "live@example.com").await?;
        let notes = format!("{}/notes", server.base);
        reader.goto(&notes).await?;
        writer.goto(&notes).await?;
        // Wait until the reader's event stream is open (htmx's SSE extension records the
        // response status; the server subscribes before it answers) before the note is made.
        let connected = "const e = document.querySelector('[hx-sse\\\\:connect]'); \
                         return e?._htmx?.sse?.status === 200;";
        let deadline = Instant::now() + Duration::from_secs(20);
        while reader.execute(connected, vec![]).await? != serde_json::Value::Bool(true) {
            assert!(
                Instant::now() < deadline,
                "the reader's SSE stream never connected"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        fill(
            &writer,
            "#note-form input[name=title]",
            "Live from the other window",
        )
        .await?;
        fill(
            &writer,
            "#note-form textarea[name=body]",
            "three words here",
        )
        .await?;
        click(&writer, "#note-form button[type=submit]").await?;
        // The note is inserted first, then replaced in place when the enrich
        // task's update arrives: wait for the final shape of the item rather than
        // read text off the first version, which the swap detaches.
        wait_for(
            &reader,
            "//ul[@id='notes']/li[.//h2[normalize-space()='Live from the other window'] \
             and .//*[contains(@class, 'note-words') and normalize-space()='8 words']]",
        )
        .await?;
        let listed = reader
            .find_all(Locator::Css("#notes li[id^=note-]"))
            .await?;
        assert_eq!(
            listed.len(),
            1,
            "one note, updated in place, not duplicated"
        );
        Ok::<(), CmdError>(())
    }
    .await;
    let _ = writer.close().await;
    let _ = reader.close().await;
    result.expect("the live notes flow");
}

/// Saves a screenshot of the browser's page under `target/e2e/screenshots/NAME.png`.
async fn screenshot(browser: &fantoccini::Client, name: &str) -> Result<(), CmdError> {
    let png = browser.screenshot().await?;
    let dir = vibetuner_e2e::target_dir().join("e2e/screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot folder");
    let path = dir.join(format!("{name}.png"));
    std::fs::write(&path, png).expect("screenshot written");
    eprintln!("screenshot: {}", path.display());
    Ok(())
}

/// The text of the toasts on the page, once at least one shows (read from the DOM: WebDriver's
/// visible text is empty while a toast fades in).
async fn toasts(browser: &fantoccini::Client) -> Result<String, CmdError> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = browser
            .execute(
                "return document.getElementById('vt-toasts').textContent.trim()",
                vec![],
            )
            .await?;
        match text.as_str() {
            Some(t) if !t.is_empty() => return Ok(t.to_owned()),
            _ => assert!(Instant::now() < deadline, "no toast showed"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn form_errors_show_in_the_page_and_other_errors_as_a_toast() {
    let app = generated_app();
    let server = Server::start(&app.binary, &app.dir, &[]).expect("the app starts");
    let driver = Driver::start();
    let browser = open_browser(&driver).await;
    let result = async {
        sign_in(&browser, &server, "forms@example.com").await?;
        browser.goto(&format!("{}/notes", server.base)).await?;
        // New notes reach the list over SSE: wait until the stream is open.
        let connected = "const e = document.querySelector('[hx-sse\\\\:connect]'); \
                         return e?._htmx?.sse?.status === 200;";
        let deadline = Instant::now() + Duration::from_secs(20);
        while browser.execute(connected, vec![]).await? != serde_json::Value::Bool(true) {
            assert!(Instant::now() < deadline, "the SSE stream never connected");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // A title of spaces passes the browser's `required` check; the handler trims it and
        // answers 422 with the form and its error, which htmx swaps in place of the form.
        fill(&browser, "#note-form input[name=title]", "   ").await?;
        click(&browser, "#note-form button[type=submit]").await?;
        wait_for(
            &browser,
            "//form[@id='note-form']//*[@id='note-error' and normalize-space()='The title is required.']",
        )
        .await?;
        screenshot(&browser, "notes-form-error").await?;
        assert_eq!(
            browser.find_all(Locator::Css("#vt-toasts > *")).await?.len(),
            0,
            "a validation error is shown in the form, not as a toast"
        );

        // The swapped-in form still works: a valid note is added and the error goes away.
        fill(&browser, "#note-form input[name=title]", "Fixed").await?;
        click(&browser, "#note-form button[type=submit]").await?;
        // Wait for the final shape of the item (the enrich task's update replaces it in place).
        wait_for(
            &browser,
            "//ul[@id='notes']/li[.//h2[normalize-space()='Fixed'] \
             and .//*[contains(@class, 'note-words')]]",
        )
        .await?;
        wait_for(&browser, "//form[@id='note-form' and not(.//*[@id='note-error'])]").await?;

        // The note is deleted behind the page's back, then its Delete button answers 404 with
        // the framework's error page: a toast, and the list item is not replaced by a page.
        let item = browser
            .find(Locator::Css("#notes li[id^=note-]"))
            .await?;
        let id = item.attr("id").await?.expect("an id");
        let id = id.trim_start_matches("note-").to_owned();
        let status = browser
            .execute(
                "return fetch('/notes/' + arguments[0], {method: 'DELETE'}).then(r => r.status)",
                vec![serde_json::json!(id)],
            )
            .await?;
        assert_eq!(status, 200);
        item.find(Locator::Css("button")).await?.click().await?;
        let text = toasts(&browser).await?;
        assert!(text.contains("Not Found"), "{text}");
        assert!(
            browser.find(Locator::Css("main h1")).await?.text().await? == "Notes",
            "the page was not replaced by the error page"
        );
        screenshot(&browser, "notes-toast-404").await?;
        browser
            .find(Locator::Css("#vt-toasts [data-toast-close]"))
            .await?
            .click()
            .await?;

        // A server error (no app route fails on purpose, so the page's fetch answers a 500
        // page the way the server would): a toast, and the form keeps what was typed.
        browser
            .execute(
                "window.fetch = () => Promise.resolve(new Response(\
                   '<!DOCTYPE html><html><head><title>500</title></head><body>x</body></html>', \
                   {status: 500, statusText: 'Internal Server Error', \
                    headers: {'content-type': 'text/html; charset=utf-8'}}));",
                vec![],
            )
            .await?;
        fill(&browser, "#note-form input[name=title]", "Doomed").await?;
        click(&browser, "#note-form button[type=submit]").await?;
        let text = toasts(&browser).await?;
        assert!(
            text.contains("Something went wrong on the server (500 Internal Server Error)"),
            "{text}"
        );
        let title = browser
            .find(Locator::Css("#note-form input[name=title]"))
            .await?
            .prop("value")
            .await?;
        assert_eq!(title.as_deref(), Some("Doomed"), "the form was not swapped");
        screenshot(&browser, "notes-toast-500").await?;
        Ok::<(), CmdError>(())
    }
    .await;
    let _ = browser.close().await;
    result.expect("the error display flow");
    drop(server);
}

/// Layout facts of the page shown, measured in the browser: the header's height and whether its
/// items share one row, horizontal overflow, the focus ring of the header's home link when
/// focused from the keyboard, and the worst contrast of the page's text (WCAG: text colour,
/// opacity included, over the backgrounds composited beneath it, read back through a canvas so
/// any CSS colour, oklch included, converts to sRGB).
const LAYOUT_FACTS: &str = r##"
const canvas = document.createElement("canvas");
canvas.width = canvas.height = 1;
const paint = canvas.getContext("2d", { willReadFrequently: true });
const rgba = (color) => {
  paint.clearRect(0, 0, 1, 1);
  paint.fillStyle = "#000";
  paint.fillStyle = color;
  paint.fillRect(0, 0, 1, 1);
  const [r, g, b, a] = paint.getImageData(0, 0, 1, 1).data;
  return [r, g, b, a / 255];
};
const over = (top, below) => [0, 1, 2].map((i) => top[i] * top[3] + below[i] * (1 - top[3]));
const luminance = (rgb) => {
  const [r, g, b] = rgb.map((c) => {
    c /= 255;
    return c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
  });
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
};
const contrast = (a, b) => {
  const [hi, lo] = [luminance(a), luminance(b)].sort((x, y) => y - x);
  return (hi + 0.05) / (lo + 0.05);
};
const visible = (el) => {
  const box = el.getBoundingClientRect();
  const style = getComputedStyle(el);
  return box.width > 0 && box.height > 0 && style.visibility !== "hidden" && style.display !== "none";
};
let worst = { ratio: 99, text: "", needed: 4.5 };
for (const el of document.querySelectorAll("body *")) {
  const own = [...el.childNodes].filter((n) => n.nodeType === 3).map((n) => n.textContent).join("").trim();
  if (!own || !visible(el) || el.closest("[hidden], template, script, style, details:not([open]) > :not(summary)")) continue;
  const chain = [];
  let opacity = 1;
  for (let node = el; node; node = node.parentElement) {
    chain.unshift(node);
    opacity *= parseFloat(getComputedStyle(node).opacity);
  }
  let background = [255, 255, 255];
  for (const node of chain) background = over(rgba(getComputedStyle(node).backgroundColor), background);
  const style = getComputedStyle(el);
  const color = rgba(style.color);
  color[3] *= opacity;
  const ratio = contrast(over(color, background), background);
  const size = parseFloat(style.fontSize);
  const large = size >= 24 || (size >= 18.66 && parseInt(style.fontWeight) >= 700);
  const needed = large ? 3 : 4.5;
  if (ratio / needed < worst.ratio / worst.needed) worst = { ratio, text: own.slice(0, 60), needed };
}
const header = document.querySelector("body > header");
const items = [...header.querySelectorAll(":scope > *")].filter(visible);
const middles = items.map((el) => { const b = el.getBoundingClientRect(); return (b.top + b.bottom) / 2; });
const home = document.getElementById("nav-home");
home.focus();
const ring = getComputedStyle(home);
const focus_visible = home.matches(":focus-visible");
const outline = `${ring.outlineStyle} ${ring.outlineWidth}`;
home.blur();
return {
  width: document.documentElement.clientWidth,
  header_height: header.getBoundingClientRect().height,
  header_rows_spread: Math.max(...middles) - Math.min(...middles),
  scroll_width: document.documentElement.scrollWidth,
  focus_visible,
  outline,
  contrast: worst,
  theme: document.documentElement.dataset.theme ?? null,
  dark: matchMedia("(prefers-color-scheme: dark)").matches,
};
"##;

/// Checks the layout facts of the page shown and saves its screenshot as `face-NAME`.
async fn check_layout(browser: &fantoccini::Client, name: &str) -> Result<(), CmdError> {
    let facts = browser.execute(LAYOUT_FACTS, vec![]).await?;
    let number = |key: &str| facts[key].as_f64().unwrap_or(f64::NAN);
    assert!(
        number("header_height") <= 72.0 && number("header_rows_spread") <= 4.0,
        "{name}: the header is one row: {facts}"
    );
    assert!(
        number("scroll_width") <= number("width"),
        "{name}: no horizontal scroll (the page is no wider than the viewport): {facts}"
    );
    let outline = facts["outline"].as_str().unwrap_or_default();
    assert!(
        facts["focus_visible"] == true
            && !outline.starts_with("none")
            && !outline.ends_with(" 0px"),
        "{name}: a focused link shows its focus ring: {facts}"
    );
    let contrast = &facts["contrast"];
    assert!(
        contrast["ratio"].as_f64().unwrap_or(0.0) >= contrast["needed"].as_f64().unwrap_or(4.5),
        "{name}: text contrast: {facts}"
    );
    screenshot(browser, &format!("face-{name}")).await
}

/// Resizes the window so the page's viewport is `width` CSS pixels wide.
async fn viewport(browser: &fantoccini::Client, width: u32) -> Result<(), CmdError> {
    browser.set_window_size(width, 900).await?;
    let inner = browser.execute("return innerWidth", vec![]).await?;
    assert_eq!(
        inner.as_u64(),
        Some(u64::from(width)),
        "the viewport's width"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_keep_their_layout_at_every_width_in_light_and_dark() {
    let app = generated_app();
    let server = Server::start(&app.binary, &app.dir, &[]).expect("the app starts");
    let driver = Driver::start();
    let browser = open_browser(&driver).await;
    let result = async {
        let home = format!("{}/", server.base);
        browser.goto(&home).await?;
        // The switcher cycles system → light → dark → system; the cookie brings the choice
        // back from the server on the next page.
        let theme = "return document.documentElement.dataset.theme ?? null";
        assert_eq!(
            browser.execute(theme, vec![]).await?,
            serde_json::Value::Null
        );
        click(&browser, "#vt-theme").await?;
        assert_eq!(browser.execute(theme, vec![]).await?, "light");
        click(&browser, "#vt-theme").await?;
        assert_eq!(browser.execute(theme, vec![]).await?, "dark");
        browser.goto(&home).await?;
        assert_eq!(
            browser.execute(theme, vec![]).await?,
            "dark",
            "rendered by the server"
        );
        click(&browser, "#vt-theme").await?;
        assert_eq!(
            browser.execute(theme, vec![]).await?,
            serde_json::Value::Null
        );
        browser.goto(&home).await?;
        assert_eq!(
            browser.execute(theme, vec![]).await?,
            serde_json::Value::Null
        );

        let pages = |signed_in: bool| {
            if signed_in {
                vec![
                    ("home-user", "/"),
                    ("notes", "/notes"),
                    ("profile", "/user/"),
                    ("404", "/no-such-page"),
                ]
            } else {
                vec![("home", "/"), ("login", "/auth/login")]
            }
        };
        for signed_in in [false, true] {
            if signed_in {
                sign_in(&browser, &server, "face@example.com").await?;
                let flash = browser
                    .execute(
                        "return document.getElementById('vt-toasts').textContent.trim()",
                        vec![],
                    )
                    .await?;
                assert!(
                    flash
                        .as_str()
                        .is_some_and(|f| f.starts_with("Signed in as face.")),
                    "the flash after sign-in: {flash}"
                );
            }
            for theme in ["light", "dark"] {
                browser
                    .execute(
                        "document.cookie = `theme=${arguments[0]}; Path=/; SameSite=Lax`",
                        vec![serde_json::json!(theme)],
                    )
                    .await?;
                for width in [1280, 390] {
                    viewport(&browser, width).await?;
                    for (name, path) in pages(signed_in) {
                        browser.goto(&format!("{}{path}", server.base)).await?;
                        check_layout(&browser, &format!("{name}-{width}-{theme}")).await?;
                    }
                }
            }
        }
        // On a small screen the links live in the menu, which opens and closes.
        viewport(&browser, 390).await?;
        browser.goto(&home).await?;
        click(&browser, "header details summary").await?;
        let open = "return document.querySelector('header details').open";
        assert_eq!(browser.execute(open, vec![]).await?, true);
        let link = browser
            .find(Locator::Css("header details a[aria-current=page]"))
            .await?;
        assert_eq!(link.text().await?, "Home");
        screenshot(&browser, "face-menu-390").await?;
        click(&browser, "main h1").await?;
        assert_eq!(browser.execute(open, vec![]).await?, false);
        Ok::<(), CmdError>(())
    }
    .await;
    let _ = browser.close().await;
    result.expect("the layout checks");
    drop(server);
}

/// Polls `script` (a function body; `arguments` are `args`) in `browser` every 50 ms until it
/// returns something other than `false`, `null` or `""`, for at most `limit`; returns that.
///
/// # Panics
/// After `limit`, naming `what` and showing `vibetuner dev`'s output.
async fn until(
    browser: &fantoccini::Client,
    script: &str,
    args: Vec<serde_json::Value>,
    limit: Duration,
    what: &str,
    dev: &Dev,
) -> Result<serde_json::Value, CmdError> {
    let deadline = Instant::now() + limit;
    loop {
        let value = browser.execute(script, args.clone()).await?;
        if !matches!(
            &value,
            serde_json::Value::Null | serde_json::Value::Bool(false)
        ) && value != ""
        {
            return Ok(value);
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {limit:?} (last value {value}); dev output:\n{}",
            dev.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The id of the server whose reload stream the page follows, once it is open.
const STREAM_OPEN: &str = "return document.documentElement.dataset.vtDevServer";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_reload_follows_template_css_and_rust_changes() {
    // Builds happen here: a first build of the app, a broken one and a fixed one.
    const BUILD: Duration = Duration::from_secs(900);
    const EVENT: Duration = Duration::from_secs(30);
    let (dir, base, dev) = dev_serving("reload", "Reload Browser").await;
    let css = dir.join("assets/statics/css/bundle.css");
    let driver = Driver::start();
    let browser = open_browser(&driver).await;

    let result = async {
        browser.goto(&format!("{base}/hello")).await?;
        let first = until(&browser, STREAM_OPEN, vec![], EVENT, "the reload stream", &dev).await?;

        // A template edit: the page reloads (the marker is gone) and shows the new text.
        browser.execute("window.__vt_marker = 1", vec![]).await?;
        edit_file(&dir.join("templates/frontend/hello.html.jinja"), |s| {
            s.replace("Hello, {{ name }}!", "Howdy, {{ name }}!")
        });
        until(
            &browser,
            "return window.__vt_marker === undefined \
             && document.getElementById('greeting')?.textContent === 'Howdy, world!'",
            vec![],
            EVENT,
            "a reload showing the edited template",
            &dev,
        )
        .await?;

        // A CSS build: the stylesheet is swapped in place (the marker survives) and applies.
        until(&browser, STREAM_OPEN, vec![], EVENT, "the reload stream", &dev).await?;
        browser.execute("window.__vt_marker = 2", vec![]).await?;
        let links = "return [...document.querySelectorAll('link[rel=stylesheet]')].map(l => l.href)";
        let before = browser.execute(links, vec![]).await?;
        std::fs::write(&css, "body { margin: 0 }\n:root { --vt-probe: swapped; }\n").unwrap();
        until(
            &browser,
            "return getComputedStyle(document.documentElement).getPropertyValue('--vt-probe').trim() === 'swapped' \
             && document.querySelectorAll('link[rel=stylesheet]').length === 1",
            vec![],
            EVENT,
            "the new stylesheet applied, the old one removed",
            &dev,
        )
        .await?;
        let after = browser.execute(links, vec![]).await?;
        assert_ne!(before, after, "the stylesheet link is a new one");
        assert!(after[0].as_str().unwrap().contains("vt-dev="), "{after}");
        assert_eq!(
            browser.execute("return window.__vt_marker", vec![]).await?,
            2,
            "the CSS swap reloaded the page"
        );

        // A broken Rust build: the overlay shows the compiler's error; the page stays.
        let routes = dir.join("src/routes.rs");
        edit_file(&routes, |s| s.replace("\"world\".into()", "undefined_thing.into()"));
        let error = until(
            &browser,
            "return document.querySelector('#vt-dev-overlay pre')?.textContent",
            vec![],
            BUILD,
            "the build-error overlay",
            &dev,
        )
        .await?;
        let error = error.as_str().unwrap_or_default();
        assert!(
            error.contains("error") && error.contains("undefined_thing"),
            "the overlay shows the compiler's error: {error}"
        );
        assert_eq!(
            browser.execute("return window.__vt_marker", vec![]).await?,
            2,
            "a failed build reloaded the page"
        );

        // Fixed: the overlay goes and the new server's page loads.
        edit_file(&routes, |s| s.replace("undefined_thing.into()", "\"world\".into()"));
        until(
            &browser,
            "return window.__vt_marker === undefined \
             && !document.getElementById('vt-dev-overlay') \
             && document.documentElement.dataset.vtDevServer !== undefined \
             && document.documentElement.dataset.vtDevServer !== arguments[0]",
            vec![first],
            BUILD,
            "the fixed build's page without the overlay",
            &dev,
        )
        .await?;
        Ok::<(), CmdError>(())
    }
    .await;
    let _ = browser.close().await;
    result.expect("the live-reload flow");
    drop(dev);
}
