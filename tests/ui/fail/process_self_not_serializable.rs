use offload::offload;

struct Image {
    pixels: Vec<u8>,
}

#[offload]
impl Image {
    #[offload(process)]
    fn brightness(self) -> u64 {
        self.pixels.iter().map(|&p| u64::from(p)).sum()
    }
}

fn main() {}
