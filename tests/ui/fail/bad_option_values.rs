use offload::offload;

#[offload(process, timeout = "5 seconds")]
fn a(x: u64) -> u64 {
    x
}

#[offload(process, timeout = "0ms")]
fn b(x: u64) -> u64 {
    x
}

#[offload(process, retries = -1)]
fn c(x: u64) -> u64 {
    x
}

#[offload(thread = true)]
fn d(x: u64) -> u64 {
    x
}

#[offload(process, pool)]
fn e(x: u64) -> u64 {
    x
}

#[offload(process, timeout = "1.5s")]
fn f(x: u64) -> u64 {
    x
}

#[offload(process, pool = heavy)]
fn g(x: u64) -> u64 {
    x
}

fn main() {}
