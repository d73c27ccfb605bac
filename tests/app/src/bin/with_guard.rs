//! A program with the guard: `with_guard square N` prints N², `with_guard say TEXT` prints TEXT
//! from a worker, `with_guard park DIR` starts two workers that never return.

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
        _ => panic!("unknown arguments {args:?}"),
    }
}
