//! Password hashing (argon2id). (Access tokens are `plaza_edge::tokens`: both APIs
//! verify them.)

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, LazyLock, Mutex, OnceLock, mpsc};

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use tokio::sync::{Semaphore, oneshot};

use crate::CommandError;

/// Argon2id with the crate's defaults (19 MiB, 2 passes, 1 lane: OWASP's baseline).
/// Hashing is CPU-bound and runs on threads of its own, one hash per CPU at a time
/// ([`Workers`]).
#[derive(Clone, Copy, Default)]
pub struct Passwords;

type Job = Box<dyn FnOnce() + Send>;

/// CPU-bound work on a few threads of its own; callers beyond them wait their turn
/// without a thread, and one that gives up (a request cut off) leaves the line.
///
/// Each argon2 hash takes 19 MiB while it runs. On the blocking pool, a burst of 200
/// registrations ran 200 hashes side by side on as many threads, and the server kept
/// over 2 GB of memory afterwards (the allocator keeps an arena per thread). Bounded by the
/// CPUs the burst takes no longer, since the CPUs were the limit either way, and a
/// flood of logins from many addresses waits in line instead of exhausting memory.
struct Workers {
    permits: Arc<Semaphore>,
    jobs: mpsc::Sender<Job>,
}

impl Workers {
    fn new(name: &str, threads: usize) -> Self {
        let threads = threads.max(1);
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        let mut started = 0;
        for i in 0..threads {
            let queue = queue.clone();
            let spawned = std::thread::Builder::new().name(format!("{name}-{i}")).spawn(move || {
                loop {
                    let job = queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).recv();
                    let Ok(job) = job else { return };
                    // A panicking job fails its caller (its answer is dropped), not the thread.
                    let _ = std::panic::catch_unwind(AssertUnwindSafe(job));
                }
            });
            match spawned {
                Ok(_) => started += 1,
                Err(error) => tracing::error!(%error, "cannot start a {name} thread"),
            }
        }
        // As many in flight as there are threads; with none, callers fail at once.
        let permits = Arc::new(Semaphore::new(started));
        if started == 0 {
            permits.close();
        }
        Self { permits, jobs }
    }

    async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Result<T, CommandError> {
        let failed = |what: &str| CommandError::Internal(format!("password hashing {what}"));
        let permit = self.permits.clone().acquire_owned().await.map_err(|_| failed("stopped"))?;
        let (answer, answered) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _permit = permit;
            let _ = answer.send(work());
        });
        self.jobs.send(job).map_err(|_| failed("stopped"))?;
        answered.await.map_err(|_| failed("failed"))
    }
}

static HASHING: LazyLock<Workers> = LazyLock::new(|| Workers::new("password-hash", std::thread::available_parallelism().map_or(1, |n| n.get())));

impl Passwords {
    pub async fn hash(&self, password: &str) -> Result<String, CommandError> {
        let password = password.to_owned();
        HASHING
            .run(move || {
                let salt = SaltString::generate(&mut OsRng);
                Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string())
            })
            .await?
            .map_err(|e| CommandError::Internal(e.to_string()))
    }

    /// Checks a password against a stored hash. With no hash (unknown user) it checks
    /// against a dummy one, so an unknown login costs as much time as a wrong password.
    pub async fn verify(&self, password: &str, hash: Option<&str>) -> Result<bool, CommandError> {
        static DUMMY: OnceLock<String> = OnceLock::new();
        let known = hash.is_some();
        let hash = match hash {
            Some(hash) => hash.to_owned(),
            None => DUMMY
                .get_or_init(|| {
                    let salt = SaltString::generate(&mut OsRng);
                    Argon2::default().hash_password(b"no such user", &salt).map(|h| h.to_string()).unwrap_or_default()
                })
                .clone(),
        };
        let password = password.to_owned();
        HASHING
            .run(move || {
                let Ok(parsed) = PasswordHash::new(&hash) else { return false };
                Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok() && known
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn passwords_verify_only_against_their_hash() {
        let hash = Passwords.hash("correct horse").await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(Passwords.verify("correct horse", Some(&hash)).await.unwrap());
        assert!(!Passwords.verify("wrong horse", Some(&hash)).await.unwrap());
        assert!(!Passwords.verify("correct horse", None).await.unwrap());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn limited_work_runs_at_most_permits_at_once() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let limited = Arc::new(Workers::new("test-work", 2));
        let (running, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let tasks: Vec<_> = (0..12)
            .map(|i| {
                let (limited, running, peak) = (limited.clone(), running.clone(), peak.clone());
                tokio::spawn(async move {
                    limited
                        .run(move || {
                            peak.fetch_max(running.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
                            std::thread::sleep(std::time::Duration::from_millis(20));
                            running.fetch_sub(1, Ordering::SeqCst);
                            i
                        })
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut done = Vec::new();
        for task in tasks {
            done.push(task.await.unwrap());
        }
        assert_eq!(done, (0..12).collect::<Vec<_>>());
        assert!(peak.load(Ordering::SeqCst) <= 2, "{} ran at once", peak.load(Ordering::SeqCst));
    }

    #[tokio::test]
    async fn a_panicking_job_fails_alone() {
        let workers = Workers::new("test-panic", 1);
        let failed = workers.run(|| -> u32 { panic!("boom") }).await;
        assert!(matches!(failed, Err(CommandError::Internal(_))), "{failed:?}");
        assert_eq!(workers.run(|| 7).await.unwrap(), 7, "the thread goes on");
    }
}
