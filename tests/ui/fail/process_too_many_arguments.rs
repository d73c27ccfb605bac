// The arguments cross as one tuple, and serde's traits stop at tuples of 16: the limit is said
// at the 17th argument, not as a missing trait of a 17-tuple.
use offload::offload;

#[offload(process)]
fn checksum(
    a: u8, b: u8, c: u8, d: u8, e: u8, f: u8, g: u8, h: u8,
    i: u8, j: u8, k: u8, l: u8, m: u8, n: u8, o: u8, p: u8,
    q: u8,
) -> u32 {
    [a, b, c, d, e, f, g, h, i, j, k, l, m, n, o, p, q]
        .into_iter()
        .map(u32::from)
        .sum()
}

fn main() {}
