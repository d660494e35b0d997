//! The client certificates of live MQTTS connections, so that a reload of the tenants' CA and
//! CRL files reaches connections made before it: each chain is identified again, and a tenant
//! it no longer verifies for (its CA removed, the certificate revoked) has that device's
//! connections closed with DISCONNECT 0x98, as blocking the device would. Only connections that
//! presented a chain are kept, one entry each (its chain, a few KiB at most), for as long as
//! the connection lives; the listener's connection limit bounds them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rustls_pki_types::CertificateDer;
use switchyard_broker::{Broker, Namespace, owner_key};
use switchyard_identity::{ClientCertificate, DeviceIdentity, Domain, Identity, ResourceId};

/// A device a reload no longer authenticates in one tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revoked {
    pub domain: Domain,
    pub resource: ResourceId,
}

impl Revoked {
    /// Closes the device's live connections in its tenant (DISCONNECT 0x98).
    pub async fn close(self, broker: &Broker) {
        let identity = Identity::Device(DeviceIdentity { domain: self.domain.clone(), resource: self.resource });
        let _ = broker.kick(Namespace::tenant(&self.domain), Some(owner_key(&identity))).await;
    }
}

/// One live connection's chain and what it was identified as.
struct Entry {
    chain: Vec<CertificateDer<'static>>,
    identified: ClientCertificate,
}

/// The chains of live connections, by a connection number.
#[derive(Default)]
pub(crate) struct Certified {
    next: u64,
    live: HashMap<u64, Entry>,
}

impl Certified {
    pub(crate) fn insert(&mut self, chain: &[CertificateDer<'_>], identified: ClientCertificate) -> u64 {
        self.next += 1;
        let chain = chain.iter().map(|c| c.clone().into_owned()).collect();
        self.live.insert(self.next, Entry { chain, identified });
        self.next
    }

    pub(crate) fn remove(&mut self, id: u64) {
        self.live.remove(&id);
    }

    /// Identifies every chain again with `identify`; answers the devices that lost a tenant,
    /// and keeps the new identification.
    pub(crate) fn recheck(
        &mut self,
        identify: impl Fn(&[CertificateDer<'_>]) -> Option<ClientCertificate>,
    ) -> Vec<Revoked> {
        let mut revoked = Vec::new();
        for entry in self.live.values_mut() {
            let now = identify(&entry.chain).unwrap_or(ClientCertificate { domains: Vec::new(), resource: None });
            if let Some(resource) = &entry.identified.resource {
                for domain in entry.identified.domains.iter().filter(|d| !now.domains.contains(d)) {
                    let lost = Revoked { domain: domain.clone(), resource: resource.clone() };
                    if !revoked.contains(&lost) {
                        revoked.push(lost);
                    }
                }
            }
            entry.identified = now;
        }
        revoked
    }
}

/// Keeps a connection's chain in its [`TlsSource`](crate::TlsSource) until dropped.
pub struct Tracked {
    pub(crate) registry: Arc<Mutex<Certified>>,
    pub(crate) id: u64,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.registry.lock().unwrap_or_else(|e| e.into_inner()).remove(self.id);
    }
}
