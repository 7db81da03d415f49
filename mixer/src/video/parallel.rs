//! Runs one tick's independent jobs (view encodes, scales) on a few threads.
//!
//! Scoped threads, not a pool: the mixer stays a plain struct driven through
//! `&mut self`, and `tick` returns only when every job is done, so its caller
//! sees no concurrency at all (no channels, no shared state outliving the
//! call). Spawning a thread costs tens of microseconds; a 720p encode costs
//! milliseconds. The split is deterministic (longest job first onto the least
//! loaded worker, ties by index), and results live in the jobs themselves,
//! so the output never depends on which thread finished first.

use std::cmp::Reverse;

/// Runs `work(worker_state, job)` for every job, spreading the jobs over
/// `workers.len()` threads (the calling thread is one of them). `cost`
/// estimates a job's work, for balancing. With one worker, or one job,
/// everything runs on the calling thread. If the OS refuses a thread, its
/// jobs run on the calling thread afterwards.
pub(crate) fn run<S: Send, T: Send>(
    workers: &mut [S],
    jobs: &mut [T],
    cost: impl Fn(&T) -> u64,
    work: impl Fn(&mut S, &mut T) + Sync,
) {
    let n = workers.len().min(jobs.len());
    let Some((first_worker, other_workers)) = workers.split_first_mut() else {
        return;
    };
    if n <= 1 {
        for job in jobs.iter_mut() {
            work(first_worker, job);
        }
        return;
    }

    let mut order: Vec<usize> = (0..jobs.len()).collect();
    order.sort_by_key(|&i| (Reverse(cost(&jobs[i])), i));
    let mut load = vec![0u64; n];
    let mut bucket_of = vec![0usize; jobs.len()];
    for &i in &order {
        let b = (0..n).min_by_key(|&b| (load[b], b)).unwrap_or(0);
        load[b] = load[b].saturating_add(cost(&jobs[i]).max(1));
        bucket_of[i] = b;
    }

    let mut done = vec![false; jobs.len()];
    {
        let mut buckets: Vec<Vec<(&mut T, &mut bool)>> = (0..n).map(|_| Vec::new()).collect();
        for ((job, flag), &b) in jobs.iter_mut().zip(done.iter_mut()).zip(&bucket_of) {
            buckets[b].push((job, flag));
        }
        let mut buckets = buckets.into_iter();
        let mine = buckets.next().unwrap_or_default();
        let work = &work;
        std::thread::scope(|scope| {
            for (state, bucket) in other_workers.iter_mut().zip(buckets) {
                // A refused spawn drops the closure, and with it the
                // borrows: those jobs stay not done and run below.
                let _ = std::thread::Builder::new()
                    .name("tandem-video".into())
                    .spawn_scoped(scope, move || {
                        for (job, flag) in bucket {
                            work(state, job);
                            *flag = true;
                        }
                    });
            }
            for (job, flag) in mine {
                work(first_worker, job);
                *flag = true;
            }
        });
    }
    for (job, finished) in jobs.iter_mut().zip(done) {
        if !finished {
            work(first_worker, job);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn video_parallel_runs_every_job_once_in_place() {
        for threads in [1usize, 2, 3, 8] {
            let mut workers = vec![0u32; threads];
            let mut jobs: Vec<(u64, u64)> = (0..17).map(|i| (i, 0)).collect();
            run(
                &mut workers,
                &mut jobs,
                |j| j.0 % 5,
                |count, job| {
                    *count += 1;
                    job.1 = job.0 * 10 + 1;
                },
            );
            for (i, job) in jobs.iter().enumerate() {
                assert_eq!(job.1, i as u64 * 10 + 1, "threads {threads}");
            }
            assert_eq!(workers.iter().sum::<u32>(), 17);
            // Every worker got a share when there are enough jobs.
            assert!(workers.iter().all(|&c| c > 0), "{workers:?}");
        }
        // No workers: nothing runs (and nothing panics).
        let mut jobs = vec![1u8];
        run(&mut Vec::<()>::new(), &mut jobs, |_| 1, |_, j| *j = 2);
        assert_eq!(jobs, vec![1]);
    }
}
