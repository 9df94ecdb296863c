//! A DevServerUser's objects: namespace `dev-<username>`, a ServiceAccount,
//! the Role and RoleBinding `devctl` needs, read access to flavors (a
//! ClusterRole and ClusterRoleBinding), extra RoleBindings, and the optional
//! ResourceQuota and LimitRange.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{LimitRange, Namespace, ResourceQuota, ServiceAccount};
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::{APP_USER, USER_LABEL, child_name, labels};
use crate::crd::{DevServerUserSpec, GROUP, RoleKind};
use crate::validate::user_namespace;

/// Name of the user's ServiceAccount (and of its Role and RoleBinding).
pub const USER_SA: &str = "devserver-user";
/// Name of the ResourceQuota in the user's namespace.
pub const QUOTA_NAME: &str = "devserver-quota";
/// Name of the LimitRange in the user's namespace.
pub const LIMIT_RANGE_NAME: &str = "devserver-limits";
/// The RBAC API group.
pub const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// Everything created for one user.
#[derive(Clone, Debug, PartialEq)]
pub struct UserObjects {
    pub namespace: Namespace,
    pub service_account: ServiceAccount,
    pub role: Role,
    /// The built-in binding first, then one per `additionalRoleRefs` entry.
    pub role_bindings: Vec<RoleBinding>,
    pub cluster_role: ClusterRole,
    pub cluster_role_binding: ClusterRoleBinding,
    pub resource_quota: Option<ResourceQuota>,
    pub limit_range: Option<LimitRange>,
}

/// Name of the per-user ClusterRole and ClusterRoleBinding (flavor reads).
pub fn cluster_role_name(username: &str) -> String {
    format!("devserver-user:{username}")
}

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> PolicyRule {
    let v = |xs: &[&str]| Some(xs.iter().map(|s| s.to_string()).collect());
    PolicyRule {
        api_groups: v(groups),
        resources: v(resources),
        verbs: verbs.iter().map(|s| s.to_string()).collect(),
        ..PolicyRule::default()
    }
}

/// What `devctl` does in the user's namespace: manage DevServers (patch
/// for extend and stop), see their pods, logs and events, and open SSH
/// tunnels through `pods/portforward`.
pub fn user_role_rules() -> Vec<PolicyRule> {
    vec![
        rule(
            &[GROUP],
            &["devservers"],
            &[
                "get", "list", "watch", "create", "update", "patch", "delete",
            ],
        ),
        rule(&[GROUP], &["devservers/status"], &["get"]),
        rule(&[""], &["pods", "pods/log"], &["get", "list", "watch"]),
        rule(&[""], &["pods/portforward"], &["get", "create"]),
        rule(&[""], &["services"], &["get", "list", "watch"]),
        rule(
            &[""],
            &["persistentvolumeclaims"],
            &["get", "list", "watch", "create", "delete"],
        ),
        rule(
            &["", "events.k8s.io"],
            &["events"],
            &["get", "list", "watch"],
        ),
    ]
}

/// Read access to the cluster-scoped flavors (`devctl flavors`).
pub fn flavor_reader_rules() -> Vec<PolicyRule> {
    vec![rule(
        &[GROUP],
        &["devserverflavors"],
        &["get", "list", "watch"],
    )]
}

/// The objects of user `name` (the DevServerUser's `metadata.name`).
pub fn user_objects(name: &str, spec: &DevServerUserSpec) -> UserObjects {
    let ns = user_namespace(&spec.username);
    let meta = |obj_name: &str, component: &str, namespace: Option<&str>| ObjectMeta {
        name: Some(obj_name.to_string()),
        namespace: namespace.map(str::to_string),
        labels: Some(
            labels(APP_USER, name, component)
                .with(USER_LABEL, name)
                .build(),
        ),
        ..ObjectMeta::default()
    };
    let mut ns_labels = labels(APP_USER, name, "namespace")
        .with(USER_LABEL, name)
        .build();
    // Baseline is enforced (DevServer pods meet `restricted`; users' own
    // workloads get warnings only).
    ns_labels.extend(
        [
            ("pod-security.kubernetes.io/enforce", "baseline"),
            ("pod-security.kubernetes.io/warn", "restricted"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    let namespace = Namespace {
        metadata: ObjectMeta {
            name: Some(ns.clone()),
            labels: Some(ns_labels),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    let sa_subject = Subject {
        kind: "ServiceAccount".into(),
        name: USER_SA.into(),
        namespace: Some(ns.clone()),
        api_group: None,
    };
    let mut role_bindings = vec![RoleBinding {
        metadata: meta(USER_SA, "rbac", Some(&ns)),
        role_ref: RoleRef {
            api_group: Some(RBAC_GROUP.into()),
            kind: "Role".into(),
            name: USER_SA.into(),
        },
        subjects: Some(vec![sa_subject.clone()]),
    }];
    let mut extra: BTreeMap<String, RoleBinding> = BTreeMap::new();
    for r in spec
        .rbac
        .as_ref()
        .and_then(|r| r.additional_role_refs.as_deref())
        .unwrap_or_default()
    {
        let kind = match r.kind {
            RoleKind::Role => "Role",
            RoleKind::ClusterRole => "ClusterRole",
        };
        let rb_name = child_name(
            &format!(
                "{USER_SA}-{}-{}",
                kind.to_lowercase(),
                r.name.replace(':', "-")
            ),
            "",
            253,
        );
        extra.insert(
            rb_name.clone(),
            RoleBinding {
                metadata: meta(&rb_name, "rbac", Some(&ns)),
                role_ref: RoleRef {
                    api_group: Some(RBAC_GROUP.into()),
                    kind: kind.into(),
                    name: r.name.clone(),
                },
                subjects: Some(vec![sa_subject.clone()]),
            },
        );
    }
    role_bindings.extend(extra.into_values());
    let crb_name = cluster_role_name(&spec.username);
    let quotas = spec.quotas.as_ref();
    UserObjects {
        service_account: ServiceAccount {
            metadata: meta(USER_SA, "serviceaccount", Some(&ns)),
            ..ServiceAccount::default()
        },
        role: Role {
            metadata: meta(USER_SA, "rbac", Some(&ns)),
            rules: Some(user_role_rules()),
        },
        role_bindings,
        cluster_role: ClusterRole {
            metadata: meta(&crb_name, "rbac", None),
            rules: Some(flavor_reader_rules()),
            aggregation_rule: None,
        },
        cluster_role_binding: ClusterRoleBinding {
            metadata: meta(&crb_name, "rbac", None),
            role_ref: RoleRef {
                api_group: Some(RBAC_GROUP.into()),
                kind: "ClusterRole".into(),
                name: crb_name.clone(),
            },
            subjects: Some(vec![sa_subject]),
        },
        resource_quota: quotas
            .and_then(|q| q.resource_quota_spec.clone())
            .map(|spec| ResourceQuota {
                metadata: meta(QUOTA_NAME, "quota", Some(&ns)),
                spec: Some(spec),
                status: None,
            }),
        limit_range: quotas
            .and_then(|q| q.limit_range_spec.clone())
            .map(|spec| LimitRange {
                metadata: meta(LIMIT_RANGE_NAME, "quota", Some(&ns)),
                spec: Some(spec),
            }),
        namespace,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{DevServerUser, NamespaceDeletionPolicy, RoleRef as SpecRoleRef, UserRbac};
    use serde_json::json;

    fn sample() -> DevServerUser {
        serde_yaml::from_str(include_str!(
            "../../../../deploy/devserver-operator/samples/devserveruser.yaml"
        ))
        .unwrap()
    }

    #[test]
    fn the_sample_user_gets_namespace_rbac_and_quotas() {
        let user = sample();
        let o = user_objects("alice", &user.spec);
        assert_eq!(o.namespace.metadata.name.as_deref(), Some("dev-alice"));
        let ns_labels = o.namespace.metadata.labels.as_ref().unwrap();
        assert_eq!(ns_labels[USER_LABEL], "alice");
        assert_eq!(
            ns_labels["app.kubernetes.io/managed-by"],
            "devserver-operator"
        );
        assert_eq!(
            o.service_account.metadata.namespace.as_deref(),
            Some("dev-alice")
        );

        let rules = serde_json::to_value(&o.role.rules).unwrap();
        let has = |group: &str, resource: &str, verb: &str| {
            rules.as_array().unwrap().iter().any(|r| {
                r["apiGroups"].as_array().unwrap().contains(&json!(group))
                    && r["resources"]
                        .as_array()
                        .unwrap()
                        .contains(&json!(resource))
                    && r["verbs"].as_array().unwrap().contains(&json!(verb))
            })
        };
        assert!(has("devserver.io", "devservers", "patch"));
        assert!(has("devserver.io", "devservers", "create"));
        assert!(has("", "pods", "list"));
        assert!(has("", "pods/portforward", "create"));
        assert!(!has("", "secrets", "get"), "no access to host keys");

        assert_eq!(o.role_bindings.len(), 2);
        assert_eq!(o.role_bindings[0].role_ref.name, USER_SA);
        assert_eq!(o.role_bindings[1].role_ref.kind, "ClusterRole");
        assert_eq!(o.role_bindings[1].role_ref.name, "view");
        assert_eq!(
            o.role_bindings[1].metadata.name.as_deref(),
            Some("devserver-user-clusterrole-view")
        );
        let subject = &o.role_bindings[1].subjects.as_ref().unwrap()[0];
        assert_eq!(
            (
                subject.kind.as_str(),
                subject.name.as_str(),
                subject.namespace.as_deref()
            ),
            ("ServiceAccount", USER_SA, Some("dev-alice"))
        );

        assert_eq!(
            o.cluster_role.metadata.name.as_deref(),
            Some("devserver-user:alice")
        );
        assert_eq!(o.cluster_role.metadata.namespace, None);
        assert_eq!(o.cluster_role_binding.role_ref.name, "devserver-user:alice");
        let quota = serde_json::to_value(o.resource_quota.unwrap()).unwrap();
        assert_eq!(quota["spec"]["hard"]["requests.nvidia.com/gpu"], "2");
        assert_eq!(quota["metadata"]["name"], QUOTA_NAME);
        let lr = serde_json::to_value(o.limit_range.unwrap()).unwrap();
        assert_eq!(lr["spec"]["limits"][0]["type"], "Container");
    }

    #[test]
    fn a_minimal_user_has_no_quotas_and_output_is_deterministic() {
        let spec = DevServerUserSpec {
            username: "bob".into(),
            ssh_public_keys: None,
            rbac: Some(UserRbac {
                additional_role_refs: Some(vec![
                    SpecRoleRef {
                        api_group: RBAC_GROUP.into(),
                        kind: RoleKind::Role,
                        name: "z".into(),
                    },
                    SpecRoleRef {
                        api_group: RBAC_GROUP.into(),
                        kind: RoleKind::ClusterRole,
                        name: "a".into(),
                    },
                ]),
            }),
            quotas: None,
            namespace_deletion_policy: NamespaceDeletionPolicy::Retain,
        };
        let o = user_objects("bob-user", &spec);
        assert_eq!(o.namespace.metadata.name.as_deref(), Some("dev-bob"));
        assert_eq!(
            o.namespace.metadata.labels.as_ref().unwrap()[USER_LABEL],
            "bob-user"
        );
        assert!(o.resource_quota.is_none() && o.limit_range.is_none());
        let names: Vec<_> = o
            .role_bindings
            .iter()
            .map(|rb| rb.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                USER_SA,
                "devserver-user-clusterrole-a",
                "devserver-user-role-z"
            ]
        );
        assert_eq!(o, user_objects("bob-user", &spec));
    }
}
