//! The real herald binary as a child process: for what only a separate process shows
//! (signals, SIGKILL, its resident memory).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A herald process on a free port, killed (by its PID) when dropped.
pub struct Herald {
    child: Child,
    /// The address it logged as listening on.
    pub addr: String,
}

impl Herald {
    /// Starts the binary with `args` (after `--listen 127.0.0.1:0 --log-format json`) and
    /// `env`, and waits for its "listening" line.
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::launch(args, env, "info", None)
    }

    /// Starts the binary like [`Herald::start`] with `RUST_LOG=rust_log`, and returns its
    /// log lines after the "listening" one, parsed, as they come.
    pub fn start_logging(
        args: &[&str],
        rust_log: &str,
    ) -> (Self, mpsc::Receiver<serde_json::Value>) {
        let (tx, rx) = mpsc::channel();
        (Self::launch(args, &[], rust_log, Some(tx)), rx)
    }

    fn launch(
        args: &[&str],
        env: &[(&str, &str)],
        rust_log: &str,
        logs: Option<mpsc::Sender<serde_json::Value>>,
    ) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_herald"))
            .args(["--listen", "127.0.0.1:0", "--log-format", "json"])
            .args(args)
            .envs(env.iter().copied())
            .env("RUST_LOG", rust_log)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start herald");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let addr = loop {
            let line = lines
                .next()
                .expect("herald exited before listening")
                .unwrap();
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            if v["fields"]["message"] == "listening" {
                break v["fields"]["addr"].as_str().unwrap().to_owned();
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if let (Some(logs), Ok(v)) = (&logs, serde_json::from_str(&line)) {
                    let _ = logs.send(v);
                }
            }
        });
        Self { child, addr }
    }

    /// `http://<addr><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `ws://<addr><path>`.
    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// Sends `signal` (`TERM`, `KILL`, `STOP`, ...) to the process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal}");
    }

    /// Resident memory (`VmRSS` of /proc/<pid>/status), in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("read /proc/<pid>/status");
        let line = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .expect("VmRSS line");
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// Waits for the process to exit, killing it and failing after `limit`.
    pub async fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("herald did not exit within {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Herald {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
