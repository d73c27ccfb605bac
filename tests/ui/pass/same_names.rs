// Process-mode functions whose names meet, each with its own static and registration: one name
// in two modules, a free fn and a method of one name, a free fn named like a method's type and
// name together, and names told apart by a leading underscore. `f_map` runs the same function
// as `f`.
use offload::offload;
use serde::{Deserialize, Serialize};

#[offload(process)]
fn scale(x: u32) -> u32 {
    x * 2
}

#[offload(process)]
fn _scale(x: u32) -> u32 {
    x * 3
}

#[offload(process)]
fn grid_scale(x: u32) -> u32 {
    x * 4
}

#[derive(Serialize, Deserialize)]
struct Grid(u32);

#[offload]
impl Grid {
    #[offload(process)]
    fn scale(self) -> u32 {
        self.0 * 5
    }
}

mod other {
    use offload::offload;

    #[offload(process)]
    pub fn scale(x: u32) -> u32 {
        x * 6
    }
}

#[offload::main]
#[tokio::main]
async fn main() {
    assert_eq!(scale(1).await, Ok(2));
    assert_eq!(_scale(1).await, Ok(3));
    assert_eq!(grid_scale(1).await, Ok(4));
    assert_eq!(Grid(1).scale().await, Ok(5));
    assert_eq!(other::scale(1).await, Ok(6));
    assert_eq!(scale_map([1, 2]).collect().await, [Ok(2), Ok(4)]);
    assert_eq!(other::scale_map([1, 2]).collect().await, [Ok(6), Ok(12)]);
}
