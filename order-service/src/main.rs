//! `order-service`: wiring only; see `config.rs` for the flags.

use clap::Parser;
use order_service::config::{Cli, Command};
use order_service::{bench, db, outbox, saga, startup, telemetry, verify};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // One TLS provider in the process (aws-lc-rs, as for the AWS SDK and the participants):
    // installed as the default too, so no client ever has to guess.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = Cli::parse();
    // Kept to the end of main: dropping it flushes exported spans.
    let _telemetry = telemetry::init(&cli.log)?;
    match cli.command {
        Command::Serve(config) => {
            let app = startup::Application::build(&config).await?;
            tracing::info!(addr = %app.local_addr()?, "serving");
            app.run_until(startup::shutdown_signal()).await
        }
        Command::Migrate(config) => {
            let pool = db::pool(config.database_url, 1, config.db_acquire_timeout);
            let version = startup::migrate(&pool).await?;
            tracing::info!(version, "migrations applied");
            println!("schema at migration {version}");
            pool.close().await;
            Ok(())
        }
        Command::VerifyProjections(config) => {
            let report = verify::run(&config).await?;
            print!("{report}");
            if !report.drifts.is_empty() {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Outbox(command) => outbox::cli::run(command).await,
        Command::Bench(config) => bench::run(*config).await,
        Command::Sagas(args) => {
            if saga::cli::stuck(&args).await? {
                std::process::exit(1);
            }
            Ok(())
        }
    }
}
