//! Participants over https: the fakes behind a TLS listener whose certificate a CA made here
//! signs. The service trusts that CA through `--participant-ca-file`, and nothing else.

use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::helpers::{sample_order, spawn_app_with, wait_until, Options, TestApp};
use crate::participants::Participants;

/// A CA and a certificate it signed for `localhost` and 127.0.0.1.
struct Pki {
    ca_pem: String,
    cert: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
}

fn ca() -> (rcgen::Certificate, KeyPair) {
    let key = KeyPair::generate().expect("CA key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "order-platform test CA");
    (params.self_signed(&key).expect("CA cert"), key)
}

fn pki() -> Pki {
    let (ca_cert, ca_key) = ca();
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
    params
        .subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().expect("ip")));
    let cert = params.signed_by(&key, &ca_cert, &ca_key).expect("cert");
    Pki {
        ca_pem: ca_cert.pem(),
        cert: cert.der().clone(),
        key: PrivatePkcs8KeyDer::from(key.serialize_der()),
    }
}

/// Terminates TLS on a free port and passes the plain bytes to `upstream` (the mock server).
async fn tls_front(pki: &Pki, upstream: std::net::SocketAddr) -> u16 {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![pki.cert.clone()],
            PrivateKeyDer::Pkcs8(pki.key.clone_key()),
        )
        .expect("server config");
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A client that refuses the certificate ends the handshake: nothing to relay.
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                if let Ok(mut plain) = TcpStream::connect(upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                }
            });
        }
    });
    port
}

/// The fakes' flags with https URLs on `port` and `ca_pem` as the only trusted CA.
fn https_args(participants: &Participants, port: u16, ca_pem: &str) -> Vec<String> {
    let ca_file =
        std::env::temp_dir().join(format!("participants-ca-{}.pem", uuid::Uuid::new_v4()));
    std::fs::write(&ca_file, ca_pem).expect("write CA");
    let base = format!("https://localhost:{port}/");
    let mut args = participants.args();
    for flag in ["--customer-url", "--inventory-url", "--payment-url"] {
        let at = args.iter().position(|a| a == flag).expect("url flag");
        args[at + 1] = base.clone();
    }
    args.extend([
        "--participant-ca-file".to_owned(),
        ca_file.display().to_string(),
    ]);
    args
}

async fn app(args: Vec<String>) -> TestApp {
    spawn_app_with(Options {
        extra_args: args,
        ..Options::default()
    })
    .await
}

#[tokio::test]
async fn sagas_call_https_participants_signed_by_the_configured_ca() {
    let participants = Participants::start().await;
    let pki = pki();
    let port = tls_front(&pki, *participants.server.address()).await;
    let app = app(https_args(&participants, port, &pki.ca_pem)).await;
    let id = app.create_order(&sample_order()).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    wait_until(Duration::from_secs(20), "the saga to confirm", || async {
        app.order_json(&id).await["status"] == "CONFIRMED"
    })
    .await;
    let w = &participants.world;
    assert_eq!(
        (w.customer.calls(), w.reserve.calls(), w.authorize.calls()),
        (1, 1, 1),
        "one call per step, over TLS"
    );
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused_and_the_order_waits() {
    let participants = Participants::start().await;
    let pki = pki();
    let port = tls_front(&pki, *participants.server.address()).await;
    // The service trusts a different CA than the one that signed the participants' cert.
    let (stranger, _) = ca();
    let app = app(https_args(&participants, port, &stranger.pem())).await;
    let id = app.create_order(&sample_order()).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    wait_until(
        Duration::from_secs(20),
        "the saga to say why it waits",
        || async {
            let order = app.order_json(&id).await;
            order["saga"]["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("customer: unreachable"))
        },
    )
    .await;
    let order = app.order_json(&id).await;
    assert_eq!(order["status"], "PENDING", "not cancelled: {order}");
    assert!(
        order["saga"]["last_error"]
            .as_str()
            .unwrap_or_default()
            .to_lowercase()
            .contains("certificate"),
        "{order}"
    );
    assert_eq!(
        participants.world.customer.calls(),
        0,
        "no request got through"
    );
}
