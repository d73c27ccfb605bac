use offload::offload;

struct Index {
    words: Vec<String>,
}

impl Index {
    #[offload(thread)]
    fn sorted(self) -> Vec<String> {
        let mut words = self.words;
        words.sort();
        words
    }

    #[offload(thread)]
    fn load(path: String) -> Self {
        Index { words: vec![path] }
    }
}

fn main() {}
