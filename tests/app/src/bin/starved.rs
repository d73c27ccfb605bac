//! A program that runs out of threads and processes: started as an unprivileged user (the
//! process limit does not apply to root), it lowers its own `RLIMIT_NPROC` so that first no
//! thread can start, then none beyond what already runs. Its calls must fail with an error or
//! succeed, never panic, and a worker that cannot be reaped on a thread of its own must not be
//! left a zombie that blocks the next start.

use std::time::Duration;

const HARD: libc::rlim_t = 64;

fn processes_at_most(soft: libc::rlim_t) {
    let limit = libc::rlimit {
        rlim_cur: soft,
        rlim_max: HARD,
    };
    // SAFETY: setrlimit only reads `limit`.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NPROC, &limit) }, 0);
}

fn zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

#[offload::main]
fn main() {
    offload::ProcessPool::configure("default")
        .workers(1)
        .apply()
        .unwrap();
    // One thread only: the runtime starts none of its own.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        // This thread alone: neither the launcher thread nor a worker can start.
        processes_at_most(1);
        let refused = offload_test_app::square(3).await;
        processes_at_most(HARD);
        let first = offload_test_app::worker_pid().await.unwrap();
        // Room for what runs now (this thread, the launcher thread, the worker), no more: once
        // the worker dies, no reaper thread can start for it.
        processes_at_most(3);
        // SAFETY: kill has no memory-safety preconditions; `first` is our idle worker.
        unsafe { libc::kill(first as i32, libc::SIGKILL) };
        while !zombie(first) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let after = offload_test_app::square(4).await;
        let refused = match refused {
            Err(offload::Error::WorkerStart { reason, .. }) => format!("WorkerStart: {reason}"),
            other => format!("{other:?}"),
        };
        println!("refused: {refused}");
        println!("after: {after:?}, zombie left: {}", zombie(first));
    });
}
