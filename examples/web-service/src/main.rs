//! A web service that stays responsive while it does CPU-heavy work.
//!
//! - `POST /hash` `{"password": "…"}` hashes a password with Argon2id in a worker process
//!   (`#[offload(process)]`): tens of milliseconds of CPU that would otherwise stall every
//!   other request served by the same runtime thread. `POST /verify`
//!   `{"password": "…", "hash": "…"}` checks one the same way.
//! - `PUT /files/{name}` and `GET /files/{name}` write and read files on a blocking thread
//!   (`#[offload(thread)]`).
//! - `GET /health` answers at once, with the process pool's statistics; it is what the load
//!   generator probes.
//!
//! Run with `cargo run --release -p web-service`, and stop with Ctrl-C: the service stops
//! accepting connections, lets running requests finish, then stops its worker processes.
//! `cargo run --release -p web-service -- bench` measures it (see `bench.rs`).

mod bench;

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use clap::{Parser, Subcommand, ValueEnum};
use offload::{offload, OnCancel, ProcessPool};
use serde::{Deserialize, Serialize};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::Semaphore;

#[derive(Parser)]
#[command(about = "A web service that hashes passwords in worker processes")]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Serve (the default).
    Serve(ServeArgs),
    /// Start the service three times (hashing offloaded, inline, with spawn_blocking), load
    /// each on loopback, and print the latency of /hash and /health.
    Bench(bench::BenchArgs),
}

#[derive(clap::Args, Clone)]
struct ServeArgs {
    /// Address to listen on; port 0 picks a free one (the address is printed).
    #[arg(long, default_value = "127.0.0.1:3000")]
    listen: SocketAddr,
    /// Where /files/{name} keeps its files [default: a directory in the system's temp dir].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Where password hashing runs: in worker processes, on the event loop, or on tokio's
    /// blocking threads (the last two for comparison).
    #[arg(long, value_enum, default_value_t = HashIn::Offload)]
    hash_in: HashIn,
    /// Worker processes [default: one per core].
    #[arg(long)]
    workers: Option<usize>,
    /// Hashing requests admitted at once; the ones beyond get 503 at once instead of waiting.
    #[arg(long, default_value_t = 64)]
    max_in_flight: usize,
    /// Argon2 passes over memory (its time cost).
    #[arg(long, default_value_t = 2)]
    argon2_passes: u32,
    /// Argon2 memory, in KiB.
    #[arg(long, default_value_t = 19 * 1024)]
    argon2_kib: u32,
}

#[derive(ValueEnum, Clone, Copy, PartialEq, Eq, Debug)]
enum HashIn {
    Offload,
    Inline,
    SpawnBlocking,
}

/// Argon2's cost: what a hash takes in memory and time.
#[derive(Serialize, Deserialize, Clone, Copy)]
struct Cost {
    kib: u32,
    passes: u32,
}

fn argon2(cost: Cost) -> Result<argon2::Argon2<'static>, String> {
    let params = argon2::Params::new(cost.kib, cost.passes, 1, None).map_err(|e| e.to_string())?;
    Ok(argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        params,
    ))
}

/// Hashes `password` with a fresh salt into a PHC string (`$argon2id$v=19$m=…`). CPU-heavy:
/// it runs in a worker process. Its cost is the server's own setting, so its time is bounded:
/// it needs no timeout, and a call dropped because its client hung up finishes (see `serve`).
#[offload(process)]
fn hash_password(password: String, cost: Cost) -> Result<String, String> {
    use argon2::password_hash::{rand_core::OsRng, PasswordHasher, SaltString};
    let salt = SaltString::generate(&mut OsRng);
    let hash = argon2(cost)?
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| e.to_string())?;
    Ok(hash.to_string())
}

/// The most memory a hash sent to `/verify` may ask for, in KiB.
const MAX_VERIFY_KIB: u32 = 64 * 1024;

/// Whether `password` matches `phc`, a PHC string such as [`hash_password`] makes. The cost
/// comes from the client's string, so it is untrusted: memory is capped here, and a hash that
/// asks for more passes than two seconds allow fails with `Error::Timeout`, its worker killed.
#[offload(process, timeout = "2s")]
fn verify_password(password: String, phc: String) -> Result<bool, String> {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    let hash = PasswordHash::new(&phc).map_err(|e| e.to_string())?;
    let params = argon2::Params::try_from(&hash).map_err(|e| e.to_string())?;
    if params.m_cost() > MAX_VERIFY_KIB {
        return Err(format!("a hash may use at most {MAX_VERIFY_KIB} KiB"));
    }
    Ok(argon2::Argon2::default()
        .verify_password(password.as_bytes(), &hash)
        .is_ok())
}

/// Blocking file I/O: it runs on a thread of tokio's blocking pool.
#[offload(thread)]
fn read_file(path: PathBuf) -> std::io::Result<Vec<u8>> {
    std::fs::read(path)
}

/// Writes through a temporary file and a rename, so that a reader never sees half a file.
#[offload(thread)]
fn write_file(path: PathBuf, bytes: Vec<u8>) -> std::io::Result<()> {
    let partial = path.with_extension("partial");
    std::fs::write(&partial, bytes)?;
    std::fs::rename(partial, path)
}

struct App {
    pool: &'static ProcessPool,
    hash_in: HashIn,
    cost: Cost,
    data_dir: PathBuf,
    /// Hashing requests in flight; when none is left, a request gets 503 at once, so that a
    /// burst is turned away instead of queueing without bound behind the workers.
    admission: Semaphore,
}

/// An error response: a status and `{"error": "…"}`.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(serde_json::json!({ "error": self.1 }));
        (self.0, body).into_response()
    }
}

/// How an offloaded call that did not run to its end shows to the client.
impl From<offload::Error> for ApiError {
    fn from(error: offload::Error) -> Self {
        let status = match error {
            // The pool is stopping: try again, elsewhere or later.
            offload::Error::Shutdown => StatusCode::SERVICE_UNAVAILABLE,
            offload::Error::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            // A panic, a crashed worker, a value that did not cross: our fault, not the client's.
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        eprintln!("request failed: {error}");
        ApiError(status, error.to_string())
    }
}

fn internal(message: String) -> ApiError {
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, message)
}

#[derive(Deserialize)]
struct HashRequest {
    password: String,
}

#[derive(Deserialize)]
struct VerifyRequest {
    password: String,
    hash: String,
}

async fn hash(
    State(app): State<Arc<App>>,
    Json(request): Json<HashRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let _admitted = app.admission.try_acquire().map_err(|_| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many hashing requests at once; try again".into(),
        )
    })?;
    let (password, cost) = (request.password, app.cost);
    let hashed = match app.hash_in {
        HashIn::Offload => hash_password(password, cost).await?,
        // For comparison only: this stalls the runtime thread for the whole hash.
        HashIn::Inline => hash_password_blocking(password, cost),
        HashIn::SpawnBlocking => {
            tokio::task::spawn_blocking(move || hash_password_blocking(password, cost))
                .await
                .map_err(|e| internal(e.to_string()))?
        }
    };
    let phc = hashed.map_err(internal)?;
    Ok(Json(serde_json::json!({ "hash": phc })))
}

async fn verify(
    State(app): State<Arc<App>>,
    Json(request): Json<VerifyRequest>,
) -> Result<StatusCode, ApiError> {
    let _admitted = app.admission.try_acquire().map_err(|_| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many hashing requests at once; try again".into(),
        )
    })?;
    let matches = verify_password(request.password, request.hash)
        .await?
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, e))?;
    Ok(if matches {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::UNAUTHORIZED
    })
}

/// The file `name` in the data directory, if `name` is a plain file name.
fn file_path(dir: &Path, name: &str) -> Result<PathBuf, ApiError> {
    let plain = !name.is_empty()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !plain {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "a file name is letters, digits, '.', '_' and '-', not starting with '.'".into(),
        ));
    }
    Ok(dir.join(name))
}

async fn put_file(
    State(app): State<Arc<App>>,
    UrlPath(name): UrlPath<String>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let path = file_path(&app.data_dir, &name)?;
    write_file(path, body.to_vec())
        .await?
        .map_err(|e| internal(e.to_string()))?;
    Ok(StatusCode::CREATED)
}

async fn get_file(
    State(app): State<Arc<App>>,
    UrlPath(name): UrlPath<String>,
) -> Result<Vec<u8>, ApiError> {
    let path = file_path(&app.data_dir, &name)?;
    match read_file(path).await? {
        Ok(bytes) => Ok(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(ApiError(StatusCode::NOT_FOUND, format!("no file {name}")))
        }
        Err(e) => Err(internal(e.to_string())),
    }
}

/// Liveness, and what the process pool is doing: what an operator or a load balancer polls.
async fn health(State(app): State<Arc<App>>) -> Json<serde_json::Value> {
    let stats = app.pool.stats();
    Json(serde_json::json!({
        "status": "ok",
        "queued": stats.queued,
        "running": stats.running,
        "workers_started": stats.workers_started,
    }))
}

/// Ctrl-C and SIGTERM, caught from the moment this is made: a signal that comes before the
/// service waits for it is not lost, nor does it kill the service the default way.
struct StopSignals {
    interrupt: Signal,
    terminate: Signal,
}

impl StopSignals {
    fn catch() -> std::io::Result<StopSignals> {
        Ok(StopSignals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    /// The first of them to come, by name.
    async fn first(mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "Ctrl-C",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }
}

/// How long running requests get to finish after a stop signal before they are cut off.
const GRACE: Duration = Duration::from_secs(10);

async fn serve(args: ServeArgs) -> Result<(), Box<dyn std::error::Error>> {
    let stop_signals = StopSignals::catch()?;
    // A client that hangs up mid-hash drops its request's future, and with it the call. Finish
    // lets the worker end that hash (a bounded few tens of milliseconds) and stay, rather than
    // killing it and paying for a new process. A call with a timeout (`verify_password`) is
    // killed when dropped whatever this says: its time is not bounded, so that is right too.
    let mut pool = ProcessPool::configure(offload::DEFAULT_POOL).on_cancel(OnCancel::Finish);
    if let Some(workers) = args.workers {
        pool = pool.workers(workers);
    }
    pool.apply()?;
    let pool = ProcessPool::get(offload::DEFAULT_POOL)?;
    if args.hash_in == HashIn::Offload {
        // Workers ready before the first request, so that it does not wait for them.
        pool.start().await?;
    }
    let data_dir = args
        .data_dir
        .unwrap_or_else(|| std::env::temp_dir().join("offload-web-service"));
    std::fs::create_dir_all(&data_dir)?;
    let app = Arc::new(App {
        pool,
        hash_in: args.hash_in,
        cost: Cost {
            kib: args.argon2_kib,
            passes: args.argon2_passes,
        },
        data_dir,
        admission: Semaphore::new(args.max_in_flight),
    });
    let router = Router::new()
        .route("/hash", post(hash))
        .route("/verify", post(verify))
        .route("/files/{name}", get(get_file).put(put_file))
        .route("/health", get(health))
        .with_state(app);

    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    // The line tests and the load generator wait for.
    println!(
        "listening on http://{} (hashing: {:?}, {} worker processes)",
        listener.local_addr()?,
        args.hash_in,
        pool.workers()
    );

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        axum::serve(listener, router)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .into_future(),
    );
    let signal = stop_signals.first().await;
    println!("{signal}: no new connections; letting running requests finish");
    let _ = stop.send(());
    match tokio::time::timeout(GRACE, server).await {
        Ok(served) => {
            served??;
            // Nothing is running any more; the workers exit and are reaped.
            pool.shutdown().await;
        }
        Err(_) => {
            println!("requests still running after {GRACE:?}; stopping them");
            pool.shutdown_now().await;
        }
    }
    println!("stopped");
    Ok(())
}

#[offload::main]
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Bench(args)) => bench::run(args).await,
        Some(Command::Serve(args)) => serve(args).await,
        None => serve(cli.serve).await,
    }
}
