//! HTTPS delivery against a real TLS server on loopback, its certificate issued by a private
//! CA: trusted through `--ca-cert`, refused without it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use whc::sidecar::ProxyConfig;

use crate::support::{Sidecar, conversion, wait_until, webhook};

/// A private CA and a certificate it issued for 127.0.0.1.
struct Pki {
    ca_pem: String,
    leaf: CertificateDer<'static>,
    leaf_key: PrivateKeyDer<'static>,
}

fn pki() -> Pki {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
    let leaf_key = KeyPair::generate().expect("leaf key");
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .expect("leaf params")
        .signed_by(&leaf_key, &ca, &ca_key)
        .expect("leaf certificate");
    Pki {
        ca_pem: ca.pem(),
        leaf: leaf.der().clone(),
        leaf_key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
    }
}

/// An HTTPS server answering 200 to everything and recording the paths it was asked for.
async fn tls_target(pki: &Pki) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_no_client_auth()
    .with_single_cert(vec![pki.leaf.clone()], pki.leaf_key.clone_key())
    .expect("server certificate");
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let paths = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&paths);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            let seen = Arc::clone(&seen);
            tokio::spawn(async move {
                // A client that refuses the certificate ends the handshake: nothing to serve.
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let seen = Arc::clone(&seen);
                    async move {
                        seen.lock().unwrap().push(req.uri().path().to_owned());
                        let _ = req.into_body().collect().await;
                        Ok::<_, std::convert::Infallible>(Response::new(Full::new(
                            Bytes::from_static(b"ok"),
                        )))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (addr, paths)
}

fn first_delivery(answer: &serde_json::Value) -> String {
    answer["events"][0]["deliveries"][0]
        .as_str()
        .expect("a delivery id")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_delivery_trusts_a_private_ca_given_with_ca_cert() {
    let pki = pki();
    let (addr, paths) = tls_target(&pki).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_file: PathBuf = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &pki.ca_pem).expect("write CA");
    let rules = webhook(
        "crm",
        "conversion",
        "",
        &format!("https://127.0.0.1:{}/hook", addr.port()),
        "",
    );

    let trusting = Sidecar::builder()
        .file("hooks.whc", &rules)
        .config(move |c| c.ca_certs = vec![ca_file])
        .start()
        .await;
    let id = first_delivery(&trusting.accept(conversion("tls-1").to_string()).await);
    let delivered = trusting.wait_status(&id, "delivered").await;
    assert_eq!(delivered["last_status_code"], 200, "{delivered:#}");
    assert_eq!(paths.lock().unwrap().as_slice(), ["/hook"]);
    trusting.shutdown().await;

    // Without the CA the certificate is refused and the delivery never reaches the target.
    let refusing = Sidecar::start(&rules).await;
    let id = first_delivery(&refusing.accept(conversion("tls-2").to_string()).await);
    let dead = refusing.wait_status(&id, "dead").await;
    let error = dead["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("certificate"), "{dead:#}");
    wait_until("no second request at the target", || {
        paths.lock().unwrap().len() == 1
    })
    .await;
    refusing.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_trusts_a_private_ca_given_with_ca_cert() {
    let pki = pki();
    let (addr, paths) = tls_target(&pki).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_file: PathBuf = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &pki.ca_pem).expect("write CA");
    let upstream: hyper::Uri = format!("https://127.0.0.1:{}/", addr.port())
        .parse()
        .expect("URI");
    let sidecar = Sidecar::builder()
        .file(
            "hooks.whc",
            &webhook("crm", "conversion", "", "http://127.0.0.1:9/", ""),
        )
        .config(move |c| {
            c.proxy = Some(ProxyConfig::new(upstream));
            c.ca_certs = vec![ca_file];
        })
        .start()
        .await;
    let answer = sidecar.http.get(&sidecar.events_url("/stats")).await;
    assert_eq!(answer.status, hyper::StatusCode::OK, "{}", answer.text());
    assert_eq!(answer.text(), "ok");
    assert_eq!(paths.lock().unwrap().as_slice(), ["/stats"]);
    sidecar.shutdown().await;
}
