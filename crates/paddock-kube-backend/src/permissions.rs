//! A Sandbox's permissions on a cluster: its own, its template's and its claim's policies,
//! read from the API server and kept for a second (the gateway asks on every exec and file
//! call).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::Client;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use paddock_api::policy::{POLICY_GROUP, POLICY_KIND, POLICY_PLURAL, POLICY_VERSION};
use paddock_api::v1beta1::{Sandbox, SandboxClaim, SandboxTemplate};
use paddock_backend::{ApiError, Code};
use paddock_policy::PermissionRules;
use serde_json::Value;

/// How long an answer is reused.
const TTL: Duration = Duration::from_secs(1);

/// One answer and when it was made, by namespace and Sandbox name.
type Answers = HashMap<(String, String), (Instant, PermissionRules)>;

/// Recent answers, by namespace and Sandbox name.
#[derive(Default, Debug, Clone)]
pub struct PermissionsCache(Arc<Mutex<Answers>>);

fn api_error(e: kube::Error) -> ApiError {
    ApiError::new(Code::Unavailable, format!("reading policies: {e}"))
}

async fn get_value<K>(client: &Client, ns: &str, name: &str) -> Result<Option<Value>, ApiError>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + serde::Serialize,
    K::DynamicType: Default,
{
    let found = kube::Api::<K>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .map_err(api_error)?;
    Ok(found.and_then(|o| serde_json::to_value(o).ok()))
}

impl PermissionsCache {
    /// The permissions of `namespace/sandbox`.
    ///
    /// # Errors
    /// The API server failed, or a governing policy is missing or invalid.
    pub async fn get(
        &self,
        client: &Client,
        namespace: &str,
        sandbox: &str,
        cached: Option<Value>,
    ) -> Result<PermissionRules, ApiError> {
        let key = (namespace.to_owned(), sandbox.to_owned());
        if let Some((at, rules)) = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&key)
            && at.elapsed() < TTL
        {
            return Ok(rules.clone());
        }
        let sb = match cached {
            Some(sb) => sb,
            None => match get_value::<Sandbox>(client, namespace, sandbox).await? {
                Some(sb) => sb,
                None => {
                    return Err(ApiError::new(
                        Code::NotFound,
                        format!("sandbox {namespace}/{sandbox} not found"),
                    ));
                }
            },
        };
        // Most sandboxes name no policy, have no template and no claim: no call at all.
        let around = paddock_policy::governs::named_policy(&sb).is_some()
            || paddock_policy::governs::template_of(&sb).is_some()
            || paddock_policy::governs::claim_of(&sb).is_some();
        if !around {
            return Ok(self.keep(key, PermissionRules::unrestricted()));
        }
        let template = match paddock_policy::governs::template_of(&sb) {
            Some(t) => get_value::<SandboxTemplate>(client, namespace, t).await?,
            None => None,
        };
        let claim = match paddock_policy::governs::claim_of(&sb) {
            Some(c) => get_value::<SandboxClaim>(client, namespace, c).await?,
            None => None,
        };
        let resource = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(POLICY_GROUP, POLICY_VERSION, POLICY_KIND),
            POLICY_PLURAL,
        );
        let policies: kube::Api<DynamicObject> =
            kube::Api::namespaced_with(client.clone(), namespace, &resource);
        let mut found = Vec::new();
        for r in paddock_policy::governing_policies(&sb, template.as_ref(), claim.as_ref()) {
            let p = policies.get_opt(&r.name).await.map_err(api_error)?;
            found.push((r, p.and_then(|p| serde_json::to_value(p).ok())));
        }
        let rules = paddock_policy::governing_permissions(namespace, &found)
            .map_err(|e| ApiError::new(Code::FailedPrecondition, e.to_string()))?;
        Ok(self.keep(key, rules))
    }

    fn keep(&self, key: (String, String), rules: PermissionRules) -> PermissionRules {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(key, (Instant::now(), rules.clone()));
        rules
    }
}
