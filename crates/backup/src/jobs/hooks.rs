//! `before` and `after` hooks: commands run around a backup, with time limits.
//!
//! A hook runs without a shell, in its own process group, with stdin closed and the
//! run described in its environment (`DRD_JOB`, `DRD_TRIGGER`, and for `after` hooks
//! `DRD_OUTCOME` and `DRD_SNAPSHOT`). A hook that exits non-zero, is killed, or
//! outlives its timeout fails; its stderr's last lines go into the error so the
//! operator sees why without digging through logs. Hooks run through
//! [`drd_core::command`], so on timeout the whole process group goes, and a hook's
//! children do not linger.

use drd_core::config::{HookConfig, JOB_HOOK_TIMEOUT};

/// Runs `hooks` in order with `env` set; stops at the first failure and returns its
/// message (naming the hook's position in `kind`, like `before[0]`).
pub async fn run_all(
    kind: &str,
    hooks: &[HookConfig],
    env: &[(&str, String)],
) -> Result<(), String> {
    for (i, hook) in hooks.iter().enumerate() {
        run_one(hook, env)
            .await
            .map_err(|why| format!("{kind}[{i}] hook {}: {why}", hook.program()))?;
    }
    Ok(())
}

/// Runs every hook in `hooks` whatever the others do; returns the failures.
pub async fn run_each(kind: &str, hooks: &[HookConfig], env: &[(&str, String)]) -> Vec<String> {
    let mut failures = Vec::new();
    for (i, hook) in hooks.iter().enumerate() {
        if let Err(why) = run_one(hook, env).await {
            failures.push(format!("{kind}[{i}] hook {}: {why}", hook.program()));
        }
    }
    failures
}

/// Runs one hook to its end or its timeout; the error says how it ended and what it
/// said last.
async fn run_one(hook: &HookConfig, env: &[(&str, String)]) -> Result<(), String> {
    let command = env
        .iter()
        .fold(hook.command(JOB_HOOK_TIMEOUT), |c, (k, v)| c.env(k, v));
    match command.run().await {
        Ok(finished) if finished.success() => Ok(()),
        Ok(finished) => Err(finished.to_string()),
        Err(err) => Err(err.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn sh(script: &str, timeout: Duration) -> HookConfig {
        HookConfig {
            run: vec!["sh".to_owned(), "-c".to_owned(), script.to_owned()],
            timeout: Some(timeout),
        }
    }

    #[tokio::test]
    async fn hooks_see_the_run_and_stop_at_the_first_failure() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("seen");
        let hooks = [
            sh(
                &format!("echo \"$DRD_JOB $DRD_TRIGGER\" > {}", out.display()),
                Duration::from_secs(10),
            ),
            sh(
                "echo 'database locked' >&2; exit 3",
                Duration::from_secs(10),
            ),
            sh(
                &format!("touch {}.never", out.display()),
                Duration::from_secs(10),
            ),
        ];
        let env = [
            ("DRD_JOB", "db".to_owned()),
            ("DRD_TRIGGER", "manual".to_owned()),
        ];
        let err = run_all("before", &hooks, &env).await.unwrap_err();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "db manual\n");
        assert!(
            err.starts_with("before[1] hook sh: exited with status 3"),
            "{err}"
        );
        assert!(err.contains("database locked"), "{err}");
        assert!(
            !dir.path().join("seen.never").exists(),
            "later hooks do not run"
        );

        // `after` hooks all run, and each failure is reported.
        let failures = run_each("after", &hooks, &env).await;
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert!(dir.path().join("seen.never").exists());
    }

    #[tokio::test]
    async fn a_slow_hook_is_killed_at_its_timeout_with_its_children() {
        // The hook starts a child that would live a minute, says its pid, and hangs.
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("child.pid");
        let hook = sh(
            &format!(
                "sh -c 'echo $$ > {p}.tmp; mv {p}.tmp {p}; exec sleep 60' & \
                 while [ ! -e {p} ]; do sleep 0.01; done; sleep 60",
                p = pidfile.display()
            ),
            Duration::from_secs(2),
        );
        let started = std::time::Instant::now();
        let err = run_all("before", &[hook], &[]).await.unwrap_err();
        assert!(err.contains("timed out after 2s"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(30));
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .expect("the hook's child wrote its pid within the 2 s")
            .trim()
            .parse()
            .unwrap();
        // Gone (or a zombie waiting for init) long before its minute is up.
        let gone = || {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map_or(true, |stat| stat.contains(") Z "))
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !gone() {
            assert!(
                std::time::Instant::now() < deadline,
                "the hook's child {pid} outlived the hook"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[tokio::test]
    async fn a_missing_program_is_named() {
        let hook = HookConfig {
            run: vec!["/nonexistent/stop-app".to_owned()],
            timeout: Some(Duration::from_secs(1)),
        };
        let err = run_all("before", &[hook], &[]).await.unwrap_err();
        assert!(err.contains("cannot start /nonexistent/stop-app"), "{err}");
    }
}
