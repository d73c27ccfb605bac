//! A program with the guard: `with_guard square N` prints N², `with_guard say TEXT` prints TEXT
//! from a worker, `with_guard park DIR` starts two workers that never return, and
//! `with_guard between-calls` restores SIGPIPE's default action, as command-line tools do, then
//! kills its idle worker and calls again.

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
        _ => panic!("unknown arguments {args:?}"),
    }
}
