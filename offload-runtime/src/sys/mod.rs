//! Operating-system helpers both sides use: descriptors and polling for them (`poll`), memory
//! shared with a worker (`shm`), and the executable a worker runs (`image`).

pub(crate) mod image;
pub(crate) mod poll;
pub(crate) mod shm;
