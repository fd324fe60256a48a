//! A standalone ZooKeeper server on loopback, for ZooKeeper-mode Kafka 3.x clusters.
//!
//! The server is the `org.apache.zookeeper:zookeeper` jar (with `zookeeper-jute`, Netty and
//! the rest) that the Kafka 3.x POM depends on, so it comes with the same Maven download as
//! the broker (`KafkaDist::libs`; 3.8.4 for Kafka 3.9.2); Kafka 4 has no ZooKeeper mode and
//! ships none. It runs `ZooKeeperServerMain` on a generated `zoo.cfg` with every four-letter
//! word allowed: readiness is `srvr` answering, and the brokers' registrations are read from
//! `dump`'s list of ephemeral nodes.

use crate::cluster::{free_port, tail, DEADLINE};
use crate::dist::KafkaDist;
use anyhow::{bail, Context, Result};
use std::collections::BTreeSet;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// ZooKeeper's tick: sessions may time out between 2 and 20 ticks (1 to 10 s), and expiry is
/// checked every tick, so a killed broker's registration goes within about a second of its
/// session timeout.
const TICK_MS: u32 = 500;

/// One ZooKeeper server and its process.
#[derive(Debug)]
pub struct ZooKeeper {
    pub port: u16,
    pub data_dir: PathBuf,
    pub config_file: PathBuf,
    /// stdout and stderr of the JVM.
    pub log_file: PathBuf,
    child: Option<Child>,
}

impl ZooKeeper {
    /// Starts a server under `home` with the ZooKeeper jars of `dist` and waits until it
    /// serves (`srvr` answers with its mode).
    pub fn start(dist: &KafkaDist, home: &Path) -> Result<ZooKeeper> {
        let has_jar = |prefix: &str| -> Result<bool> {
            Ok(fs::read_dir(&dist.libs)?.flatten().any(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                n.starts_with(prefix) && n.ends_with(".jar")
            }))
        };
        if !has_jar("zookeeper-3")? || !has_jar("zookeeper-jute-")? {
            bail!(
                "Kafka {} ships no ZooKeeper in {} (ZooKeeper mode is Kafka 3.x only)",
                dist.version,
                dist.libs.display()
            );
        }
        fs::create_dir_all(home)?;
        let data_dir = home.join("data");
        fs::create_dir_all(&data_dir)?;
        let port = free_port()?;
        let config_file = home.join("zoo.cfg");
        fs::write(&config_file, zoo_cfg(port, &data_dir))?;
        fs::write(
            home.join("log4j.properties"),
            "log4j.rootLogger=INFO, stdout\nlog4j.appender.stdout=org.apache.log4j.ConsoleAppender\n\
             log4j.appender.stdout.layout=org.apache.log4j.PatternLayout\n\
             log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n\n",
        )?;
        let log_file = home.join("zookeeper.out");
        let out = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_file)?;
        let child = dist
            .java_with(
                "org.apache.zookeeper.server.ZooKeeperServerMain",
                256,
                &[format!(
                    "-Dlog4j.configuration=file:{}/log4j.properties",
                    home.display()
                )],
            )
            .arg(&config_file)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context("starting the ZooKeeper JVM")?;
        let mut zk = ZooKeeper {
            port,
            data_dir,
            config_file,
            log_file,
            child: Some(child),
        };
        zk.wait_serving()?;
        Ok(zk)
    }

    /// `127.0.0.1:<port>`, the brokers' `zookeeper.connect`.
    pub fn connect(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Sends a four-letter word (`srvr`, `dump`, `ruok`, ...) and returns the whole answer.
    pub fn four_letter(&self, word: &str) -> Result<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.write_all(word.as_bytes())?;
        let mut answer = String::new();
        s.read_to_string(&mut answer)?;
        Ok(answer)
    }

    /// The paths of every ephemeral node, from `dump`.
    pub fn ephemerals(&self) -> Result<BTreeSet<String>> {
        Ok(parse_ephemerals(&self.four_letter("dump")?))
    }

    /// Polls `dump` until no session holds the ephemeral `path` (e.g. `/brokers/ids/1` of a
    /// killed broker, which stays until its session times out), failing at the deadline.
    pub fn wait_ephemeral_gone(&self, path: &str) -> Result<()> {
        let start = Instant::now();
        loop {
            let now = self.ephemerals()?;
            if !now.contains(path) {
                return Ok(());
            }
            if start.elapsed() > DEADLINE {
                bail!("the ephemeral {path} is still in ZooKeeper after {DEADLINE:?}: {now:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Polls `dump` until the ephemeral `path` exists (a broker registered), with a deadline.
    pub fn wait_ephemeral(&self, path: &str) -> Result<()> {
        let start = Instant::now();
        loop {
            let now = self.ephemerals()?;
            if now.contains(path) {
                return Ok(());
            }
            if start.elapsed() > DEADLINE {
                bail!("no ephemeral {path} in ZooKeeper after {DEADLINE:?}: {now:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn wait_serving(&mut self) -> Result<()> {
        let start = Instant::now();
        loop {
            if let Ok(a) = self.four_letter("srvr") {
                if a.contains("Mode: ") {
                    return Ok(());
                }
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                self.child = None;
                bail!(
                    "ZooKeeper exited with {status} while starting:\n{}",
                    tail(&self.log_file, 60)
                );
            }
            if start.elapsed() > DEADLINE {
                bail!(
                    "ZooKeeper did not serve on {} within {DEADLINE:?}:\n{}",
                    self.port,
                    tail(&self.log_file, 60)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kills the server (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for ZooKeeper {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The `zoo.cfg` of a standalone server on loopback: no admin server (it would take port
/// 8080), every four-letter word allowed.
pub fn zoo_cfg(port: u16, data_dir: &Path) -> String {
    format!(
        "# written by the segvault test harness\n\
         tickTime={TICK_MS}\n\
         dataDir={}\n\
         clientPort={port}\n\
         clientPortAddress=127.0.0.1\n\
         maxClientCnxns=0\n\
         admin.enableServer=false\n\
         4lw.commands.whitelist=*\n",
        data_dir.display()
    )
}

/// The ephemeral paths listed in the answer to `dump`: the lines under "ephemeral nodes
/// dump:" that start with a tab and a '/', up to "Connections dump:".
pub fn parse_ephemerals(dump: &str) -> BTreeSet<String> {
    dump.lines()
        .skip_while(|l| !l.starts_with("ephemeral nodes dump:"))
        .take_while(|l| !l.starts_with("Connections dump:"))
        .filter_map(|l| l.strip_prefix('\t'))
        .filter(|l| l.starts_with('/'))
        .map(|l| l.trim_end().to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The answer ZooKeeper 3.8.4 gave `dump` with one ZooKeeper-mode Kafka 3.9.2 broker
    /// registered (and a second connection, the `dump` itself, without a session).
    const DUMP: &str = "SessionTracker dump:\nSession Sets (6)/(1):\n\
        0 expire at Wed Dec 02 15:21:01 UTC 2026:\n\
        1 expire at Wed Dec 02 15:21:04 UTC 2026:\n\t0x1000004b66b0000\n\
        ephemeral nodes dump:\nSessions with Ephemerals (1):\n0x1000004b66b0000:\n\
        \t/controller\n\t/brokers/ids/1\n\
        Connections dump:\nConnections Sets (1)/(2):\n2 expire at Wed Dec 02 15:21:08 UTC 2026:\n\
        \tip: /127.0.0.1:53162 sessionId: 0x0\n\tip: /127.0.0.1:53152 sessionId: 0x1000004b66b0000\n";

    #[test]
    fn ephemerals_are_read_from_dump() {
        let e = parse_ephemerals(DUMP);
        assert_eq!(
            e.into_iter().collect::<Vec<_>>(),
            ["/brokers/ids/1", "/controller"]
        );
        let empty = "SessionTracker dump:\nSession Sets (0)/(0):\nephemeral nodes dump:\n\
            Sessions with Ephemerals (0):\nConnections dump:\nConnections Sets (1)/(1):\n\
            1 expire at Wed Dec 02 15:21:08 UTC 2026:\n\tip: /127.0.0.1:53332 sessionId: 0x0\n";
        assert!(parse_ephemerals(empty).is_empty());
    }

    #[test]
    fn zoo_cfg_is_standalone_on_loopback_with_four_letter_words() {
        let cfg = zoo_cfg(2181, Path::new("/tmp/zk"));
        for line in [
            "clientPort=2181",
            "clientPortAddress=127.0.0.1",
            "dataDir=/tmp/zk",
            "admin.enableServer=false",
            "4lw.commands.whitelist=*",
        ] {
            assert!(cfg.lines().any(|l| l == line), "{line} not in\n{cfg}");
        }
    }
}
