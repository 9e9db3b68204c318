//! TLS for HTTPS and for DICOM (listener and the associations radhub
//! requests of each site's PACS): a certificate chain and key from PEM files
//! (HTTPS reads them again on SIGHUP: a renewed certificate takes effect
//! for new connections without a restart; a file that does not load
//! leaves the one in use), optionally client certificates checked against
//! a CA. TLS 1.2 and 1.3 with rustls's AEAD suites only (ECDHE, AES-GCM or
//! ChaCha20-Poly1305): the BCP 195 profile.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {why}")]
    Pem { path: PathBuf, why: String },
    #[error("certificate {cert} with key {key}: {source}")]
    Config { cert: PathBuf, key: PathBuf, source: rustls::Error },
    #[error("client CA {path}: {why}")]
    ClientCa { path: PathBuf, why: String },
    #[error("CA {path}: {why}")]
    Ca { path: PathBuf, why: String },
    #[error("client certificate {cert} with key {key}: {source}")]
    Client { cert: PathBuf, key: PathBuf, source: rustls::Error },
}

pub struct Tls {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<ServerConfig>>,
}

impl Tls {
    pub fn load(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let config = read(cert, key, None, HTTP_ALPN)?;
        Ok(Tls { cert: cert.to_owned(), key: key.to_owned(), current: RwLock::new(config) })
    }

    /// Reads the files again; on failure the configuration in use stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = read(&self.cert, &self.key, None, HTTP_ALPN)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = config;
        Ok(())
    }

    /// An acceptor with the configuration in use now.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.current.read().unwrap_or_else(|p| p.into_inner()).clone())
    }
}

/// HTTP/2 where the client offers it, else HTTP/1.1.
const HTTP_ALPN: &[&[u8]] = &[b"h2", b"http/1.1"];

/// The TLS of DICOM's listener (PS3.15 B.1) and the files it came from:
/// with `client_ca`, a peer must present a certificate that CA issued.
pub struct DicomListener {
    handle: pacs_gateway::ServerTls,
    cert: PathBuf,
    key: PathBuf,
    client_ca: Option<PathBuf>,
}

impl DicomListener {
    pub fn load(cert: &Path, key: &Path, client_ca: Option<&Path>) -> Result<Self, TlsError> {
        let config = read(cert, key, client_ca, &[])?;
        Ok(DicomListener { handle: pacs_gateway::ServerTls::new(config), cert: cert.to_owned(), key: key.to_owned(), client_ca: client_ca.map(Path::to_owned) })
    }

    /// What the listener's configuration holds.
    pub fn handle(&self) -> pacs_gateway::ServerTls {
        self.handle.clone()
    }

    /// Reads the files again for new associations; on failure the configuration in use stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        self.handle.replace(read(&self.cert, &self.key, self.client_ca.as_deref(), &[])?);
        Ok(())
    }
}

/// How radhub calls one peer over TLS: the peer's certificate must chain
/// to `ca` (and name the host called); `cert` and `key` are radhub's own,
/// for a peer that asks for a client certificate.
pub fn dicom_client(ca: &Path, cert_key: Option<(&Path, &Path)>) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for c in certificates(ca)? {
        roots.add(c).map_err(|e| TlsError::Ca { path: ca.to_owned(), why: e.to_string() })?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Ca { path: ca.to_owned(), why: e.to_string() })?
        .with_root_certificates(roots);
    let config = match cert_key {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = certificates(cert)?;
            let private = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Pem { path: key.to_owned(), why: e.to_string() })?;
            builder.with_client_auth_cert(chain, private).map_err(|source| TlsError::Client { cert: cert.to_owned(), key: key.to_owned(), source })?
        }
    };
    Ok(Arc::new(config))
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = |e: rustls::pki_types::pem::Error| TlsError::Pem { path: path.to_owned(), why: e.to_string() };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path).map_err(pem)?.collect::<Result<_, _>>().map_err(pem)?;
    if chain.is_empty() {
        return Err(TlsError::Pem { path: path.to_owned(), why: "no certificate in the file".into() });
    }
    Ok(chain)
}

fn read(cert: &Path, key: &Path, client_ca: Option<&Path>, alpn: &[&[u8]]) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = certificates(cert)?;
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Pem { path: key.to_owned(), why: e.to_string() })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = |source| TlsError::Config { cert: cert.to_owned(), key: key.to_owned(), source };
    let builder =
        ServerConfig::builder_with_provider(provider.clone()).with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12]).map_err(config)?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in certificates(ca)? {
                roots.add(c).map_err(|e| TlsError::ClientCa { path: ca.to_owned(), why: e.to_string() })?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsError::ClientCa { path: ca.to_owned(), why: e.to_string() })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut c = builder.with_single_cert(chain, private).map_err(config)?;
    c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(c))
}

/// Whether the first bytes a client sent open a TLS handshake (a record
/// of type 22); anything else on the HTTPS port is plain HTTP.
pub fn is_handshake(first: &[u8]) -> bool {
    first.first() == Some(&0x16)
}

/// What a plain HTTP request to the HTTPS port is answered.
pub const PLAIN_REFUSED: &[u8] =
    b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 41\r\nConnection: close\r\n\r\nThis server takes HTTPS only: use https.\n";
