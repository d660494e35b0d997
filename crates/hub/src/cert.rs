//! MQTT devices authenticated by a TLS client certificate (SPEC §2.5, mTLS).
//!
//! The listener verified the chain and reports which tenants' CAs it verifies against and the
//! resource id it names; the identity crate's `certificate_device` picks the device (the
//! username, if any, must name the same one) and `authenticate_certificate` checks the
//! registry as for a password: tenant enabled, device registered if required, not blocked.
//! No password is needed, and one that is sent is ignored.
//!
//! The failed-attempt limiter is not consulted: the TLS handshake already proved possession of
//! a key a tenant's CA certified, which cannot be guessed, and a certificate that a tenant
//! trusts is never locked out by others' failures. Outcomes are counted and logged like
//! password ones (`protocol="mqtt"`, `method = "certificate"` in the log).

use std::net::IpAddr;
use std::sync::Arc;

use switchyard_identity::{
    AuthError, ClientCertificate, Device, Identity, authenticate_certificate, certificate_device,
};

use crate::auth::AuthFailure;
use crate::{Hub, HubError};

impl Hub {
    /// Authenticates an MQTT client by its verified certificate and optional username.
    pub(crate) async fn authenticate_certificate(
        &self,
        cert: &ClientCertificate,
        username: Option<&str>,
        ip: Option<IpAddr>,
    ) -> Result<Identity, AuthFailure> {
        let result = self.check_certificate(cert, username).await;
        let resource = cert.resource.as_ref().map_or("", |r| r.as_str());
        let tenants: Vec<&str> = cert.domains.iter().map(|d| d.as_str()).collect();
        match &result {
            Ok(identity) => {
                if let Identity::Device(d) = identity {
                    self.registry().activity.seen(d, self.registry().now_ms());
                }
                metrics::counter!("switchyard_auth_success_total", "protocol" => "mqtt", "kind" => "device")
                    .increment(1);
                tracing::info!(protocol = "mqtt", method = "certificate", ?tenants, resource, ?ip, "authenticated");
            }
            Err(failure) => {
                metrics::counter!("switchyard_auth_failure_total", "protocol" => "mqtt", "reason" => failure.label())
                    .increment(1);
                tracing::warn!(
                    protocol = "mqtt", method = "certificate", ?tenants, resource, ?username, ?ip,
                    reason = failure.label(), detail = %failure, "authentication refused"
                );
            }
        }
        result
    }

    async fn check_certificate(
        &self,
        cert: &ClientCertificate,
        username: Option<&str>,
    ) -> Result<Identity, AuthFailure> {
        let refused = |e: AuthError| AuthFailure::Refused(e);
        let device = certificate_device(cert, username).map_err(|e| refused(e.into()))?;
        let entry = self.registry().tenant(&device.domain).ok_or(refused(AuthError::UnknownTenant))?;
        let status = match self.registry().cached_status(&device) {
            Some(status) => status,
            None => {
                let registry = Arc::clone(self.registry());
                let who = device.clone();
                tokio::task::spawn_blocking(move || registry.device_status(&who))
                    .await
                    .map_err(|e| AuthFailure::Unavailable(HubError::Task(e.to_string())))?
                    .map_err(AuthFailure::Unavailable)?
            }
        };
        let row = status.map(|blocked| Device { blocked, ..Device::new(device.resource.clone(), 0) });
        authenticate_certificate(&entry.tenant, row.as_ref(), &device).map_err(refused)
    }
}
