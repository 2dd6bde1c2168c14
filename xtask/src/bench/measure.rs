//! Measurement plumbing: one child process timed for wall time (monotonic clock), CPU time and
//! peak RSS (GNU `/usr/bin/time`), and the statistics over several runs.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

/// One timed run of a whole process.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Wall time in seconds (our monotonic clock around spawn..wait).
    pub wall: f64,
    /// User + system CPU seconds of the reaped child.
    pub cpu: f64,
    /// Peak resident set size in KiB.
    pub rss_kib: u64,
}

/// A program to run: path, arguments and extra environment.
#[derive(Debug, Clone)]
pub struct Cmd {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// The exit status a run must end with (0 unless a refusal is what is measured).
    pub expect_code: i32,
}

impl Cmd {
    pub fn new(program: impl Into<PathBuf>) -> Cmd {
        Cmd {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            expect_code: 0,
        }
    }

    /// Expects the run to end with exit status `code` instead of 0.
    pub fn expect_exit(mut self, code: i32) -> Cmd {
        self.expect_code = code;
        self
    }

    pub fn arg(mut self, a: impl Into<String>) -> Cmd {
        self.args.push(a.into());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, a: I) -> Cmd {
        self.args.extend(a.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, k: &str, v: &str) -> Cmd {
        self.env.push((k.into(), v.into()));
        self
    }

    /// The command line as a shell would read it (for the report).
    pub fn display(&self) -> String {
        let mut s = self.program.display().to_string();
        for a in &self.args {
            s.push(' ');
            if a.contains([' ', '\\', '?', '*', '(', ')', '[', ']']) {
                s.push_str(&format!("'{a}'"));
            } else {
                s.push_str(a);
            }
        }
        s
    }

    fn command(&self) -> Command {
        let mut c = Command::new(&self.program);
        c.args(&self.args);
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    /// Runs untimed; fails with the tail of stderr when the exit status is not 0.
    pub fn run(&self) -> Result<String> {
        let out = self
            .command()
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {}", self.display()))?;
        if !out.status.success() {
            bail!(
                "{} failed ({}): {}",
                self.display(),
                out.status,
                tail(&String::from_utf8_lossy(&out.stderr))
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs untimed; the exit status and the last line of stderr, whatever the status.
    pub fn outcome(&self) -> Result<(i32, String)> {
        let out = self
            .command()
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {}", self.display()))?;
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        Ok((out.status.code().unwrap_or(-1), last.trim().to_owned()))
    }

    /// Runs under `/usr/bin/time`, output to `log_dir`; fails when the exit status is not the
    /// expected one ([`Cmd::expect_exit`], 0 by default).
    pub fn timed(&self, log_dir: &Path) -> Result<Sample> {
        let tf = log_dir.join("time.out");
        let so = log_dir.join("stdout.log");
        let se = log_dir.join("stderr.log");
        let mut c = Command::new("/usr/bin/time");
        c.arg("-f").arg("%e %U %S %M").arg("-o").arg(&tf);
        c.arg(&self.program).args(&self.args);
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c.stdin(Stdio::null())
            .stdout(fs::File::create(&so)?)
            .stderr(fs::File::create(&se)?);
        let t = Instant::now();
        let status = c
            .status()
            .with_context(|| format!("running {}", self.display()))?;
        let wall = t.elapsed().as_secs_f64();
        if status.code() != Some(self.expect_code) {
            bail!(
                "{} failed ({status}): {}",
                self.display(),
                tail(&fs::read_to_string(&se).unwrap_or_default())
            );
        }
        let text = fs::read_to_string(&tf).context("reading /usr/bin/time output")?;
        // the last line holds the format; a "Command exited with non-zero status" line may precede it
        let last = text.lines().last().unwrap_or_default();
        let f: Vec<&str> = last.split_whitespace().collect();
        if f.len() != 4 {
            bail!("unexpected /usr/bin/time output: {text:?}");
        }
        let user: f64 = f[1].parse().context("user time")?;
        let sys: f64 = f[2].parse().context("sys time")?;
        let rss_kib: u64 = f[3].parse().context("max RSS")?;
        Ok(Sample {
            wall,
            cpu: user + sys,
            rss_kib,
        })
    }
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(8)..].join("\n")
}

/// Median, min and max of a non-empty series.
pub fn stats(v: &[f64]) -> (f64, f64, f64) {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    let n = s.len();
    let med = if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    };
    (med, s[0], s[n - 1])
}

/// Seconds with a precision suited to their size.
pub fn fmt_s(x: f64) -> String {
    if x.is_nan() {
        "–".into()
    } else if x < 0.1 {
        format!("{x:.3}")
    } else if x < 10.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::{fmt_s, stats};

    #[test]
    fn median_min_max() {
        assert_eq!(stats(&[3.0, 1.0, 2.0]), (2.0, 1.0, 3.0));
        assert_eq!(stats(&[4.0, 1.0, 2.0, 3.0]), (2.5, 1.0, 4.0));
        assert!(stats(&[]).0.is_nan());
        assert_eq!(fmt_s(0.0123), "0.012");
        assert_eq!(fmt_s(1.234), "1.23");
        assert_eq!(fmt_s(65.94), "65.9");
    }
}
