//! [`AnyObject`]: one typed object of any of the four kinds in either version, for the code
//! paths (CLI, REST API, conversion webhook) that handle whatever a user sends.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::Value;

use crate::kinds::{Kind, Version};
use crate::{v1alpha1, v1beta1};

/// A typed object of one of the eight (kind, version) pairs.
#[derive(Clone, Debug, PartialEq)]
#[allow(missing_docs)]
pub enum AnyObject {
    SandboxV1alpha1(v1alpha1::Sandbox),
    SandboxV1beta1(v1beta1::Sandbox),
    SandboxTemplateV1alpha1(v1alpha1::SandboxTemplate),
    SandboxTemplateV1beta1(v1beta1::SandboxTemplate),
    SandboxClaimV1alpha1(v1alpha1::SandboxClaim),
    SandboxClaimV1beta1(v1beta1::SandboxClaim),
    SandboxWarmPoolV1alpha1(v1alpha1::SandboxWarmPool),
    SandboxWarmPoolV1beta1(v1beta1::SandboxWarmPool),
}

macro_rules! each {
    ($self:expr, $o:ident => $body:expr) => {
        match $self {
            AnyObject::SandboxV1alpha1($o) => $body,
            AnyObject::SandboxV1beta1($o) => $body,
            AnyObject::SandboxTemplateV1alpha1($o) => $body,
            AnyObject::SandboxTemplateV1beta1($o) => $body,
            AnyObject::SandboxClaimV1alpha1($o) => $body,
            AnyObject::SandboxClaimV1beta1($o) => $body,
            AnyObject::SandboxWarmPoolV1alpha1($o) => $body,
            AnyObject::SandboxWarmPoolV1beta1($o) => $body,
        }
    };
}

impl AnyObject {
    /// Deserialises `value` as the given kind and version.
    ///
    /// # Errors
    /// The value does not have the type's shape (validate it first for good messages).
    pub fn from_value(
        kind: Kind,
        version: Version,
        value: Value,
    ) -> Result<Self, serde_json::Error> {
        Ok(match (kind, version) {
            (Kind::Sandbox, Version::V1alpha1) => {
                Self::SandboxV1alpha1(serde_json::from_value(value)?)
            }
            (Kind::Sandbox, Version::V1beta1) => {
                Self::SandboxV1beta1(serde_json::from_value(value)?)
            }
            (Kind::SandboxTemplate, Version::V1alpha1) => {
                Self::SandboxTemplateV1alpha1(serde_json::from_value(value)?)
            }
            (Kind::SandboxTemplate, Version::V1beta1) => {
                Self::SandboxTemplateV1beta1(serde_json::from_value(value)?)
            }
            (Kind::SandboxClaim, Version::V1alpha1) => {
                Self::SandboxClaimV1alpha1(serde_json::from_value(value)?)
            }
            (Kind::SandboxClaim, Version::V1beta1) => {
                Self::SandboxClaimV1beta1(serde_json::from_value(value)?)
            }
            (Kind::SandboxWarmPool, Version::V1alpha1) => {
                Self::SandboxWarmPoolV1alpha1(serde_json::from_value(value)?)
            }
            (Kind::SandboxWarmPool, Version::V1beta1) => {
                Self::SandboxWarmPoolV1beta1(serde_json::from_value(value)?)
            }
        })
    }

    /// The object's kind.
    pub fn kind(&self) -> Kind {
        match self {
            Self::SandboxV1alpha1(_) | Self::SandboxV1beta1(_) => Kind::Sandbox,
            Self::SandboxTemplateV1alpha1(_) | Self::SandboxTemplateV1beta1(_) => {
                Kind::SandboxTemplate
            }
            Self::SandboxClaimV1alpha1(_) | Self::SandboxClaimV1beta1(_) => Kind::SandboxClaim,
            Self::SandboxWarmPoolV1alpha1(_) | Self::SandboxWarmPoolV1beta1(_) => {
                Kind::SandboxWarmPool
            }
        }
    }

    /// The object's version.
    pub fn version(&self) -> Version {
        match self {
            Self::SandboxV1alpha1(_)
            | Self::SandboxTemplateV1alpha1(_)
            | Self::SandboxClaimV1alpha1(_)
            | Self::SandboxWarmPoolV1alpha1(_) => Version::V1alpha1,
            _ => Version::V1beta1,
        }
    }

    /// The object's metadata.
    pub fn metadata(&self) -> &ObjectMeta {
        each!(self, o => &o.metadata)
    }

    /// The object's metadata, mutably.
    pub fn metadata_mut(&mut self) -> &mut ObjectMeta {
        each!(self, o => &mut o.metadata)
    }

    /// The object as JSON, with `apiVersion` and `kind`.
    pub fn to_value(&self) -> Value {
        // Serialising these types cannot fail: they hold only strings, numbers and maps with
        // string keys.
        each!(self, o => serde_json::to_value(o).unwrap_or(Value::Null))
    }

    /// The object converted to `to` (itself when it already is in that version).
    pub fn convert(self, to: Version) -> Self {
        use crate::convert as c;
        match (self, to) {
            (Self::SandboxV1alpha1(o), Version::V1beta1) => {
                Self::SandboxV1beta1(c::sandbox_to_v1beta1(o))
            }
            (Self::SandboxV1beta1(o), Version::V1alpha1) => {
                Self::SandboxV1alpha1(c::sandbox_to_v1alpha1(o))
            }
            (Self::SandboxTemplateV1alpha1(o), Version::V1beta1) => {
                Self::SandboxTemplateV1beta1(c::template_to_v1beta1(o))
            }
            (Self::SandboxTemplateV1beta1(o), Version::V1alpha1) => {
                Self::SandboxTemplateV1alpha1(c::template_to_v1alpha1(o))
            }
            (Self::SandboxClaimV1alpha1(o), Version::V1beta1) => {
                Self::SandboxClaimV1beta1(c::claim_to_v1beta1(o))
            }
            (Self::SandboxClaimV1beta1(o), Version::V1alpha1) => {
                Self::SandboxClaimV1alpha1(c::claim_to_v1alpha1(o))
            }
            (Self::SandboxWarmPoolV1alpha1(o), Version::V1beta1) => {
                Self::SandboxWarmPoolV1beta1(c::warm_pool_to_v1beta1(o))
            }
            (Self::SandboxWarmPoolV1beta1(o), Version::V1alpha1) => {
                Self::SandboxWarmPoolV1alpha1(c::warm_pool_to_v1alpha1(o))
            }
            (same, _) => same,
        }
    }
}
