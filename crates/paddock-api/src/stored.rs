//! [`Object`]: one object of the four kinds in the storage version (v1beta1), the shape every
//! store, backend and cache holds. An object is decoded into this type once, where it enters
//! (a request body, a store read, an API-server response), and encoded once where it leaves.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::Value;

use crate::any::AnyObject;
use crate::kinds::{Kind, Version};
use crate::v1beta1::{Sandbox, SandboxClaim, SandboxTemplate, SandboxWarmPool};

/// A stored object of one of the four kinds.
#[derive(Clone, Debug, PartialEq)]
#[allow(missing_docs)]
pub enum Object {
    Sandbox(Sandbox),
    SandboxTemplate(SandboxTemplate),
    SandboxClaim(SandboxClaim),
    SandboxWarmPool(SandboxWarmPool),
}

macro_rules! each {
    ($self:expr, $o:ident => $body:expr) => {
        match $self {
            Object::Sandbox($o) => $body,
            Object::SandboxTemplate($o) => $body,
            Object::SandboxClaim($o) => $body,
            Object::SandboxWarmPool($o) => $body,
        }
    };
}

impl Object {
    /// Decodes `value` as a stored object of `kind`.
    ///
    /// # Errors
    /// The value does not have the kind's shape.
    pub fn from_value(kind: Kind, value: Value) -> Result<Self, serde_json::Error> {
        Ok(match kind {
            Kind::Sandbox => Self::Sandbox(serde_json::from_value(value)?),
            Kind::SandboxTemplate => Self::SandboxTemplate(serde_json::from_value(value)?),
            Kind::SandboxClaim => Self::SandboxClaim(serde_json::from_value(value)?),
            Kind::SandboxWarmPool => Self::SandboxWarmPool(serde_json::from_value(value)?),
        })
    }

    /// The object as JSON, with `apiVersion` and `kind`.
    pub fn to_value(&self) -> Value {
        // These types hold only strings, numbers and string-keyed maps: serialising cannot fail.
        each!(self, o => serde_json::to_value(o).unwrap_or(Value::Null))
    }

    /// The kind.
    pub fn kind(&self) -> Kind {
        match self {
            Self::Sandbox(_) => Kind::Sandbox,
            Self::SandboxTemplate(_) => Kind::SandboxTemplate,
            Self::SandboxClaim(_) => Kind::SandboxClaim,
            Self::SandboxWarmPool(_) => Kind::SandboxWarmPool,
        }
    }

    /// The metadata.
    pub fn metadata(&self) -> &ObjectMeta {
        each!(self, o => &o.metadata)
    }

    /// The metadata, mutably.
    pub fn metadata_mut(&mut self) -> &mut ObjectMeta {
        each!(self, o => &mut o.metadata)
    }

    /// `metadata.namespace`, or "".
    pub fn namespace(&self) -> &str {
        self.metadata().namespace.as_deref().unwrap_or_default()
    }

    /// `metadata.name`, or "".
    pub fn name(&self) -> &str {
        self.metadata().name.as_deref().unwrap_or_default()
    }

    /// `metadata.resourceVersion`, or "".
    pub fn resource_version(&self) -> &str {
        self.metadata()
            .resource_version
            .as_deref()
            .unwrap_or_default()
    }

    /// The object in `version` (itself when that is the storage version).
    pub fn to_version(&self, version: Version) -> AnyObject {
        AnyObject::from(self.clone()).convert(version)
    }

    /// The typed object, when it is of kind `K`.
    pub fn into_typed<K: StoredKind>(self) -> Option<K> {
        K::from_object(self)
    }
}

impl From<Object> for AnyObject {
    fn from(o: Object) -> Self {
        match o {
            Object::Sandbox(o) => Self::SandboxV1beta1(o),
            Object::SandboxTemplate(o) => Self::SandboxTemplateV1beta1(o),
            Object::SandboxClaim(o) => Self::SandboxClaimV1beta1(o),
            Object::SandboxWarmPool(o) => Self::SandboxWarmPoolV1beta1(o),
        }
    }
}

impl From<AnyObject> for Object {
    /// Converts to the storage version (losslessly; see [`crate::convert`]).
    fn from(o: AnyObject) -> Self {
        use crate::convert as c;
        match o {
            AnyObject::SandboxV1alpha1(o) => Self::Sandbox(c::sandbox_to_v1beta1(o)),
            AnyObject::SandboxV1beta1(o) => Self::Sandbox(o),
            AnyObject::SandboxTemplateV1alpha1(o) => {
                Self::SandboxTemplate(c::template_to_v1beta1(o))
            }
            AnyObject::SandboxTemplateV1beta1(o) => Self::SandboxTemplate(o),
            AnyObject::SandboxClaimV1alpha1(o) => Self::SandboxClaim(c::claim_to_v1beta1(o)),
            AnyObject::SandboxClaimV1beta1(o) => Self::SandboxClaim(o),
            AnyObject::SandboxWarmPoolV1alpha1(o) => {
                Self::SandboxWarmPool(c::warm_pool_to_v1beta1(o))
            }
            AnyObject::SandboxWarmPoolV1beta1(o) => Self::SandboxWarmPool(o),
        }
    }
}

/// One of the four stored types, for typed access to an [`Object`].
pub trait StoredKind:
    Clone + std::fmt::Debug + serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static
{
    /// The kind.
    const KIND: Kind;

    /// Wraps the typed object.
    fn into_object(self) -> Object;

    /// Unwraps an object of this kind.
    fn from_object(object: Object) -> Option<Self>;

    /// Borrows an object of this kind.
    fn from_object_ref(object: &Object) -> Option<&Self>;

    /// The metadata.
    fn meta(&self) -> &ObjectMeta;
}

macro_rules! stored_kind {
    ($ty:ident) => {
        impl StoredKind for $ty {
            const KIND: Kind = Kind::$ty;

            fn into_object(self) -> Object {
                Object::$ty(self)
            }

            fn from_object(object: Object) -> Option<Self> {
                match object {
                    Object::$ty(o) => Some(o),
                    _ => None,
                }
            }

            fn from_object_ref(object: &Object) -> Option<&Self> {
                match object {
                    Object::$ty(o) => Some(o),
                    _ => None,
                }
            }

            fn meta(&self) -> &ObjectMeta {
                &self.metadata
            }
        }

        impl From<$ty> for Object {
            fn from(o: $ty) -> Self {
                Object::$ty(o)
            }
        }
    };
}

stored_kind!(Sandbox);
stored_kind!(SandboxTemplate);
stored_kind!(SandboxClaim);
stored_kind!(SandboxWarmPool);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn objects_round_trip_through_json_and_the_other_version() {
        let value = json!({
            "apiVersion": "extensions.agents.x-k8s.io/v1beta1", "kind": "SandboxClaim",
            "metadata": {"name": "c", "namespace": "ns", "resourceVersion": "7"},
            "spec": {"warmPoolRef": {"name": "p"}}
        });
        let object = Object::from_value(Kind::SandboxClaim, value.clone()).expect("decodes");
        assert_eq!(object.kind(), Kind::SandboxClaim);
        assert_eq!(
            (object.namespace(), object.name(), object.resource_version()),
            ("ns", "c", "7")
        );
        assert_eq!(object.to_value(), value);
        let alpha = object.to_version(Version::V1alpha1);
        assert_eq!(alpha.version(), Version::V1alpha1);
        assert_eq!(Object::from(alpha), object);
        assert!(object.clone().into_typed::<SandboxClaim>().is_some());
        assert!(object.into_typed::<Sandbox>().is_none());
    }
}
