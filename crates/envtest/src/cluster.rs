//! Starting and stopping a whole local cluster: etcd, kube-apiserver,
//! kube-controller-manager, kube-scheduler and the KWOK controller with fake
//! nodes.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::binaries::Binaries;
use crate::kwok::{self, FakeNode};
use crate::pki::Pki;
use crate::process::{self, Component};

/// How a cluster is started.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Fake nodes to register; see [`FakeNode::defaults`].
    pub nodes: Vec<FakeNode>,
    /// How long to wait for the whole cluster to come up.
    pub start_timeout: Duration,
    /// Keep the temporary directory (logs, certificates) after stopping.
    pub keep_dir: bool,
    /// StorageClasses to create besides the default `kwok-volume`, whose
    /// claims KWOK provisions and binds the same way (e.g. `fast-ssd` for
    /// manifests that name a class).
    pub storage_classes: Vec<String>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            nodes: FakeNode::defaults(),
            start_timeout: Duration::from_secs(120),
            keep_dir: std::env::var("ENVTEST_KEEP").is_ok_and(|v| v == "1" || v == "true"),
            storage_classes: Vec::new(),
        }
    }
}

/// How long each phase of the start took.
#[derive(Debug, Clone, Default)]
pub struct StartTimings {
    pub etcd: Duration,
    pub apiserver: Duration,
    pub controllers: Duration,
    pub nodes_ready: Duration,
    pub total: Duration,
}

/// What a test needs to talk to a cluster.
#[derive(Debug, Clone)]
pub struct ClusterInfo {
    /// Admin kubeconfig.
    pub kubeconfig: PathBuf,
    /// `https://127.0.0.1:<port>` for a local cluster.
    pub server: String,
    /// Directory with logs and certificates (local clusters only).
    pub dir: Option<PathBuf>,
    /// Port of KWOK's kubelet server (local clusters only).
    pub kubelet_port: Option<u16>,
    pub timings: StartTimings,
    /// Whether this is an existing cluster from `KUBECONFIG`.
    pub existing: bool,
}

/// A running cluster. Dropping it stops every component and removes its
/// temporary directory.
pub struct Cluster {
    info: ClusterInfo,
    supervisor: std::sync::Mutex<Option<Supervisor>>,
}

struct Supervisor {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<()>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").field("info", &self.info).finish()
    }
}

impl Cluster {
    /// Starts a local cluster, or wraps the existing one when
    /// `USE_EXISTING_CLUSTER=true` (then `KUBECONFIG` or `~/.kube/config` is used).
    pub fn start(options: ClusterOptions) -> anyhow::Result<Self> {
        if use_existing_cluster() {
            return Self::existing();
        }
        let binaries = Binaries::locate()?;
        let (ready_tx, ready_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        // Components are children of this thread: PR_SET_PDEATHSIG kills them
        // when it ends, which is exactly when the cluster should go away.
        let thread = std::thread::Builder::new()
            .name("envtest-supervisor".into())
            .spawn(move || supervise(binaries, options, ready_tx, stop_rx))?;
        match ready_rx.recv() {
            Ok(Ok(info)) => Ok(Self {
                info,
                supervisor: std::sync::Mutex::new(Some(Supervisor {
                    stop: stop_tx,
                    thread,
                })),
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let _ = thread.join();
                anyhow::bail!("envtest supervisor thread ended before the cluster started")
            }
        }
    }

    fn existing() -> anyhow::Result<Self> {
        let kubeconfig = std::env::var("KUBECONFIG")
            .ok()
            .and_then(|v| v.split(':').next().map(PathBuf::from))
            .or_else(|| {
                std::env::var("HOME")
                    .ok()
                    .map(|h| Path::new(&h).join(".kube/config"))
            })
            .ok_or_else(|| anyhow::anyhow!("USE_EXISTING_CLUSTER=true needs KUBECONFIG"))?;
        let config = Kubeconfig::read_from(&kubeconfig).map_err(|e| {
            anyhow::anyhow!(
                "USE_EXISTING_CLUSTER=true: reading {}: {e}",
                kubeconfig.display()
            )
        })?;
        let server = config
            .clusters
            .first()
            .and_then(|c| c.cluster.as_ref())
            .and_then(|c| c.server.clone())
            .unwrap_or_default();
        Ok(Self {
            info: ClusterInfo {
                kubeconfig,
                server,
                dir: None,
                kubelet_port: None,
                timings: StartTimings::default(),
                existing: true,
            },
            supervisor: std::sync::Mutex::new(None),
        })
    }

    pub fn info(&self) -> &ClusterInfo {
        &self.info
    }

    pub fn kubeconfig(&self) -> &Path {
        &self.info.kubeconfig
    }

    /// A new client for the calling runtime. Create one per test: a client
    /// keeps connections on the runtime that created it.
    pub async fn client(&self) -> anyhow::Result<Client> {
        client_from_kubeconfig(&self.info.kubeconfig).await
    }

    /// Stops every component (SIGTERM, then SIGKILL) and removes the directory.
    pub fn stop(&self) {
        let supervisor = self
            .supervisor
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(s) = supervisor {
            let _ = s.stop.send(());
            let _ = s.thread.join();
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A client for the admin kubeconfig at `path`.
pub async fn client_from_kubeconfig(path: &Path) -> anyhow::Result<Client> {
    let kubeconfig = Kubeconfig::read_from(path)?;
    let config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(config)?)
}

pub fn use_existing_cluster() -> bool {
    std::env::var("USE_EXISTING_CLUSTER").is_ok_and(|v| v == "true" || v == "1")
}

fn supervise(
    binaries: Binaries,
    options: ClusterOptions,
    ready: mpsc::Sender<anyhow::Result<ClusterInfo>>,
    stop: mpsc::Receiver<()>,
) {
    let dir = match tempfile::Builder::new().prefix("envtest-").tempdir() {
        Ok(d) => d,
        Err(e) => {
            let _ = ready.send(Err(e.into()));
            return;
        }
    };
    let mut components = Vec::new();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("building a current-thread runtime");
    let started = runtime.block_on(start_components(
        &binaries,
        &options,
        dir.path(),
        &mut components,
    ));
    drop(runtime);
    let failed = started.is_err();
    let _ = ready.send(started);
    if !failed {
        // Wait for Cluster::stop (or the sender being dropped).
        let _ = stop.recv();
    }
    for c in components.iter_mut().rev() {
        c.stop(Duration::from_secs(5));
    }
    if options.keep_dir || (failed && std::env::var("CI").is_ok()) {
        let kept = dir.keep();
        eprintln!("envtest: kept {}", kept.display());
    }
}

async fn start_components(
    bin: &Binaries,
    options: &ClusterOptions,
    dir: &Path,
    components: &mut Vec<Component>,
) -> anyhow::Result<ClusterInfo> {
    let begin = Instant::now();
    let deadline = begin + options.start_timeout;
    let mut timings = StartTimings::default();
    let pki = Pki::generate(dir)?;
    let [etcd_client, etcd_peer, apiserver, kcm, scheduler, kubelet]: [u16; 6] =
        process::free_ports(6)?
            .try_into()
            .map_err(|_| anyhow::anyhow!("could not reserve ports"))?;
    let s = |v: &str| v.to_string();

    // etcd
    let etcd_url = format!("http://127.0.0.1:{etcd_client}");
    components.push(Component::start(
        "etcd",
        &bin.path("etcd"),
        &[
            format!("--data-dir={}", dir.join("etcd").display()),
            format!("--listen-client-urls={etcd_url}"),
            format!("--advertise-client-urls={etcd_url}"),
            format!("--listen-peer-urls=http://127.0.0.1:{etcd_peer}"),
            format!("--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}"),
            format!("--initial-cluster=default=http://127.0.0.1:{etcd_peer}"),
            s("--unsafe-no-fsync=true"),
            s("--log-level=warn"),
        ],
        dir,
    )?);
    wait_for(deadline, components, || async {
        tokio::net::TcpStream::connect(("127.0.0.1", etcd_client))
            .await
            .is_ok()
    })
    .await?;
    timings.etcd = begin.elapsed();

    // kube-apiserver: token auth for the admin, RBAC, service-account signing.
    let token = random_token();
    let tokens = dir.join("tokens.csv");
    std::fs::write(
        &tokens,
        format!("{token},envtest-admin,envtest-admin,\"system:masters\"\n"),
    )?;
    let sa_key = pki.service_account_key.display().to_string();
    components.push(Component::start(
        "kube-apiserver",
        &bin.path("kube-apiserver"),
        &[
            format!("--etcd-servers={etcd_url}"),
            s("--bind-address=127.0.0.1"),
            s("--advertise-address=127.0.0.1"),
            format!("--secure-port={apiserver}"),
            format!("--tls-cert-file={}", pki.serving_cert.display()),
            format!("--tls-private-key-file={}", pki.serving_key.display()),
            format!("--client-ca-file={}", pki.ca_cert.display()),
            format!("--token-auth-file={}", tokens.display()),
            format!(
                "--service-account-key-file={}",
                pki.service_account_pub.display()
            ),
            format!("--service-account-signing-key-file={sa_key}"),
            s("--service-account-issuer=https://kubernetes.default.svc.cluster.local"),
            s("--authorization-mode=Node,RBAC"),
            // Room for thousands of Services: the scale benchmarks create two per object.
            s("--service-cluster-ip-range=10.0.0.0/16"),
            s("--allow-privileged=true"),
            format!("--cert-dir={}", dir.join("apiserver-certs").display()),
            s("--v=1"),
        ],
        dir,
    )?);
    let kubeconfig = dir.join("kubeconfig");
    let server = format!("https://127.0.0.1:{apiserver}");
    crate::kubeconfig::write(&kubeconfig, &server, &pki.ca_pem, &token)?;
    let client = client_from_kubeconfig(&kubeconfig).await?;
    wait_for(deadline, components, || {
        let client = client.clone();
        async move {
            let req = http::Request::get("/readyz").body(Vec::new()).unwrap();
            matches!(client.request_text(req).await, Ok(body) if body.trim() == "ok")
        }
    })
    .await?;
    timings.apiserver = begin.elapsed();

    // Controllers, scheduler and KWOK all use the admin kubeconfig.
    let kc = format!("--kubeconfig={}", kubeconfig.display());
    components.push(Component::start(
        "kube-controller-manager",
        &bin.path("kube-controller-manager"),
        &[
            kc.clone(),
            format!("--root-ca-file={}", pki.ca_cert.display()),
            format!("--service-account-private-key-file={sa_key}"),
            s("--use-service-account-credentials=true"),
            s("--leader-elect=false"),
            s("--controllers=*"),
            s("--kube-api-qps=200"),
            s("--kube-api-burst=400"),
            s("--concurrent-gc-syncs=10"),
            s("--bind-address=127.0.0.1"),
            format!("--secure-port={kcm}"),
            format!("--cert-dir={}", dir.join("kcm-certs").display()),
            s("--service-cluster-ip-range=10.0.0.0/16"),
            s("--v=1"),
        ],
        dir,
    )?);
    components.push(Component::start(
        "kube-scheduler",
        &bin.path("kube-scheduler"),
        &[
            kc.clone(),
            s("--leader-elect=false"),
            s("--bind-address=127.0.0.1"),
            format!("--secure-port={scheduler}"),
            format!("--cert-dir={}", dir.join("scheduler-certs").display()),
            s("--v=1"),
        ],
        dir,
    )?);

    // KWOK: CRDs and stages first, then the controller that acts on them.
    kwok::install_assets(&client, &bin.kwok_assets, &options.storage_classes).await?;
    components.push(Component::start(
        "kwok",
        &bin.path("kwok"),
        &[
            kc,
            s("--manage-all-nodes=true"),
            s("--node-ip=127.0.0.1"),
            format!("--node-port={kubelet}"),
            format!("--server-address=127.0.0.1:{kubelet}"),
            format!("--enable-crds={}", kwok::ENABLED_CRDS.join(",")),
            s("--node-lease-duration-seconds=40"),
        ],
        dir,
    )?);
    timings.controllers = begin.elapsed();

    kwok::register_nodes(&client, &options.nodes).await?;
    wait_for(deadline, components, || {
        let client = client.clone();
        async move { kwok::all_nodes_ready(&client).await.unwrap_or(false) }
    })
    .await?;
    timings.nodes_ready = begin.elapsed();
    timings.total = begin.elapsed();

    Ok(ClusterInfo {
        kubeconfig,
        server,
        dir: Some(dir.to_path_buf()),
        kubelet_port: Some(kubelet),
        timings,
        existing: false,
    })
}

/// Polls `check` until it is true; fails early, with the component's log,
/// when a component dies, and at the deadline with every log tail.
async fn wait_for<F, Fut>(
    deadline: Instant,
    components: &mut [Component],
    mut check: F,
) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    loop {
        for c in components.iter_mut() {
            c.check_alive()?;
        }
        if check().await {
            return Ok(());
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = components
                .iter()
                .map(|c| format!("--- {} ---\n{}", c.name, c.log_tail(15)))
                .collect();
            anyhow::bail!("cluster did not become ready in time\n{}", logs.join("\n"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn random_token() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..32)
        .map(|_| format!("{:x}", rng.random_range(0..16u8)))
        .collect()
}
