//! JSON documents from strangers, parsed where a hostile one cannot take the program down.
//!
//! Each input is a JSON document, gzip-compressed or not, that this program parses and
//! summarises. The parser accepts any depth of nesting (serde_json with its recursion limit
//! turned off, as a document store might), and that is what a hostile input goes for:
//!
//! - `deep.json`, a million `[`: the recursive parser overflows its stack. In-process that is
//!   the end of the program (Rust aborts on a stack overflow); in a worker it is an
//!   `Error::WorkerDied` for that input, and the next input gets a new worker.
//! - `wide.json`, a few MiB of `{"a":0}` that unfold into a hundred times that in memory: the
//!   pool's address-space limit stops it.
//! - `spaces.json.gz`, a small file of gzip that unpacks to gigabytes of blanks, parsed as a
//!   stream: memory stays flat, but it would keep a core busy for long; the pool's CPU-time
//!   limit stops it.
//!
//! Run with `cargo run --release -p untrusted` (it writes those inputs and a few honest ones to
//! a temporary directory and parses them all), or give it files and directories to parse.
//! `--in-process` parses on the program's own thread instead, to show the difference.

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use offload::{offload, ProcessPool};
use serde::{Deserialize, Serialize};

#[derive(Parser)]
#[command(about = "Parse untrusted JSON documents in worker processes under resource limits")]
struct Cli {
    /// Files or directories of `.json` and `.json.gz` documents [default: a demo set, written to
    /// a temporary directory].
    inputs: Vec<PathBuf>,
    /// The address space each worker may use, in MiB.
    #[arg(long, default_value_t = 512)]
    max_memory_mib: u64,
    /// The CPU time each document may take, in seconds.
    #[arg(long, default_value_t = 2)]
    max_cpu_secs: u64,
    /// Worker processes [default: one per core].
    #[arg(long)]
    workers: Option<usize>,
    /// Parse on this process's own thread, unprotected: a hostile input ends the program.
    #[arg(long)]
    in_process: bool,
}

/// What a document holds.
#[derive(Serialize, Deserialize, Debug)]
struct Summary {
    values: u64,
    depth: u64,
}

/// Parses the document at `path` and summarises it. Runs in a worker process, under the pool's
/// limits; its `Err` is a document that is not JSON, which is no danger to anyone.
#[offload(process)]
fn inspect(path: PathBuf) -> Result<Summary, String> {
    let file = BufReader::new(File::open(&path).map_err(|e| e.to_string())?);
    let reader: Box<dyn Read> = if path.extension().is_some_and(|e| e == "gz") {
        Box::new(flate2::read::MultiGzDecoder::new(file))
    } else {
        Box::new(file)
    };
    let mut parser = serde_json::Deserializer::from_reader(BufReader::new(reader));
    parser.disable_recursion_limit();
    let document = serde_json::Value::deserialize(&mut parser).map_err(|e| e.to_string())?;
    parser.end().map_err(|e| e.to_string())?;
    let mut summary = Summary {
        values: 0,
        depth: 0,
    };
    walk(&document, 1, &mut summary);
    // Dropping a deep value recurses too; the parser above already refused anything deeper.
    Ok(summary)
}

fn walk(value: &serde_json::Value, depth: u64, summary: &mut Summary) {
    summary.values += 1;
    summary.depth = summary.depth.max(depth);
    match value {
        serde_json::Value::Array(items) => {
            for item in items {
                walk(item, depth + 1, summary);
            }
        }
        serde_json::Value::Object(fields) => {
            for item in fields.values() {
                walk(item, depth + 1, summary);
            }
        }
        _ => {}
    }
}

/// Writes the demo set into `dir`: honest documents and the three hostile ones.
fn write_demo(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        dir.join("order.json"),
        r#"{"id": 7, "items": [{"sku": "A-1", "qty": 2}, {"sku": "B-9", "qty": 1}], "paid": true}"#,
    )?;
    std::fs::write(dir.join("not-json.json"), "{\"id\": 7, \"items\": [")?;
    let mut gz = flate2::write::GzEncoder::new(
        File::create(dir.join("orders.json.gz"))?,
        flate2::Compression::default(),
    );
    let order = r#"{"id": 1, "items": [{"sku": "A-1", "qty": 2}]}"#;
    write!(gz, "[{}]", vec![order; 1000].join(","))?;
    gz.finish()?;
    std::fs::write(dir.join("deep.json"), "[".repeat(1_000_000))?;
    let mut wide = b"[".to_vec();
    wide.extend_from_slice(&b"{\"a\":0},".repeat(1 << 20));
    wide.extend_from_slice(b"{}]");
    std::fs::write(dir.join("wide.json"), wide)?;
    write_blanks(&dir.join("spaces.json.gz"), 8 << 30)
}

/// A gzip file of `[`, `blanks` spaces (rounded down to whole MiB) and `]`: 8 GiB of them
/// take 8 MiB. A gzip file may hold several members one after the other, so one member of
/// 4 MiB of spaces is compressed once and written as often as needed.
fn write_blanks(path: &Path, blanks: u64) -> std::io::Result<()> {
    let member = |bytes: &[u8]| -> std::io::Result<Vec<u8>> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(bytes)?;
        gz.finish()
    };
    const BLOCK: u64 = 4 << 20;
    let spaces = member(&[b' '; BLOCK as usize])?;
    let mut file = std::io::BufWriter::new(File::create(path)?);
    file.write_all(&member(b"[")?)?;
    for _ in 0..blanks / BLOCK {
        file.write_all(&spaces)?;
    }
    file.write_all(&member(b"]")?)?;
    file.flush()
}

/// The documents among `inputs`: files as they are, directories' files in name order.
fn documents(inputs: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    let mut documents = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(input)?
                .map(|entry| entry.map(|entry| entry.path()))
                .collect::<Result<_, _>>()?;
            files.sort();
            documents.extend(files);
        } else {
            documents.push(input.clone());
        }
    }
    Ok(documents)
}

fn name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into(),
    )
}

#[offload::main]
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cli = Cli::parse();
    let mut pool = ProcessPool::configure(offload::DEFAULT_POOL)
        .max_address_space(cli.max_memory_mib << 20)
        .max_cpu_per_call(Duration::from_secs(cli.max_cpu_secs));
    if let Some(workers) = cli.workers {
        pool = pool.workers(workers);
    }
    pool.apply()?;

    let inputs = if cli.inputs.is_empty() {
        // Written anew on each run, over the last run's.
        let dir = std::env::temp_dir().join("offload-untrusted-demo");
        println!("writing the demo inputs to {}", dir.display());
        write_demo(&dir)?;
        vec![dir]
    } else {
        cli.inputs
    };
    let documents = documents(&inputs)?;

    if cli.in_process {
        for path in &documents {
            // Said before, since a hostile input ends the program before it can say anything.
            println!("parsing {} on this thread", name(path));
            match inspect_blocking(path.clone()) {
                Ok(summary) => println!("ok       {}: {summary:?}", name(path)),
                Err(e) => println!("invalid  {}: {e}", name(path)),
            }
        }
        return Ok(());
    }
    let (mut ok, mut invalid, mut stopped) = (0, 0, 0);
    let mut results = inspect_map(documents.clone());
    while let Some((index, result)) = results.next().await {
        let name = name(&documents[index]);
        match result {
            Ok(Ok(summary)) => {
                ok += 1;
                println!(
                    "ok       {name}: {} values, {} deep",
                    summary.values, summary.depth
                );
            }
            Ok(Err(e)) => {
                invalid += 1;
                println!("invalid  {name}: {e}");
            }
            // The worker died on this input: stack overflow, address space, CPU time.
            Err(e) => {
                stopped += 1;
                println!("stopped  {name}: {e}");
            }
        }
    }
    println!(
        "{} documents: {ok} ok, {invalid} invalid, {stopped} stopped in their worker",
        documents.len()
    );
    Ok(())
}
