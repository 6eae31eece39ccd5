//! The root-object shape shared by the eight (kind, version) types: `apiVersion` and `kind`
//! are constants of the Rust type, `metadata`, `spec` and `status` are fields. Like the types
//! kube-derive generates, they implement `kube_core::Resource`, so the Kubernetes driver can use
//! them with `kube::Api` directly.

/// Defines a root object type with its serde and `kube_core::Resource` impls.
macro_rules! root_object {
    (
        $(#[$doc:meta])*
        $name:ident {
            group: $group:literal,
            version: $version:literal,
            kind: $kind:literal,
            plural: $plural:literal,
            spec: $spec:ty,
            status: $status:ty $(,)?
        }
    ) => {
        $(#[$doc])*
        #[derive(Clone, Debug, Default, PartialEq)]
        pub struct $name {
            /// Standard object metadata.
            pub metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
            /// The desired state.
            pub spec: $spec,
            /// The observed state, written by the controllers.
            pub status: Option<$status>,
        }

        impl $name {
            /// `apiVersion` of this type.
            pub const API_VERSION: &'static str = concat!($group, "/", $version);
            /// `kind` of this type.
            pub const KIND: &'static str = $kind;
            /// The resource's plural name.
            pub const PLURAL: &'static str = $plural;

            /// An object with this name and spec and empty status.
            pub fn new(name: &str, spec: $spec) -> Self {
                Self {
                    metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                        name: Some(name.to_owned()),
                        ..Default::default()
                    },
                    spec,
                    status: None,
                }
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeStruct;
                let fields = if self.status.is_some() { 5 } else { 4 };
                let mut s = serializer.serialize_struct(stringify!($name), fields)?;
                s.serialize_field("apiVersion", Self::API_VERSION)?;
                s.serialize_field("kind", Self::KIND)?;
                s.serialize_field("metadata", &self.metadata)?;
                s.serialize_field("spec", &self.spec)?;
                if let Some(status) = &self.status {
                    s.serialize_field("status", status)?;
                }
                s.end()
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                #[derive(serde::Deserialize)]
                struct Raw {
                    #[serde(default)]
                    metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
                    spec: $spec,
                    #[serde(default)]
                    status: Option<$status>,
                }
                let raw = Raw::deserialize(deserializer)?;
                Ok(Self { metadata: raw.metadata, spec: raw.spec, status: raw.status })
            }
        }

        impl kube_core::Resource for $name {
            type DynamicType = ();
            type Scope = kube_core::NamespaceResourceScope;

            fn kind(_: &()) -> std::borrow::Cow<'_, str> {
                $kind.into()
            }
            fn group(_: &()) -> std::borrow::Cow<'_, str> {
                $group.into()
            }
            fn version(_: &()) -> std::borrow::Cow<'_, str> {
                $version.into()
            }
            fn api_version(_: &()) -> std::borrow::Cow<'_, str> {
                Self::API_VERSION.into()
            }
            fn plural(_: &()) -> std::borrow::Cow<'_, str> {
                $plural.into()
            }
            fn meta(&self) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                &self.metadata
            }
            fn meta_mut(&mut self) -> &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                &mut self.metadata
            }
        }
    };
}

pub(crate) use root_object;

/// Status type of kinds that have no status (SandboxTemplate). It never serialises to anything
/// but an empty object and is never set by paddock.
#[derive(
    Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
pub struct NoStatus {}
