use std::process::ExitCode;

use clap::Parser;

use processor_shell::config::{Cli, CliCommand};
use processor_shell::gateway::{self, GatewayCli, GatewayConfig};
use processor_shell::postgres::connect_one;
use processor_shell::{logging, migrate, service};

fn main() -> ExitCode {
    // The gateway reads its own variables, none of the service's: it is parsed on its own,
    // so that a service variable it never uses cannot stop it.
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "gateway") {
        args.remove(1);
        return gateway_main(GatewayCli::parse_from(args).config);
    }
    let cli = Cli::parse();
    if let Err(error) = cli.config.validate() {
        eprintln!("error: {error}");
        return ExitCode::from(2);
    }
    if let Err(error) = logging::init(cli.config.log_format, &cli.config.log_level) {
        eprintln!("error: {error}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Some(CliCommand::Migrate) => {
                let mut client = connect_one(&cli.config).await.map_err(|e| e.to_string())?;
                let applied = migrate::migrate(&mut client)
                    .await
                    .map_err(|e| e.to_string())?;
                if applied.is_empty() {
                    tracing::info!("no pending migrations");
                }
                for name in applied {
                    tracing::info!(migration = name, "migration applied");
                }
                Ok(())
            }
            None => service::run(cli.config).await.map_err(|e| e.to_string()),
            // Dispatched before the service's parsing; unreachable from a command line.
            Some(CliCommand::Gateway { .. }) => Err("run `processor gateway` on its own".into()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "processor failed");
            eprintln!("error: {error}");
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
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(gateway::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "gateway failed");
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
