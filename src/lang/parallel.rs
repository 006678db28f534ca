//! Spreading a compilation's independent pieces (parts of files to parse, webhooks to check)
//! over the machine's cores, with results in the order of the pieces.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

/// The most threads one compilation uses, the calling one included: the sidecar's reload
/// shares the machine with ingest and delivery, and a rule set of 10,000 webhooks is done in
/// tens of milliseconds per core.
const MAX_THREADS: usize = 4;

/// The stack of a helper thread: as deep as a main thread's, so that a deeply nested
/// condition parses the same on a helper as on the calling thread.
const HELPER_STACK: usize = 8 << 20;

/// `items.iter().map(f).collect()`, with the items shared out over up to [`MAX_THREADS`]
/// threads (the caller's among them) when there is more than one core and more than one item.
/// A panic in `f` is passed on to the caller.
pub fn map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = cores.min(MAX_THREADS).min(items.len());
    if threads <= 1 {
        return items.iter().map(f).collect();
    }
    // Each thread takes the next item until none is left, so a slow item does not hold up
    // the others' share.
    let next = AtomicUsize::new(0);
    let work = || {
        let mut done = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(item) = items.get(i) else {
                return done;
            };
            done.push((i, f(item)));
        }
    };
    let mut done: Vec<(usize, R)> = std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..threads)
            .filter_map(|_| {
                std::thread::Builder::new()
                    .name("whc-compile".into())
                    .stack_size(HELPER_STACK)
                    .spawn_scoped(scope, work)
                    .ok() // no thread to be had: the others take its share
            })
            .collect();
        let mut done = work();
        for helper in helpers {
            match helper.join() {
                Ok(part) => done.extend(part),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        done
    });
    done.sort_unstable_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, r)| r).collect()
}

/// [`map`] over owned items: each is moved into `f`, so what `f` does not return is dropped on
/// the thread that handled it rather than by the caller afterwards.
pub fn map_owned<T: Send, R: Send>(items: Vec<T>, f: impl Fn(T) -> R + Sync) -> Vec<R> {
    let slots: Vec<Mutex<Option<T>>> = items.into_iter().map(|t| Mutex::new(Some(t))).collect();
    map(&slots, |slot| {
        let item = slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .expect("each item is taken once");
        f(item)
    })
}

#[cfg(test)]
mod tests {
    use super::{map, map_owned};

    #[test]
    fn results_come_back_in_the_order_of_the_items() {
        let items: Vec<u64> = (0..1000).collect();
        let squares = map(&items, |n| {
            if n % 7 == 0 {
                std::thread::yield_now(); // uneven work
            }
            n * n
        });
        assert_eq!(squares, items.iter().map(|n| n * n).collect::<Vec<_>>());
        assert!(map(&[] as &[u8], |b| *b).is_empty());
        assert_eq!(map(&[3], |n| n + 1), [4]);
        let words: Vec<String> = (0..100).map(|n| n.to_string()).collect();
        assert_eq!(
            map_owned(words.clone(), |w| w.len()),
            words.iter().map(String::len).collect::<Vec<_>>()
        );
    }

    #[test]
    #[should_panic(expected = "item 5")]
    fn a_panic_reaches_the_caller() {
        let items: Vec<u32> = (0..10).collect();
        map(&items, |n| assert_ne!(*n, 5, "item 5"));
    }
}
