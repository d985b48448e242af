//! `geotrack serve [--demo]`: the server until SIGINT/SIGTERM; with `--demo`, the basemap is
//! loaded when empty and a simulated fleet drives inside the process meanwhile.

use geotrack::auth::Scope;
use geotrack::{Application, Config};
use tokio_util::sync::CancellationToken;
use tools::simulate::{self, SimulateArgs};

use super::error::CliError;

/// Runs the server until a shutdown signal.
pub async fn serve(config: Config, demo: bool) -> Result<(), CliError> {
    let token = demo_token(&config);
    let app = Application::build(config).await?;
    if demo {
        // The demo map's land and borders come from the `countries` layer.
        match tiles::basemap::ensure(&app.state().db, geotrack::web::COUNTRIES).await {
            Ok(0) => {}
            Ok(count) => tracing::info!(countries = count, "basemap imported"),
            Err(error) => tracing::warn!("demo basemap not imported: {error}"),
        }
    }
    let url = format!("http://{}", app.local_addr());
    tracing::info!("geotrack listening on {url}");
    let stop = CancellationToken::new();
    if demo {
        let args = SimulateArgs {
            url: url.clone(),
            token,
            demo: true,
            quiet: true,
            ..SimulateArgs::demo()
        };
        let until = stop.clone();
        tokio::spawn(async move {
            tracing::info!(devices = args.devices, "demo fleet driving; open {}", args.url);
            match simulate::run(&args, until).await {
                Ok(report) => tracing::info!("demo fleet stopped: {report}"),
                Err(error) => tracing::error!("demo fleet: {error}"),
            }
        });
    }
    let on_signal = stop.clone();
    app.run_until(async move {
        geotrack::startup::shutdown_signal().await;
        on_signal.cancel();
    })
    .await?;
    Ok(())
}

/// A configured token that may write positions and fences, for the demo fleet.
fn demo_token(config: &Config) -> Option<String> {
    let entries = config.tokens.entries().ok()?;
    entries
        .iter()
        .find(|t| t.scopes.contains(&Scope::Admin))
        .map(|t| t.token.clone())
}
