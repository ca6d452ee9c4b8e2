//! Child processes (etcd, kube-apiserver) and the scratch folder they run in.
//!
//! Each child writes stdout and stderr to its own log file, so a failure can show the tail.
//! [`ChildProcess`] kills its process when dropped, which also happens while a panic
//! unwinds. A test process killed outright (SIGKILL, or Ctrl-C, which does not unwind) runs
//! no destructor, so each child is started under a watchdog: a `sh` loop that checks once a
//! second that the test process is alive and kills the child when it is gone.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

/// Runs `"$@"` in place of the shell (same pid), after starting a watcher that kills it once
/// the process whose pid is `$0` has gone, and exits by itself once the child has gone.
const WATCHDOG: &str = r#"( while kill -0 "$0" 2>/dev/null; do kill -0 $$ 2>/dev/null || exit 0; sleep 1; done; kill -9 $$ ) </dev/null >/dev/null 2>&1 &
exec "$@""#;

/// A running child process with its output in a log file; killed on drop.
pub struct ChildProcess {
    name: String,
    child: Child,
    log: PathBuf,
}

// === impl ChildProcess ===

impl ChildProcess {
    /// Starts `program` with `args`, logging to `log`.
    pub fn spawn(name: &str, program: &Path, args: &[String], log: PathBuf) -> Result<Self, String> {
        Self::spawn_in(name, program, args, &[], None, log)
    }

    /// Like [`ChildProcess::spawn`], with `env` added to the environment and, when given,
    /// `dir` as the working folder (istiod resolves some default paths against it).
    pub fn spawn_in(
        name: &str,
        program: &Path,
        args: &[String],
        env: &[(String, String)],
        dir: Option<&Path>,
        log: PathBuf,
    ) -> Result<Self, String> {
        let output = File::create(&log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
        let errors = output
            .try_clone()
            .map_err(|e| format!("cannot reopen {}: {e}", log.display()))?;
        let mut command = Command::new("sh");
        command.envs(env.iter().map(|(key, value)| (key, value)));
        if let Some(dir) = dir {
            command.current_dir(dir);
        }
        let child = command
            .arg("-c")
            .arg(WATCHDOG)
            .arg(std::process::id().to_string())
            .arg(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(output)
            .stderr(errors)
            .spawn()
            .map_err(|e| format!("cannot start {name} ({}): {e}", program.display()))?;
        Ok(ChildProcess {
            name: name.to_string(),
            child,
            log,
        })
    }

    /// The exit status, if the process has already stopped.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Fails with the log tail if the process has stopped.
    pub fn check_running(&mut self) -> Result<(), String> {
        match self.exited() {
            None => Ok(()),
            Some(status) => Err(format!("{} exited ({status})\n{}", self.name, self.log_tail(40))),
        }
    }

    /// The last `lines` lines of the log, headed by the process name and log path.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        let tail = all[all.len().saturating_sub(lines)..].join("\n");
        format!(
            "--- last {lines} lines of {} ({}) ---\n{tail}",
            self.name,
            self.log.display()
        )
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh folder under the system temp dir: removed on drop unless [`WorkDir::keep`] was called.
pub struct WorkDir {
    path: PathBuf,
    keep: bool,
}

// === impl WorkDir ===

impl WorkDir {
    /// Creates `$TMPDIR/sidecar-injector-e2e-<pid>-<nanos>`.
    pub fn create() -> Result<Self, String> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let path = std::env::temp_dir().join(format!("sidecar-injector-e2e-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        Ok(WorkDir { path, keep: false })
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Keeps the folder (and its logs) after the run, for a failure to be looked into.
    pub fn keep(&mut self) {
        self.keep = true;
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}
