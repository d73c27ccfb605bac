use offload::offload;

#[offload(thread)]
fn serve_forever(port: u16) -> ! {
    loop {
        let _ = port;
    }
}

fn main() {}
