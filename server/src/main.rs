//! `lockstep`: the command line. Parses flags, sets up logging, and calls
//! the library; every failure ends in one sentence and a non-zero exit.

use std::process::ExitCode;

/// jemalloc instead of glibc malloc: under steady load glibc's per-thread
/// arenas kept growing the resident set (docs/benchmarks.md, the soak
/// runs); jemalloc purges freed pages back to the system on a timer.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use lockstep_core::{
    db::{ensure_data_dir, Db},
    eventstore::projections::Projector,
    eventstore::replay,
    identity::accounts::{self, NewUser, Role},
    identity::password::generate_password,
    identity::tokens::{create_token, Abilities},
    services::Services,
};
use lockstep_server::{
    application::shutdown_signal,
    bootstrap::AdminBootstrap,
    config::{LogFormat, ServeConfig, StorageArgs},
    telemetry, Application,
};

#[derive(Parser)]
#[command(
    name = "lockstep",
    version,
    about = "Lockstep: a realtime control plane for smart lockers"
)]
struct Cli {
    /// Log output: human or json.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Human, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (web UI, API) on the configured database.
    Serve(Box<ServeConfig>),
    /// Apply database migrations and exit.
    Migrate(StorageArgs),
    /// Rebuild read models from the event stream (no side effects run).
    Replay {
        /// locker_banks, grants or open_requests; all when absent. Repeatable.
        #[arg(long = "projector")]
        projectors: Vec<String>,
        #[command(flatten)]
        storage: StorageArgs,
    },
    /// Manage user accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Manage provisioning keys (what lockers with unknown serials present).
    #[command(subcommand)]
    ProvisioningKey(KeyCommand),
    /// Manage locker banks.
    #[command(subcommand)]
    Locker(LockerCommand),
    /// Print the realtime hub's Pusher app id, key and secret (for a
    /// Laravel app or a script that signs for itself): the
    /// LOCKSTEP_PUSHER_APP_* settings, or those made on first start.
    PusherCredentials {
        #[command(flatten)]
        storage: StorageArgs,
    },
}

#[derive(Subcommand)]
enum LockerCommand {
    /// Reset a bank's provisioning: its broker account is disabled and its
    /// next registration provisions it again (also brings a decommissioned
    /// bank back).
    ResetProvisioning {
        /// The bank's serial.
        #[arg(long)]
        serial: String,
        /// An admin of the bank's tenant (recorded as the actor).
        #[arg(long)]
        email: String,
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        storage: StorageArgs,
    },
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Create a provisioning key for an admin's tenant; the key is printed
    /// alone on the last line.
    Create {
        /// An admin of the tenant the lockers will join.
        #[arg(long)]
        email: String,
        #[arg(long, default_value = "cli")]
        name: String,
        #[command(flatten)]
        storage: StorageArgs,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user; prints a generated password when none is given.
    Add {
        #[arg(long)]
        email: String,
        #[arg(long, value_parser = ["admin", "user"])]
        role: String,
        /// Tenant (operator) name; created when new.
        #[arg(long, default_value = "Default")]
        tenant: String,
        #[arg(long)]
        password: Option<String>,
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        storage: StorageArgs,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create an API token; the token is printed alone on the last line.
    Create {
        #[arg(long)]
        email: String,
        /// Comma-separated, e.g. compartment.open,locker.read (`*`: all the
        /// user's role allows).
        #[arg(long)]
        abilities: String,
        #[arg(long, default_value = "cli")]
        name: String,
        #[command(flatten)]
        storage: StorageArgs,
    },
    /// Revoke an API token by its id (printed by `token create`); it stops
    /// working at once.
    Revoke {
        #[arg(long)]
        id: uuid::Uuid,
        #[command(flatten)]
        storage: StorageArgs,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    match run(cli.command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn open_db(storage: &StorageArgs) -> Result<Db, String> {
    let (url, is_default) = storage.resolved_url();
    if is_default {
        ensure_data_dir(&storage.data_dir).map_err(|e| e.to_string())?;
    }
    Db::open(&url).await.map_err(|e| e.to_string())
}

async fn run(command: Command) -> Result<(), String> {
    match command {
        Command::Serve(config) => serve(*config).await,
        Command::Migrate(storage) => {
            open_db(&storage).await?;
            println!("migrations applied");
            Ok(())
        }
        Command::Replay {
            projectors,
            storage,
        } => {
            let projectors = projectors
                .iter()
                .map(|p| Projector::parse(p))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| e.to_string())?;
            let db = open_db(&storage).await?;
            let services = Services::new(db, Default::default());
            let bar = ProgressBar::new(0).with_style(
                ProgressStyle::with_template("{bar:40} {pos}/{len} events ({per_sec})")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            let done = replay::replay(&services, &projectors, |done, total| {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
            })
            .await
            .map_err(|e| format!("replay failed (nothing was changed): {e}"))?;
            bar.finish();
            println!("replayed {done} events");
            Ok(())
        }
        Command::User(UserCommand::Add {
            email,
            role,
            tenant,
            password,
            name,
            storage,
        }) => {
            let db = open_db(&storage).await?;
            let role: Role = role
                .parse()
                .map_err(|e: lockstep_core::CoreError| e.to_string())?;
            let generated = password.is_none().then(generate_password);
            let password = password.or_else(|| generated.clone()).unwrap_or_default();
            let user = accounts::add_user(
                &db,
                NewUser {
                    email,
                    name,
                    role,
                    tenant_name: tenant,
                    password,
                },
            )
            .await
            .map_err(|e| e.to_string())?;
            println!("created {} {} ({})", user.role, user.email, user.id);
            if let Some(p) = generated {
                println!("password: {p}");
            }
            Ok(())
        }
        Command::Token(TokenCommand::Create {
            email,
            abilities,
            name,
            storage,
        }) => {
            let abilities = Abilities::parse_list(&abilities).map_err(|e| e.to_string())?;
            let db = open_db(&storage).await?;
            let token = create_token(&db, &email, &name, &abilities)
                .await
                .map_err(|e| e.to_string())?;
            println!(
                "token {} for {email} with {}",
                token.id,
                abilities.to_list()
            );
            println!("{}", token.secret);
            Ok(())
        }
        Command::PusherCredentials { storage } => {
            let db = open_db(&storage).await?;
            let env = |name: &str| std::env::var(name).ok();
            let keys = lockstep_server::hub::AppKeys::load(
                &db,
                env("LOCKSTEP_PUSHER_APP_ID"),
                env("LOCKSTEP_PUSHER_APP_KEY"),
                env("LOCKSTEP_PUSHER_APP_SECRET"),
            )
            .await
            .map_err(|e| e.to_string())?;
            println!("PUSHER_APP_ID={}", keys.app_id);
            println!("PUSHER_APP_KEY={}", keys.key);
            println!("PUSHER_APP_SECRET={}", keys.secret());
            Ok(())
        }
        Command::Token(TokenCommand::Revoke { id, storage }) => {
            let db = open_db(&storage).await?;
            lockstep_core::identity::tokens::revoke_token(&db, id)
                .await
                .map_err(|e| match e {
                    lockstep_core::CoreError::NotFound => {
                        format!("no token {id} that is not revoked already")
                    }
                    other => other.to_string(),
                })?;
            println!("token {id} revoked");
            Ok(())
        }
        Command::Locker(LockerCommand::ResetProvisioning {
            serial,
            email,
            reason,
            storage,
        }) => {
            let db = open_db(&storage).await?;
            let services = lockstep_core::Services::new(db, Default::default());
            let bank =
                lockstep_server::demo::reset_provisioning(&services, &email, &serial, &reason)
                    .await
                    .map_err(|e| match e {
                        lockstep_core::CoreError::NotFound => {
                            format!(
                                "no locker bank with serial {serial:?} in the tenant of {email}"
                            )
                        }
                        other => other.to_string(),
                    })?;
            println!(
                "locker bank {serial} ({bank}) reset: its next registration provisions it again"
            );
            Ok(())
        }
        Command::ProvisioningKey(KeyCommand::Create {
            email,
            name,
            storage,
        }) => {
            let db = open_db(&storage).await?;
            let services = lockstep_core::Services::new(db, Default::default());
            let (key, secret) = lockstep_server::demo::create_key_for(&services, &email, &name)
                .await
                .map_err(|e| e.to_string())?;
            println!(
                "provisioning key {} ({}) for the tenant of {email}",
                key.id, key.name
            );
            println!("{secret}");
            Ok(())
        }
    }
}

async fn serve(config: ServeConfig) -> Result<(), String> {
    let demo = config.demo;
    let admin_email = config.admin_email.clone();
    let data_dir = config.storage.data_dir.clone();
    let app = Application::build(config)
        .await
        .map_err(|e| e.to_string())?;
    if let AdminBootstrap::Created {
        email,
        generated_password,
    } = &app.admin
    {
        match generated_password {
            Some(p) => println!(
                "\n  First start: created admin {email} with password {p}\n  (shown once; set LOCKSTEP_ADMIN_PASSWORD to choose it)\n"
            ),
            None => println!("\n  First start: created admin {email}\n"),
        }
    }
    let addr = app.local_addr();
    if demo {
        match &app.embedded_broker {
            Some(broker) => {
                lockstep_server::demo::spawn(
                    app.services().clone(),
                    broker.clone(),
                    &admin_email,
                    &data_dir,
                )
                .await
                    .map_err(|e| format!("cannot start the demo lockers: {e}"))?
            }
            None => tracing::warn!("--demo needs the embedded broker (no MQTT_URL, LOCKSTEP_MQTT=embedded); no simulated lockers"),
        }
    }
    tracing::info!(%addr, "Lockstep listening on http://{addr}");
    app.run_until(shutdown_signal())
        .await
        .map_err(|e| format!("the server stopped with an error: {e}"))
}
