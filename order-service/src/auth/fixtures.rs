//! For unit tests: an issuer served in-process (discovery document and JWKS) with keys made in
//! the test, and tokens signed by them. The end-to-end tests use a real issuer (Dex).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

/// An RSA signing key with its key id.
pub struct TestKey {
    pub kid: String,
    pub key: EncodingKey,
}

impl TestKey {
    pub fn new(kid: &str) -> Self {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).expect("an RSA key");
        let key = EncodingKey::from_rsa_pem(pair.serialize_pem().as_bytes()).expect("PEM");
        Self {
            kid: kid.to_owned(),
            key,
        }
    }

    pub fn jwk(&self) -> Jwk {
        let mut jwk = Jwk::from_encoding_key(&self.key, Algorithm::RS256).expect("a JWK");
        jwk.common.key_id = Some(self.kid.clone());
        jwk
    }

    /// A token with these claims, signed RS256 with this key and naming its kid.
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.key).expect("sign")
    }
}

#[derive(Default)]
struct Served {
    keys: Mutex<Vec<Jwk>>,
    fetches: AtomicUsize,
    failing: AtomicBool,
    issuer: Mutex<String>,
}

/// An issuer on a free port: its discovery document and `/keys`.
pub struct FakeIssuer {
    pub issuer: String,
    served: Arc<Served>,
}

pub const AUDIENCE: &str = "orders";

impl FakeIssuer {
    pub async fn start(keys: &[&TestKey]) -> Self {
        let served = Arc::new(Served::default());
        let router = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/keys", get(jwks))
            .with_state(served.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr: SocketAddr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, router).await });
        let issuer = format!("http://{addr}");
        *served.issuer.lock().expect("lock") = issuer.clone();
        let fake = Self { issuer, served };
        fake.publish(keys);
        fake
    }

    /// Replaces the published keys.
    pub fn publish(&self, keys: &[&TestKey]) {
        *self.served.keys.lock().expect("lock") = keys.iter().map(|k| k.jwk()).collect();
    }

    /// Makes `/keys` answer 500 (or work again).
    pub fn fail(&self, failing: bool) {
        self.served.failing.store(failing, Ordering::SeqCst);
    }

    /// How many times `/keys` was asked.
    pub fn fetches(&self) -> usize {
        self.served.fetches.load(Ordering::SeqCst)
    }

    /// Claims valid for this issuer and [`AUDIENCE`] for ten minutes.
    pub fn claims(&self, extra: Value) -> Value {
        let now = jsonwebtoken::get_current_timestamp();
        let mut claims = json!({
            "iss": self.issuer, "aud": AUDIENCE, "sub": "user-1", "iat": now, "exp": now + 600,
        });
        if let (Some(claims), Value::Object(extra)) = (claims.as_object_mut(), extra) {
            for (name, value) in extra {
                if value.is_null() {
                    claims.remove(&name);
                } else {
                    claims.insert(name, value);
                }
            }
        }
        claims
    }
}

async fn discovery(State(served): State<Arc<Served>>) -> Json<Value> {
    let issuer = served.issuer.lock().expect("lock").clone();
    Json(json!({"issuer": issuer, "jwks_uri": format!("{issuer}/keys")}))
}

async fn jwks(State(served): State<Arc<Served>>) -> Response {
    served.fetches.fetch_add(1, Ordering::SeqCst);
    if served.failing.load(Ordering::SeqCst) {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let keys = served.keys.lock().expect("lock").clone();
    Json(JwkSet { keys }).into_response()
}
