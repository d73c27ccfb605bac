use offload::offload;

#[offload(process)]
fn add(a: u64, b: u64) -> u64 {
    println!("worker {} adding", std::process::id());
    a + b
}

#[offload(thread)]
fn shout(s: String) -> String {
    s.to_uppercase()
}

#[offload(process)]
fn boom(x: u32) -> u32 {
    if x > 1 { panic!("too big: {x}") }
    x
}

#[offload::main]
#[tokio::main]
async fn main() {
    println!("parent {}", std::process::id());
    println!("{:?}", add(2, 3).await);
    println!("{:?}", shout("hi".into()).await);
    println!("{:?}", boom(5).await);
    println!("{:?}", boom(1).await);
    let t = std::time::Instant::now();
    for i in 0..1000 { add_quiet(i, 1).await.unwrap(); }
    println!("1000 sequential: {:?}", t.elapsed());
}

#[offload(process)]
fn add_quiet(a: u64, b: u64) -> u64 { a + b }
