//! A real OpenID Connect provider for the auth tests: Dex (built by `scripts/dex.sh`), one per
//! test, on its own port with its own configuration: memory storage, static clients, and static
//! users (two customers and one member of the `staff` group) who get tokens with the password
//! grant.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value;
use tokio::process::{Child, Command};

/// The client id of the order service at Dex: the audience its tokens carry.
pub const AUDIENCE: &str = "order-service";
/// Another client of the same issuer: its tokens are for another audience.
pub const OTHER_CLIENT: &str = "other-app";
const CLIENT_SECRET: &str = "test-secret";

/// Customers (their email is their customer id: `--auth-customer-claim email`) and staff.
pub const ALICE: &str = "alice@example.com";
pub const BOB: &str = "bob@example.com";
pub const STAFF: &str = "staff@example.com";
/// Every user's password, and its bcrypt hash (the one of Dex's own `config.dev.yaml`).
const PASSWORD: &str = "password";
const PASSWORD_HASH: &str = "$2a$10$2b2cU8CPhOTaGrs1HRQuAueS7JTT5ZHsHSzYiFPm1leZck7Mc8T4W";

/// How long Dex takes to answer its discovery document at most.
const START_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Dex {
    pub issuer: String,
    port: u16,
    dir: PathBuf,
    token_lifetime: String,
    child: Option<Child>,
    http: reqwest::Client,
}

impl Dex {
    /// Dex with tokens valid for an hour.
    pub async fn start() -> Self {
        Self::start_with_token_lifetime("1h").await
    }

    /// Dex whose tokens expire after `lifetime` (`expiry.idTokens`, a Go duration).
    pub async fn start_with_token_lifetime(lifetime: &str) -> Self {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("dex-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("create Dex's directory");
        let mut dex = Self {
            issuer: format!("http://127.0.0.1:{port}/dex"),
            port,
            dir,
            token_lifetime: lifetime.to_owned(),
            child: None,
            http: reqwest::Client::new(),
        };
        dex.launch().await;
        dex
    }

    /// The `serve` flags that make the order service accept this Dex's tokens.
    pub fn service_flags(&self) -> Vec<String> {
        [
            "--auth-issuer",
            &self.issuer,
            "--auth-audience",
            AUDIENCE,
            "--auth-customer-claim",
            "email",
            "--auth-roles-claim",
            "groups",
            "--auth-staff-role",
            "staff",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect()
    }

    /// Stops Dex and starts it again on the same port: memory storage forgets the signing
    /// key, so the new process signs with a new one (a key rotation at the issuer).
    pub async fn restart(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("stop Dex");
        }
        self.launch().await;
    }

    /// An access token of `email` for the order service.
    pub async fn token(&self, email: &str) -> String {
        self.token_with(AUDIENCE, email, "openid email groups")
            .await
    }

    /// An access token of `email` obtained by `client` with `scope` (password grant).
    pub async fn token_with(&self, client: &str, email: &str, scope: &str) -> String {
        let body = [
            ("grant_type", "password"),
            ("username", email),
            ("password", PASSWORD),
            ("scope", scope),
        ]
        .iter()
        .map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v)))
        .collect::<Vec<_>>()
        .join("&");
        let response = self
            .http
            .post(format!("{}/token", self.issuer))
            .basic_auth(client, Some(CLIENT_SECRET))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .expect("Dex token request");
        let status = response.status();
        let body: Value = response.json().await.expect("Dex token response");
        assert!(
            status.is_success(),
            "Dex refused the password grant: {body}"
        );
        body["access_token"]
            .as_str()
            .expect("an access token")
            .to_owned()
    }

    /// The issuer's published keys (`{issuer}/keys`).
    pub async fn jwks(&self) -> Value {
        self.http
            .get(format!("{}/keys", self.issuer))
            .send()
            .await
            .expect("Dex keys")
            .json()
            .await
            .expect("JWKS")
    }

    async fn launch(&mut self) {
        let bin = std::env::var("ORDER_PLATFORM_DEX").unwrap_or_else(|_| {
            panic!(
                "ORDER_PLATFORM_DEX is not set: run `make test` (scripts/test.sh builds Dex and \
                 exports it), or `export ORDER_PLATFORM_DEX=$(scripts/dex.sh path)`"
            )
        });
        let config = self.dir.join("config.yaml");
        std::fs::write(&config, self.config()).expect("write Dex's configuration");
        let log = std::fs::File::create(self.dir.join("dex.log")).expect("Dex's log file");
        let child = Command::new(&bin)
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("starting Dex ({bin}): {e}"));
        self.child = Some(child);
        let discovery = format!("{}/.well-known/openid-configuration", self.issuer);
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(response) = self.http.get(&discovery).send().await {
                if response.status().is_success() {
                    return;
                }
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            assert!(
                exited.is_none() && tokio::time::Instant::now() < deadline,
                "Dex did not serve {discovery} ({exited:?}); its log:\n{}",
                std::fs::read_to_string(self.dir.join("dex.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn config(&self) -> String {
        let user = |email: &str, id: &str, groups: &str| {
            format!(
                "  - email: {email:?}\n    hash: {PASSWORD_HASH:?}\n    username: {id:?}\n    userID: {id:?}\n    groups: [{groups}]\n"
            )
        };
        let client = |id: &str| {
            format!(
                "  - id: {id}\n    name: {id}\n    secret: {CLIENT_SECRET}\n    redirectURIs: ['http://127.0.0.1/callback']\n"
            )
        };
        format!(
            "issuer: {issuer}\n\
             storage:\n  type: memory\n\
             web:\n  http: 127.0.0.1:{port}\n\
             logger:\n  level: info\n\
             expiry:\n  idTokens: {lifetime:?}\n\
             oauth2:\n  passwordConnector: local\n  skipApprovalScreen: true\n\
             enablePasswordDB: true\n\
             staticClients:\n{clients}\
             staticPasswords:\n{users}",
            issuer = self.issuer,
            port = self.port,
            lifetime = self.token_lifetime,
            clients = [client(AUDIENCE), client(OTHER_CLIENT)].concat(),
            users = [
                user(ALICE, "alice", ""),
                user(BOB, "bob", ""),
                user(STAFF, "staff", "\"staff\""),
            ]
            .concat(),
        )
    }
}

impl Drop for Dex {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The claims of a token, read without checking anything (for assertions only).
pub fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url")).expect("JSON")
}

/// The header of a token, read without checking anything.
pub fn header(token: &str) -> Value {
    let header = token.split('.').next().expect("a JWT");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).expect("base64url")).expect("JSON")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// `application/x-www-form-urlencoded` escaping (reqwest's `form` feature is off here).
fn form_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            b' ' => "+".to_owned(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
