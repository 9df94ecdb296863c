//! Server-side apply of an owner's children, with ownership and pruning.
//!
//! Every child gets a controller owner reference to its owner (so garbage
//! collection removes it with the owner), the owner-UID label used to find it
//! again, and is applied with the controller's own field manager. Pruning
//! deletes only objects that carry that label *and* an owner reference with
//! the owner's UID: objects the operator did not create are never touched.

use std::collections::BTreeSet;
use std::fmt::Debug;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::{ClusterResourceScope, NamespaceResourceScope};
use kube::api::{Api, DeleteParams, ListParams, PartialObjectMeta, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Label carrying the UID of the object that owns a child.
pub const OWNER_UID_LABEL: &str = "operator-core/owner-uid";

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("owner {0} has no name or uid (not read from the API server?)")]
    OwnerWithoutIdentity(String),
    #[error("applying {kind} {name}: {source}")]
    Apply {
        kind: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("pruning {kind}: {source}")]
    Prune {
        kind: String,
        #[source]
        source: kube::Error,
    },
}

impl ApplyError {
    /// A stable, low-cardinality reason for metrics and conditions.
    pub fn reason(&self) -> &'static str {
        match self {
            ApplyError::OwnerWithoutIdentity(_) => "OwnerWithoutIdentity",
            ApplyError::Apply { source, .. } | ApplyError::Prune { source, .. } => {
                crate::controller::kube_error_reason(source)
            }
        }
    }
}

/// Applies the children of one owner.
#[derive(Clone)]
pub struct Applier {
    client: Client,
    field_manager: String,
    owner_ref: OwnerReference,
    owner_uid: String,
    owner_namespace: Option<String>,
}

impl Applier {
    /// `field_manager` should be `<operator>/<controller>`.
    pub fn new<K>(
        client: Client,
        field_manager: impl Into<String>,
        owner: &K,
    ) -> Result<Self, ApplyError>
    where
        K: Resource<DynamicType = ()>,
    {
        let owner_ref = owner
            .controller_owner_ref(&())
            .ok_or_else(|| ApplyError::OwnerWithoutIdentity(owner.name_any()))?;
        Ok(Self {
            client,
            field_manager: field_manager.into(),
            owner_uid: owner_ref.uid.clone(),
            owner_ref: OwnerReference {
                block_owner_deletion: Some(true),
                ..owner_ref
            },
            owner_namespace: owner.meta().namespace.clone(),
        })
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn field_manager(&self) -> &str {
        &self.field_manager
    }

    pub fn owner_uid(&self) -> &str {
        &self.owner_uid
    }

    /// Adds the owner reference and owner label to `obj` (pure).
    pub fn adopt<K: Resource>(&self, obj: &mut K) {
        let meta = obj.meta_mut();
        let refs = meta.owner_references.get_or_insert_with(Vec::new);
        refs.retain(|r| r.uid != self.owner_uid);
        refs.push(self.owner_ref.clone());
        meta.labels
            .get_or_insert_with(Default::default)
            .insert(OWNER_UID_LABEL.to_string(), self.owner_uid.clone());
    }

    fn params(&self) -> PatchParams {
        PatchParams::apply(&self.field_manager).force()
    }

    /// Applies a namespaced child; its namespace defaults to the owner's.
    pub async fn apply<K>(&self, mut obj: K) -> Result<K, ApplyError>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
            + Serialize
            + DeserializeOwned
            + Clone
            + Debug,
    {
        self.adopt(&mut obj);
        let ns = obj
            .meta()
            .namespace
            .clone()
            .or_else(|| self.owner_namespace.clone())
            .unwrap_or_else(|| "default".to_string());
        obj.meta_mut().namespace = Some(ns.clone());
        let api: Api<K> = Api::namespaced(self.client.clone(), &ns);
        self.patch(&api, obj).await
    }

    /// Applies a cluster-scoped child (for example a Namespace).
    pub async fn apply_cluster<K>(&self, mut obj: K) -> Result<K, ApplyError>
    where
        K: Resource<DynamicType = (), Scope = ClusterResourceScope>
            + Serialize
            + DeserializeOwned
            + Clone
            + Debug,
    {
        self.adopt(&mut obj);
        let api: Api<K> = Api::all(self.client.clone());
        self.patch(&api, obj).await
    }

    async fn patch<K>(&self, api: &Api<K>, obj: K) -> Result<K, ApplyError>
    where
        K: Resource<DynamicType = ()> + Serialize + DeserializeOwned + Clone + Debug,
    {
        let name = obj.name_any();
        api.patch(&name, &self.params(), &Patch::Apply(&obj))
            .await
            .map_err(|source| ApplyError::Apply {
                kind: K::kind(&()).to_string(),
                name,
                source,
            })
    }

    /// Deletes the owner's children of kind `K` in `namespace` whose names are
    /// not in `keep`. Returns the names deleted.
    pub async fn prune<K>(
        &self,
        namespace: &str,
        keep: &BTreeSet<String>,
    ) -> Result<Vec<String>, ApplyError>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
            + DeserializeOwned
            + Clone
            + Debug,
    {
        let api: Api<K> = Api::namespaced(self.client.clone(), namespace);
        self.prune_with(&api, keep).await
    }

    /// Like [`prune`](Self::prune) for cluster-scoped kinds.
    pub async fn prune_cluster<K>(&self, keep: &BTreeSet<String>) -> Result<Vec<String>, ApplyError>
    where
        K: Resource<DynamicType = (), Scope = ClusterResourceScope>
            + DeserializeOwned
            + Clone
            + Debug,
    {
        let api: Api<K> = Api::all(self.client.clone());
        self.prune_with(&api, keep).await
    }

    async fn prune_with<K>(
        &self,
        api: &Api<K>,
        keep: &BTreeSet<String>,
    ) -> Result<Vec<String>, ApplyError>
    where
        K: Resource<DynamicType = ()> + DeserializeOwned + Clone + Debug,
    {
        let kind = K::kind(&()).to_string();
        let selector = format!("{OWNER_UID_LABEL}={}", self.owner_uid);
        let listed = api
            .list_metadata(&ListParams::default().labels(&selector))
            .await
            .map_err(|source| ApplyError::Prune {
                kind: kind.clone(),
                source,
            })?;
        let mut deleted = Vec::new();
        for meta in listed.items {
            if !self.owns(&meta)
                || keep.contains(&meta.name_any())
                || meta.metadata.deletion_timestamp.is_some()
            {
                continue;
            }
            let name = meta.name_any();
            match api.delete(&name, &DeleteParams::background()).await {
                Ok(_) => deleted.push(name),
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(source) => return Err(ApplyError::Prune { kind, source }),
            }
        }
        Ok(deleted)
    }

    fn owns<K>(&self, meta: &PartialObjectMeta<K>) -> bool {
        meta.metadata
            .owner_references
            .as_deref()
            .unwrap_or_default()
            .iter()
            .any(|r| r.uid == self.owner_uid)
    }
}
