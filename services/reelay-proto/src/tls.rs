//! TLS (rustls) for Reelay's ports and the clients that call them.
//!
//! - [`ServerTls`]: a server's certificate chain and private key, read and checked when the
//!   server starts, so a wrong path or a file that is not PEM stops it with a message naming the
//!   file, never at the first handshake.
//! - [`ClientTls`]: how a client verifies a server on `https://` URLs — with the CA given by
//!   `--tls-ca`, or the system's trusted roots when none is given. `http://` URLs stay plain.
//!
//! Only servers are authenticated by certificates; clients (workers, the coordinator's links,
//! people) authenticate with bearer tokens ([`crate::auth`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
pub use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

/// A TLS handshake that takes longer than this is dropped (a client that connects and says
/// nothing must not hold a server task).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections through their handshake that may wait for the server to take them.
const ACCEPTED_QUEUE: usize = 64;

/// A server's certificate chain and key, checked when loaded.
#[derive(Clone)]
pub struct ServerTls {
    cert_path: PathBuf,
    key_path: PathBuf,
    /// rustls' server side, built once at load (so every problem shows at start).
    config: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key's bytes stay out of logs and panics.
        f.debug_struct("ServerTls")
            .field("cert", &self.cert_path)
            .field("key", &self.key_path)
            .finish()
    }
}

impl ServerTls {
    /// Reads `cert` (PEM, the server's certificate first, then intermediates) and `key` (PEM,
    /// PKCS#8, PKCS#1 or SEC1) and checks that they belong together.
    pub fn load(cert: &Path, key: &Path) -> Result<Self, String> {
        let chain = certificates(&read(cert, "certificate")?, cert)?;
        let key_pem = read(key, "private key")?;
        let private_key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|err| {
            format!(
                "the TLS private key {} holds no usable key ({err}): expected a PEM block such as \
                 -----BEGIN PRIVATE KEY-----",
                key.display()
            )
        })?;
        let unusable = |reason: String| {
            format!(
                "cannot use the TLS certificate {} with the key {}: {reason}",
                cert.display(),
                key.display()
            )
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|err| unusable(err.to_string()))?
            .with_no_client_auth()
            .with_single_cert(chain, private_key)
            .map_err(|err| match err {
                rustls::Error::InconsistentKeys(_) => {
                    unusable("the key does not belong to the certificate".to_owned())
                }
                other => unusable(other.to_string()),
            })?;
        // HTTP/2 for gRPC and browsers; HTTP/1.1 for clients that offer only it (curl --http1.1,
        // some grpc-web and download clients).
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(ServerTls {
            cert_path: cert.to_owned(),
            key_path: key.to_owned(),
            config: Arc::new(config),
        })
    }

    /// The TLS connections accepted on `listener`, for `serve_with_incoming`. Each handshake runs
    /// on its own task, so a slow or silent client holds up no one, and is dropped after 10 s; a
    /// failed one (a plain-text client, an untrusting peer) is logged at debug level and skipped.
    /// Accepting stops when the stream is dropped.
    pub fn incoming(
        &self,
        listener: TcpListener,
    ) -> ReceiverStream<std::io::Result<TlsStream<TcpStream>>> {
        let acceptor = TlsAcceptor::from(Arc::clone(&self.config));
        let (accepted, stream) = mpsc::channel(ACCEPTED_QUEUE);
        tokio::spawn(async move {
            loop {
                let (tcp, peer) = tokio::select! {
                    connection = listener.accept() => match connection {
                        Ok(connection) => connection,
                        Err(err) => {
                            // Out of file descriptors, usually: wait rather than spin.
                            tracing::warn!(error = %err, "cannot accept a connection");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    },
                    () = accepted.closed() => return,
                };
                crate::net::no_delay(&tcp);
                let acceptor = acceptor.clone();
                let accepted = accepted.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            let _ = accepted.send(Ok(stream)).await;
                        }
                        Ok(Err(err)) => {
                            tracing::debug!(%peer, error = %err, "TLS handshake failed");
                        }
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        ReceiverStream::new(stream)
    }
}

/// How a client verifies servers on `https://` URLs.
#[derive(Clone, Default)]
pub struct ClientTls {
    /// The CA's PEM (`--tls-ca`); `None` trusts the system's roots.
    ca: Option<(PathBuf, Certificate)>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("ca", &self.ca.as_ref().map(|(path, _)| path))
            .finish()
    }
}

impl ClientTls {
    /// Trusts the certificates in `ca` (PEM), or the system's roots when `None`.
    pub fn load(ca: Option<&Path>) -> Result<Self, String> {
        let Some(path) = ca else {
            return Ok(ClientTls::default());
        };
        let pem = read(path, "CA certificate")?;
        certificates(&pem, path)?;
        Ok(ClientTls {
            ca: Some((path.to_owned(), Certificate::from_pem(pem))),
        })
    }

    /// Whether a CA was given (else the system's roots are trusted).
    pub fn has_ca(&self) -> bool {
        self.ca.is_some()
    }

    /// An endpoint for `url`: plain for `http://`, TLS verified by this CA for `https://`.
    pub fn endpoint(&self, url: &str) -> Result<Endpoint, String> {
        let endpoint = Endpoint::from_shared(url.to_owned())
            .map_err(|err| format!("{url:?} is not a valid URL: {}", error_chain(&err)))?;
        if !url.starts_with("https://") {
            return Ok(endpoint);
        }
        let config = match &self.ca {
            Some((_, ca)) => ClientTlsConfig::new().ca_certificate(ca.clone()),
            None => ClientTlsConfig::new().with_native_roots(),
        }
        .timeout(HANDSHAKE_TIMEOUT);
        endpoint
            .tls_config(config)
            .map_err(|err| format!("cannot set up TLS for {url}: {}", error_chain(&err)))
    }
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path)
        .map_err(|err| format!("cannot read the TLS {what} {}: {err}", path.display()))
}

/// The certificates of a PEM file; an error naming the file when there is none.
fn certificates(pem: &[u8], path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| format!("{} is not a PEM certificate file: {err}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{} holds no certificate: expected a PEM block -----BEGIN CERTIFICATE-----",
            path.display()
        ));
    }
    Ok(certs)
}

/// An error with its sources, `a: b: c` (tonic's transport errors hide the cause otherwise).
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_malformed_files_are_named() {
        let dir = std::env::temp_dir().join(format!("reelay-tls-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.pem");
        let err = ServerTls::load(&missing, &missing).unwrap_err();
        assert!(
            err.contains("missing.pem") && err.contains("certificate"),
            "{err}"
        );

        let junk = dir.join("junk.pem");
        std::fs::write(&junk, "not a certificate\n").unwrap();
        let err = ServerTls::load(&junk, &junk).unwrap_err();
        assert!(
            err.contains("junk.pem") && err.contains("no certificate"),
            "{err}"
        );
        let err = ClientTls::load(Some(&junk)).unwrap_err();
        assert!(err.contains("junk.pem"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn plain_urls_stay_plain() {
        let tls = ClientTls::default();
        assert!(tls.endpoint("http://127.0.0.1:7070").is_ok());
        assert!(tls.endpoint("not a url").is_err());
    }
}
