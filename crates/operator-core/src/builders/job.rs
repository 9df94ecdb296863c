//! Job.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{PodSpec, PodTemplateSpec};

use super::{object_meta, template_with_labels};

/// Parameters for [`job`].
#[derive(Clone, Debug, PartialEq)]
pub struct JobParams {
    /// Object name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Labels of the Job; also added to the pod template.
    pub labels: BTreeMap<String, String>,
    /// Pod template. `restartPolicy` defaults to `Never` when unset (Jobs require `Never` or
    /// `OnFailure`). A Job's template is immutable: a changed template needs a new Job.
    pub template: PodTemplateSpec,
    /// Retries before the Job is failed (Kubernetes default: 6).
    pub backoff_limit: Option<i32>,
    /// Delete the finished Job (and its pods) this many seconds after it finishes.
    pub ttl_seconds_after_finished: Option<i32>,
    /// Fail the Job after this many seconds of running.
    pub active_deadline_seconds: Option<i64>,
}

impl JobParams {
    /// A Job with Kubernetes defaults for retries, cleanup and deadline.
    pub fn new(
        name: impl Into<String>,
        namespace: impl Into<String>,
        template: PodTemplateSpec,
    ) -> Self {
        JobParams {
            name: name.into(),
            namespace: namespace.into(),
            labels: BTreeMap::new(),
            template,
            backoff_limit: None,
            ttl_seconds_after_finished: None,
            active_deadline_seconds: None,
        }
    }
}

/// The Job described by `p`. The selector is left to the API server (it generates a unique one).
pub fn job(p: &JobParams) -> Job {
    let mut template = template_with_labels(&p.template, &p.labels);
    let spec = template.spec.get_or_insert_with(PodSpec::default);
    if spec.restart_policy.is_none() {
        spec.restart_policy = Some("Never".to_owned());
    }
    Job {
        metadata: object_meta(&p.name, &p.namespace, &p.labels),
        spec: Some(JobSpec {
            template,
            backoff_limit: p.backoff_limit,
            ttl_seconds_after_finished: p.ttl_seconds_after_finished,
            active_deadline_seconds: p.active_deadline_seconds,
            ..JobSpec::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::builders::test_util::{labels, pod_template};

    #[test]
    fn builds_a_whole_job() {
        let p = JobParams {
            labels: labels(&[("app.kubernetes.io/component", "snapshot")]),
            backoff_limit: Some(2),
            ttl_seconds_after_finished: Some(3600),
            active_deadline_seconds: Some(600),
            ..JobParams::new("snap-1", "ws", pod_template())
        };
        assert_eq!(
            serde_json::to_value(job(&p)).unwrap(),
            json!({
                "apiVersion": "batch/v1",
                "kind": "Job",
                "metadata": {
                    "name": "snap-1",
                    "namespace": "ws",
                    "labels": {"app.kubernetes.io/component": "snapshot"}
                },
                "spec": {
                    "backoffLimit": 2,
                    "ttlSecondsAfterFinished": 3600,
                    "activeDeadlineSeconds": 600,
                    "template": {
                        "metadata": {"labels": {
                            "app.kubernetes.io/component": "snapshot",
                            "extra": "yes"
                        }},
                        "spec": {
                            "containers": [{"name": "main", "image": "example.com/app:1"}],
                            "restartPolicy": "Never"
                        }
                    }
                }
            })
        );
    }

    #[test]
    fn keeps_an_explicit_restart_policy() {
        let mut template = pod_template();
        template.spec.as_mut().unwrap().restart_policy = Some("OnFailure".into());
        let j = job(&JobParams::new("j", "ns", template));
        let spec = j.spec.unwrap();
        assert_eq!(
            spec.template.spec.unwrap().restart_policy.as_deref(),
            Some("OnFailure")
        );
        assert_eq!(spec.backoff_limit, None);
    }
}
