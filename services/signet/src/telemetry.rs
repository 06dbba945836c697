//! Logging set-up: human-readable or JSON lines on stderr, filtered by `SIGNET_LOG`, and,
//! with the `otlp` cargo feature and `--otlp-endpoint`, spans exported over OTLP/HTTP.

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::LogFormat;

/// Keeps the exporter alive; dropping it flushes pending spans.
pub struct TelemetryGuard {
    #[cfg(feature = "otlp")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        #[cfg(feature = "otlp")]
        if let Some(p) = self.provider.take() {
            let _ = p.shutdown();
        }
    }
}

pub fn init(format: LogFormat, otlp_endpoint: Option<&str>) -> anyhow::Result<TelemetryGuard> {
    let filter = EnvFilter::try_from_env("SIGNET_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only on a terminal: a log file or journald gets no escape codes.
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let fmt = match format {
        LogFormat::Text => fmt.boxed(),
        LogFormat::Json => fmt.json().boxed(),
    };
    let registry = tracing_subscriber::registry().with(fmt.with_filter(filter));

    #[cfg(feature = "otlp")]
    {
        let provider = match otlp_endpoint {
            Some(endpoint) => Some(otlp::provider(endpoint)?),
            None => None,
        };
        let layer = provider.as_ref().map(|p| {
            use opentelemetry::trace::TracerProvider as _;
            let filter = EnvFilter::try_from_env("SIGNET_OTLP_LOG")
                .unwrap_or_else(|_| EnvFilter::new("info"));
            tracing_opentelemetry::layer()
                .with_tracer(p.tracer("signet"))
                .with_filter(filter)
        });
        registry.with(layer).try_init()?;
        Ok(TelemetryGuard { provider })
    }
    #[cfg(not(feature = "otlp"))]
    {
        if otlp_endpoint.is_some() {
            anyhow::bail!("--otlp-endpoint needs a signet built with `--features otlp`");
        }
        registry.try_init()?;
        Ok(TelemetryGuard {})
    }
}

#[cfg(feature = "otlp")]
mod otlp {
    use opentelemetry_otlp::{Protocol, WithExportConfig};
    use opentelemetry_sdk::trace::SdkTracerProvider;

    /// A tracer provider exporting to `<endpoint>/v1/traces` (OTLP/HTTP, protobuf).
    pub fn provider(endpoint: &str) -> anyhow::Result<SdkTracerProvider> {
        let base = endpoint.trim_end_matches('/');
        let url = if base.ends_with("/v1/traces") {
            base.to_owned()
        } else {
            format!("{base}/v1/traces")
        };
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(url)
            .build()?;
        let resource = opentelemetry_sdk::Resource::builder()
            .with_service_name("signet")
            .build();
        Ok(SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .build())
    }
}
