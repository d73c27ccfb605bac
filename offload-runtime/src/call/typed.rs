//! A process-mode function as the expansion calls it: its [`Remote`], typed by its argument
//! tuple and result, so that a type that cannot cross adds no error of its own.
//!
//! The expansion checks each argument and result type with `assert_transferable`, spanned at
//! the user's type; those are the errors a user should read. The calls themselves need the
//! whole tuple to be serde's, and would report each missing trait again, at the function name,
//! about internal tuples. So the methods that send live in an impl bounded by `Transferable`,
//! and [`Untransferable`], reached through `Deref` when those bounds fail, has methods of the
//! same names and signatures without them: method lookup skips an inherent impl whose bounds do
//! not hold and takes the next step of auto-deref, silently. Its methods never run: whenever
//! they are chosen, `assert_transferable` has failed and the crate does not compile.

use std::marker::PhantomData;
use std::ops::Deref;

use super::map::map_in_process_as;
use super::{call_in_process, Remote};
use crate::function::{invoke, Invoke, Outcome, Registration, Transferable};
use crate::map::Map;
use crate::Error;

/// A process-mode function taking the tuple `A` and returning `R`. Built by the
/// `#[offload(process)]` expansion, as a `static` beside the function.
pub struct Process<A, R> {
    remote: Remote,
    types: PhantomData<fn(A) -> R>,
}

impl<A, R> Process<A, R> {
    pub const fn new(remote: Remote) -> Self {
        Process {
            remote,
            types: PhantomData,
        }
    }

    /// Registers the function, run in a worker by `invoke`.
    pub const fn registration(&'static self, invoke: Invoke) -> Registration {
        Registration::new(&self.remote, invoke)
    }
}

impl<A: Transferable, R: Transferable> Process<A, R> {
    /// Runs the function on a worker process of its pool. (The call's own future, with no
    /// layer of this fn's around it: a call waiting for admission is no larger than it must.)
    pub fn call(&'static self, args: A) -> impl std::future::Future<Output = Result<R, Error>> {
        call_in_process(&self.remote, args)
    }

    /// Runs the function once per input; results reach the caller as `T` (a `Vec<u8>` result
    /// travels as `Bytes`).
    pub fn map<I, T>(&'static self, inputs: I) -> Map<T>
    where
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'static,
        A: 'static,
        R: 'static,
        T: From<R> + Send + 'static,
    {
        map_in_process_as::<I, A, R, T>(&self.remote, inputs)
    }

    /// In a worker: decodes the arguments, runs `body`, encodes its result.
    pub fn invoke(
        &'static self,
        input: &[u8],
        output: &mut Vec<u8>,
        body: impl FnOnce(A) -> R,
    ) -> Outcome {
        invoke(input, output, body)
    }
}

impl<A, R> Deref for Process<A, R> {
    type Target = Untransferable<A, R>;

    fn deref(&self) -> &Untransferable<A, R> {
        &Untransferable(PhantomData)
    }
}

/// [`Process`] where `A` or `R` cannot cross a process boundary: the same methods, which
/// type-check the call as written and report nothing more.
pub struct Untransferable<A, R>(PhantomData<fn(A) -> R>);

const NEVER: &str = "a process-mode function with a type that cannot cross does not compile";

impl<A, R> Untransferable<A, R> {
    pub async fn call(&self, _args: A) -> Result<R, Error> {
        unreachable!("{NEVER}")
    }

    pub fn map<I, T>(&self, _inputs: I) -> Map<T>
    where
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'static,
        A: 'static,
        R: 'static,
        T: From<R> + Send + 'static,
    {
        unreachable!("{NEVER}")
    }

    pub fn invoke(
        &self,
        _input: &[u8],
        _output: &mut Vec<u8>,
        _body: impl FnOnce(A) -> R,
    ) -> Outcome {
        unreachable!("{NEVER}")
    }
}
