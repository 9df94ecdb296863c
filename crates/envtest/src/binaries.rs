//! Finding the control-plane binaries: `ENVTEST_BIN_DIR`, `KUBEBUILDER_ASSETS`,
//! or the cache that `hack/control-plane.sh` fills.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Every binary a full local cluster needs.
pub const REQUIRED: &[&str] = &[
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
];

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../hack/control-plane.sh");

/// Where the binaries and KWOK assets are.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub bin_dir: PathBuf,
    /// KWOK CRDs (`crds/`) and stock stages (`stages/`).
    pub kwok_assets: PathBuf,
}

impl Binaries {
    pub fn path(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }

    /// Locates the binaries without building anything. The error names the
    /// command that provides them.
    pub fn locate() -> anyhow::Result<Self> {
        let bin_dir = if let Ok(dir) = std::env::var("ENVTEST_BIN_DIR") {
            PathBuf::from(dir)
        } else if let Ok(dir) = std::env::var("KUBEBUILDER_ASSETS") {
            PathBuf::from(dir)
        } else {
            cache_bin_dir()?
        };
        let kwok_assets = std::env::var("ENVTEST_KWOK_ASSETS")
            .map(PathBuf::from)
            .unwrap_or_else(|_| bin_dir.parent().unwrap_or(&bin_dir).join("kwok"));
        let missing: Vec<&str> = REQUIRED
            .iter()
            .copied()
            .filter(|b| !is_executable(&bin_dir.join(b)))
            .collect();
        if !missing.is_empty() {
            anyhow::bail!(
                "control-plane binaries missing in {}: {}. Build them with `hack/control-plane.sh` \
                 (or `just control-plane`), point ENVTEST_BIN_DIR/KUBEBUILDER_ASSETS at a directory \
                 holding them, or set USE_EXISTING_CLUSTER=true with KUBECONFIG for an existing cluster",
                bin_dir.display(),
                missing.join(", ")
            );
        }
        if !kwok_assets.join("stages").is_dir() || !kwok_assets.join("crds").is_dir() {
            anyhow::bail!(
                "KWOK CRDs and stages missing in {}: run `hack/control-plane.sh` \
                 (or set ENVTEST_KWOK_ASSETS to a directory with crds/ and stages/)",
                kwok_assets.display()
            );
        }
        Ok(Self {
            bin_dir,
            kwok_assets,
        })
    }
}

/// Asks the build script where its cache is, so the version key lives in one place.
fn cache_bin_dir() -> anyhow::Result<PathBuf> {
    let out = Command::new("bash")
        .arg(SCRIPT)
        .arg("--print")
        .output()
        .map_err(|e| anyhow::anyhow!("running {SCRIPT} --print: {e}"))?;
    if !out.status.success() {
        anyhow::bail!(
            "{SCRIPT} --print failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(PathBuf::from(String::from_utf8(out.stdout)?.trim()))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}
