//! `berth`: the daemon (`berth serve`) and the commands an operator runs beside it.

use std::path::PathBuf;
use std::process::ExitCode;

use berth_cri::config::{Config, ConfigError};
use berth_cri::host::HostInfo;
use clap::{Parser, Subcommand};

mod cli;

#[derive(Parser)]
#[command(
    name = "berth",
    version,
    about = "A Kubernetes CRI v1 container runtime"
)]
struct Cli {
    /// The config file (default /etc/berth/config.toml; embedded defaults when that file is absent).
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the CRI on a unix socket until SIGTERM or SIGINT.
    Serve(ServeArgs),
    /// Print the version of berth and of the CRI it speaks.
    Version,
    /// Show storage, cgroups, runtimes and networks as the daemon would see them, and what is missing.
    Info,
    /// Configuration helpers.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Images of the running daemon.
    #[command(subcommand)]
    Image(cli::image::ImageCommand),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Overrides `root`.
    #[arg(long)]
    root: Option<PathBuf>,
    /// Overrides `state`.
    #[arg(long)]
    state: Option<PathBuf>,
    /// Overrides `socket`.
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Overrides `log_level`.
    #[arg(long)]
    log_level: Option<String>,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print every setting with its default value, as a config file.
    Default,
    /// Validate the config file and print the effective configuration.
    Check,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            let mut config = Config::load(cli.config.as_deref())?;
            if let Some(v) = args.root {
                config.root = v;
            }
            if let Some(v) = args.state {
                config.state = v;
            }
            if let Some(v) = args.socket {
                config.socket = v;
            }
            if let Some(v) = args.log_level {
                config.log_level = v;
            }
            init_logging(&config.log_level)?;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(berth_cri::daemon::serve(config))?;
            Ok(())
        }
        Command::Version => {
            println!("berth {}", env!("CARGO_PKG_VERSION"));
            println!("CRI API: v1 (cri-api v0.36)");
            Ok(())
        }
        Command::Info => {
            let config = Config::load(cli.config.as_deref())?;
            let host = HostInfo::probe(&config);
            println!("Server Version: {}", env!("CARGO_PKG_VERSION"));
            println!(
                "Socket: {} ({})",
                config.socket.display(),
                daemon_state(&config)
            );
            print!("{host}");
            Ok(())
        }
        Command::Config(ConfigCommand::Default) => {
            print!("{}", Config::default().to_toml());
            Ok(())
        }
        Command::Image(cmd) => {
            let config = Config::load(cli.config.as_deref())?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(cli::image::run(&config.socket, cmd))
        }
        Command::Config(ConfigCommand::Check) => {
            let config = Config::load(cli.config.as_deref())?;
            print!("{}", config.to_toml());
            Ok(())
        }
    }
}

/// Whether a daemon answers on the configured socket, for `berth info`.
fn daemon_state(config: &Config) -> String {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return "unknown".into();
    };
    rt.block_on(async {
        match berth_cri::client::Client::connect(&config.socket).await {
            Ok(mut c) => match c
                .runtime
                .version(berth_cri::api::VersionRequest::default())
                .await
            {
                Ok(v) => format!(
                    "daemon running, {} {}",
                    v.get_ref().runtime_name,
                    v.get_ref().runtime_version
                ),
                Err(e) => format!("daemon not answering: {}", e.message()),
            },
            Err(_) => "no daemon running".into(),
        }
    })
}

fn init_logging(filter: &str) -> Result<(), ConfigError> {
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| filter.to_string());
    let env_filter =
        tracing_subscriber::EnvFilter::try_new(&filter).map_err(|e| ConfigError::Invalid {
            path: "RUST_LOG or --log-level".into(),
            key: "log_level".into(),
            message: e.to_string(),
        })?;
    tracing_subscriber::fmt()
        .with_env_filter(env_filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    Ok(())
}
