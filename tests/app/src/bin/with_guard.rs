//! A program with the guard: `with_guard square N` prints N², `with_guard say TEXT` prints TEXT
//! from a worker, `with_guard park DIR` starts two workers that never return, and
//! `with_guard between-calls` restores SIGPIPE's default action, as command-line tools do, then
//! kills its idle worker and calls again. `with_guard ctrl-c DIR` shuts down gracefully on
//! Ctrl-C while two calls run, and `with_guard replaced` replaces its own executable on disk
//! between two calls. `with_guard leave-a-sleeper` has a worker start `sleep 600`, prints its
//! pid and returns from main; `with_guard leave-a-sleeper-and-wait` prints it and waits to be
//! killed.

#[offload::main]
#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["square", n] => println!(
            "square = {}",
            offload_test_app::square(n.parse().unwrap()).await.unwrap()
        ),
        ["say", text] => println!(
            "said {} bytes",
            offload_test_app::say(text.to_owned()).await.unwrap()
        ),
        ["park", dir] => {
            let dir = std::path::PathBuf::from(dir);
            let (a, b) = tokio::join!(
                offload_test_app::park_forever(dir.clone()),
                offload_test_app::park_forever(dir)
            );
            println!("parked calls returned: {a:?} {b:?}");
        }
        ["between-calls"] => {
            // SAFETY: setting a signal's disposition to its default has no preconditions.
            unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
            let dead = offload_test_app::worker_pid().await.unwrap();
            // SAFETY: kill has no memory-safety preconditions; `dead` is our idle worker.
            unsafe { libc::kill(dead as i32, libc::SIGKILL) };
            // Dead once it is a zombie: nothing reaps an idle worker until it is used.
            while !std::fs::read_to_string(format!("/proc/{dead}/stat")).is_ok_and(|stat| {
                stat.rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z')
            }) {
                tokio::task::yield_now().await;
            }
            let square = offload_test_app::square(7).await;
            let fresh = offload_test_app::worker_pid().await.unwrap();
            println!("square = {square:?}, fresh worker: {}", fresh != dead);
        }
        ["ctrl-c", dir] => {
            use tokio::signal::unix::{signal, SignalKind};
            let dir = std::path::PathBuf::from(dir);
            let release = dir.join("release");
            // Listening before anything can send it, so that Ctrl-C never finds the default
            // action (ending the program) in place.
            let mut interrupt = signal(SignalKind::interrupt()).unwrap();
            let calls = tokio::spawn(futures_join(dir.clone(), release.clone()));
            while std::fs::read_dir(&dir).unwrap().count() < 2 {
                tokio::task::yield_now().await;
            }
            println!("running");
            interrupt.recv().await;
            // The pattern: stop admitting calls, let the running ones finish (here they are
            // told to), then exit.
            std::fs::write(&release, b"").unwrap();
            offload::ProcessPool::get("default")
                .unwrap()
                .shutdown()
                .await;
            let refused = offload_test_app::square(2).await;
            let (a, b) = calls.await.unwrap();
            println!(
                "after ctrl-c: {}, {}, new call: {refused:?}",
                a.is_ok(),
                b.is_ok()
            );
        }
        ["replaced"] => {
            use std::os::unix::fs::PermissionsExt;
            offload::ProcessPool::configure("default")
                .max_calls_per_worker(1)
                .apply()
                .unwrap();
            let before = offload_test_app::square(3).await;
            // A deploy, or a `cargo build` while the program runs: another file at its path.
            let exe = std::env::current_exe().unwrap();
            std::fs::remove_file(&exe).unwrap();
            std::fs::write(&exe, "#!/bin/sh\nexit 3\n").unwrap();
            std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
            let after = offload_test_app::square(4).await;
            println!("before: {before:?}, after: {after:?}");
        }
        ["leave-a-sleeper"] => {
            println!("{}", offload_test_app::start_sleeper(600).await.unwrap());
        }
        ["leave-a-sleeper-and-wait"] => {
            println!("{}", offload_test_app::start_sleeper(600).await.unwrap());
            std::future::pending::<()>().await;
        }
        _ => panic!("unknown arguments {args:?}"),
    }
}

async fn futures_join(
    dir: std::path::PathBuf,
    release: std::path::PathBuf,
) -> (Result<u32, offload::Error>, Result<u32, offload::Error>) {
    tokio::join!(
        offload_test_app::work_until(dir.clone(), release.clone()),
        offload_test_app::work_until(dir, release)
    )
}
