//! The importer (`novacron-launcher import`, run as a Job by the operator):
//! fills a VM disk from an `http(s)://` URL or a local path (a cloned PVC
//! mounted read-only), verifies a sha256/sha512 checksum while streaming,
//! then converts with `qemu-img convert` and grows with `qemu-img resize`.
//!
//! The disk is written to `<dest>.part` and renamed at the end, so an
//! existing `<dest>` is always a complete import and is never overwritten
//! (a re-run Job must not wipe a VM's data).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::api::{ImportPhase, ImportProgress};
use crate::config::DiskFormat;

/// What to import.
#[derive(Clone, Debug)]
pub struct ImportOptions {
    /// `http(s)://...`, `file:///path` or an absolute path.
    pub source: String,
    /// `sha256:<hex>` or `sha512:<hex>`.
    pub checksum: Option<String>,
    /// Disk image to create.
    pub dest: PathBuf,
    /// Format of the disk image.
    pub format: DiskFormat,
    /// Virtual size to grow the disk to, in bytes (`None` or 0: keep the
    /// image's own size).
    pub size: Option<u64>,
    /// JSON progress file ([`ImportProgress`]), rewritten as the import goes.
    pub progress_file: Option<PathBuf>,
    /// Where the download is staged; default the destination's directory.
    pub scratch_dir: Option<PathBuf>,
}

/// Import failures, each with a message fit for a VM condition.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("invalid image source {0:?}: {1}")]
    Source(String, String),
    #[error("invalid checksum {0:?}: expected sha256:<64 hex> or sha512:<128 hex>")]
    ChecksumFormat(String),
    #[error("checksum mismatch for {source_url}: expected {expected}, got {actual}")]
    ChecksumMismatch {
        source_url: String,
        expected: String,
        actual: String,
    },
    #[error("download failed: {0}")]
    Download(String),
    #[error("{0}")]
    Io(String),
    #[error("qemu-img: {0}")]
    QemuImg(String),
    #[error("image rejected: {0}")]
    Rejected(String),
}

/// Where the image comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Http(String),
    File(PathBuf),
}

/// Parses a source. `marketplace://` and `pvc://` are resolved by the
/// operator (catalog lookup; source PVC mounted into the Job) before the
/// importer runs, so they are refused here with a pointer to that.
pub fn parse_source(source: &str) -> Result<Source, ImportError> {
    let err = |m: &str| Err(ImportError::Source(source.into(), m.into()));
    if source.starts_with("http://") || source.starts_with("https://") {
        return match source.parse::<http::Uri>() {
            Ok(u) if u.host().is_some() => Ok(Source::Http(source.into())),
            _ => err("not a valid URL"),
        };
    }
    if let Some(path) = source.strip_prefix("file://") {
        return if path.starts_with('/') {
            Ok(Source::File(path.into()))
        } else {
            err("file:// needs an absolute path")
        };
    }
    if source.starts_with('/') {
        return Ok(Source::File(source.into()));
    }
    if source.starts_with("marketplace://") || source.starts_with("pvc://") {
        return err(
            "resolved by the operator: pass the catalog URL or the mounted source PVC path",
        );
    }
    err("expected http(s)://, file:// or an absolute path")
}

/// Checksum algorithm and expected digest (lowercase hex).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checksum {
    pub algorithm: &'static ring::digest::Algorithm,
    pub name: &'static str,
    pub hex: String,
}

/// Parses `sha256:<hex>` / `sha512:<hex>`.
pub fn parse_checksum(s: &str) -> Result<Checksum, ImportError> {
    let (name, hex) = s
        .split_once(':')
        .ok_or_else(|| ImportError::ChecksumFormat(s.into()))?;
    let (algorithm, name, len) = match name.to_ascii_lowercase().as_str() {
        "sha256" => (&ring::digest::SHA256, "sha256", 64),
        "sha512" => (&ring::digest::SHA512, "sha512", 128),
        _ => return Err(ImportError::ChecksumFormat(s.into())),
    };
    if hex.len() != len || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ImportError::ChecksumFormat(s.into()));
    }
    Ok(Checksum {
        algorithm,
        name,
        hex: hex.to_ascii_lowercase(),
    })
}

/// Parses a size: bytes or a Kubernetes binary/decimal quantity
/// (`20Gi`, `512Mi`, `10G`).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("invalid size {s:?}"))?;
    let mult: u64 = match unit {
        "" => 1,
        "k" => 1000,
        "M" => 1000u64.pow(2),
        "G" => 1000u64.pow(3),
        "T" => 1000u64.pow(4),
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        _ => {
            return Err(format!(
                "invalid size unit in {s:?} (use Ki, Mi, Gi, Ti, k, M, G, T)"
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size {s:?} overflows"))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reports progress to stdout and the progress file, at most twice a second.
struct Reporter {
    file: Option<PathBuf>,
    last: Option<Instant>,
}

impl Reporter {
    async fn report(&mut self, p: &ImportProgress, force: bool) {
        if !force
            && self
                .last
                .is_some_and(|t| t.elapsed() < Duration::from_millis(500))
        {
            return;
        }
        self.last = Some(Instant::now());
        // One JSON line per report: readable in `kubectl logs` and parsed by
        // the operator with `api::ImportProgress::from_log_line`.
        println!("{}", p.to_log_line());
        if let Some(file) = &self.file {
            // Atomic replace: a reader never sees a half-written file.
            let tmp = file.with_extension("tmp");
            if tokio::fs::write(&tmp, serde_json::to_vec(p).unwrap_or_default())
                .await
                .is_ok()
            {
                let _ = tokio::fs::rename(&tmp, file).await;
            }
        }
    }
}

/// Runs the import; returns the final progress record.
pub async fn run(opts: &ImportOptions) -> Result<ImportProgress, ImportError> {
    let mut reporter = Reporter {
        file: opts.progress_file.clone(),
        last: None,
    };
    let result = run_inner(opts, &mut reporter).await;
    let last = match &result {
        Ok(p) => p.clone(),
        Err(e) => ImportProgress {
            phase: ImportPhase::Failed,
            message: e.to_string(),
            ..Default::default()
        },
    };
    reporter.report(&last, true).await;
    result
}

async fn run_inner(
    opts: &ImportOptions,
    reporter: &mut Reporter,
) -> Result<ImportProgress, ImportError> {
    let source = parse_source(&opts.source)?;
    let size = opts.size.filter(|s| *s > 0);
    let checksum = opts.checksum.as_deref().map(parse_checksum).transpose()?;
    if tokio::fs::try_exists(&opts.dest).await.unwrap_or(false) {
        return Ok(ImportProgress {
            phase: ImportPhase::Succeeded,
            percent: Some(100.0),
            message: format!("{} already imported; left untouched", opts.dest.display()),
            ..Default::default()
        });
    }
    let dest_dir = opts
        .dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let scratch = opts.scratch_dir.as_deref().unwrap_or(dest_dir);
    let io = |what: &str, p: &Path, e: std::io::Error| {
        ImportError::Io(format!("{what} {}: {e}", p.display()))
    };
    for d in [scratch, dest_dir] {
        tokio::fs::create_dir_all(d)
            .await
            .map_err(|e| io("cannot create", d, e))?;
    }
    let file_name = opts
        .dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "disk".into());
    let download = scratch.join(format!(".{file_name}.download"));
    let part = dest_dir.join(format!(".{file_name}.part"));

    let result = async {
        let (bytes, digest) = fetch(&source, &download, checksum.as_ref(), reporter).await?;
        if let (Some(c), Some(actual)) = (&checksum, digest) {
            reporter
                .report(
                    &ImportProgress {
                        phase: ImportPhase::Verifying,
                        bytes,
                        ..Default::default()
                    },
                    true,
                )
                .await;
            if actual != c.hex {
                return Err(ImportError::ChecksumMismatch {
                    source_url: opts.source.clone(),
                    expected: format!("{}:{}", c.name, c.hex),
                    actual: format!("{}:{actual}", c.name),
                });
            }
        }
        reporter
            .report(
                &ImportProgress {
                    phase: ImportPhase::Converting,
                    bytes,
                    ..Default::default()
                },
                true,
            )
            .await;
        let info = image_info(&download).await?;
        if let Some(backing) = &info.backing {
            // A backing file would make QEMU read an arbitrary path of the pod.
            return Err(ImportError::Rejected(format!(
                "image has a backing file ({backing}); flatten it first"
            )));
        }
        if let Some(size) = size
            && info.virtual_size > size
        {
            return Err(ImportError::Rejected(format!(
                "image virtual size {} bytes exceeds the disk size {size} bytes",
                info.virtual_size
            )));
        }
        let _ = tokio::fs::remove_file(&part).await;
        qemu_img(&[
            "convert".as_ref(),
            "-f".as_ref(),
            info.format.as_ref(),
            "-O".as_ref(),
            opts.format.as_str().as_ref(),
            download.as_os_str(),
            part.as_os_str(),
        ])
        .await?;
        if let Some(size) = size
            && size > info.virtual_size
        {
            let size = size.to_string();
            qemu_img(&[
                "resize".as_ref(),
                "-f".as_ref(),
                opts.format.as_str().as_ref(),
                part.as_os_str(),
                size.as_ref(),
            ])
            .await?;
        }
        tokio::fs::rename(&part, &opts.dest)
            .await
            .map_err(|e| io("cannot rename to", &opts.dest, e))?;
        Ok(ImportProgress {
            phase: ImportPhase::Succeeded,
            bytes,
            total_bytes: Some(bytes),
            percent: Some(100.0),
            message: format!(
                "imported {} ({}{}) into {} ({})",
                opts.source,
                info.format,
                if checksum.is_some() {
                    ", checksum verified"
                } else {
                    ""
                },
                opts.dest.display(),
                opts.format.as_str()
            ),
        })
    }
    .await;
    let _ = tokio::fs::remove_file(&download).await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(&part).await;
    }
    result
}

/// Streams the source to `to`, hashing on the way; returns bytes and digest.
async fn fetch(
    source: &Source,
    to: &Path,
    checksum: Option<&Checksum>,
    reporter: &mut Reporter,
) -> Result<(u64, Option<String>), ImportError> {
    let mut out = tokio::fs::File::create(to)
        .await
        .map_err(|e| ImportError::Io(format!("cannot create {}: {e}", to.display())))?;
    let mut hasher = checksum.map(|c| ring::digest::Context::new(c.algorithm));
    let mut progress = ImportProgress {
        phase: ImportPhase::Downloading,
        ..Default::default()
    };
    let write_err =
        |e: std::io::Error| ImportError::Io(format!("cannot write {}: {e}", to.display()));
    let mut on_chunk = |chunk: &[u8], progress: &mut ImportProgress| {
        if let Some(h) = hasher.as_mut() {
            h.update(chunk);
        }
        progress.bytes += chunk.len() as u64;
        progress.percent = progress
            .total_bytes
            .filter(|t| *t > 0)
            .map(|t| progress.bytes as f64 * 100.0 / t as f64);
    };
    match source {
        Source::File(path) => {
            let mut file = tokio::fs::File::open(path).await.map_err(|e| {
                ImportError::Download(format!("cannot open {}: {e}", path.display()))
            })?;
            progress.total_bytes = file.metadata().await.ok().map(|m| m.len());
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = file
                    .read(&mut buf)
                    .await
                    .map_err(|e| ImportError::Download(format!("read {}: {e}", path.display())))?;
                if n == 0 {
                    break;
                }
                out.write_all(&buf[..n]).await.map_err(write_err)?;
                on_chunk(&buf[..n], &mut progress);
                reporter.report(&progress, false).await;
            }
        }
        Source::Http(url) => {
            let mut url = url.clone();
            let mut response = crate::http_get::get(&url)
                .await
                .map_err(ImportError::Download)?;
            for _ in 0..5 {
                if !response.status().is_redirection() {
                    break;
                }
                let location = response
                    .headers()
                    .get(http::header::LOCATION)
                    .and_then(|l| l.to_str().ok())
                    .ok_or_else(|| {
                        ImportError::Download(format!("{url}: redirect without Location"))
                    })?;
                url = resolve_location(&url, location);
                response = crate::http_get::get(&url)
                    .await
                    .map_err(ImportError::Download)?;
            }
            if !response.status().is_success() {
                return Err(ImportError::Download(format!(
                    "GET {url}: HTTP {}",
                    response.status()
                )));
            }
            progress.total_bytes = response
                .headers()
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok());
            let mut body = response.into_body();
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| ImportError::Download(format!("GET {url}: {e}")))?;
                if let Some(chunk) = frame.data_ref() {
                    out.write_all(chunk).await.map_err(write_err)?;
                    on_chunk(chunk, &mut progress);
                    reporter.report(&progress, false).await;
                }
            }
            if let Some(total) = progress.total_bytes
                && total != progress.bytes
            {
                return Err(ImportError::Download(format!(
                    "GET {url}: got {} of {total} bytes",
                    progress.bytes
                )));
            }
        }
    }
    out.flush().await.map_err(write_err)?;
    out.sync_all().await.map_err(write_err)?;
    reporter.report(&progress, true).await;
    Ok((progress.bytes, hasher.map(|h| hex(h.finish().as_ref()))))
}

/// An absolute or host-relative redirect target.
fn resolve_location(base: &str, location: &str) -> String {
    if location.contains("://") {
        return location.into();
    }
    let uri: http::Uri = base.parse().expect("base URL was parsed before");
    format!(
        "{}://{}{}",
        uri.scheme_str().unwrap_or("http"),
        uri.authority().map(|a| a.as_str()).unwrap_or(""),
        location
    )
}

/// What `qemu-img info` says about a downloaded image.
#[derive(Debug)]
struct ImageInfo {
    format: String,
    virtual_size: u64,
    backing: Option<String>,
}

async fn image_info(path: &Path) -> Result<ImageInfo, ImportError> {
    let out = qemu_img(&["info".as_ref(), "--output=json".as_ref(), path.as_os_str()]).await?;
    let v: serde_json::Value = serde_json::from_str(&out)
        .map_err(|e| ImportError::QemuImg(format!("unreadable info output: {e}")))?;
    let format = v["format"].as_str().unwrap_or_default().to_string();
    if format.is_empty() {
        return Err(ImportError::Rejected(
            "qemu-img cannot tell the image format".into(),
        ));
    }
    Ok(ImageInfo {
        format,
        virtual_size: v["virtual-size"].as_u64().unwrap_or(0),
        backing: v["backing-filename"].as_str().map(String::from),
    })
}

async fn qemu_img(args: &[&std::ffi::OsStr]) -> Result<String, ImportError> {
    let out = tokio::process::Command::new("qemu-img")
        .args(args)
        .output()
        .await
        .map_err(|e| {
            ImportError::QemuImg(format!(
                "cannot run qemu-img (Debian package qemu-utils): {e}"
            ))
        })?;
    if !out.status.success() {
        return Err(ImportError::QemuImg(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources() {
        assert_eq!(
            parse_source("https://img.example/x.qcow2").unwrap(),
            Source::Http("https://img.example/x.qcow2".into())
        );
        assert_eq!(
            parse_source("file:///src/disk.img").unwrap(),
            Source::File("/src/disk.img".into())
        );
        assert_eq!(
            parse_source("/src/disk.img").unwrap(),
            Source::File("/src/disk.img".into())
        );
        assert!(
            parse_source("pvc://ns/name")
                .unwrap_err()
                .to_string()
                .contains("resolved by the operator")
        );
        assert!(
            parse_source("marketplace://ubuntu")
                .unwrap_err()
                .to_string()
                .contains("resolved by the operator")
        );
        assert!(parse_source("ftp://x").is_err());
        assert!(parse_source("file://relative").is_err());
    }

    #[test]
    fn checksums() {
        let c = parse_checksum(&format!("sha256:{}", "AB".repeat(32))).unwrap();
        assert_eq!((c.name, c.hex.len()), ("sha256", 64));
        assert!(c.hex.chars().all(|ch| !ch.is_ascii_uppercase()));
        assert_eq!(
            parse_checksum(&format!("SHA512:{}", "0".repeat(128)))
                .unwrap()
                .name,
            "sha512"
        );
        for bad in [
            "sha256:abc",
            "md5:00",
            "nocolon",
            &format!("sha256:{}", "g".repeat(64)),
        ] {
            assert!(
                parse_checksum(bad)
                    .unwrap_err()
                    .to_string()
                    .contains("expected sha256"),
                "{bad}"
            );
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("20Gi"), Ok(20 << 30));
        assert_eq!(parse_size("512Mi"), Ok(512 << 20));
        assert_eq!(parse_size("10G"), Ok(10_000_000_000));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("1.5Gi").is_err());
        assert!(parse_size("Gi").is_err());
        assert!(parse_size("99999999999Ti").is_err());
    }

    #[test]
    fn redirects() {
        assert_eq!(resolve_location("http://h:8/a/b", "/c"), "http://h:8/c");
        assert_eq!(resolve_location("http://h/a", "https://o/x"), "https://o/x");
    }
}
