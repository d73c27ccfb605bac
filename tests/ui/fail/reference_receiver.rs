use offload::offload;

struct Index {
    words: Vec<String>,
}

#[offload]
impl Index {
    #[offload(thread)]
    fn search(&self, word: String) -> bool {
        self.words.contains(&word)
    }

    #[offload(process)]
    fn rebuild(&mut self) {
        self.words.sort();
    }
}

fn main() {}
