//! Authentication, authorization and rate limits, with tokens from a real OpenID Connect
//! provider (Dex, `dex.rs`) and, for the tokens no honest issuer makes, keys made in the test.

use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Response, StatusCode};
use serde_json::{json, Value};

use crate::dex::{self, Dex, ALICE, BOB, OTHER_CLIENT, STAFF};
use crate::helpers::{
    new_key, problem, problem_type, sample_order, spawn_app_with, wait_until, Options, Sinks,
    TestApp,
};

/// An app that accepts `dex`'s tokens, with extra `serve` flags.
async fn app_for(dex: &Dex, extra: &[&str]) -> TestApp {
    let mut flags = dex.service_flags();
    flags.extend(extra.iter().map(|f| f.to_string()));
    spawn_app_with(Options {
        auth: Some(flags),
        ..Options::default()
    })
    .await
}

/// As [`app_for`], with the sinks: events are written to the outbox, and history is served.
async fn app_with_sinks_for(dex: &Dex) -> TestApp {
    spawn_app_with(Options {
        auth: Some(dex.service_flags()),
        sinks: Some(Sinks::fresh()),
        ..Options::default()
    })
    .await
}

fn order_for(customer: &str) -> Value {
    let mut order = sample_order();
    order["customer_id"] = json!(customer);
    order
}

async fn send(
    app: &TestApp,
    token: Option<&str>,
    method: reqwest::Method,
    path: &str,
    body: Option<&Value>,
) -> Response {
    let mut request = app.client.request(method, app.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.header("idempotency-key", new_key()).json(body);
    }
    request.send().await.expect("request")
}

async fn get(app: &TestApp, token: Option<&str>, path: &str) -> Response {
    send(app, token, reqwest::Method::GET, path, None).await
}

async fn post(app: &TestApp, token: &str, path: &str, body: &Value) -> Response {
    send(app, Some(token), reqwest::Method::POST, path, Some(body)).await
}

/// Creates an order as `token`'s caller and returns its id.
async fn create(app: &TestApp, token: &str, customer: &str) -> String {
    let response = post(app, token, "/v1/orders", &order_for(customer)).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let order: Value = response.json().await.expect("order");
    order["id"].as_str().expect("id").to_owned()
}

/// Checks a 401 problem and its challenge.
async fn unauthenticated(response: Response, challenge: &str) {
    assert_eq!(response.headers()["www-authenticate"], challenge);
    let body = problem(response, StatusCode::UNAUTHORIZED).await;
    assert_eq!(problem_type(&body), "unauthenticated");
}

const INVALID_TOKEN: &str = r#"Bearer error="invalid_token""#;

async fn forbidden(response: Response) {
    assert_eq!(
        response.headers()["www-authenticate"],
        r#"Bearer error="insufficient_scope""#
    );
    let body = problem(response, StatusCode::FORBIDDEN).await;
    assert_eq!(problem_type(&body), "forbidden");
}

/// The `payload.actor` of an order's events, oldest first.
async fn actors(app: &TestApp, id: &str) -> Vec<String> {
    let id: uuid::Uuid = id.parse().expect("uuid");
    sqlx::query_scalar::<_, Value>(
        "SELECT payload FROM outbox_events WHERE order_id = $1 ORDER BY seq",
    )
    .bind(id)
    .fetch_all(&app.pool)
    .await
    .expect("events")
    .into_iter()
    .map(|payload| payload["actor"].as_str().unwrap_or_default().to_owned())
    .collect()
}

#[tokio::test]
async fn a_customer_sees_and_changes_only_their_own_orders() {
    let dex = Dex::start().await;
    let app = app_with_sinks_for(&dex).await;
    let (alice, bob) = (dex.token(ALICE).await, dex.token(BOB).await);
    let alices = create(&app, &alice, ALICE).await;
    let bobs = create(&app, &bob, BOB).await;

    // The list is filtered to her; naming another customer is refused.
    let page: Value = get(&app, Some(&alice), "/v1/orders")
        .await
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [alices.as_str()]);
    forbidden(get(&app, Some(&alice), &format!("/v1/orders?customer_id={BOB}")).await).await;
    let own = get(
        &app,
        Some(&alice),
        &format!("/v1/orders?customer_id={ALICE}"),
    )
    .await;
    assert_eq!(own.status(), StatusCode::OK);

    // Bob's order does not exist for her, whatever she does with it.
    for path in [
        format!("/v1/orders/{bobs}"),
        format!("/v1/orders/{bobs}/history"),
    ] {
        let body = problem(get(&app, Some(&alice), &path).await, StatusCode::NOT_FOUND).await;
        assert_eq!(problem_type(&body), "order-not-found", "{path}");
    }
    let cancel = json!({"reason": "changed my mind"});
    let response = post(&app, &alice, &format!("/v1/orders/{bobs}/cancel"), &cancel).await;
    assert_eq!(
        problem_type(&problem(response, StatusCode::NOT_FOUND).await),
        "order-not-found"
    );

    // She cannot order for Bob, nor confirm her own order; she may cancel it.
    forbidden(post(&app, &alice, "/v1/orders", &order_for(BOB)).await).await;
    let confirm = app
        .client
        .post(app.url(&format!("/v1/orders/{alices}/status")))
        .bearer_auth(&alice)
        .header("if-match", "\"1\"")
        .json(&json!({"status": "CONFIRMED"}))
        .send()
        .await
        .unwrap();
    forbidden(confirm).await;
    for path in [
        "/v1/stats/status?from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z",
        "/v1/reports/sales?from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z",
        "/v1/reports/top-products?from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z",
    ] {
        forbidden(get(&app, Some(&alice), path).await).await;
    }
    let response = post(
        &app,
        &alice,
        &format!("/v1/orders/{alices}/cancel"),
        &cancel,
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);

    // The events name who did it: her token's subject.
    let subject = dex::claims(&alice)["sub"].as_str().unwrap().to_owned();
    assert_eq!(actors(&app, &alices).await, [subject.clone(), subject]);
}

#[tokio::test]
async fn staff_read_every_order_and_change_statuses() {
    let dex = Dex::start().await;
    let app = app_with_sinks_for(&dex).await;
    let (alice, staff) = (dex.token(ALICE).await, dex.token(STAFF).await);
    let id = create(&app, &alice, ALICE).await;

    let order = get(&app, Some(&staff), &format!("/v1/orders/{id}")).await;
    assert_eq!(order.status(), StatusCode::OK);
    let page: Value = get(
        &app,
        Some(&staff),
        &format!("/v1/orders?customer_id={ALICE}"),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(page["items"].as_array().map(Vec::len), Some(1));
    let confirmed = app
        .client
        .post(app.url(&format!("/v1/orders/{id}/status")))
        .bearer_auth(&staff)
        .header("if-match", "\"1\"")
        .json(&json!({"status": "CONFIRMED", "reason": "paid"}))
        .send()
        .await
        .unwrap();
    assert_eq!(confirmed.status(), StatusCode::OK);
    // The reports cover every customer: staff read them.
    let report: Value = get(
        &app,
        Some(&staff),
        "/v1/reports/top-products?from=2000-01-01T00:00:00Z&to=2000-12-31T00:00:00Z",
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(report["products"], json!([]));

    let staff_subject = dex::claims(&staff)["sub"].as_str().unwrap().to_owned();
    let alice_subject = dex::claims(&alice)["sub"].as_str().unwrap().to_owned();
    assert_eq!(actors(&app, &id).await, [alice_subject, staff_subject]);
}

#[tokio::test]
async fn a_valid_token_that_maps_to_no_role_is_refused_with_403() {
    let dex = Dex::start().await;
    let app = app_for(&dex, &[]).await;
    // Without the `email` and `groups` scopes the token has neither a customer nor a role.
    let bare = dex.token_with(dex::AUDIENCE, ALICE, "openid").await;
    forbidden(get(&app, Some(&bare), "/v1/orders").await).await;
}

#[tokio::test]
async fn requests_without_a_usable_token_are_refused_with_401() {
    let dex = Dex::start().await;
    let app = app_for(&dex, &[]).await;
    unauthenticated(get(&app, None, "/v1/orders").await, "Bearer").await;
    unauthenticated(
        get(&app, Some("not-a-jwt"), "/v1/orders").await,
        INVALID_TOKEN,
    )
    .await;
    let basic = app
        .client
        .get(app.url("/v1/orders"))
        .basic_auth("alice", Some("password"))
        .send()
        .await
        .unwrap();
    unauthenticated(basic, INVALID_TOKEN).await;
    // Probes and the docs stay open.
    for path in ["/livez", "/readyz", "/openapi.json", "/metrics"] {
        assert_eq!(
            get(&app, None, path).await.status(),
            StatusCode::OK,
            "{path}"
        );
    }
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    let dex = Dex::start_with_token_lifetime("2s").await;
    let app = app_for(&dex, &["--auth-leeway", "0s"]).await;
    let token = dex.token(ALICE).await;
    wait_until(Duration::from_secs(15), "the token to expire", || async {
        get(&app, Some(&token), "/v1/orders").await.status() == StatusCode::UNAUTHORIZED
    })
    .await;
    unauthenticated(get(&app, Some(&token), "/v1/orders").await, INVALID_TOKEN).await;
    // A fresh one works.
    let fresh = dex.token(ALICE).await;
    assert_eq!(
        get(&app, Some(&fresh), "/v1/orders").await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_token_for_another_audience_is_refused() {
    let dex = Dex::start().await;
    let app = app_for(&dex, &[]).await;
    let other = dex
        .token_with(OTHER_CLIENT, ALICE, "openid email groups")
        .await;
    assert_eq!(dex::claims(&other)["aud"], OTHER_CLIENT);
    unauthenticated(get(&app, Some(&other), "/v1/orders").await, INVALID_TOKEN).await;
}

/// Claims that would be accepted if an honest issuer had signed them.
fn forged_claims(dex: &Dex) -> Value {
    let now = jsonwebtoken::get_current_timestamp();
    json!({
        "iss": dex.issuer, "aud": dex::AUDIENCE, "sub": "mallory", "email": ALICE,
        "groups": ["staff"], "iat": now, "exp": now + 600,
    })
}

/// An RSA key made in the test.
fn test_key() -> EncodingKey {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).expect("an RSA key");
    EncodingKey::from_rsa_pem(key.serialize_pem().as_bytes()).expect("the key as PEM")
}

async fn issuer_kid(dex: &Dex) -> String {
    dex.jwks().await["keys"][0]["kid"]
        .as_str()
        .expect("a kid")
        .to_owned()
}

#[tokio::test]
async fn a_token_signed_by_a_key_the_issuer_does_not_publish_is_refused() {
    let dex = Dex::start().await;
    let app = app_for(&dex, &[]).await;
    let key = test_key();
    for kid in ["made-up".to_owned(), issuer_kid(&dex).await] {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(kid.clone());
        let token = jsonwebtoken::encode(&header, &forged_claims(&dex), &key).expect("sign");
        unauthenticated(get(&app, Some(&token), "/v1/orders").await, INVALID_TOKEN).await;
    }
    // The honest token still works.
    let alice = dex.token(ALICE).await;
    assert_eq!(
        get(&app, Some(&alice), "/v1/orders").await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn alg_none_and_hs256_with_the_issuers_public_key_are_refused() {
    let dex = Dex::start().await;
    let app = app_for(&dex, &[]).await;
    let kid = issuer_kid(&dex).await;
    let encode = |value: &Value| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
    };
    let claims = forged_claims(&dex);

    let none = format!(
        "{}.{}.",
        encode(&json!({"alg": "none", "typ": "JWT", "kid": kid})),
        encode(&claims)
    );
    unauthenticated(get(&app, Some(&none), "/v1/orders").await, INVALID_TOKEN).await;

    // HS256 keyed with the public key the issuer publishes (its modulus), the classic
    // confusion of a verifier that lets the token choose the algorithm.
    let jwks = dex.jwks().await;
    let modulus = jwks["keys"][0]["n"]
        .as_str()
        .expect("an RSA key")
        .to_owned();
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(kid);
    let hs256 = jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_secret(modulus.as_bytes()),
    )
    .expect("sign");
    unauthenticated(get(&app, Some(&hs256), "/v1/orders").await, INVALID_TOKEN).await;
}

#[tokio::test]
async fn a_key_rotated_at_the_issuer_is_picked_up_without_a_restart() {
    let mut dex = Dex::start().await;
    let app = app_for(&dex, &[]).await;
    let before = dex.token(ALICE).await;
    assert_eq!(
        get(&app, Some(&before), "/v1/orders").await.status(),
        StatusCode::OK
    );

    // A new Dex process on the same issuer signs with a new key.
    dex.restart().await;
    let after = dex.token(ALICE).await;
    assert_ne!(
        dex::header(&before)["kid"],
        dex::header(&after)["kid"],
        "a new signing key"
    );

    // The unknown key id makes the service fetch the keys once: the new token is accepted.
    assert_eq!(
        get(&app, Some(&after), "/v1/orders").await.status(),
        StatusCode::OK
    );
    // The old key is no longer published, so its tokens no longer pass.
    unauthenticated(get(&app, Some(&before), "/v1/orders").await, INVALID_TOKEN).await;
}

#[tokio::test]
async fn a_caller_over_its_rate_limit_gets_429_with_the_headers_then_recovers() {
    let dex = Dex::start().await;
    let app = app_for(
        &dex,
        &["--rate-limit-per-second", "1", "--rate-limit-burst", "3"],
    )
    .await;
    let (alice, bob) = (dex.token(ALICE).await, dex.token(BOB).await);
    for remaining in (0..3).rev() {
        let response = get(&app, Some(&alice), "/v1/orders").await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()["ratelimit-policy"],
            "\"default\";q=3;w=3"
        );
        let state = response.headers()["ratelimit"].to_str().unwrap().to_owned();
        assert!(
            state.starts_with(&format!("\"default\";r={remaining};t=")),
            "{state}"
        );
    }
    let throttled = get(&app, Some(&alice), "/v1/orders").await;
    let headers = throttled.headers().clone();
    let body = problem(throttled, StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(problem_type(&body), "rate-limited");
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(headers["ratelimit-policy"], "\"default\";q=3;w=3");
    assert_eq!(headers["ratelimit"], "\"default\";r=0;t=1");

    // The limit is Alice's: Bob is served.
    assert_eq!(
        get(&app, Some(&bob), "/v1/orders").await.status(),
        StatusCode::OK
    );
    // And hers comes back.
    wait_until(
        Duration::from_secs(5),
        "Alice's limit to recover",
        || async { get(&app, Some(&alice), "/v1/orders").await.status() == StatusCode::OK },
    )
    .await;

    // Without a token the client address is the key: its 401s count too.
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(get(&app, None, "/v1/orders").await.status().as_u16());
    }
    assert_eq!(statuses, [401, 401, 401, 429]);

    let metrics = get(&app, None, "/metrics").await.text().await.unwrap();
    // Alice's count includes the throttled polls of the wait above.
    let throttled = |caller: &str| -> u64 {
        let prefix = format!("order_service_http_throttled_requests_total{{caller=\"{caller}\"}} ");
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(prefix.as_str()))
            .and_then(|count| count.parse().ok())
            .unwrap_or_default()
    };
    assert!(throttled("subject") >= 1, "{metrics}");
    assert_eq!(throttled("address"), 1, "{metrics}");
}

#[tokio::test]
async fn readiness_and_the_openapi_document_show_whether_auth_is_on() {
    let dex = Dex::start().await;
    let on = app_for(&dex, &[]).await;
    let off = spawn_app_with(Options::default()).await;
    for (app, check, security) in [
        (&on, "ok", json!([{"bearer": []}])),
        (&off, "disabled", Value::Null),
    ] {
        let ready: Value = get(app, None, "/readyz").await.json().await.unwrap();
        assert_eq!(ready["checks"]["auth"]["status"], check);
        let doc: Value = get(app, None, "/openapi.json").await.json().await.unwrap();
        assert_eq!(doc["paths"]["/v1/orders"]["post"]["security"], security);
        assert_eq!(doc["paths"]["/livez"]["get"]["security"], Value::Null);
        assert_eq!(
            doc["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
        let responses = &doc["paths"]["/v1/orders/{id}"]["get"]["responses"];
        for status in ["401", "403", "429"] {
            assert!(responses[status].is_object(), "{status} declared");
        }
    }
}
