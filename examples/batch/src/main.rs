//! A command-line batch job: analyse every file of a directory in worker processes, with a
//! progress bar, a summary, failures kept to their input, and a clean stop on Ctrl-C.
//!
//! Each file is analysed by `analyze`, a process-mode function, through its `f_map` companion
//! `analyze_map`, which runs one call per input on the pool's workers and hands back results
//! as they complete. Results go to a tab-separated file as they come, so that whatever
//! happens, what was done is kept.
//!
//! - An input that makes the analysis panic (a file that is not UTF-8 meets an `expect`) or
//!   crash (a file that asks for `std::process::abort()`, standing in for a crash in native
//!   code) fails alone: `Error::Panicked` or `Error::WorkerDied`, and the batch goes on.
//! - The first Ctrl-C stops handing out inputs: the ones running finish and are recorded, the
//!   rest are never started. A second Ctrl-C cancels the running ones too: dropping the map
//!   drops their calls, and the pool's default `OnCancel::Kill` kills their workers, so the
//!   cores are free at once. Either way the pool is shut down before the program exits, so
//!   that no worker outlives it, and the summary says what was done, what failed and what was
//!   not.
//!
//! Run with `cargo run --release -p batch` (it writes a demo set of files to a temporary
//! directory first), or `cargo run --release -p batch -- DIR`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use offload::{offload, ProcessPool};
use serde::{Deserialize, Serialize};
use tokio::signal::unix::{signal, SignalKind};

#[derive(Parser)]
#[command(about = "Analyse every file of a directory in worker processes")]
struct Cli {
    /// The directory whose files to analyse [default: a demo set, written to a temporary
    /// directory].
    dir: Option<PathBuf>,
    /// Where to write the results, one tab-separated line per input done or failed
    /// [default: DIR-results.tsv beside the directory].
    #[arg(long)]
    output: Option<PathBuf>,
    /// How many times each file is checksummed: the weight of the work per input.
    #[arg(long, default_value_t = 2000)]
    passes: u32,
    /// Worker processes [default: one per core].
    #[arg(long)]
    workers: Option<usize>,
    /// Files in the demo set.
    #[arg(long, default_value_t = 500)]
    demo_files: usize,
    /// Print a line for every input done, not only for failures.
    #[arg(short, long)]
    verbose: bool,
}

/// What the analysis finds in a file.
#[derive(Serialize, Deserialize, Debug)]
struct Analysis {
    lines: u64,
    words: u64,
    checksum: u64,
}

/// Analyses the file at `path`: its lines and words, and a checksum taken `passes` times over
/// (the CPU-heavy part). Runs in a worker process. `Err` is a file that cannot be read.
#[offload(process)]
fn analyze(path: PathBuf, passes: u32) -> Result<Analysis, String> {
    let bytes = std::fs::read(&path).map_err(|e| e.to_string())?;
    // The bug a batch meets sooner or later: an input nobody expected. Here it panics.
    let text = String::from_utf8(bytes).expect("every input is UTF-8 text");
    if text.starts_with("#abort") {
        // Stands in for a crash in native code that some input sets off.
        std::process::abort();
    }
    let mut checksum = 0xcbf2_9ce4_8422_2325_u64;
    for pass in 0..passes {
        for &byte in text.as_bytes() {
            checksum = (checksum ^ u64::from(byte) ^ u64::from(pass)).wrapping_mul(0x100_0000_01b3);
        }
    }
    Ok(Analysis {
        lines: text.lines().count() as u64,
        words: text.split_whitespace().count() as u64,
        checksum,
    })
}

/// How the inputs ended, by kind.
#[derive(Default)]
struct Tally {
    done: u64,
    unreadable: u64,
    panicked: u64,
    crashed: u64,
    other: u64,
}

impl Tally {
    fn failed(&self) -> u64 {
        self.unreadable + self.panicked + self.crashed + self.other
    }
}

/// Writes `count` text files of a few KiB, and two that the analysis fails on, into `dir`.
fn write_demo(dir: &Path, count: usize) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    const WORDS: [&str; 8] = [
        "offload", "worker", "process", "thread", "batch", "input", "result", "tokio",
    ];
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    for n in 0..count {
        let mut text = String::new();
        for word in 0..1000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            text.push_str(WORDS[(seed % 8) as usize]);
            text.push(if word % 12 == 11 { '\n' } else { ' ' });
        }
        std::fs::write(dir.join(format!("text-{n:05}.txt")), text)?;
    }
    std::fs::write(dir.join("text-00100-binary.txt"), [0x66, 0x6f, 0xff, 0xfe])?;
    std::fs::write(dir.join("text-00200-crash.txt"), "#abort\n")?;
    Ok(())
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
    // Caught from the start, so that an early Ctrl-C is never the default one.
    let mut interrupts = signal(SignalKind::interrupt())?;
    if let Some(workers) = cli.workers {
        ProcessPool::configure(offload::DEFAULT_POOL)
            .workers(workers)
            .apply()?;
    }
    let pool = ProcessPool::get(offload::DEFAULT_POOL)?;

    let dir = match cli.dir {
        Some(dir) => dir,
        None => {
            // Written anew on each run, over the last run's.
            let dir = std::env::temp_dir().join("offload-batch-demo");
            println!("writing {} demo files to {}", cli.demo_files, dir.display());
            let _ = std::fs::remove_dir_all(&dir);
            write_demo(&dir, cli.demo_files)?;
            dir
        }
    };
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .map(|entry| entry.map(|entry| entry.path()))
        .collect::<Result<_, _>>()?;
    inputs.sort();
    let output = cli.output.unwrap_or_else(|| {
        let mut name = dir.file_name().unwrap_or_default().to_owned();
        name.push("-results.tsv");
        dir.with_file_name(name)
    });
    let mut results = std::io::BufWriter::new(std::fs::File::create(&output)?);

    let total = inputs.len();
    let bar = ProgressBar::new(total as u64).with_style(
        ProgressStyle::with_template(
            "{elapsed_precise} [{bar:40}] {pos}/{len} files, {rate} files/s, ETA {eta}",
        )?
        .with_key(
            "rate",
            |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{:.0}", state.per_sec());
            },
        )
        .progress_chars("=> "),
    );
    println!(
        "analysing {total} files in {} on {} worker processes",
        dir.display(),
        pool.workers()
    );

    // The first Ctrl-C ends the inputs here: a driver that asks for the next one gets none.
    let stopping = Arc::new(AtomicBool::new(false));
    let handing_out = stopping.clone();
    let work = inputs
        .clone()
        .into_iter()
        .take_while(move |_| !handing_out.load(Ordering::Relaxed))
        .map(move |path| (path, cli.passes));
    // One input at a time per worker, so that a stop leaves only the running ones to finish.
    let mut analyses = analyze_map(work).chunk_size(1);

    let started = Instant::now();
    let mut tally = Tally::default();
    let mut interrupted = false;
    loop {
        let (index, result) = tokio::select! {
            next = analyses.next() => match next {
                Some(next) => next,
                None => break,
            },
            _ = interrupts.recv() => {
                if interrupted {
                    bar.suspend(|| println!("Ctrl-C again: cancelling the running inputs"));
                    break;
                }
                interrupted = true;
                stopping.store(true, Ordering::Relaxed);
                bar.suspend(|| {
                    println!("Ctrl-C: no new inputs; the running ones finish (Ctrl-C again to cancel them)")
                });
                continue;
            }
        };
        let file = name(&inputs[index]);
        let line = match result {
            Ok(Ok(analysis)) => {
                tally.done += 1;
                if cli.verbose {
                    bar.suspend(|| println!("done     {file}"));
                }
                format!(
                    "{file}\tdone\t{}\t{}\t{:016x}",
                    analysis.lines, analysis.words, analysis.checksum
                )
            }
            Ok(Err(error)) => {
                tally.unreadable += 1;
                bar.suspend(|| println!("failed   {file}: {error}"));
                format!("{file}\tunreadable\t{error}")
            }
            Err(error) => {
                let kind = match error {
                    offload::Error::Panicked { .. } => {
                        tally.panicked += 1;
                        "panicked"
                    }
                    offload::Error::WorkerDied { .. } => {
                        tally.crashed += 1;
                        "crashed"
                    }
                    _ => {
                        tally.other += 1;
                        "failed"
                    }
                };
                bar.suspend(|| println!("{kind:<8} {file}: {error}"));
                format!("{file}\t{kind}\t{error}")
            }
        };
        writeln!(results, "{}", line.replace('\n', " "))?;
        bar.inc(1);
    }
    // Dropping the map cancels what still runs (after a second Ctrl-C): those workers are
    // killed. Then the others finish what they run and exit, so none outlives the batch.
    drop(analyses);
    pool.shutdown().await;
    bar.finish_and_clear();
    results.flush()?;

    let elapsed = started.elapsed();
    let ended = tally.done + tally.failed();
    println!(
        "{}: {} done, {} failed ({} panicked, {} crashed, {} unreadable, {} other), {} not done, in {:.1} s",
        if interrupted { "interrupted" } else { "finished" },
        tally.done,
        tally.failed(),
        tally.panicked,
        tally.crashed,
        tally.unreadable,
        tally.other,
        total as u64 - ended,
        elapsed.as_secs_f64(),
    );
    println!(
        "results: {} ({ended} lines); {:.0} files/s",
        output.display(),
        ended as f64 / elapsed.max(Duration::from_millis(1)).as_secs_f64()
    );
    if interrupted {
        // The shell's convention for a program stopped by Ctrl-C.
        std::process::exit(130);
    }
    Ok(())
}
