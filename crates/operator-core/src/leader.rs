//! Optional leader election on a `coordination.k8s.io/v1` Lease: a second
//! replica waits; the leader that loses the lease stops reconciling.

use std::time::Duration;

use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Where and how long the lease is held.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub name: String,
    pub namespace: String,
    /// Unique per replica (the pod name in a cluster).
    pub identity: String,
    /// How long a lease stays valid without renewal; a standby takes over
    /// at most this long after the leader dies.
    pub duration: Duration,
    /// How long before expiry the leader renews.
    pub grace: Duration,
}

/// Leadership held by this process.
pub struct Leadership {
    state: watch::Receiver<bool>,
    task:
        JoinHandle<Result<kube_lease_manager::LeaseManager, kube_lease_manager::LeaseManagerError>>,
}

/// Blocks until this replica holds the lease.
pub async fn acquire(client: Client, config: &LeaseConfig) -> anyhow::Result<Leadership> {
    let manager = LeaseManagerBuilder::new(client, &config.name)
        .with_namespace(&config.namespace)
        .with_identity(&config.identity)
        .with_duration(config.duration.as_secs().max(2))
        .with_grace(config.grace.as_secs().max(1))
        .with_field_manager(format!("{}-leader-election", config.name))
        .build()
        .await?;
    let (mut state, task) = manager.watch().await;
    tracing::info!(lease = %config.name, namespace = %config.namespace, identity = %config.identity, "waiting for leadership");
    while !*state.borrow_and_update() {
        if state.changed().await.is_err() {
            anyhow::bail!("leader election task ended before acquiring the lease");
        }
    }
    tracing::info!(lease = %config.name, identity = %config.identity, "acquired leadership");
    Ok(Leadership { state, task })
}

impl Leadership {
    /// Resolves when the lease is lost (or the election task fails).
    pub async fn lost(&mut self) {
        loop {
            if !*self.state.borrow_and_update() {
                return;
            }
            if self.state.changed().await.is_err() {
                return;
            }
        }
    }

    /// Gives the lease up so a standby can take over without waiting for expiry.
    pub async fn release(self) {
        let Leadership { state, task } = self;
        drop(state); // closing the channel makes the task release the lease
        match tokio::time::timeout(Duration::from_secs(5), task).await {
            Ok(Ok(Ok(_))) => tracing::info!("released leadership"),
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "releasing the lease failed"),
            Ok(Err(e)) => tracing::warn!(error = %e, "leader election task panicked"),
            Err(_) => tracing::warn!("timed out releasing the lease"),
        }
    }
}
