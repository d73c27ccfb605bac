use offload::offload;

/// CPU-heavy: runs in a worker process.
#[offload(process)]
pub fn add(a: u64, b: u64) -> u64 {
    a + b
}

/// Every option: a named pool, a stable registry name, a timeout and retries.
#[offload(process, pool = "heavy", name = "stats::mean", timeout = "250ms", retries = 2)]
pub fn mean(values: Vec<f64>) -> Result<f64, String> {
    if values.is_empty() {
        return Err("no values".to_owned());
    }
    Ok(values.iter().sum::<f64>() / values.len() as f64)
}

/// `Vec<u8>` crosses as one byte string, not one serde call per byte.
#[offload(process)]
pub fn xor(bytes: Vec<u8>, key: u8) -> Vec<u8> {
    bytes.into_iter().map(|byte| byte ^ key).collect()
}

/// Returning nothing.
#[offload(process)]
fn log(line: String) {
    println!("{line}");
}

mod reexported {
    /// A crate that re-exports offload points the expansion at its path.
    #[my_framework::offload(process, crate = my_framework::offload)]
    pub fn square(x: u64) -> u64 {
        x * x
    }
}
