//! A headless Chromium driven over WebDriver (Debian's `chromium` and `chromium-driver`), for
//! the console's end-to-end test. Missing locally, the test is skipped with a printed line;
//! with `WHC_REQUIRE_BROWSER=1` (as `.ci/run` sets) a missing browser fails it.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;

use super::PATIENCE;

/// A Chromium session and the chromedriver serving it (killed on drop).
pub struct Browser {
    /// The WebDriver session.
    pub client: Client,
    driver: Child,
}

/// The first of `names` found on `PATH`.
fn on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |name| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

impl Browser {
    /// Starts chromedriver and a headless Chromium; `None` (after saying so) when they are not
    /// installed and not required.
    pub async fn start() -> Option<Browser> {
        let required = std::env::var("WHC_REQUIRE_BROWSER").is_ok_and(|v| v == "1");
        let chromium = on_path(&["chromium", "chromium-browser"]);
        let driver = on_path(&["chromedriver"]);
        let (Some(chromium), Some(driver)) = (chromium, driver) else {
            assert!(
                !required,
                "WHC_REQUIRE_BROWSER=1 but chromium or chromedriver is not on PATH \
                 (apt-get install chromium chromium-driver)"
            );
            eprintln!(
                "skipped: the console's browser test needs chromium and chromedriver on PATH \
                 (apt-get install chromium chromium-driver)"
            );
            return None;
        };
        // A free port for chromedriver: taken from the OS, released just before it binds it.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        // In a process group of its own, so that the browser it starts goes with it (see Drop).
        let driver = Command::new(driver)
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let start = Instant::now();
        while TcpStream::connect(addr).is_err() {
            assert!(start.elapsed() < PATIENCE, "chromedriver did not listen");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let browser = Browser {
            // Filled in below; the driver is killed on drop even if the session fails.
            client: match Self::session(&chromium, port).await {
                Ok(client) => client,
                Err(err) => {
                    kill_group(&driver);
                    panic!("no Chromium session: {err}");
                }
            },
            driver,
        };
        browser.client.set_window_size(1400, 1000).await.ok();
        Some(browser)
    }

    async fn session(chromium: &std::path::Path, port: u16) -> Result<Client, String> {
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless",
                    "--no-sandbox",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-default-apps",
                    "--disable-dev-shm-usage",
                    "--disable-extensions",
                    "--disable-gpu",
                    "--disable-sync",
                    "--no-first-run",
                    "--window-size=1400,1000",
                ],
            },
        });
        let serde_json::Value::Object(caps) = caps else {
            unreachable!("an object")
        };
        ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .map_err(|e| e.to_string())
    }

    /// Waits for an element.
    pub async fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(PATIENCE)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no `{css}` on the page: {e}"))
    }

    /// Clicks an element once it is there.
    pub async fn click(&self, css: &str) {
        self.find(css)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("cannot click `{css}`: {e}"));
    }

    /// Waits until an element's text holds `part`; returns the text.
    pub async fn wait_text(&self, css: &str, part: &str) -> String {
        let start = Instant::now();
        loop {
            let text = match self.client.find(Locator::Css(css)).await {
                Ok(el) => el.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            if text.contains(part) {
                return text;
            }
            assert!(
                start.elapsed() < PATIENCE,
                "`{css}` never showed {part:?}; it shows {text:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Waits until a form field's value holds `part`.
    pub async fn wait_text_value(&self, css: &str, part: &str) {
        let start = Instant::now();
        loop {
            let value = match self.client.find(Locator::Css(css)).await {
                Ok(el) => el.prop("value").await.ok().flatten().unwrap_or_default(),
                Err(_) => String::new(),
            };
            if value.contains(part) {
                return;
            }
            assert!(
                start.elapsed() < PATIENCE,
                "`{css}` never held {part:?}; it holds {value:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// How many elements match.
    pub async fn count(&self, css: &str) -> usize {
        self.client
            .find_all(Locator::Css(css))
            .await
            .map(|all| all.len())
            .unwrap_or(0)
    }

    /// Saves a screenshot of the window as `<dir>/<name>.png` when `WHC_CONSOLE_SCREENSHOTS`
    /// names a directory (how the README's pictures are made).
    pub async fn screenshot(&self, name: &str) {
        let Some(dir) = std::env::var_os("WHC_CONSOLE_SCREENSHOTS") else {
            return;
        };
        let png = self.client.screenshot().await.expect("screenshot");
        let path = PathBuf::from(dir).join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }

    /// Ends the session (the browser quits) and the driver.
    pub async fn close(self) {
        self.client.clone().close().await.ok();
    }
}

/// Kills chromedriver and every process of its group: the browser too, when a failed test
/// never closed its session.
fn kill_group(driver: &Child) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", driver.id())])
        .stderr(Stdio::null())
        .status();
}

impl Drop for Browser {
    fn drop(&mut self) {
        kill_group(&self.driver);
        let _ = self.driver.wait();
    }
}
