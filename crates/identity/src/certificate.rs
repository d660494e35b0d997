//! TLS client certificates (SPEC §2.5, mTLS): which device a verified certificate names.
//!
//! The TLS listener verifies the chain and reports a [`ClientCertificate`]: the tenants whose
//! registered CAs the chain verifies against, checked one tenant at a time so that one
//! tenant's CA never vouches for another tenant's devices, and the resource id the certificate
//! names (its one URI SAN `switchyard:{resource_id}`, else its CN). [`certificate_device`]
//! turns that and the MQTT username, if any, into the device: a username must name the same
//! tenant and device; without one, the chain must verify for exactly one tenant (a CA that two
//! tenants registered needs the username to say which).

use crate::credentials::{Username, parse_username};
use crate::ids::{DeviceIdentity, Domain, ResourceId};

/// A client certificate whose chain the TLS listener verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertificate {
    /// The tenants whose registered CAs the chain verifies against (usually one).
    pub domains: Vec<Domain>,
    /// The resource id the certificate names; `None` when it names none that parses, or
    /// several.
    pub resource: Option<ResourceId>,
}

/// Why a verified certificate does not name a device.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    /// The chain verifies against no tenant's CA (it was removed since the handshake).
    #[error("certificate chains to no tenant's CA")]
    NoTenant,
    /// The chain verifies for several tenants and no username says which.
    #[error("certificate chains to CAs of several tenants; the username must name one")]
    AmbiguousTenant,
    /// The certificate names no valid resource id (CN or one URI SAN `switchyard:{id}`).
    #[error("certificate names no resource id")]
    NoResource,
    /// The username is not a device username `{domain}/{resource_id}`.
    #[error("username is not a device username")]
    NotDeviceUsername,
    /// The username names a tenant whose CA did not issue the certificate.
    #[error("certificate does not chain to a CA of the username's tenant")]
    OtherTenant,
    /// The username names another device than the certificate.
    #[error("certificate names another device than the username")]
    OtherDevice,
}

/// The URI SAN scheme that names a resource id.
pub const URI_SAN_PREFIX: &str = "switchyard:";

/// The device `cert` authenticates, given the MQTT username (absent or empty: none).
pub fn certificate_device(
    cert: &ClientCertificate,
    username: Option<&str>,
) -> Result<DeviceIdentity, CertificateError> {
    let resource = cert.resource.clone().ok_or(CertificateError::NoResource)?;
    match username.filter(|u| !u.is_empty()) {
        Some(username) => {
            let device = match parse_username(username) {
                Ok(Username::Device(device)) => device,
                Ok(Username::App { .. }) | Err(_) => {
                    return Err(CertificateError::NotDeviceUsername);
                }
            };
            if !cert.domains.contains(&device.domain) {
                return Err(CertificateError::OtherTenant);
            }
            if device.resource != resource {
                return Err(CertificateError::OtherDevice);
            }
            Ok(device)
        }
        None => match cert.domains.as_slice() {
            [] => Err(CertificateError::NoTenant),
            [domain] => Ok(DeviceIdentity { domain: domain.clone(), resource }),
            _ => Err(CertificateError::AmbiguousTenant),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(domains: &[&str], resource: Option<&str>) -> ClientCertificate {
        ClientCertificate {
            domains: domains.iter().map(|d| Domain::parse(d).unwrap()).collect(),
            resource: resource.map(|r| ResourceId::parse(r).unwrap()),
        }
    }

    fn device(domain: &str, resource: &str) -> DeviceIdentity {
        DeviceIdentity { domain: Domain::parse(domain).unwrap(), resource: ResourceId::parse(resource).unwrap() }
    }

    #[test]
    fn username_must_agree_with_the_certificate() {
        let one = cert(&["a.example"], Some("d1"));
        let shared = cert(&["a.example", "b.example"], Some("d1"));
        let cases = [
            (&one, None, Ok(device("a.example", "d1"))),
            (&one, Some(""), Ok(device("a.example", "d1"))),
            (&one, Some("a.example/d1"), Ok(device("a.example", "d1"))),
            (&one, Some("a.example/d2"), Err(CertificateError::OtherDevice)),
            (&one, Some("b.example/d1"), Err(CertificateError::OtherTenant)),
            (&one, Some("a.example/apikey/k"), Err(CertificateError::NotDeviceUsername)),
            (&one, Some("plain"), Err(CertificateError::NotDeviceUsername)),
            (&shared, None, Err(CertificateError::AmbiguousTenant)),
            (&shared, Some("b.example/d1"), Ok(device("b.example", "d1"))),
            (&cert(&[], Some("d1")), None, Err(CertificateError::NoTenant)),
            (&cert(&["a.example"], None), Some("a.example/d1"), Err(CertificateError::NoResource)),
        ];
        for (cert, username, expected) in cases {
            assert_eq!(certificate_device(cert, username), expected, "{cert:?} {username:?}");
        }
    }
}
