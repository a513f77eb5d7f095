//! The web Transaction Manager in headless Chromium, driven through
//! chromedriver (WebDriver) with fantoccini: sign in with a partner token,
//! filter by a subscription, see a failed update with its reason, open the
//! history, change a contact and see the new row; sign in as an auditor and
//! see no action buttons. Saves `target/screenshots/transaction-manager.png`.
//!
//! Runs when chromedriver and Chromium are installed; required (no skip)
//! with `PROVLEDGER_REQUIRE_BROWSER=1`, as `.ci/run` sets.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::http::Server;

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
const WAIT: Duration = Duration::from_secs(20);

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Start chromedriver on a free loopback port and wait for its "started" line.
fn start_driver() -> (Driver, u16) {
    let port = free_port();
    let mut child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .arg("--allowed-ips=127.0.0.1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let stdout = child.stdout.take().expect("chromedriver stdout");
    let driver = Driver(child);
    let mut lines = BufReader::new(stdout).lines();
    for line in lines.by_ref().take(50) {
        let line = line.expect("chromedriver output");
        if line.contains("started successfully") {
            // Keep draining its output so it never blocks on a full pipe.
            std::thread::spawn(move || for _ in lines {});
            return (driver, port);
        }
    }
    panic!("chromedriver did not start");
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"))
}

async fn wait_xpath(client: &Client, xpath: &str) -> fantoccini::elements::Element {
    match client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::XPath(xpath))
        .await
    {
        Ok(e) => e,
        Err(e) => {
            let body = match client.find(Locator::Css("body")).await {
                Ok(b) => b.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            panic!("no element {xpath}: {e}\npage:\n{body}");
        }
    }
}

async fn sign_in(client: &Client, token: &str) {
    let field = wait_xpath(client, "//input[@id='token']").await;
    field.send_keys(token).await.expect("type token");
    client
        .find(Locator::Id("signin-button"))
        .await
        .expect("sign-in button")
        .click()
        .await
        .expect("sign in");
    wait_xpath(client, "//p[@id='who' and not(@hidden)]").await;
    // The first list is shown.
    wait_counter(client, "searches", 0).await;
}

/// The page's counter `name` (finished searches, opened subscriptions).
async fn counter(client: &Client, name: &str) -> i64 {
    client
        .execute(
            &format!("return Number(document.body.dataset.{name} || 0);"),
            vec![],
        )
        .await
        .ok()
        .and_then(|v| v.as_i64())
        .unwrap_or(0)
}

/// Wait until the page's counter `name` passes `before`.
async fn wait_counter(client: &Client, name: &str, before: i64) {
    let xpath = format!("//body[number(@data-{name}) > {before}]");
    wait_xpath(client, &xpath).await;
}

/// Search, and wait until the page has shown the result.
async fn search_subscription(client: &Client, subscription: &str) {
    let before = counter(client, "searches").await;
    let field = client
        .find(Locator::Id("f-subscription"))
        .await
        .expect("field");
    field.clear().await.expect("clear");
    field.send_keys(subscription).await.expect("type");
    client
        .find(Locator::Id("search"))
        .await
        .expect("search")
        .click()
        .await
        .expect("click");
    wait_counter(client, "searches", before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_manager_in_headless_chromium() {
    let required = std::env::var("PROVLEDGER_REQUIRE_BROWSER").is_ok_and(|v| v.trim() == "1");
    if !Path::new(CHROMEDRIVER).exists() || !Path::new(CHROMIUM).exists() {
        assert!(
            !required,
            "PROVLEDGER_REQUIRE_BROWSER=1 but {CHROMEDRIVER} or {CHROMIUM} is missing: apt-get install chromium chromium-driver"
        );
        eprintln!("skipping the browser test: install chromium and chromium-driver (or set PROVLEDGER_REQUIRE_BROWSER=1 to require it)");
        return;
    }
    let server = Server::start().await;
    let (driver, port) = start_driver();
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,1000", "--no-first-run", "--disable-extensions"]
        }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let client = ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("connect to chromedriver");
    let result = run(&client, &server).await;
    let _ = client.close().await;
    drop(driver);
    server.stop().await;
    if let Err(e) = result {
        panic!("{e}");
    }
}

async fn run(client: &Client, server: &Server) -> Result<(), String> {
    let tk = &server.tokens;
    client.goto(&server.base).await.map_err(|e| e.to_string())?;
    // Sign in as partner A: the default type is Provisioning Email Update.
    sign_in(client, &tk.partner_a).await;
    let selected = client
        .find(Locator::Css("#f-type option:checked"))
        .await
        .map_err(|e| e.to_string())?
        .text()
        .await
        .map_err(|e| e.to_string())?;
    assert_eq!(selected, "Provisioning Email Update");
    // Filter by the onboarded order's subscription: a failed update with its reason.
    search_subscription(client, "Sub300001").await;
    let failed = wait_xpath(
        client,
        "//table[@id='transactions']//tr[td[contains(., 'Sub300001')]]/td[span[text()='Failed']]",
    )
    .await;
    let text = failed.text().await.map_err(|e| e.to_string())?;
    assert!(
        text.contains("admin.webex.com"),
        "the reason is shown: {text}"
    );
    // Open the history (keyboard: Enter on the focused row).
    let row = wait_xpath(
        client,
        "//table[@id='transactions']//tr[td[contains(., 'Sub300001')]]",
    )
    .await;
    row.click().await.map_err(|e| e.to_string())?;
    wait_xpath(client, "//table[@id='history']//td[contains(., 'Refused')]").await;
    wait_xpath(
        client,
        "//table[@id='history']//td[contains(@class, 'hash')]",
    )
    .await;
    // Change a contact on an order before PONR and see the new row.
    search_subscription(client, "Sub100042").await;
    let row = wait_xpath(
        client,
        "//table[@id='transactions']//tr[td[contains(., 'first@customer.example')]]",
    )
    .await;
    row.send_keys("\u{E007}").await.map_err(|e| e.to_string())?; // Enter opens it
    wait_xpath(
        client,
        "//h2[@id='detail-title' and contains(., 'Sub100042')]",
    )
    .await;
    let email = client
        .find(Locator::Id("new-email"))
        .await
        .map_err(|e| e.to_string())?;
    email
        .send_keys("browser@customer.example")
        .await
        .map_err(|e| e.to_string())?;
    client
        .find(Locator::Id("change-contact"))
        .await
        .map_err(|e| e.to_string())?
        .click()
        .await
        .map_err(|e| e.to_string())?;
    wait_xpath(
        client,
        "//table[@id='transactions']//td[contains(., 'browser@customer.example')]",
    )
    .await;
    wait_xpath(
        client,
        "//table[@id='lines']//td[text()='browser@customer.example']",
    )
    .await;
    // Readable at 375 px: nothing wider than the window but the scrolling tables.
    client
        .set_window_size(375, 900)
        .await
        .map_err(|e| e.to_string())?;
    let overflow = client
        .execute(
            "return document.body.scrollWidth - window.innerWidth;",
            vec![],
        )
        .await
        .map_err(|e| e.to_string())?;
    assert!(
        overflow.as_i64().is_some_and(|o| o <= 1),
        "page wider than 375 px by {overflow}"
    );
    client
        .set_window_size(1280, 1000)
        .await
        .map_err(|e| e.to_string())?;
    // The screenshot: every update partner A may see, failed ones with their reason.
    search_subscription(client, "").await;
    wait_xpath(
        client,
        "//table[@id='transactions']//td[contains(., 'Sub300001')]",
    )
    .await;
    client
        .execute("window.scrollTo(0, 0);", vec![])
        .await
        .map_err(|e| e.to_string())?;
    let png = client.screenshot().await.map_err(|e| e.to_string())?;
    let dir = target_dir().join("screenshots");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("transaction-manager.png"), png).map_err(|e| e.to_string())?;

    // An auditor: verify and evidence, and no action buttons.
    // Sign out: a fresh page without the token.
    client
        .execute("sessionStorage.clear();", vec![])
        .await
        .map_err(|e| e.to_string())?;
    client.goto(&server.base).await.map_err(|e| e.to_string())?;
    sign_in(client, &tk.auditor).await;
    search_subscription(client, "Sub100042").await;
    let row = wait_xpath(
        client,
        "//table[@id='transactions']//tr[td[contains(., 'browser@customer.example')]]",
    )
    .await;
    row.click().await.map_err(|e| e.to_string())?;
    wait_xpath(
        client,
        "//h2[@id='detail-title' and contains(., 'Sub100042')]",
    )
    .await;
    for id in ["change-contact", "resend", "open-case"] {
        let found = client.find(Locator::Id(id)).await;
        let visible = match found {
            Ok(e) => e.is_displayed().await.unwrap_or(false),
            Err(_) => false,
        };
        assert!(!visible, "an auditor sees the action button #{id}");
    }
    for id in ["verify", "download-evidence"] {
        let shown = client
            .find(Locator::Id(id))
            .await
            .map_err(|e| e.to_string())?
            .is_displayed()
            .await
            .map_err(|e| e.to_string())?;
        assert!(shown, "an auditor does not see #{id}");
    }
    client
        .find(Locator::Id("verify"))
        .await
        .map_err(|e| e.to_string())?
        .click()
        .await
        .map_err(|e| e.to_string())?;
    wait_xpath(
        client,
        "//span[@id='verify-result' and starts-with(., 'Intact')]",
    )
    .await;
    Ok(())
}
