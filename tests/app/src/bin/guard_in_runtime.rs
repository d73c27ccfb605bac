//! A program that calls the guard too late, inside the runtime `#[tokio::main]` built: it starts
//! no workers, and its calls fail at once with `GuardMissing`, which says where the guard goes
//! (instead of workers that crash at random beside a runtime they do not know).

#[tokio::main]
async fn main() {
    offload::serve_if_worker();
    println!("main started");
    for input in 0..3 {
        match offload_test_app::square(input).await {
            Ok(value) => println!("unexpected success: {value}"),
            Err(error) => println!("error: {error:?}"),
        }
    }
}
