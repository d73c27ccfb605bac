use offload::offload;

struct Image {
    pixels: Vec<u8>,
}

struct Histogram([u32; 256]);

#[offload(process)]
fn histogram(image: Image, scale: u32) -> Histogram {
    let mut counts = [0; 256];
    for pixel in image.pixels {
        counts[usize::from(pixel)] += scale;
    }
    Histogram(counts)
}

fn main() {}
