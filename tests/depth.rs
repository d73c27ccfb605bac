//! How deep a value may nest, through real worker processes: the side that encodes a value
//! refuses one deeper than the pool's `max_depth` before sending any of it, an argument at the
//! same depth as a result, and no depth crashes the caller or a worker.

use offload::{offload, CodecStage, Error, ProcessPool};
use serde::{Deserialize, Serialize};

offload::test_setup!();

/// `Node`s down to a `Leaf`, each of them one level (an enum).
#[derive(Serialize, Deserialize)]
enum Tree {
    Leaf,
    Node(Box<Tree>),
}

impl Tree {
    /// A tree of `levels` levels, at least one.
    fn deep(levels: usize) -> Tree {
        (1..levels).fold(Tree::Leaf, |tree, _| Tree::Node(Box::new(tree)))
    }

    fn levels(&self) -> usize {
        let (mut tree, mut levels) = (self, 1);
        while let Tree::Node(next) = tree {
            (tree, levels) = (next, levels + 1);
        }
        levels
    }
}

/// Drops without a frame per level, so that a million of them put only encoding to the test.
impl Drop for Tree {
    fn drop(&mut self) {
        if let Tree::Node(child) = self {
            let mut next = std::mem::replace(&mut **child, Tree::Leaf);
            while let Tree::Node(child) = &mut next {
                next = std::mem::replace(&mut **child, Tree::Leaf);
            }
        }
    }
}

impl std::fmt::Debug for Tree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "a tree of {} levels", self.levels())
    }
}

#[offload(process, pool = "depth")]
fn tree_depth(tree: Tree) -> usize {
    tree.levels()
}

#[offload(process, pool = "depth")]
fn pair_depth(left: Tree, right: Tree) -> (usize, usize) {
    (left.levels(), right.levels())
}

#[offload(process, pool = "depth")]
fn make_tree(levels: usize) -> Tree {
    Tree::deep(levels)
}

#[offload(process, pool = "unreached")]
fn unreached_depth(tree: Tree) -> usize {
    tree.levels()
}

#[offload(process, pool = "results")]
fn result_tree(levels: usize) -> Tree {
    Tree::deep(levels)
}

#[offload(process, pool = "raised")]
fn raised_depth(tree: Tree) -> usize {
    tree.levels()
}

#[offload(process, pool = "raised")]
fn raised_tree(levels: usize) -> Tree {
    Tree::deep(levels)
}

/// Whether `result` is the refusal, at `stage`, of a value deeper than `max_depth`, said with
/// the limit and how to raise it.
fn too_deep<T>(result: &Result<T, Error>, stage: CodecStage, max_depth: u32) -> bool {
    matches!(result, Err(Error::Codec { stage: s, detail, .. })
        if *s == stage
            && detail.contains(&format!("nests deeper than {max_depth} levels"))
            && detail.contains("max_depth(n)"))
}

#[tokio::test]
async fn an_argument_at_the_limit_goes_and_one_past_it_is_refused_before_it_is_sent() {
    assert_eq!(tree_depth(Tree::deep(1024)).await.ok(), Some(1024));
    let pair = pair_depth(Tree::deep(1024), Tree::deep(1024)).await;
    assert_eq!(pair.ok(), Some((1024, 1024)));

    let refused = unreached_depth(Tree::deep(1025)).await;
    assert!(
        too_deep(&refused, CodecStage::EncodeArguments, 1024),
        "{refused:?}"
    );
    let refused = pair_depth(Tree::deep(1), Tree::deep(1025)).await;
    assert!(
        too_deep(&refused, CodecStage::EncodeArguments, 1024),
        "{refused:?}"
    );
    // The pool of the refused call never needed a worker.
    let unreached = ProcessPool::get("unreached").unwrap().stats();
    assert_eq!(unreached.workers_started, 0, "{unreached:?}");
}

#[tokio::test]
async fn a_million_levels_deep_argument_fails_and_the_caller_lives() {
    // This overflowed the caller's stack while encoding.
    let refused = tree_depth(Tree::deep(1_000_000)).await;
    assert!(
        too_deep(&refused, CodecStage::EncodeArguments, 1024),
        "{refused:?}"
    );
    assert_eq!(tree_depth(Tree::deep(3)).await.ok(), Some(3));
}

#[tokio::test]
async fn a_result_past_the_limit_fails_in_the_worker_and_the_worker_serves_on() {
    ProcessPool::configure("results")
        .workers(1)
        .apply()
        .unwrap();
    for levels in [1025, 1_000_000] {
        let refused = result_tree(levels).await;
        assert!(
            too_deep(&refused, CodecStage::EncodeResult, 1024),
            "{refused:?}"
        );
        let next = result_tree(1024).await.map(|tree| tree.levels());
        assert_eq!(next.ok(), Some(1024));
    }
    let results = ProcessPool::get("results").unwrap().stats();
    assert_eq!(results.workers_started, 1, "{results:?}");
}

/// Checks `depth` (taking a tree as its argument) and `make` (returning one) on every depth in
/// `levels`: both take a tree of at most `max_depth` levels and refuse a deeper one.
async fn same_as_argument_and_result<A, R>(
    max_depth: u32,
    levels: std::ops::RangeInclusive<usize>,
    depth: impl Fn(Tree) -> A,
    make: impl Fn(usize) -> R,
) where
    A: std::future::Future<Output = Result<usize, Error>>,
    R: std::future::Future<Output = Result<Tree, Error>>,
{
    for levels in levels {
        let argument = depth(Tree::deep(levels)).await;
        let result = make(levels).await.map(|tree| tree.levels());
        if levels <= max_depth as usize {
            assert_eq!(argument.ok(), Some(levels));
            assert_eq!(result.ok(), Some(levels));
        } else {
            let stage = CodecStage::EncodeArguments;
            assert!(
                too_deep(&argument, stage, max_depth),
                "{levels}: {argument:?}"
            );
            let stage = CodecStage::EncodeResult;
            assert!(too_deep(&result, stage, max_depth), "{levels}: {result:?}");
        }
    }
}

#[tokio::test]
async fn a_value_is_taken_or_refused_at_the_same_depth_as_argument_and_as_result() {
    same_as_argument_and_result(1024, 1000..=1030, tree_depth, make_tree).await;

    ProcessPool::configure("raised")
        .max_depth(3000)
        .apply()
        .unwrap();
    same_as_argument_and_result(3000, 2990..=3006, raised_depth, raised_tree).await;
}
