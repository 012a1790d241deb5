//! The one place that decides who is calling: a request's tenant and role.
//!
//! Services never read a tenant or role from a request field; they read the
//! [`Identity`] this interceptor puts in the request's extensions. Today the
//! identity comes from metadata (`x-relais-tenant`, `x-relais-role`); when
//! mTLS arrives, the same interceptor reads it from the client certificate
//! instead and nothing else changes.

use std::sync::Arc;

use tonic::service::Interceptor;
use tonic::{Request, Status};

pub const TENANT_HEADER: &str = "x-relais-tenant";
pub const ROLE_HEADER: &str = "x-relais-role";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Gateway,
    Informant,
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Self::Gateway, Self::Informant, Self::Admin];

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "gateway" => Some(Self::Gateway),
            "informant" => Some(Self::Informant),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Gateway => "gateway",
            Self::Informant => "informant",
            Self::Admin => "admin",
        }
    }

    /// This role alone.
    fn alone(self) -> &'static [Role] {
        match self {
            Self::Gateway => &[Self::Gateway],
            Self::Informant => &[Self::Informant],
            Self::Admin => &[Self::Admin],
        }
    }
}

/// Who is calling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub tenant: Arc<str>,
    pub role: Role,
}

/// How identities are checked on this node.
#[derive(Clone, Debug)]
pub struct IdentityPolicy {
    pub tenants: Arc<[Arc<str>]>,
    /// Tenant assumed when a request names none. `None`: the tenant header
    /// is required.
    pub default_tenant: Option<Arc<str>>,
    /// Whether a request without a role header is refused. When false (the
    /// embedded default, for a single node on a developer's machine), such a
    /// request gets the role its service needs.
    pub require_role: bool,
}

/// Checks every request of one service against the roles that may use
/// that service.
#[derive(Clone, Debug)]
pub struct IdentityInterceptor {
    policy: Arc<IdentityPolicy>,
    /// Never empty. The first is the role a request without a role header
    /// gets when the policy does not require one.
    accepted: &'static [Role],
}

impl IdentityInterceptor {
    /// For a service only `required` may use.
    pub fn new(policy: Arc<IdentityPolicy>, required: Role) -> Self {
        Self { policy, accepted: required.alone() }
    }

    /// For a service every role of a tenant may use.
    pub fn any_role(policy: Arc<IdentityPolicy>) -> Self {
        Self { policy, accepted: &Role::ALL }
    }

    fn identify<T>(&self, request: &Request<T>) -> Result<Identity, Status> {
        let header = |name: &str| -> Result<Option<&str>, Status> {
            request
                .metadata()
                .get(name)
                .map(|v| v.to_str().map_err(|_| Status::unauthenticated(format!("{name}: not ASCII"))))
                .transpose()
        };
        let tenant = match header(TENANT_HEADER)? {
            Some(name) => self
                .policy
                .tenants
                .iter()
                .find(|t| t.as_ref() == name)
                .cloned()
                .ok_or_else(|| Status::not_found(format!("tenant {name:?} not found")))?,
            None => self
                .policy
                .default_tenant
                .clone()
                .ok_or_else(|| Status::unauthenticated(format!("{TENANT_HEADER} is required")))?,
        };
        let role = match header(ROLE_HEADER)? {
            Some(name) => Role::parse(name)
                .ok_or_else(|| Status::unauthenticated(format!("{ROLE_HEADER}: unknown role {name:?}")))?,
            None if self.policy.require_role => {
                return Err(Status::unauthenticated(format!("{ROLE_HEADER} is required")));
            }
            None => self.accepted[0],
        };
        if !self.accepted.contains(&role) {
            let needs: Vec<&str> = self.accepted.iter().map(|r| r.as_str()).collect();
            return Err(Status::permission_denied(format!(
                "role {} may not use this service (needs {})",
                role.as_str(),
                needs.join(" or ")
            )));
        }
        Ok(Identity { tenant, role })
    }
}

impl Interceptor for IdentityInterceptor {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let identity = self.identify(&request)?;
        request.extensions_mut().insert(identity);
        Ok(request)
    }
}

/// The role members use between themselves (the `Peer` service). A member
/// acts for every tenant. Today it is a header like the others; with mTLS
/// it is granted to member certificates only.
pub const NODE_ROLE: &str = "node";

/// Admits member-to-member requests only.
#[derive(Clone, Copy, Debug, Default)]
pub struct NodeInterceptor;

impl Interceptor for NodeInterceptor {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        match request.metadata().get(ROLE_HEADER).and_then(|v| v.to_str().ok()) {
            Some(NODE_ROLE) => Ok(request),
            _ => Err(Status::permission_denied(format!(
                "only members may use this service ({ROLE_HEADER}: {NODE_ROLE})"
            ))),
        }
    }
}

/// Marks a request as a member's, in the trace of the current span.
pub fn as_node<T>(mut request: Request<T>) -> Request<T> {
    request.metadata_mut().insert(ROLE_HEADER, tonic::metadata::MetadataValue::from_static(NODE_ROLE));
    crate::telemetry::inject_metadata(request.metadata_mut());
    request
}

/// The identity the interceptor attached to `request`.
pub fn identity_of<T>(request: &Request<T>) -> Result<Identity, Status> {
    request.extensions().get::<Identity>().cloned().ok_or_else(|| Status::unauthenticated("no identity"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interceptor(require_role: bool, default_tenant: Option<&str>) -> IdentityInterceptor {
        let policy = IdentityPolicy {
            tenants: vec![Arc::from("cai"), Arc::from("sos")].into(),
            default_tenant: default_tenant.map(Arc::from),
            require_role,
        };
        IdentityInterceptor::new(Arc::new(policy), Role::Gateway)
    }

    fn request(tenant: Option<&str>, role: Option<&str>) -> Request<()> {
        let mut request = Request::new(());
        if let Some(t) = tenant {
            request.metadata_mut().insert(TENANT_HEADER, t.parse().expect("ascii"));
        }
        if let Some(r) = role {
            request.metadata_mut().insert(ROLE_HEADER, r.parse().expect("ascii"));
        }
        request
    }

    #[test]
    fn headers_decide_tenant_and_role() {
        let mut i = interceptor(true, None);
        let out = i.call(request(Some("sos"), Some("gateway"))).expect("accepted");
        assert_eq!(identity_of(&out).expect("identity"), Identity { tenant: "sos".into(), role: Role::Gateway });
    }

    #[test]
    fn wrong_role_unknown_tenant_and_missing_headers_are_refused() {
        let mut strict = interceptor(true, None);
        assert_eq!(strict.call(request(Some("cai"), Some("admin"))).unwrap_err().code(), tonic::Code::PermissionDenied);
        assert_eq!(strict.call(request(Some("nope"), Some("gateway"))).unwrap_err().code(), tonic::Code::NotFound);
        assert_eq!(strict.call(request(None, Some("gateway"))).unwrap_err().code(), tonic::Code::Unauthenticated);
        assert_eq!(strict.call(request(Some("cai"), None)).unwrap_err().code(), tonic::Code::Unauthenticated);
    }

    #[test]
    fn any_role_of_a_known_tenant_may_use_an_open_service() {
        let policy =
            IdentityPolicy { tenants: vec![Arc::from("cai")].into(), default_tenant: None, require_role: true };
        let mut open = IdentityInterceptor::any_role(Arc::new(policy));
        for role in Role::ALL {
            let out = open.call(request(Some("cai"), Some(role.as_str()))).expect("accepted");
            assert_eq!(identity_of(&out).expect("identity").role, role);
        }
        assert_eq!(open.call(request(Some("nope"), Some("admin"))).unwrap_err().code(), tonic::Code::NotFound);
        assert_eq!(open.call(request(Some("cai"), None)).unwrap_err().code(), tonic::Code::Unauthenticated);
    }

    #[test]
    fn embedded_default_fills_in_missing_headers() {
        let mut open = interceptor(false, Some("cai"));
        let out = open.call(request(None, None)).expect("accepted");
        assert_eq!(identity_of(&out).expect("identity").tenant.as_ref(), "cai");
    }
}
