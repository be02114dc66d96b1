//! Sessions, login, logout, throttling, page guards and the origin check.

use std::sync::Arc;

use lockstep_core::identity::accounts::Role;
use reqwest::cookie::Jar;
use serde_json::Value;

use crate::helpers::*;

#[tokio::test]
async fn login_sets_a_session_that_the_api_honours() {
    let (app, _db) = spawn_app().await;
    let client = browser(Arc::new(Jar::default()));
    assert_eq!(me_status(&app, &client).await, 401);

    let res = login(&app, &client, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert!(
        res.status().is_redirection() || res.status().is_success(),
        "{}",
        res.status()
    );
    let cookie = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("lockstep_session="))
        .expect("a session cookie")
        .to_lowercase();
    assert!(cookie.contains("httponly"), "{cookie}");
    assert!(cookie.contains("samesite=lax"), "{cookie}");
    assert!(
        cookie.contains("max-age") || cookie.contains("expires"),
        "{cookie}"
    );

    let me: Value = client
        .get(app.url("/api/v1/me"))
        .send()
        .await
        .expect("me")
        .json()
        .await
        .expect("json");
    assert_eq!(me["email"], ADMIN_EMAIL);
    assert_eq!(me["role"], "admin");
    app.stop().await;
}

#[tokio::test]
async fn sessions_survive_a_server_restart() {
    let db = lockstep_core::testing::fresh_database().await;
    let jar = Arc::new(Jar::default());
    let first = spawn_on(&db).await;
    let client = browser(jar.clone());
    login(&first, &client, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_eq!(me_status(&first, &client).await, 200);
    let old_url = first.url("/");
    first.stop().await;

    let second = spawn_on(&db).await;
    // The cookie was set for the first server's address; hand it over.
    let old: reqwest::Url = old_url.parse().expect("url");
    let new: reqwest::Url = second.url("/").parse().expect("url");
    use reqwest::cookie::CookieStore;
    let cookies = jar.cookies(&old).expect("cookie kept");
    let cookie = cookies.to_str().expect("ascii");
    let client = reqwest::Client::new();
    let res = client
        .get(new.join("/api/v1/me").expect("url"))
        .header("Cookie", cookie)
        .send()
        .await
        .expect("me");
    assert_eq!(res.status(), 200, "the session outlived the restart");
    let me: Value = res.json().await.expect("json");
    assert_eq!(me["email"], ADMIN_EMAIL);
    second.stop().await;
}

#[tokio::test]
async fn session_id_rotates_on_login_and_logout_ends_it() {
    let (app, _db) = spawn_app().await;
    let jar = Arc::new(Jar::default());
    let client = browser(jar.clone());
    add_user(&app, "ursula@lockstep.test", Role::User, "Default").await;
    // An existing session (here: signed in as someone else) ...
    login(&app, &client, "ursula@lockstep.test", USER_PASSWORD).await;
    let url: reqwest::Url = app.url("/").parse().expect("url");
    use reqwest::cookie::CookieStore;
    let before = jar
        .cookies(&url)
        .map(|c| c.to_str().unwrap_or_default().to_string());
    assert!(before.is_some(), "the first login set a cookie");
    login(&app, &client, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let after = jar
        .cookies(&url)
        .map(|c| c.to_str().unwrap_or_default().to_string());
    assert!(after.is_some());
    assert_ne!(before, after, "login must not keep a pre-login session id");
    assert_eq!(me_status(&app, &client).await, 200);
    let old = reqwest::Client::new()
        .get(app.url("/api/v1/me"))
        .header("Cookie", before.unwrap_or_default())
        .send()
        .await
        .expect("me");
    assert_eq!(old.status(), 401, "the pre-login id is dead");

    let res = client
        .post(app.url("/sfn/logout"))
        .header("Origin", app.origin())
        .send()
        .await
        .expect("logout");
    assert!(
        res.status().is_redirection() || res.status().is_success(),
        "{}",
        res.status()
    );
    // Replaying the old cookie must not work either.
    let replay = reqwest::Client::new()
        .get(app.url("/api/v1/me"))
        .header("Cookie", after.unwrap_or_default())
        .send()
        .await
        .expect("me");
    assert_eq!(replay.status(), 401);
    app.stop().await;
}

#[tokio::test]
async fn wrong_password_is_refused_with_a_clear_message() {
    let (app, _db) = spawn_app().await;
    let client = browser(Arc::new(Jar::default()));
    let res = client
        .post(app.url("/sfn/login"))
        .header("Origin", app.origin())
        .header("Accept", "application/json")
        .form(&[("email", ADMIN_EMAIL), ("password", "not-the-password")])
        .send()
        .await
        .expect("login");
    assert_eq!(res.status(), 401, "a refusal, not a server error");
    let body = res.text().await.expect("body");
    assert!(body.contains("BadCredentials"), "{body}");
    assert_eq!(me_status(&app, &client).await, 401);
    app.stop().await;
}

#[tokio::test]
async fn login_is_throttled_per_account() {
    let (app, _db) = spawn_app().await;
    let client = browser(Arc::new(Jar::default()));
    let throttled = rejections(&app, "login_throttled").await;
    // The test config allows 5 attempts per account from one address.
    for _ in 0..5 {
        login(&app, &client, ADMIN_EMAIL, "wrong-password!").await;
    }
    let res = login(&app, &client, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let body = res.text().await.expect("body");
    assert!(
        body.contains("Throttled"),
        "even the right password waits: {body}"
    );
    assert_eq!(me_status(&app, &client).await, 401);
    assert!(rejections(&app, "login_throttled").await > throttled);
    app.stop().await;
}

#[tokio::test]
async fn a_strangers_failures_never_lock_out_a_known_client() {
    let (app, _db) = spawn_app().await;
    let owner = browser(Arc::new(Jar::default()));
    // The owner signed in from here before: this address is known-good.
    login(&app, &owner, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_eq!(me_status(&app, &owner).await, 200);
    let stranger = browser(Arc::new(Jar::default()));
    // Far more failures than the account's own limit (5)…
    for _ in 0..12 {
        let res = login(&app, &stranger, ADMIN_EMAIL, "wrong-password!").await;
        assert!(res.status().is_client_error(), "{}", res.status());
    }
    assert_eq!(me_status(&app, &stranger).await, 401);
    // …and the right password from the known client still signs in.
    let fresh = browser(Arc::new(Jar::default()));
    let res = login(&app, &fresh, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let status = res.status();
    assert_eq!(
        me_status(&app, &fresh).await,
        200,
        "{status}: {}",
        res.text().await.unwrap_or_default()
    );
    app.stop().await;
}

#[tokio::test]
async fn state_changes_need_a_same_origin_request() {
    let (app, _db) = spawn_app().await;
    let client = browser(Arc::new(Jar::default()));
    for origin in [None, Some("http://evil.example")] {
        let mut req = client
            .post(app.url("/sfn/login"))
            .form(&[("email", ADMIN_EMAIL), ("password", ADMIN_PASSWORD)]);
        if let Some(o) = origin {
            req = req.header("Origin", o);
        }
        let res = req.send().await.expect("post");
        assert_eq!(res.status(), 403, "origin {origin:?}");
        let body: Value = res.json().await.expect("json");
        assert_eq!(body["error"]["code"], "cross_origin");
    }
    assert_eq!(me_status(&app, &client).await, 401);
    app.stop().await;
}

/// An `Authorization` header is no exemption for a server function (which
/// authenticates by the cookie) nor, unless it is a bearer token, for the
/// API: signed in, a cross-site `Authorization: Basic` POST to
/// `/sfn/logout` is refused and the session lives on.
#[tokio::test]
async fn an_authorization_header_does_not_skip_the_origin_check() {
    let (app, _db) = spawn_app().await;
    let client = browser(Arc::new(Jar::default()));
    let res = login(&app, &client, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert!(
        res.status().is_success() || res.status().is_redirection(),
        "{}",
        res.status()
    );
    for auth in ["Basic YWRtaW46YWRtaW4=", "Bearer lst_not-a-token"] {
        let res = client
            .post(app.url("/sfn/logout"))
            .header("Authorization", auth)
            .send()
            .await
            .expect("post");
        assert_eq!(res.status(), 403, "{auth}");
        assert_eq!(
            me_status(&app, &client).await,
            200,
            "still signed in after {auth}"
        );
    }
    // The API with a non-bearer Authorization: refused too.
    let res = client
        .post(app.url("/api/v1/locker-banks"))
        .header("Authorization", "Basic YWRtaW46YWRtaW4=")
        .json(&serde_json::json!({"serial": "X", "name": "X", "compartments": [{"number": 1, "size": "small"}]}))
        .send()
        .await
        .expect("post");
    assert_eq!(res.status(), 403);
    app.stop().await;
}

#[tokio::test]
async fn pages_are_guarded_on_the_server() {
    let (app, _db) = spawn_app().await;
    add_user(&app, "ursula@lockstep.test", Role::User, "Default").await;

    let anon = browser(Arc::new(Jar::default()));
    let res = anon.get(app.url("/admin")).send().await.expect("get");
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"], "/login?next=/admin");

    let user = browser(Arc::new(Jar::default()));
    login(&app, &user, "ursula@lockstep.test", USER_PASSWORD).await;
    let res = user.get(app.url("/admin")).send().await.expect("get");
    assert_eq!(res.status(), 403);
    let html = res.text().await.expect("html");
    assert!(html.contains("Administrators only"));
    assert!(!html.contains("admin-dashboard"));
    // The end-user app moved to /my (`/app/{key}` is the realtime hub's).
    let res = user.get(app.url("/app")).send().await.expect("get");
    assert_eq!(res.status(), 308);
    assert_eq!(res.headers()["location"], "/my");
    let res = user.get(app.url("/my")).send().await.expect("get");
    assert_eq!(res.status(), 200);
    assert!(res.text().await.expect("html").contains("My compartments"));
    // The admin-only server function refuses too, not just the page.
    let res = user
        .post(app.url("/sfn/admin_overview"))
        .header("Origin", app.origin())
        .send()
        .await
        .expect("post");
    assert!(res.text().await.expect("body").contains("Forbidden"));

    let admin = browser(Arc::new(Jar::default()));
    login(&app, &admin, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let res = admin.get(app.url("/admin")).send().await.expect("get");
    assert_eq!(res.status(), 200);
    let html = res.text().await.expect("html");
    assert!(html.contains("admin-dashboard"));
    let res = admin
        .get(app.url("/admin/users"))
        .send()
        .await
        .expect("get");
    assert_eq!(res.status(), 200);
    assert!(
        res.text()
            .await
            .expect("html")
            .contains("ursula@lockstep.test"),
        "lists the tenant's users"
    );
    let res = admin.get(app.url("/")).send().await.expect("get");
    assert_eq!(res.headers()["location"], "/admin");
    app.stop().await;
}

/// `next` after sign-in: a tab (which browsers strip) must not turn
/// `/\t/evil.example` into a trip to another site, and a control
/// character must not panic the handler and drop the sign-in.
#[tokio::test]
async fn sign_in_never_redirects_off_site_or_panics_on_next() {
    let (app, _db) = spawn_app().await;
    for next in [
        "/\t/evil.example",
        "/\n",
        "/\r\nSet-Cookie: x=1",
        "/\\evil.example",
        "/my",
    ] {
        let client = browser(Arc::new(Jar::default()));
        let res = client
            .post(app.url("/sfn/login"))
            .header("Origin", app.origin())
            // As the login form posts it (no JavaScript): a real redirect.
            .header("Accept", "text/html")
            .form(&[
                ("email", ADMIN_EMAIL),
                ("password", ADMIN_PASSWORD),
                ("next", next),
            ])
            .send()
            .await
            .unwrap_or_else(|e| panic!("next={next:?}: the connection dropped: {e}"));
        assert!(
            res.status().is_redirection(),
            "next={next:?}: {}",
            res.status()
        );
        let to = res.headers()["location"].to_str().expect("location");
        let want = if next == "/my" { "/my" } else { "/admin" };
        assert_eq!(to, want, "next={next:?}");
        // Signed in all the same.
        assert_eq!(me_status(&app, &client).await, 200, "next={next:?}");
    }
    app.stop().await;
}

/// Server functions answer client errors with 4xx and a clear message,
/// as `/api/v1` does: a missing or malformed argument, a body over the
/// limit, a compartment that does not exist.
#[tokio::test]
async fn server_functions_answer_client_errors_with_4xx() {
    let (app, _db) = spawn_app().await;
    let client = browser(Arc::new(Jar::default()));
    let res = login(&app, &client, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert!(res.status().is_success() || res.status().is_redirection());
    let post = |path: &'static str, body: String| {
        let client = client.clone();
        let url = app.url(path);
        let origin = app.origin();
        async move {
            let res = client
                .post(url)
                .header("Origin", origin)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .expect("post");
            let status = res.status().as_u16();
            (status, res.text().await.unwrap_or_default())
        }
    };
    // Missing arguments.
    let (status, body) = post("/sfn/login", "email=a%40b.c".into()).await;
    assert!((400..500).contains(&status), "{status} {body}");
    let (status, body) = post("/sfn/open_compartment", String::new()).await;
    assert!((400..500).contains(&status), "{status} {body}");
    // A malformed one.
    let (status, body) = post("/sfn/command_history", "page=soon".into()).await;
    assert!((400..500).contains(&status), "{status} {body}");
    // Too large.
    let (status, body) = post(
        "/sfn/login",
        format!("email={}&password=x", "a".repeat(3 << 20)),
    )
    .await;
    assert!(
        (400..500).contains(&status),
        "{status} {}",
        &body[..body.len().min(300)]
    );
    // The core's own verdicts.
    let (status, body) = post(
        "/sfn/open_compartment",
        format!("compartment_id={}", uuid::Uuid::now_v7()),
    )
    .await;
    assert!((400..500).contains(&status), "{status} {body}");
    app.stop().await;
}
