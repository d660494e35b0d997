//! Client certificates on the MQTTS listener (SPEC §2.5, mTLS): the tenants' CA and CRL files
//! turned into verifiers, and a verified chain turned into a [`ClientCertificate`].
//!
//! The handshake verifier trusts the union of every tenant's CAs, with every CRL (a revoked
//! certificate fails the handshake). It sends no CA names in its certificate request, so a
//! client learns nothing of other tenants' CAs. After the handshake the chain is verified again
//! against each tenant's CAs alone: the tenants it verifies for are the ones whose devices it
//! may speak for, so a CA registered by one tenant never vouches for another tenant's devices.
//! That costs one chain verification per tenant with CAs, per certificate connection.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};
use switchyard_identity::{ClientCertificate, Domain, ResourceId, URI_SAN_PREFIX};
use x509_parser::extensions::GeneralName;

use crate::tls::TlsError;

/// Whether the MQTTS listener asks for client certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    /// No certificate is asked for; devices authenticate by password.
    #[default]
    Off,
    /// A certificate is asked for; a client without one authenticates by password.
    Optional,
    /// A handshake without a valid certificate fails.
    Required,
}

/// One CA a tenant registered for its devices' certificates, and its revocation list.
#[derive(Debug, Clone)]
pub struct ClientCaFiles {
    /// The tenant whose devices the CA's certificates name.
    pub domain: Domain,
    /// PEM certificates (one or more) trusted as roots for that tenant.
    pub ca: PathBuf,
    /// PEM certificate revocation lists, if any.
    pub crl: Option<PathBuf>,
}

/// The verifiers built from one reading of the CA and CRL files.
pub(crate) struct ClientCerts {
    /// Accepts a chain to any tenant's CA, for the handshake.
    pub(crate) handshake: Arc<dyn ClientCertVerifier>,
    /// One per tenant, to learn which tenants' CAs a chain verifies against.
    tenants: Vec<(Domain, Arc<dyn ClientCertVerifier>)>,
}

fn read_certs(path: &PathBuf) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<_, _>>())
        .map_err(|source| TlsError::Cert { path: path.clone(), source })?;
    if certs.is_empty() {
        return Err(TlsError::Empty(path.clone()));
    }
    Ok(certs)
}

fn read_crls(path: &PathBuf) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    CertificateRevocationListDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<_, _>>())
        .map_err(|source| TlsError::Crl { path: path.clone(), source })
}

fn verifier(
    roots: RootCertStore,
    crls: &[CertificateRevocationListDer<'static>],
    mode: ClientAuth,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    // A chain without a CRL of its own is accepted: not every tenant publishes one.
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider))
        .with_crls(crls.iter().cloned())
        .allow_unknown_revocation_status()
        .clear_root_hint_subjects();
    let builder = if mode == ClientAuth::Optional { builder.allow_unauthenticated() } else { builder };
    builder.build().map_err(|e| TlsError::ClientCa(e.to_string()))
}

impl ClientCerts {
    /// Reads every CA and CRL file and builds the verifiers.
    pub(crate) fn load(
        cas: &[ClientCaFiles],
        mode: ClientAuth,
        provider: &Arc<CryptoProvider>,
    ) -> Result<ClientCerts, TlsError> {
        let mut by_tenant: BTreeMap<Domain, RootCertStore> = BTreeMap::new();
        let mut union = RootCertStore::empty();
        let mut crls = Vec::new();
        let mut owners: BTreeMap<Vec<u8>, &Domain> = BTreeMap::new();
        for files in cas {
            let roots = by_tenant.entry(files.domain.clone()).or_insert_with(RootCertStore::empty);
            for cert in read_certs(&files.ca)? {
                if let Some(other) = owners.insert(cert.to_vec(), &files.domain).filter(|d| **d != files.domain) {
                    tracing::warn!(
                        ca = %files.ca.display(), tenants = %format!("{other}, {}", files.domain),
                        "a client CA is registered by two tenants: its devices must send their username"
                    );
                }
                let bad = |e: rustls::Error| TlsError::ClientCa(format!("{}: {e}", files.ca.display()));
                roots.add(cert.clone()).map_err(bad)?;
                union.add(cert).map_err(bad)?;
            }
            if let Some(crl) = &files.crl {
                crls.extend(read_crls(crl)?);
            }
        }
        if union.is_empty() {
            return Err(TlsError::ClientCa("client certificates are enabled but no tenant CA is configured".into()));
        }
        let handshake = verifier(union, &crls, mode, provider)?;
        let tenants = by_tenant
            .into_iter()
            .map(|(domain, roots)| Ok((domain, verifier(roots, &crls, ClientAuth::Required, provider)?)))
            .collect::<Result<_, TlsError>>()?;
        Ok(ClientCerts { handshake, tenants })
    }

    /// What a chain the handshake accepted says: the tenants it verifies for, now, and the
    /// resource id it names.
    pub(crate) fn identify(&self, chain: &[CertificateDer<'_>]) -> Option<ClientCertificate> {
        let (end_entity, intermediates) = chain.split_first()?;
        let now = UnixTime::now();
        let domains = self
            .tenants
            .iter()
            .filter(|(_, v)| v.verify_client_cert(end_entity, intermediates, now).is_ok())
            .map(|(domain, _)| domain.clone())
            .collect();
        Some(ClientCertificate { domains, resource: named_resource(end_entity) })
    }
}

/// The resource id a certificate names: its one URI SAN `switchyard:{id}`, else its one CN.
/// Several distinct names of the same kind name none.
fn named_resource(cert: &CertificateDer<'_>) -> Option<ResourceId> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert).ok()?;
    let sole = |mut names: Vec<&str>| {
        names.sort_unstable();
        names.dedup();
        match names.as_slice() {
            [one] => ResourceId::parse(one).ok(),
            _ => None,
        }
    };
    let uris: Vec<&str> = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|name| match name {
                GeneralName::URI(uri) => uri.strip_prefix(URI_SAN_PREFIX),
                _ => None,
            })
            .collect(),
        Ok(None) => Vec::new(),
        Err(_) => return None,
    };
    if !uris.is_empty() {
        return sole(uris);
    }
    let cns: Option<Vec<&str>> = cert.subject().iter_common_name().map(|cn| cn.as_str().ok()).collect();
    sole(cns?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(cn: &str, uris: &[&str]) -> CertificateDer<'static> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, cn);
        for uri in uris {
            params.subject_alt_names.push(rcgen::SanType::URI(rcgen::string::Ia5String::try_from(*uri).unwrap()));
        }
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().clone()
    }

    #[test]
    fn the_uri_san_names_the_resource_else_the_cn() {
        let id = |s: &str| ResourceId::parse(s).ok();
        let cases: [(&str, &[&str], Option<ResourceId>); 6] = [
            ("dev-1", &[], id("dev-1")),
            ("Device one", &[], None),
            ("Device one", &["switchyard:dev-2"], id("dev-2")),
            ("dev-1", &["https://example.com/x", "switchyard:dev-2"], id("dev-2")),
            ("dev-1", &["switchyard:a", "switchyard:b"], None),
            ("dev-1", &["switchyard:a", "switchyard:a"], id("a")),
        ];
        for (cn, uris, expected) in cases {
            assert_eq!(named_resource(&cert(cn, uris)), expected, "{cn} {uris:?}");
        }
    }
}
