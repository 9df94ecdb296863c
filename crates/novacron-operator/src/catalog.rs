//! The image catalog behind `marketplace://NAME` sources: a ConfigMap the
//! administrator maintains (by default `novacron-image-catalog` in the
//! operator's namespace; `NOVACRON_IMAGE_CATALOG=NAMESPACE/NAME` to change
//! it). Each key is an image name, each value the image URL, optionally
//! followed by its checksum:
//!
//! ```yaml
//! data:
//!   ubuntu-22.04-lts: https://cloud-images.ubuntu.com/jammy/current/jammy-server-cloudimg-amd64.img
//!   debian-12: https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-generic-amd64.qcow2 sha512:...
//! ```

use std::collections::BTreeMap;

use crate::validate::{ImageSource, parse_image_source};

/// One catalog entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CatalogImage {
    pub url: String,
    pub checksum: Option<String>,
}

/// Looks `name` up in the catalog's data.
pub fn lookup(data: &BTreeMap<String, String>, name: &str) -> Result<CatalogImage, String> {
    let Some(value) = data.get(name) else {
        let mut known: Vec<&str> = data.keys().map(String::as_str).collect();
        known.truncate(20);
        return Err(format!(
            "image {name:?} is not in the image catalog (known: {})",
            if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            }
        ));
    };
    let mut parts = value.split_whitespace();
    let url = parts.next().unwrap_or_default().to_owned();
    if !matches!(parse_image_source(&url), Ok(ImageSource::Http(_))) {
        return Err(format!(
            "the image catalog entry {name:?} is not an http(s) URL: {value:?}"
        ));
    }
    let checksum = parts.next().map(str::to_owned);
    if let Some(c) = &checksum {
        let ok = c
            .strip_prefix("sha256:")
            .map(|h| h.len() == 64)
            .or_else(|| c.strip_prefix("sha512:").map(|h| h.len() == 128))
            .unwrap_or(false);
        if !ok {
            return Err(format!(
                "the image catalog entry {name:?} has an invalid checksum {c:?} (expected sha256:<64 hex> or sha512:<128 hex>)"
            ));
        }
    }
    Ok(CatalogImage { url, checksum })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_with_and_without_checksums() {
        let sum = format!("sha256:{}", "a".repeat(64));
        let data = BTreeMap::from([
            ("ubuntu".to_owned(), "https://example.com/u.img".to_owned()),
            (
                "debian".to_owned(),
                format!("https://example.com/d.qcow2  {sum}\n"),
            ),
            ("bad".to_owned(), "ftp://example.com/x".to_owned()),
            (
                "badsum".to_owned(),
                "https://example.com/x md5:1".to_owned(),
            ),
        ]);
        assert_eq!(
            lookup(&data, "ubuntu").unwrap(),
            CatalogImage {
                url: "https://example.com/u.img".into(),
                checksum: None
            }
        );
        assert_eq!(lookup(&data, "debian").unwrap().checksum, Some(sum));
        assert!(lookup(&data, "bad").unwrap_err().contains("not an http"));
        assert!(lookup(&data, "badsum").unwrap_err().contains("checksum"));
        let e = lookup(&data, "arch").unwrap_err();
        assert!(e.contains("\"arch\"") && e.contains("ubuntu"), "{e}");
    }
}
