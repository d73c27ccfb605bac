use offload::offload;

#[offload(thread)]
fn label<'a>(code: u32) -> &'a str {
    if code == 0 {
        "ok"
    } else {
        "error"
    }
}

#[offload(process)]
fn name(code: u32) -> &'static str {
    if code == 0 {
        "ok"
    } else {
        "error"
    }
}

fn main() {}
