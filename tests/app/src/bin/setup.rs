//! A program whose workers run a setup before their first call: `setup ok|fail|panic LOG`. The
//! setup appends a line to `LOG` each time it runs, then keeps per-worker state (ok), returns an
//! error (fail) or panics (panic); main makes three calls and prints what they returned.

use std::io::Write;
use std::sync::OnceLock;

/// What the setup made, once per worker.
static LOADED: OnceLock<String> = OnceLock::new();

fn setup() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    // Workers get no arguments: the mode and the log come through the environment.
    let mode = std::env::var("SETUP_MODE").unwrap_or_default();
    let log = std::env::var("SETUP_LOG").unwrap_or_default();
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .map_err(|e| format!("cannot open {log}: {e}"))?;
    writeln!(
        file,
        "setup ran in {} ({} arguments)",
        std::process::id(),
        args.len() - 1
    )
    .map_err(|e| e.to_string())?;
    match mode.as_str() {
        "ok" => {
            LOADED.get_or_init(|| format!("model of worker {}", std::process::id()));
            Ok(())
        }
        "panic" => panic!("setup exploded"),
        _ => Err("no model at /nowhere".to_owned()),
    }
}

#[offload::offload(process)]
fn loaded() -> Option<String> {
    LOADED.get().cloned()
}

#[offload::main(worker_init = setup)]
#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().expect("a mode");
    let log = args.next().expect("a log file");
    std::env::set_var("SETUP_MODE", &mode);
    std::env::set_var("SETUP_LOG", &log);
    offload::ProcessPool::configure("default")
        .workers(1)
        .apply()
        .unwrap();
    for _ in 0..3 {
        println!("{:?}", loaded().await);
    }
}
