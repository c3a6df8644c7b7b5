//! `GET /herald.js` and the demo page at `GET /`: what a browser fetches.

use crate::helpers::{spawn_app, spawn_app_with, spawn_auth_app};

fn repo_file(path: &str) -> Vec<u8> {
    std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).expect(path)
}

#[tokio::test]
async fn herald_js_is_the_client_module_with_an_etag_and_cache_headers() {
    let app = spawn_app().await;
    let res = app.http.get(app.url("/herald.js")).send().await.unwrap();

    assert_eq!(res.status(), 200);
    let headers = res.headers().clone();
    assert_eq!(headers["content-type"], "text/javascript; charset=utf-8");
    assert_eq!(headers["cache-control"], "public, max-age=300");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    let etag = headers["etag"].to_str().unwrap().to_owned();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    let body = res.bytes().await.unwrap();
    assert!(
        body.as_ref() == repo_file("clients/js/herald.js").as_slice(),
        "GET /herald.js is not clients/js/herald.js"
    );
    assert!(String::from_utf8_lossy(&body).contains("export function connect("));
}

#[tokio::test]
async fn a_browser_revalidating_with_the_etag_gets_an_empty_304() {
    let app = spawn_app().await;
    for path in ["/herald.js", "/"] {
        let first = app.http.get(app.url(path)).send().await.unwrap();
        let etag = first.headers()["etag"].clone();

        let again = app
            .http
            .get(app.url(path))
            .header("if-none-match", etag.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 304, "{path}");
        assert_eq!(again.headers()["etag"], etag, "{path}");
        assert!(again.headers().contains_key("cache-control"), "{path}");
        assert!(again.bytes().await.unwrap().is_empty(), "{path}");

        // Weak comparison, lists and `*` also match; another tag does not.
        let weak = format!("\"other\", W/{}", etag.to_str().unwrap());
        for (value, status) in [(weak.as_str(), 304), ("*", 304), ("\"other\"", 200)] {
            let res = app
                .http
                .get(app.url(path))
                .header("if-none-match", value)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), status, "{path} If-None-Match: {value}");
        }
    }
}

#[tokio::test]
async fn the_demo_page_is_served_at_the_root_and_loads_herald_js() {
    let app = spawn_app().await;
    let res = app.http.get(app.url("/")).send().await.unwrap();

    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/html; charset=utf-8");
    assert_eq!(res.headers()["cache-control"], "no-cache");
    let page = res.text().await.unwrap();
    assert!(page.contains(r#"import { connect } from "/herald.js";"#));
    assert!(page.contains(r#"fetch("/notify""#));
}

#[tokio::test]
async fn with_demo_off_the_root_is_a_404_and_herald_js_is_still_served() {
    let app = spawn_app_with(|c| c.demo = false).await;

    let res = app.http.get(app.url("/")).send().await.unwrap();
    assert_eq!(res.status(), 404);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"], "not_found");
    // Not served at all: no 405 for another method either.
    let res = app.http.post(app.url("/")).send().await.unwrap();
    assert_eq!(res.status(), 404);
    let res = app.http.get(app.url("/herald.js")).send().await.unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn the_page_and_the_client_need_no_token_when_auth_is_on() {
    // The page is where a user pastes a token, so fetching it cannot need one.
    let app = spawn_auth_app(|_| {}).await;
    for path in ["/", "/herald.js"] {
        let res = app.http.get(app.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
    }
}

#[tokio::test]
async fn with_api_listen_the_page_and_the_client_stay_on_the_public_listener() {
    let app = spawn_app_with(|c| c.api_listen = Some("127.0.0.1:0".parse().unwrap())).await;
    let api = app.api_addr.expect("api listener");

    for path in ["/", "/herald.js"] {
        let public = app.http.get(app.url(path)).send().await.unwrap();
        assert_eq!(public.status(), 200, "{path} on --listen");
        let private = app
            .http
            .get(format!("http://{api}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(private.status(), 404, "{path} on --api-listen");
    }
}
