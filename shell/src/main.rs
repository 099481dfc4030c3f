use std::process::ExitCode;

use clap::Parser;

use processor_shell::causes::with_causes;
use processor_shell::config::{redacted, AdminCli, AdminOnly, Cli, CliCommand, Config, LogFormat};
use processor_shell::gateway::{self, GatewayCli, GatewayConfig};
use processor_shell::postgres::connect_one;
use processor_shell::{admin, logging, migrate, service};

fn main() -> ExitCode {
    // The gateway reads its own variables, none of the service's: it is parsed on its own,
    // so that a service variable it never uses cannot stop it.
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "gateway") {
        args.remove(1);
        return gateway_main(GatewayCli::parse_from(args).config);
    }
    if AdminCli::is_admin_command() {
        let AdminOnly::Admin(args) = AdminCli::parse().command;
        return run_admin(args);
    }
    let mut cli = Cli::parse();
    let migrate_only = match cli.command.take() {
        // Admin needs Postgres only: the service's other settings are not checked, so
        // that a bad one elsewhere cannot stop an organizer.
        Some(CliCommand::Admin(args)) => return run_admin(args),
        Some(CliCommand::Migrate) => true,
        // Dispatched before the service's parsing; unreachable from a command line.
        Some(CliCommand::Gateway { .. }) => {
            eprintln!("error: run `processor gateway` on its own");
            return ExitCode::from(2);
        }
        None => false,
    };
    if let Err(error) = cli
        .config
        .load_secrets()
        .and_then(|()| cli.config.validate())
    {
        eprintln!("error: {error}");
        return ExitCode::from(2);
    }
    if let Err(error) = logging::init(cli.config.log_format, &cli.config.log_level) {
        eprintln!("error: {error}");
        return ExitCode::from(2);
    }
    let Some(runtime) = runtime() else {
        return ExitCode::FAILURE;
    };
    let config = cli.config;
    let result = runtime.block_on(async {
        if migrate_only {
            {
                let mut client = connect_one(&config).await.map_err(|e| with_causes(&e))?;
                let applied = migrate::migrate(&mut client)
                    .await
                    .map_err(|e| with_causes(&e))?;
                if applied.is_empty() {
                    tracing::info!("no pending migrations");
                }
                for name in applied {
                    tracing::info!(migration = name, "migration applied");
                }
                Ok(())
            }
        } else {
            service::run(config.clone())
                .await
                .map_err(|e| with_causes(&e))
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let error = without_passwords(error, &config);
            tracing::error!(%error, "processor failed");
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run_admin(args: admin::AdminArgs) -> ExitCode {
    if let Err(error) = logging::init(LogFormat::Text, "warn") {
        eprintln!("error: {error}");
        return ExitCode::from(2);
    }
    let Some(runtime) = runtime() else {
        return ExitCode::FAILURE;
    };
    let url = args.database_url.clone();
    match runtime.block_on(admin::run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", redacted(error.to_string(), &url));
            ExitCode::FAILURE
        }
    }
}

fn gateway_main(config: GatewayConfig) -> ExitCode {
    if let Err(error) = config.validate() {
        eprintln!("error: {error}");
        return ExitCode::from(2);
    }
    if let Err(error) = logging::init(config.log_format, &config.log_level) {
        eprintln!("error: {error}");
        return ExitCode::from(2);
    }
    let Some(runtime) = runtime() else {
        return ExitCode::FAILURE;
    };
    let (redis_url, database_url) = (config.redis_url.clone(), config.database_url.clone());
    match runtime.block_on(gateway::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let error = redacted(redacted(with_causes(&error), &redis_url), &database_url);
            tracing::error!(%error, "gateway failed");
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => Some(rt),
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            None
        }
    }
}

/// Causes come from libraries that may quote a connection string: never echo its password.
fn without_passwords(text: String, config: &Config) -> String {
    let text = redacted(text, &config.database_url);
    redacted(text, &config.redis_url)
}
