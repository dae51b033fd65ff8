//! obauth's tracing spans exported to OpenTelemetry with tracing-opentelemetry: each API
//! call becomes an OpenTelemetry span (`obauth.call`, with the operation, attempts, status,
//! the server's request id, elapsed time and outcome as attributes), nested under the
//! service's own span.
//!
//! `cargo run -p obauth-async --example opentelemetry` runs against the embedded
//! obauth-mock and prints the exported spans on stdout (opentelemetry-stdout's exporter):
//! no collector needed. In a service, swap the exporter for OTLP
//! (`opentelemetry-otlp`) and keep the rest.

#![allow(clippy::print_stdout, clippy::unwrap_used)]

use obauth_async::core::BaseUrl;
use obauth_async::core::truelayer::Environment;
use obauth_async::types::truelayer::Scope;
use obauth_async::types::{ClientSecret, Scopes};
use obauth_async::{TokenSource, TrueLayerClient};
use obauth_mock::MockServer;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Instrument as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The exporter: stdout here, OTLP to a collector in production.
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(opentelemetry_stdout::SpanExporter::default())
        .build();
    let tracer = provider.tracer("my-service");
    tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(tracer))
        .init();

    let mock = MockServer::start();
    let client = TrueLayerClient::builder(
        Environment::Custom(BaseUrl::parse(&mock.base_url())?),
        obauth_mock::TRUELAYER_CLIENT_ID,
    )
    .client_secret(ClientSecret::new(obauth_mock::TRUELAYER_CLIENT_SECRET))
    .build()?;
    let payments = TokenSource::truelayer(client, Scopes::from([Scope::Payments]));

    // The service's own span: obauth's `obauth.call` span becomes its child.
    async {
        let token = payments.access_token().await?;
        println!("got a token of {} bytes", token.expose_secret().len());
        Ok::<_, obauth_async::Error>(())
    }
    .instrument(tracing::info_span!("pay-invoice", invoice = "inv-42"))
    .await?;

    provider.shutdown()?;
    Ok(())
}
