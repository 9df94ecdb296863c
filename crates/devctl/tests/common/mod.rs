//! Shared by the test binaries that run devctl against the real control
//! plane with devserver-operator running in-process.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

use envtest::manifest::apply_yaml;
use kube::Client;

pub const MANAGER: &str = "devctl-tests";
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// Starts the CRDs and the operator once for this binary, on a runtime of
/// its own (each test has its own runtime).
pub fn start_operator() {
    static STARTED: OnceLock<()> = OnceLock::new();
    STARTED.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async move {
                let client = envtest::client().await.unwrap();
                let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../../deploy/devserver-operator/crds");
                envtest::manifest::install_crd_dir(&client, &dir)
                    .await
                    .unwrap();
                tx.send(()).unwrap();
                let args = operator_core::cli::RunArgs {
                    metrics_addr: "127.0.0.1:0".parse().unwrap(),
                    ..Default::default()
                };
                let operator = devserver_operator::operator();
                operator_core::runtime::run_with_client(
                    &operator,
                    args,
                    client,
                    operator_core::metrics::Metrics::new(),
                    devserver_operator::controllers::run,
                )
                .await
                .unwrap();
            });
        });
        rx.recv_timeout(Duration::from_secs(120))
            .expect("CRDs installed");
    });
}

/// A private environment for devctl: its own config file and HOME, so
/// tests never touch the real home.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
}

impl Env {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("home")).unwrap();
        Env {
            kubeconfig: envtest::shared().kubeconfig().to_path_buf(),
            dir,
        }
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    pub fn config_file(&self) -> PathBuf {
        self.path("devctl/config.yaml")
    }

    pub fn home(&self) -> PathBuf {
        self.path("home")
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = self.with_env(Command::new(env!("CARGO_BIN_EXE_devctl")));
        c.args(args);
        c
    }

    /// `c` with devctl's environment: this cluster, this config and HOME.
    pub fn with_env(&self, mut c: Command) -> Command {
        c.env("KUBECONFIG", &self.kubeconfig)
            .env("DEVCTL_CONFIG", self.config_file())
            .env("HOME", self.home())
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .stdin(std::process::Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("running devctl")
    }

    /// Runs devctl and fails the test (with its output) unless it succeeds.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "devctl {args:?} failed ({}):\n{}{}",
            o.status,
            stdout(&o),
            stderr(&o)
        );
        stdout(&o)
    }

    /// Runs devctl, expects exit code 1, and returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert_eq!(
            o.status.code(),
            Some(1),
            "devctl {args:?} should fail:\n{}{}",
            stdout(&o),
            stderr(&o)
        );
        assert!(stderr(&o).starts_with("error: "), "{}", stderr(&o));
        stderr(&o)
    }

    /// A fresh ed25519 key pair without passphrase; returns the private key.
    pub fn ssh_key(&self, name: &str) -> PathBuf {
        let key = self.path(name);
        let o = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
            .arg(&key)
            .output()
            .expect("ssh-keygen is needed (Debian package openssh-client)");
        assert!(o.status.success(), "{}", stderr(&o));
        key
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub async fn apply(client: &Client, yaml: &str, ns: &str) {
    apply_yaml(client, yaml, ns, MANAGER)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{yaml}"));
}

pub fn flavor(name: &str, default: bool) -> String {
    format!(
        "apiVersion: devserver.io/v1\nkind: DevServerFlavor\nmetadata:\n  name: {name}\nspec:\n  default: {default}\n  description: Test CPU\n  resources:\n    requests: {{cpu: 100m, memory: 128Mi}}\n"
    )
}

pub fn pvc(name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: {name}\nspec:\n  accessModes: [ReadWriteOnce]\n  resources:\n    requests: {{storage: 1Gi}}\n"
    )
}
