//! The admin pages in a real browser: headless Chromium driven through chromedriver (WebDriver,
//! with fantoccini). Sign in with OIDC against the stand-in identity provider by filling in its
//! form, filter the ledger with the page's own form, open a request by its link and read its
//! audit events, and export the audit trail with the export button (the file lands in the
//! browser's download folder). `scripts/test` installs Debian's `chromium` and `chromium-driver`.

mod common;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::oidc::IdP;
use common::*;
use fantoccini::{Client, ClientBuilder, Locator};
use grantry::domain::{AccessRequest, RequestId, RequestState};
use serde_json::json;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// chromedriver on a free port, killed when dropped (and with it the browser it started).
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    async fn start() -> Driver {
        assert!(
            Path::new(CHROMEDRIVER).exists() && Path::new(CHROMIUM).exists(),
            "{CHROMEDRIVER} and {CHROMIUM} are needed (scripts/test installs Debian's chromium and chromium-driver)"
        );
        let port = common::process::free_port();
        // Its own process group, so that dropping the guard ends the browser it started too.
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let url = format!("http://127.0.0.1:{port}");
        let driver = Driver { child, url };
        let status = format!("{}/status", driver.url);
        eventually(20, "chromedriver ready", || async {
            let r = reqwest::get(&status).await.ok()?;
            let v: serde_json::Value = r.json().await.ok()?;
            (v["value"]["ready"] == true).then_some(())
        })
        .await;
        driver
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The process group chromedriver leads (its pid, from `process_group(0)`): it and the
        // browser it started. Never shell out to kill(1) here: `kill -KILL -<n>` is parsed as
        // signal options and ends up as kill(-1), every process the user may signal.
        if let Ok(pgid) = libc::pid_t::try_from(self.child.id()) {
            if pgid > 1 {
                // SAFETY: kill(2) with a negative pid signals exactly that process group.
                unsafe {
                    libc::kill(-pgid, libc::SIGKILL);
                }
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn browser(driver: &Driver, profile: &Path, downloads: &Path) -> Client {
    let caps = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1280,1000",
                format!("--user-data-dir={}", profile.display()),
            ],
            "prefs": {
                "download.default_directory": downloads.display().to_string(),
                "download.prompt_for_download": false,
                "download.directory_upgrade": true,
                "safebrowsing.enabled": false,
            },
        },
    });
    let serde_json::Value::Object(caps) = caps else {
        unreachable!()
    };
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a WebDriver session with headless Chromium")
}

/// Waits until the page's text contains `needle`; returns the text.
async fn wait_for_text(c: &Client, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(body) = c.find(Locator::Css("body")).await {
            if let Ok(text) = body.text().await {
                if text.contains(needle) {
                    return text;
                }
                if Instant::now() > deadline {
                    panic!("the page never said {needle:?}; it says:\n{text}");
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// With `GRANTRY_ADMIN_SCREENSHOTS=<folder>`, saves what the browser shows as `<name>.png` there.
async fn screenshot(c: &Client, name: &str) {
    if let Ok(dir) = std::env::var("GRANTRY_ADMIN_SCREENSHOTS") {
        let png = c.screenshot().await.unwrap();
        std::fs::write(Path::new(&dir).join(format!("{name}.png")), png).unwrap();
    }
}

/// The CSV downloaded into `dir`, once Chromium has finished it: while downloading it keeps an
/// empty file under the final name beside the `.crdownload` it writes (a CI run read that empty
/// placeholder once).
fn downloaded(dir: &Path) -> Option<PathBuf> {
    let files: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    if files
        .iter()
        .any(|p| p.extension().is_some_and(|e| e == "crdownload"))
    {
        return None;
    }
    files.into_iter().find(|p| {
        p.extension().is_some_and(|e| e == "csv") && p.metadata().is_ok_and(|m| m.len() > 0)
    })
}

async fn seed(
    t: &TestApp,
    requester: &str,
    app: &str,
    state: RequestState,
    reason: &str,
) -> String {
    let id = RequestId::generate();
    let now = t.app.now_ms();
    let r = AccessRequest {
        id: id.clone(),
        platform: "slack".into(),
        requester_chat_id: "U0".into(),
        requester_email: requester.into(),
        subject_email: requester.into(),
        app: app.into(),
        entitlement: "readers".into(),
        duration: None,
        reason: reason.into(),
        ticket: None,
        extends_grant: None,
        state,
        created_at_ms: now - 3_600_000,
        updated_at_ms: now - 3_600_000,
    };
    let mut tx = t.app.store.begin().await.unwrap();
    tx.insert_request(&r, None, None).await.unwrap();
    tx.commit().await.unwrap();
    id.to_string()
}

#[tokio::test]
async fn a_browser_signs_in_filters_opens_a_request_and_exports() {
    let started = Instant::now();
    let idp = IdP::start().await;
    let t = spawn_app_at(|c, base, dir| {
        c.admin = idp.admin_config(dir, base);
        c.lifecycle.it_admins = vec!["carol@example.com".into()];
    })
    .await;
    t.scim.create_user("alice@example.com").await;
    t.scim.create_group("platform-admins").await;
    let alice = t
        .file_request("github platform-admins for 4h because incident INC-42 <b>now</b>")
        .await;
    assert_eq!(t.click("U222", "grantry.approve", &alice).await, 200);
    eventually(15, "grant", || async {
        t.app.store.grant_for_request(&alice).await.unwrap()
    })
    .await;
    let bob = seed(
        &t,
        "bob@example.com",
        "github",
        RequestState::Denied,
        "not alice's",
    )
    .await;

    let driver = Driver::start().await;
    let profile = tempfile::tempdir().unwrap();
    let downloads = tempfile::tempdir().unwrap();
    let c = browser(&driver, profile.path(), downloads.path()).await;
    let run = async {
        // Sign in: the admin pages send the browser to the identity provider's form.
        c.goto(&format!("{}/admin", t.base_url)).await.unwrap();
        let email = c.wait().for_element(Locator::Id("email")).await.unwrap();
        assert!(c
            .current_url()
            .await
            .unwrap()
            .as_str()
            .starts_with(idp.issuer()));
        email.send_keys("carol@example.com").await.unwrap();
        c.find(Locator::Id("signin"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let text = wait_for_text(&c, "Signed in as carol@example.com").await;
        assert!(text.contains(&alice) && text.contains(&bob), "{text}");
        assert_eq!(c.current_url().await.unwrap().path(), "/admin");
        assert_eq!(idp.token_calls(), 1);

        // Filter with the page's form: Alice's active requests only.
        c.find(Locator::Id("person"))
            .await
            .unwrap()
            .send_keys("alice")
            .await
            .unwrap();
        c.find(Locator::Id("state"))
            .await
            .unwrap()
            .select_by_value("active")
            .await
            .unwrap();
        c.find(Locator::Css("form.filters button[type=submit]"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        while !c
            .current_url()
            .await
            .unwrap()
            .as_str()
            .contains("person=alice")
        {
            assert!(
                Instant::now() < deadline,
                "the filter form was not submitted"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let url = c.current_url().await.unwrap();
        assert!(url.as_str().contains("state=active"), "{url}");
        let table = c
            .wait()
            .for_element(Locator::Css("table#results"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(table.contains(&alice), "{table}");
        assert!(!table.contains(&bob), "{table}");
        assert!(
            table.contains("<b>now</b>"),
            "the reason shows as text: {table}"
        );
        screenshot(&c, "ledger").await;

        // Open the request by its link: its audit events and the chain check.
        c.find(Locator::LinkText(&alice))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let text = wait_for_text(&c, &format!("Request {alice}")).await;
        assert!(text.contains("intact"), "{text}");
        screenshot(&c, "request").await;
        let events = c
            .find(Locator::Id("events"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        for action in ["request.submitted", "request.approved"] {
            assert!(events.contains(action), "{action}: {events}");
        }

        // Export: the Export page's form, CSV, the download button.
        c.find(Locator::LinkText("Export"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        c.wait()
            .for_element(Locator::Id("format-csv"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        c.find(Locator::Id("download"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let file = eventually(20, "the export in the download folder", || async {
            downloaded(downloads.path())
        })
        .await;
        let csv = std::fs::read_to_string(&file).unwrap();
        assert_eq!(
            file.file_name().unwrap().to_str().unwrap(),
            "grantry-audit-all.csv"
        );
        assert!(
            csv.starts_with("# grantry audit export; chain_verified=true"),
            "{csv}"
        );
        assert!(csv.contains(&alice));

        // Sign out: the pages ask for sign-in again.
        c.goto(&format!("{}/admin/charts", t.base_url))
            .await
            .unwrap();
        let text = wait_for_text(&c, "Requests per day").await;
        assert!(text.contains("Median time"), "{text}");
        screenshot(&c, "charts").await;
        c.find(Locator::Css("form[action=\"/admin/logout\"] button"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_for_text(&c, "You are signed out").await;
        c.goto(&format!("{}/admin", t.base_url)).await.unwrap();
        c.wait().for_element(Locator::Id("email")).await.unwrap();
    };
    run.await;
    c.close().await.unwrap();
    eprintln!("admin browser test took {:?}", started.elapsed());
}
