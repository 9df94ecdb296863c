//! The importer with real `qemu-img` and a local HTTP server serving a qcow2
//! image: download with progress, checksum verified (a wrong one refused),
//! conversion and resize, local-path (cloned PVC) sources, unsafe images
//! refused, an existing disk never overwritten.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{require, run};
use novacron_launcher::api::{ImportPhase, ImportProgress};
use novacron_launcher::config::DiskFormat;
use novacron_launcher::import::{self, ImportError, ImportOptions};

const TOOLS: &[(&str, &str)] = &[("qemu-img", "qemu-utils")];
const PATTERN: &[u8] = b"NOVACRON-IMPORT-PATTERN";
const OFFSET: u64 = 3 << 20;

/// A 16 MiB qcow2 with PATTERN at OFFSET, made with qemu-img.
fn make_image(dir: &Path) -> PathBuf {
    let raw = dir.join("src.raw");
    let mut f = std::fs::File::create(&raw).unwrap();
    f.set_len(16 << 20).unwrap();
    use std::io::Seek;
    f.seek(std::io::SeekFrom::Start(OFFSET)).unwrap();
    f.write_all(PATTERN).unwrap();
    drop(f);
    let qcow = dir.join("src.qcow2");
    run(
        "qemu-img",
        &[
            "convert",
            "-f",
            "raw",
            "-O",
            "qcow2",
            raw.to_str().unwrap(),
            qcow.to_str().unwrap(),
        ],
    );
    std::fs::remove_file(raw).unwrap();
    qcow
}

fn sha(alg: &'static ring::digest::Algorithm, path: &Path) -> String {
    let d = ring::digest::digest(alg, &std::fs::read(path).unwrap());
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Serves `file` at `/image.qcow2` (404 elsewhere) until the test ends.
fn serve(file: PathBuf) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let req = String::from_utf8_lossy(&req);
            if req.starts_with("GET /image.qcow2 ") {
                let body = std::fs::read(&file).unwrap();
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(&body);
            } else if req.starts_with("GET /moved ") {
                let _ = write!(
                    s,
                    "HTTP/1.1 302 Found\r\nLocation: /image.qcow2\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
            } else {
                let _ = write!(
                    s,
                    "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
            }
        }
    });
    port
}

fn qemu_info(path: &Path) -> serde_json::Value {
    serde_json::from_str(&run(
        "qemu-img",
        &["info", "--output=json", path.to_str().unwrap()],
    ))
    .unwrap()
}

fn read_at(path: &Path, offset: u64, len: usize) -> Vec<u8> {
    use std::io::Seek;
    let mut f = std::fs::File::open(path).unwrap();
    f.seek(std::io::SeekFrom::Start(offset)).unwrap();
    let mut buf = vec![0; len];
    f.read_exact(&mut buf).unwrap();
    buf
}

fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect()
}

#[test]
fn cli_imports_over_http_verifies_the_checksum_converts_and_resizes() {
    require(TOOLS);
    let dir = tempfile::tempdir().unwrap();
    let image = make_image(dir.path());
    let sum = sha(&ring::digest::SHA256, &image);
    let port = serve(image);
    let disk_dir = dir.path().join("disk");
    std::fs::create_dir(&disk_dir).unwrap();
    let dest = disk_dir.join("disk.img");
    let progress = dir.path().join("progress.json");
    let term = dir.path().join("termination-log");
    let out = Command::new(env!("CARGO_BIN_EXE_novacron-launcher"))
        .args([
            "import",
            "--source",
            &format!("http://127.0.0.1:{port}/moved"),
        ])
        .args([
            "--checksum",
            &format!("sha256:{sum}"),
            "--format",
            "raw",
            "--size",
            "64Mi",
        ])
        .args([
            "--dest",
            dest.to_str().unwrap(),
            "--progress-file",
            progress.to_str().unwrap(),
        ])
        .args(["--termination-message-path", term.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "import failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Progress is printed and written as JSON.
    let printed: Vec<ImportProgress> = stdout
        .lines()
        .filter_map(ImportProgress::from_log_line)
        .collect();
    assert!(
        printed.iter().any(|p| p.phase == ImportPhase::Downloading
            && p.percent == Some(100.0)
            && p.total_bytes == Some(p.bytes)),
        "{stdout}"
    );
    let phases: Vec<ImportPhase> = printed.iter().map(|p| p.phase).collect();
    for phase in [
        ImportPhase::Verifying,
        ImportPhase::Converting,
        ImportPhase::Succeeded,
    ] {
        assert!(phases.contains(&phase), "{phases:?}");
    }
    assert_eq!(
        ImportProgress::latest_in_log(&stdout).unwrap().phase,
        ImportPhase::Succeeded
    );
    let p: ImportProgress = serde_json::from_slice(&std::fs::read(&progress).unwrap()).unwrap();
    assert_eq!(p.phase, ImportPhase::Succeeded);
    assert_eq!(p.percent, Some(100.0));
    assert!(p.message.contains("checksum verified"), "{}", p.message);
    let t: ImportProgress = serde_json::from_slice(&std::fs::read(&term).unwrap()).unwrap();
    assert_eq!(t.phase, ImportPhase::Succeeded);
    // The disk is raw, grown to 64Mi, and holds the image's data.
    let info = qemu_info(&dest);
    assert_eq!(info["format"], "raw");
    assert_eq!(info["virtual-size"], 64u64 << 20);
    assert_eq!(read_at(&dest, OFFSET, PATTERN.len()), PATTERN);
    assert!(
        leftovers(&disk_dir).is_empty(),
        "{:?}",
        leftovers(&disk_dir)
    );
}

#[tokio::test]
async fn wrong_checksum_is_refused_and_leaves_no_disk() {
    require(TOOLS);
    let dir = tempfile::tempdir().unwrap();
    let image = make_image(dir.path());
    let port = serve(image);
    let disk_dir = dir.path().join("disk");
    let dest = disk_dir.join("disk.img");
    let progress = dir.path().join("progress.json");
    let wrong = format!("sha256:{}", "0".repeat(64));
    let opts = ImportOptions {
        source: format!("http://127.0.0.1:{port}/image.qcow2"),
        checksum: Some(wrong.clone()),
        dest: dest.clone(),
        format: DiskFormat::Qcow2,
        size: None,
        progress_file: Some(progress.clone()),
        scratch_dir: None,
    };
    let err = import::run(&opts).await.unwrap_err();
    assert!(matches!(err, ImportError::ChecksumMismatch { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("expected {wrong}")) && msg.contains("got sha256:"),
        "{msg}"
    );
    assert!(!dest.exists());
    assert!(
        leftovers(&disk_dir).is_empty(),
        "{:?}",
        leftovers(&disk_dir)
    );
    let p: ImportProgress = serde_json::from_slice(&std::fs::read(&progress).unwrap()).unwrap();
    assert_eq!(p.phase, ImportPhase::Failed);
    assert!(p.message.contains("checksum mismatch"));

    // A missing URL is a clear download error.
    let opts = ImportOptions {
        source: format!("http://127.0.0.1:{port}/nope"),
        checksum: None,
        ..opts
    };
    let err = import::run(&opts).await.unwrap_err().to_string();
    assert!(err.contains("HTTP 404"), "{err}");
}

#[tokio::test]
async fn clones_a_local_path_with_sha512_and_never_overwrites_an_existing_disk() {
    require(TOOLS);
    let dir = tempfile::tempdir().unwrap();
    let image = make_image(dir.path());
    let dest = dir.path().join("clone").join("disk.img");
    let opts = ImportOptions {
        source: format!("file://{}", image.display()),
        checksum: Some(format!("sha512:{}", sha(&ring::digest::SHA512, &image))),
        dest: dest.clone(),
        format: DiskFormat::Qcow2,
        size: Some(32 << 20),
        progress_file: None,
        scratch_dir: Some(dir.path().join("scratch")),
    };
    let done = import::run(&opts).await.unwrap();
    assert_eq!(done.phase, ImportPhase::Succeeded);
    let info = qemu_info(&dest);
    assert_eq!(info["format"], "qcow2");
    assert_eq!(info["virtual-size"], 32u64 << 20);
    // Data survived: convert back to raw and look.
    let raw = dir.path().join("check.raw");
    run(
        "qemu-img",
        &[
            "convert",
            "-O",
            "raw",
            dest.to_str().unwrap(),
            raw.to_str().unwrap(),
        ],
    );
    assert_eq!(read_at(&raw, OFFSET, PATTERN.len()), PATTERN);

    // A re-run (Job retried) leaves the VM's disk alone.
    let before = std::fs::metadata(&dest).unwrap().modified().unwrap();
    let again = import::run(&opts).await.unwrap();
    assert!(
        again.message.contains("already imported"),
        "{}",
        again.message
    );
    assert_eq!(
        std::fs::metadata(&dest).unwrap().modified().unwrap(),
        before
    );

    // An image larger than the disk is refused.
    let small = ImportOptions {
        dest: dir.path().join("small").join("disk.img"),
        size: Some(8 << 20),
        ..opts
    };
    let err = import::run(&small).await.unwrap_err().to_string();
    assert!(err.contains("exceeds the disk size"), "{err}");

    // Size 0 (what the operator passes when it has none) keeps the image size.
    let keep = ImportOptions {
        dest: dir.path().join("keep").join("disk.img"),
        size: Some(0),
        ..small
    };
    import::run(&keep).await.unwrap();
    assert_eq!(qemu_info(&keep.dest)["virtual-size"], 16u64 << 20);
}

#[tokio::test]
async fn images_with_backing_files_are_refused() {
    require(TOOLS);
    let dir = tempfile::tempdir().unwrap();
    let base = make_image(dir.path());
    let overlay = dir.path().join("overlay.qcow2");
    run(
        "qemu-img",
        &[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-F",
            "qcow2",
            "-b",
            base.to_str().unwrap(),
            overlay.to_str().unwrap(),
        ],
    );
    let opts = ImportOptions {
        source: overlay.to_str().unwrap().into(),
        checksum: None,
        dest: dir.path().join("d").join("disk.img"),
        format: DiskFormat::Raw,
        size: None,
        progress_file: None,
        scratch_dir: None,
    };
    let err = import::run(&opts).await.unwrap_err().to_string();
    assert!(err.contains("backing file"), "{err}");
    assert!(!opts.dest.exists());
}
