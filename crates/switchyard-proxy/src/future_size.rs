//! The size of a future an async function returns, without building or running it (for
//! the tests that keep the request path's futures small: each `.await` of a call stores
//! its future in the caller's, and a future is moved by copying all of it). The closure
//! takes the function's arguments as one tuple.

pub(crate) fn of<A, F: std::future::Future>(_: impl FnOnce(A) -> F) -> usize {
    std::mem::size_of::<F>()
}
