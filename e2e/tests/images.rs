//! The container images: `just images` (`hack/images.sh`) builds every image
//! with buildah and `just push REGISTRY=...` pushes it to a real registry;
//! each one is then read back from the registry and run.
//!
//! The registry is Debian's `docker-registry` (the CNCF distribution registry)
//! serving plain HTTP on a free loopback port with its storage in a temporary
//! directory. Builds and pulls use separate throwaway buildah storage, so what
//! runs at the end came from the registry, not from the build's local copy.
//! For every image the test checks the tags (crate version, and version plus
//! git revision), the OCI labels, the non-root user and the entrypoint from
//! `skopeo inspect`, then pulls it with `buildah from` and runs its entrypoint
//! with `version` under `buildah run` (the image's own user, chroot
//! isolation); the launcher image also runs QEMU far enough to load its
//! firmware, and the SSH server image runs its `install` entrypoint.
//!
//! Image sizes (compressed, as stored in the registry) are printed, not
//! asserted; `cargo test -p e2e --test images -- --nocapture` shows them.
//!
//! Needs root (buildah with vfs storage and chroot isolation) and the Debian
//! packages buildah, skopeo, docker-registry and musl-tools; it fails saying
//! which one is missing. The release musl build of the binaries dominates the
//! wall time (it goes to `target/images`, so later runs reuse it).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const PREFIX: &str = "orchestra-operators";
const SOURCE: &str = "https://github.com/orchestra-operators/operators";
/// Every image `hack/images.sh` builds, with its entrypoint and the
/// arguments that make it print its version (the JVS runner is not among them:
/// its `jvs` CLI cannot be obtained here, see the script).
const IMAGES: &[(&str, &str, &str)] = &[
    (
        "workshop-operator",
        "/usr/local/bin/workshop-operator",
        "version",
    ),
    (
        "devserver-operator",
        "/usr/local/bin/devserver-operator",
        "version",
    ),
    ("jvs-operator", "/usr/local/bin/jvs-operator", "version"),
    (
        "novacron-operator",
        "/usr/local/bin/novacron-operator",
        "version",
    ),
    (
        "novacron-launcher",
        "/usr/local/bin/novacron-launcher",
        "version",
    ),
    // The SSH server image's entrypoint installs the bundle (checked below).
    ("devserver-sshd", "/install", ""),
];

#[test]
fn images_build_push_pull_and_run() {
    require_tools();
    let root = repo_root();
    let tmp = tempfile::Builder::new()
        .prefix("images-e2e-")
        .tempdir()
        .unwrap();
    let registry = Registry::start(tmp.path());
    let build_storage = tmp.path().join("build-storage");
    let pull = Buildah::new(tmp.path().join("pull-storage"));

    let version = env!("CARGO_PKG_VERSION");
    // Pinned for every call: HEAD may move while the build runs.
    let full_rev = git(&root, &["rev-parse", "HEAD"]);
    let short_rev = full_rev[..12].to_owned();
    let script = || {
        let mut cmd = Command::new(root.join("hack/images.sh"));
        cmd.env("IMAGE_REVISION", &full_rev)
            .env("IMAGES_STORAGE", &build_storage);
        cmd
    };
    let rev_tag = format!("{version}-{short_rev}");

    // The script's own list of images and tags.
    let listed = run_ok(script().arg("list"), "hack/images.sh list");
    let listed: Vec<Vec<String>> = listed
        .lines()
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .collect();
    let expected: Vec<Vec<String>> = IMAGES
        .iter()
        .map(|(name, _, _)| vec![name.to_string(), version.to_string(), rev_tag.clone()])
        .collect();
    assert_eq!(listed, expected, "hack/images.sh list");

    // Built and pushed the way the README says: `just images`, `just push`.
    let just = |args: &[&str]| {
        let mut cmd = Command::new(just_binary());
        cmd.current_dir(&root)
            .args(args)
            .env("IMAGE_REVISION", &full_rev)
            .env("IMAGES_STORAGE", &build_storage);
        cmd
    };
    run_ok(&mut just(&["images"]), "just images");
    let repo = format!("127.0.0.1:{}/{PREFIX}", registry.port);
    run_ok(
        &mut just(&["push", &format!("REGISTRY={repo}")]),
        "just push REGISTRY=...",
    );

    let mut sizes = BTreeMap::new();
    for (name, entrypoint, version_arg) in IMAGES {
        let image = format!("docker://{repo}/{name}");

        let tags = skopeo_json(&["list-tags", &image]);
        let tags: Vec<&str> = tags["Tags"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(
            tags.contains(&version) && tags.contains(&rev_tag.as_str()),
            "{name}: tags {tags:?}, expected {version} and {rev_tag}"
        );

        let inspect = skopeo_json(&["inspect", &format!("{image}:{version}")]);
        let by_rev = skopeo_json(&["inspect", &format!("{image}:{rev_tag}")]);
        assert_eq!(
            inspect["Digest"], by_rev["Digest"],
            "{name}: both tags name one image"
        );
        let label =
            |key: &str| inspect["Labels"][format!("org.opencontainers.image.{key}")].as_str();
        assert_eq!(label("title"), Some(*name), "{name}: title label");
        assert_eq!(label("version"), Some(version), "{name}: version label");
        assert_eq!(label("source"), Some(SOURCE), "{name}: source label");
        let revision = label("revision").unwrap_or_default();
        assert!(
            revision.starts_with(&full_rev),
            "{name}: revision label {revision:?}, expected {full_rev}"
        );
        assert_eq!(inspect["Architecture"], "amd64", "{name}: architecture");
        // Compressed size: the layers as the registry stores them.
        let manifest = skopeo_json(&["inspect", "--raw", &format!("{image}:{version}")]);
        let compressed: u64 = manifest["layers"]
            .as_array()
            .unwrap_or_else(|| panic!("{name}: manifest without layers: {manifest}"))
            .iter()
            .map(|l| l["size"].as_u64().unwrap())
            .sum();

        let config = skopeo_json(&["inspect", "--config", &format!("{image}:{version}")]);
        assert_eq!(
            config["config"]["User"], "65532:65532",
            "{name}: non-root user"
        );
        assert_eq!(
            config["config"]["Entrypoint"],
            serde_json::json!([entrypoint]),
            "{name}: entrypoint"
        );

        // Pull from the registry into empty storage and run the entrypoint.
        let ctr = pull.from(&format!("{image}:{rev_tag}"));
        if *name == "devserver-sshd" {
            let out = pull.run(&ctr, &[entrypoint, "/tmp"]);
            assert!(
                out.contains("installed OpenSSH_"),
                "{name}: /install /tmp printed {out:?}"
            );
            // The copy runs from where it was installed, with its own loader.
            let sshd = [
                "/tmp/lib/ld-linux-x86-64.so.2",
                "--library-path",
                "/tmp/lib",
                "/tmp/bin/sshd",
                "-V",
            ];
            let v = pull.run(&ctr, &sshd);
            assert!(
                v.contains("OpenSSH_"),
                "{name}: the installed sshd -V printed {v:?}"
            );
        } else {
            let out = pull.run(&ctr, &[entrypoint, version_arg]);
            // The operators also print the git revision they were built from.
            let want = match *version_arg {
                "version" => format!("{name} {version} (revision {short_rev}"),
                _ => format!("{name} {version}"),
            };
            assert!(
                out.contains(&want),
                "{name}: `{entrypoint} {version_arg}` printed {out:?}, expected {want:?}"
            );
        }
        if *name == "novacron-launcher" {
            check_launcher_tools(&pull, &ctr);
        }
        pull.rm(&ctr);
        sizes.insert(
            *name,
            (compressed, pull.size(&format!("{image}:{rev_tag}"))),
        );
    }

    println!("\nimage sizes ({repo}, tag {rev_tag}):");
    println!(
        "{:<20} {:>12} {:>14}",
        "image", "compressed", "uncompressed"
    );
    for (name, (compressed, uncompressed)) in &sizes {
        println!(
            "{name:<20} {:>9.1} MB {:>14}",
            *compressed as f64 / 1e6,
            uncompressed
        );
    }
}

/// QEMU, qemu-img and genisoimage run from the image's own bundle; QEMU gets
/// as far as its QMP monitor with a q35 machine and a virtio NIC, which needs
/// the BIOS, the NIC's option ROM and the TCG accelerator module.
fn check_launcher_tools(pull: &Buildah, ctr: &str) {
    let v = pull.run(ctr, &["/usr/bin/qemu-system-x86_64", "--version"]);
    assert!(
        v.contains("QEMU emulator version"),
        "qemu-system-x86_64 --version: {v:?}"
    );
    let v = pull.run(ctr, &["/usr/bin/qemu-img", "--version"]);
    assert!(v.contains("qemu-img version"), "qemu-img --version: {v:?}");
    let v = pull.run(ctr, &["/usr/bin/genisoimage", "--version"]);
    assert!(v.contains("genisoimage"), "genisoimage --version: {v:?}");
    let qmp = "{\"execute\":\"qmp_capabilities\"}\n{\"execute\":\"query-status\"}\n{\"execute\":\"quit\"}\n";
    let out = pull.run_stdin(
        ctr,
        &[
            "/usr/bin/qemu-system-x86_64",
            "-machine",
            "q35",
            "-accel",
            "tcg",
            "-display",
            "none",
            "-nodefaults",
            "-netdev",
            "user,id=n0",
            "-device",
            "virtio-net-pci,netdev=n0",
            "-qmp",
            "stdio",
            "-S",
        ],
        qmp,
    );
    assert!(
        out.contains("\"status\": \"prelaunch\""),
        "QEMU in the launcher image did not start: {out}"
    );
}

/// Buildah with its own storage (vfs, no user namespaces needed as root).
struct Buildah {
    storage: PathBuf,
}

impl Buildah {
    fn new(storage: PathBuf) -> Self {
        Buildah { storage }
    }

    fn cmd(&self) -> Command {
        let mut cmd = Command::new("buildah");
        cmd.arg("--storage-driver")
            .arg("vfs")
            .arg("--root")
            .arg(self.storage.join("root"))
            .arg("--runroot")
            .arg(self.storage.join("run"));
        cmd
    }

    fn from(&self, image: &str) -> String {
        let out = run_ok(
            self.cmd()
                .args(["from", "--quiet", "--tls-verify=false", image]),
            "buildah from",
        );
        out.trim().to_owned()
    }

    fn run(&self, ctr: &str, argv: &[&str]) -> String {
        self.run_stdin(ctr, argv, "")
    }

    /// stdout and stderr of a command in the container, which must succeed.
    fn run_stdin(&self, ctr: &str, argv: &[&str], stdin: &str) -> String {
        let mut cmd = self.cmd();
        cmd.args(["run", "--isolation", "chroot", ctr, "--"])
            .args(argv);
        let out = output_with_stdin(&mut cmd, stdin);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "buildah run {argv:?} failed ({}):\n{text}",
            out.status
        );
        text
    }

    fn rm(&self, ctr: &str) {
        run_ok(self.cmd().args(["rm", ctr]), "buildah rm");
    }

    /// Uncompressed size as buildah reports it for the pulled image.
    fn size(&self, image: &str) -> String {
        let name = image.trim_start_matches("docker://");
        run_ok(
            self.cmd().args(["images", "--format", "{{.Size}}", name]),
            "buildah images",
        )
        .trim()
        .to_owned()
    }
}

impl Drop for Buildah {
    fn drop(&mut self) {
        // Leftover working containers after a failed assertion.
        let _ = self.cmd().args(["rm", "--all"]).output();
    }
}

/// Debian's docker-registry on a free loopback port, stopped on drop.
struct Registry {
    child: Child,
    port: u16,
}

impl Registry {
    fn start(dir: &Path) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = dir.join("registry.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  \
                 delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.join("registry-data").display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("registry.log")).unwrap();
        let child = Command::new(tool_path("docker-registry"))
            .arg("serve")
            .arg(&config)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        let mut registry = Registry { child, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = registry.child.try_wait().unwrap() {
                let log = std::fs::read_to_string(dir.join("registry.log")).unwrap_or_default();
                panic!("docker-registry exited ({status}):\n{log}");
            }
            if registry_answers(port) {
                return registry;
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not answer on 127.0.0.1:{port} within 30 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET /v2/` answers 200 once the registry serves.
fn registry_answers(port: u16) -> bool {
    let Ok(mut conn) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
    if conn
        .write_all(b"GET /v2/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 16];
    conn.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") && head[9..12] == *b"200"
}

fn skopeo_json(args: &[&str]) -> Value {
    let mut cmd = Command::new("skopeo");
    cmd.arg(args[0]).arg("--tls-verify=false").args(&args[1..]);
    let out = run_ok(&mut cmd, &format!("skopeo {}", args.join(" ")));
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("skopeo {args:?}: {e}: {out}"))
}

/// The tests' tools, failing with what to install when one is missing.
/// `just`, as `hack/test.sh` provides it (`JUST`), else fetched by
/// `hack/just.sh` (pinned, cached).
fn just_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("JUST") {
        return PathBuf::from(path);
    }
    let out = Command::new(repo_root().join("hack/just.sh"))
        .output()
        .expect("running hack/just.sh");
    assert!(
        out.status.success(),
        "hack/just.sh could not provide `just`: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

fn require_tools() {
    let missing: Vec<&str> = [
        ("buildah", "buildah"),
        ("skopeo", "skopeo"),
        ("docker-registry", "docker-registry"),
        ("musl-gcc", "musl-tools"),
    ]
    .into_iter()
    .filter(|(tool, _)| which(tool).is_none())
    .map(|(_, package)| package)
    .collect();
    assert!(
        missing.is_empty(),
        "missing Debian packages for the image test: {} (hack/test.sh installs them: apt-get install {})",
        missing.join(", "),
        missing.join(" ")
    );
    let uid = run_ok(Command::new("id").arg("-u"), "id -u");
    assert_eq!(
        uid.trim(),
        "0",
        "the image test builds with buildah as root (vfs storage, chroot isolation): run it as root"
    );
}

fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|dir| dir.join(tool))
        .find(|p| p.is_file())
}

fn tool_path(tool: &str) -> PathBuf {
    which(tool).unwrap_or_else(|| panic!("{tool} not found"))
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn git(root: &Path, args: &[&str]) -> String {
    run_ok(Command::new("git").arg("-C").arg(root).args(args), "git")
        .trim()
        .to_owned()
}

fn output_with_stdin(cmd: &mut Command, stdin: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// stdout of a command that must succeed; its output in the panic otherwise.
fn run_ok(cmd: &mut Command, what: &str) -> String {
    let out = output_with_stdin(cmd, "");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr
            .lines()
            .rev()
            .take(80)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        panic!(
            "{what} failed ({}):\n{stdout}\n{}",
            out.status,
            tail.join("\n")
        );
    }
    stdout
}
