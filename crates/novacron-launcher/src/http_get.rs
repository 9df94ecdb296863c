//! A minimal HTTP(S) GET client shared by the httpGet hook and the importer
//! (hyper + rustls with the system's CA roots, like kube's own client).

use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Sends a GET and returns the response head with a streaming body.
pub async fn get(url: &str) -> Result<http::Response<Incoming>, String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("invalid URL {url:?}: {e}"))?;
    let builder = hyper_rustls::HttpsConnectorBuilder::new();
    // Native roots are only needed (and only loaded) for https, so plain
    // http works in images without a CA bundle.
    let builder = if uri.scheme_str() == Some("https") {
        builder
            .with_provider_and_native_roots(rustls::crypto::ring::default_provider())
            .map_err(|e| format!("no usable CA certificates for https: {e}"))?
    } else {
        builder.with_tls_config(
            rustls::ClientConfig::builder_with_provider(
                rustls::crypto::ring::default_provider().into(),
            )
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth(),
        )
    };
    let connector = builder.https_or_http().enable_http1().build();
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    let request = http::Request::get(uri)
        .header(
            http::header::USER_AGENT,
            concat!("novacron-launcher/", env!("CARGO_PKG_VERSION")),
        )
        .body(Empty::new())
        .map_err(|e| e.to_string())?;
    client
        .request(request)
        .await
        .map_err(|e| format!("GET {url}: {}", error_chain(&e)))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}
