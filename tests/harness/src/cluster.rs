//! Real Kafka clusters on loopback: free ports, a fresh temporary directory.
//!
//! Three shapes: in KRaft mode one combined node (broker and controller in one process), or N
//! brokers with a separate controller quorum; in ZooKeeper mode (Kafka 3.x) N brokers and a
//! standalone ZooKeeper server ([`crate::zookeeper`]). Nodes are JVM child processes; the
//! cluster kills whatever is still running when it is dropped, so a failing test leaves no
//! broker behind.

use crate::client::Client;
use crate::dist::KafkaDist;
use crate::zookeeper::ZooKeeper;
use anyhow::{anyhow, bail, Context, Result};
use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// How long a node may take to start, stop, or a poll may wait, before it is a failure.
pub const DEADLINE: Duration = Duration::from_secs(180);

/// Broker configs that set time-based log retention. Kafka takes the most precise one that is
/// set, so the harness default (`log.retention.ms=-1`) applies only when a test sets none.
pub const TIME_RETENTION_KEYS: [&str; 3] = [
    "log.retention.ms",
    "log.retention.minutes",
    "log.retention.hours",
];

/// Harness defaults that turn off every other expiry a broker measures against the wall
/// clock, so that no test depends on the date it runs on relative to the date its data was
/// written (the fixtures carry the timestamps of the day they were generated; an archive
/// restored in a test is replayed later). Each is the largest value Kafka accepts (they are
/// `int`s):
/// - committed offsets of an empty group expire after `offsets.retention.minutes` (7 days);
/// - a transactional id's state expires after `transactional.id.expiration.ms` (7 days);
/// - an idle producer's state expires after `producer.id.expiration.ms` (1 day).
///
/// A test may still set any of them (`ClusterSpec::config`).
pub const NO_WALL_CLOCK_EXPIRY: [(&str, &str); 3] = [
    ("offsets.retention.minutes", "2147483647"),
    ("transactional.id.expiration.ms", "2147483647"),
    ("producer.id.expiration.ms", "2147483647"),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// One process with `process.roles=broker,controller`.
    Combined,
    /// `brokers` broker-only processes and `controllers` controller-only processes.
    Cluster { brokers: u32, controllers: u32 },
    /// ZooKeeper mode: `brokers` brokers (`broker.id`, `zookeeper.connect`, no
    /// `process.roles`) and one ZooKeeper server; one broker is elected controller.
    ZooKeeper { brokers: u32 },
}

/// `zookeeper.session.timeout.ms` of ZooKeeper-mode brokers: a killed broker's registration
/// (`/brokers/ids/<id>`) goes 6 s after its last heartbeat, not Kafka's default 18 s.
pub const ZK_SESSION_TIMEOUT_MS: u32 = 6000;

/// What to start. Broker configs apply to every broker (and to the combined node).
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    pub version: String,
    pub shape: Shape,
    pub broker_config: BTreeMap<String, String>,
    /// Log dirs per broker (1 or more).
    pub log_dirs_per_broker: usize,
    /// Per-node configs, applied over `broker_config`.
    pub node_config: BTreeMap<u32, BTreeMap<String, String>>,
}

impl ClusterSpec {
    pub fn combined(version: &str) -> ClusterSpec {
        ClusterSpec {
            version: version.into(),
            shape: Shape::Combined,
            broker_config: BTreeMap::new(),
            log_dirs_per_broker: 1,
            node_config: BTreeMap::new(),
        }
    }

    pub fn cluster(version: &str, brokers: u32, controllers: u32) -> ClusterSpec {
        ClusterSpec {
            shape: Shape::Cluster {
                brokers,
                controllers,
            },
            ..ClusterSpec::combined(version)
        }
    }

    /// A ZooKeeper-mode cluster of `brokers` brokers (ids 1..=N) and one ZooKeeper server
    /// from the same Maven download (Kafka 3.x: Kafka 4 has no ZooKeeper mode, and
    /// `Cluster::start` says so).
    pub fn zookeeper(version: &str, brokers: u32) -> ClusterSpec {
        ClusterSpec {
            shape: Shape::ZooKeeper { brokers },
            ..ClusterSpec::combined(version)
        }
    }

    /// Whether the spec is a ZooKeeper-mode cluster.
    pub fn is_zookeeper(&self) -> bool {
        matches!(self.shape, Shape::ZooKeeper { .. })
    }

    /// Sets a broker config (`server.properties` key), overriding the harness default.
    pub fn config(mut self, key: &str, value: impl ToString) -> ClusterSpec {
        self.broker_config.insert(key.into(), value.to_string());
        self
    }

    /// The value the spec gives `key` on node `id` (its node config over the broker config),
    /// if any; `None` means the harness default.
    pub fn effective(&self, id: u32, key: &str) -> Option<&str> {
        self.node_config
            .get(&id)
            .and_then(|c| c.get(key))
            .or_else(|| self.broker_config.get(key))
            .map(String::as_str)
    }

    /// The first config that turns time-based retention on for node `id`, if the spec sets
    /// one (the harness default is off: `log.retention.ms=-1`).
    pub fn time_retention(&self, id: u32) -> Option<(&'static str, &str)> {
        TIME_RETENTION_KEYS
            .into_iter()
            .find_map(|k| self.effective(id, k).filter(|v| *v != "-1").map(|v| (k, v)))
    }

    /// Sets a config of node `id` only (brokers are 1.., controllers 100..), e.g. a different
    /// `log.segment.bytes` per broker so that replicas roll at different offsets.
    pub fn node_config(mut self, id: u32, key: &str, value: impl ToString) -> ClusterSpec {
        self.node_config
            .entry(id)
            .or_default()
            .insert(key.into(), value.to_string());
        self
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Combined,
    Broker,
    Controller,
}

/// One node of the cluster and its process, if running.
#[derive(Debug)]
pub struct Node {
    pub id: u32,
    pub role: Role,
    /// Client listener port (brokers and combined nodes).
    pub port: Option<u16>,
    pub controller_port: Option<u16>,
    pub log_dirs: Vec<PathBuf>,
    pub config_file: PathBuf,
    /// stdout and stderr of the JVM, appended across restarts.
    pub log_file: PathBuf,
    child: Option<Child>,
    /// Byte length of `log_file` when the current process started, so readiness is judged on
    /// this run's lines only.
    log_mark: u64,
}

impl Node {
    pub fn is_broker(&self) -> bool {
        self.role != Role::Controller
    }
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }
}

/// A running (or partly stopped) cluster. Dropping it kills every process; the directory is
/// removed unless `SEGVAULT_KEEP_TEST_DIRS` is set.
pub struct Cluster {
    pub dist: KafkaDist,
    pub spec: ClusterSpec,
    /// The cluster id: chosen by the harness in KRaft mode (`kafka-storage format`), by the
    /// first broker in ZooKeeper mode (read back from its `meta.properties` once it started).
    pub cluster_id: String,
    pub nodes: Vec<Node>,
    /// ZooKeeper mode: the ZooKeeper server.
    zookeeper: Option<ZooKeeper>,
    dir: Option<tempfile::TempDir>,
    root: PathBuf,
}

impl Cluster {
    /// Provisions the version, writes the configs, formats every node's storage and starts all
    /// nodes, waiting until each says it started.
    pub fn start(spec: ClusterSpec) -> Result<Cluster> {
        let dist = KafkaDist::get(&spec.version)?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("segvault-kafka-{}-", spec.version))
            .tempdir()?;
        let root = dir.path().to_path_buf();
        let zookeeper = if spec.is_zookeeper() {
            Some(ZooKeeper::start(&dist, &root.join("zookeeper"))?)
        } else {
            None
        };
        let cluster_id = random_cluster_id();
        let mut cluster = Cluster {
            dist,
            spec,
            cluster_id,
            nodes: Vec::new(),
            zookeeper,
            dir: Some(dir),
            root,
        };
        cluster.plan_nodes()?;
        for i in 0..cluster.nodes.len() {
            cluster.write_config(i)?;
            cluster.format(i)?;
        }
        // Controllers first: brokers cannot register without a quorum.
        let order: Vec<usize> = (0..cluster.nodes.len())
            .filter(|&i| cluster.nodes[i].role == Role::Controller)
            .chain((0..cluster.nodes.len()).filter(|&i| cluster.nodes[i].role != Role::Controller))
            .collect();
        for &i in &order {
            cluster.spawn(i)?;
        }
        for &i in &order {
            cluster.wait_started(i)?;
        }
        if cluster.zookeeper.is_some() {
            cluster.cluster_id = cluster.zk_cluster_id()?;
        }
        Ok(cluster)
    }

    /// ZooKeeper mode: the server, for its address and four-letter words.
    pub fn zookeeper(&self) -> Option<&ZooKeeper> {
        self.zookeeper.as_ref()
    }

    /// ZooKeeper mode: the cluster id the brokers took from ZooKeeper (`/cluster/id`, created
    /// by the first broker), as broker 1 wrote it in its `meta.properties`.
    fn zk_cluster_id(&self) -> Result<String> {
        let n = &self.nodes[0];
        let path = n.log_dirs[0].join("meta.properties");
        let text = fs::read_to_string(&path).with_context(|| path.display().to_string())?;
        text.lines()
            .find_map(|l| l.strip_prefix("cluster.id="))
            .map(|s| s.trim().to_string())
            .ok_or_else(|| anyhow!("{}: no cluster.id:\n{text}", path.display()))
    }

    /// The cluster's working directory (configs, logs, log dirs).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `host:port,...` of every broker.
    pub fn bootstrap(&self) -> String {
        self.nodes
            .iter()
            .filter_map(|n| n.port.map(|p| format!("127.0.0.1:{p}")))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// A client bound to this cluster's brokers.
    pub fn client(&self) -> Client {
        Client::new(self.dist.clone(), self.bootstrap())
    }

    pub fn broker_ids(&self) -> Vec<u32> {
        self.nodes
            .iter()
            .filter(|n| n.is_broker())
            .map(|n| n.id)
            .collect()
    }

    pub fn node(&self, id: u32) -> Result<&Node> {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .ok_or_else(|| anyhow!("no node {id}"))
    }

    fn index(&self, id: u32) -> Result<usize> {
        self.nodes
            .iter()
            .position(|n| n.id == id)
            .ok_or_else(|| anyhow!("no node {id}"))
    }

    /// The log dirs of node `id`.
    pub fn log_dirs(&self, id: u32) -> Result<Vec<PathBuf>> {
        Ok(self.node(id)?.log_dirs.clone())
    }

    /// Stops node `id` cleanly: SIGTERM, then waits for the process to exit (a clean
    /// shutdown writes `.kafka_cleanshutdown`). Fails if it does not exit by the deadline.
    pub fn stop(&mut self, id: u32) -> Result<()> {
        let i = self.index(id)?;
        let node = &mut self.nodes[i];
        let Some(child) = node.child.as_mut() else {
            return Ok(());
        };
        signal(child.id(), libc::SIGTERM)?;
        let status = wait_deadline(child, DEADLINE).with_context(|| {
            format!(
                "node {id} did not stop after SIGTERM\n{}",
                tail(&node.log_file, 40)
            )
        })?;
        node.child = None;
        // The JVM exits 143 when a shutdown hook ran after SIGTERM; anything else is odd.
        if !(status.success() || status.code() == Some(143)) {
            bail!(
                "node {id} exited with {status} on SIGTERM\n{}",
                tail(&node.log_file, 40)
            );
        }
        Ok(())
    }

    /// Kills node `id` with SIGKILL and waits for it to be gone.
    pub fn kill(&mut self, id: u32) -> Result<()> {
        let i = self.index(id)?;
        if let Some(mut child) = self.nodes[i].child.take() {
            signal(child.id(), libc::SIGKILL)?;
            wait_deadline(&mut child, DEADLINE)?;
        }
        Ok(())
    }

    /// Starts node `id` again on its log dirs and waits until it says it started. In
    /// ZooKeeper mode it first waits (with the deadline) until the registration of the
    /// node's previous process is gone: after a kill, `/brokers/ids/<id>` stays until the
    /// session times out ([`ZK_SESSION_TIMEOUT_MS`]), and a broker that finds it exits.
    pub fn restart(&mut self, id: u32) -> Result<()> {
        let i = self.index(id)?;
        if self.nodes[i].child.is_some() {
            bail!("node {id} is still running; stop or kill it first");
        }
        if let Some(zk) = &self.zookeeper {
            zk.wait_ephemeral_gone(&format!("/brokers/ids/{id}"))?;
        }
        self.spawn(i)?;
        self.wait_started(i)
    }

    /// Starts node `id` on other log dirs (for example a restored copy): rewrites its config's
    /// `log.dirs` and starts it.
    ///
    /// Refused if the spec turns time-based retention on: the dirs hold data written at
    /// another time (a fixture, a restored archive), which the broker would delete at its
    /// first retention check once the data is older than the retention, that is, on a later
    /// date than the one the test was written on.
    pub fn restart_on(&mut self, id: u32, log_dirs: &[PathBuf]) -> Result<()> {
        let i = self.index(id)?;
        if log_dirs.is_empty() {
            bail!("restart_on needs at least one log dir");
        }
        if let Some((k, v)) = self.spec.time_retention(id) {
            bail!(
                "restart_on node {id}: {k}={v} would let the broker delete recorded data by \
                 its age, so the test would depend on the date it runs on; start brokers on \
                 copied or restored log dirs with time-based retention off (the harness \
                 default)"
            );
        }
        self.nodes[i].log_dirs = log_dirs.to_vec();
        self.write_config(i)?;
        self.restart(id)
    }

    /// Changes a config of node `id` from its next start on (its config file is rewritten
    /// now), e.g. a shorter `log.retention.check.interval.ms` for a restart.
    pub fn set_node_config(&mut self, id: u32, key: &str, value: impl ToString) -> Result<()> {
        let i = self.index(id)?;
        self.spec
            .node_config
            .entry(id)
            .or_default()
            .insert(key.into(), value.to_string());
        self.write_config(i)
    }

    /// Runs the version's storage tool to format node `id`'s log dirs with this cluster's id
    /// (as `kafka-storage.sh format` does). Used at start and to prepare wiped dirs. In
    /// ZooKeeper mode it does nothing: a broker writes its own `meta.properties` (version 0,
    /// `broker.id`, the cluster id from ZooKeeper) into an empty log dir.
    pub fn format_node(&self, id: u32) -> Result<()> {
        self.format(self.index(id)?)
    }

    fn plan_nodes(&mut self) -> Result<()> {
        let mut plan = Vec::new();
        match self.spec.shape {
            Shape::Combined => plan.push((1, Role::Combined)),
            Shape::Cluster {
                brokers,
                controllers,
            } => {
                if brokers == 0 || controllers == 0 {
                    bail!("a cluster needs at least one broker and one controller");
                }
                // Brokers are 1..=N, controllers 100.. so ids say what a node is.
                plan.extend((1..=brokers).map(|id| (id, Role::Broker)));
                plan.extend((0..controllers).map(|k| (100 + k, Role::Controller)));
            }
            Shape::ZooKeeper { brokers } => {
                if brokers == 0 {
                    bail!("a ZooKeeper-mode cluster needs at least one broker");
                }
                plan.extend((1..=brokers).map(|id| (id, Role::Broker)));
            }
        }
        for (id, role) in plan {
            let home = self.root.join(format!("node-{id}"));
            fs::create_dir_all(&home)?;
            let log_dirs = if role == Role::Controller {
                vec![home.join("metadata")]
            } else {
                (0..self.spec.log_dirs_per_broker.max(1))
                    .map(|k| home.join(format!("logs-{k}")))
                    .collect()
            };
            self.nodes.push(Node {
                id,
                role,
                port: if role == Role::Controller {
                    None
                } else {
                    Some(free_port()?)
                },
                controller_port: if role == Role::Broker {
                    None
                } else {
                    Some(free_port()?)
                },
                log_dirs,
                config_file: home.join("server.properties"),
                log_file: home.join("kafka.out"),
                child: None,
                log_mark: 0,
            });
        }
        Ok(())
    }

    fn voters(&self) -> String {
        self.nodes
            .iter()
            .filter_map(|n| n.controller_port.map(|p| format!("{}@127.0.0.1:{p}", n.id)))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn write_config(&self, i: usize) -> Result<()> {
        let n = &self.nodes[i];
        let brokers = self.nodes.iter().filter(|n| n.is_broker()).count();
        let rf = brokers.min(3);
        let mut c: BTreeMap<String, String> = BTreeMap::new();
        let mut set = |k: &str, v: String| {
            c.insert(k.to_string(), v);
        };
        if let Some(zk) = &self.zookeeper {
            // ZooKeeper mode: no process.roles, no controller quorum.
            set("broker.id", n.id.to_string());
            set("zookeeper.connect", zk.connect());
            set(
                "zookeeper.session.timeout.ms",
                ZK_SESSION_TIMEOUT_MS.to_string(),
            );
        } else {
            set(
                "process.roles",
                match n.role {
                    Role::Combined => "broker,controller",
                    Role::Broker => "broker",
                    Role::Controller => "controller",
                }
                .into(),
            );
            set("node.id", n.id.to_string());
            set("controller.quorum.voters", self.voters());
            set("controller.listener.names", "CONTROLLER".into());
            set(
                "listener.security.protocol.map",
                "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT".into(),
            );
        }
        let mut listeners = Vec::new();
        if let Some(p) = n.port {
            listeners.push(format!("PLAINTEXT://127.0.0.1:{p}"));
            set("advertised.listeners", format!("PLAINTEXT://127.0.0.1:{p}"));
            set("inter.broker.listener.name", "PLAINTEXT".into());
        }
        if let Some(p) = n.controller_port {
            listeners.push(format!("CONTROLLER://127.0.0.1:{p}"));
        }
        set("listeners", listeners.join(","));
        set(
            "log.dirs",
            n.log_dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(","),
        );
        // Small, quick and deterministic test defaults; any of them can be overridden.
        set("num.partitions", "1".into());
        set("auto.create.topics.enable", "false".into());
        set("offsets.topic.num.partitions", "3".into());
        set("offsets.topic.replication.factor", rf.to_string());
        set("transaction.state.log.num.partitions", "3".into());
        set("transaction.state.log.replication.factor", rf.to_string());
        set("transaction.state.log.min.isr", "1".into());
        set("default.replication.factor", "1".into());
        set("group.initial.rebalance.delay.ms", "0".into());
        set("num.network.threads", "2".into());
        set("num.io.threads", "4".into());
        set("log.flush.offset.checkpoint.interval.ms", "1000".into());
        for (k, v) in NO_WALL_CLOCK_EXPIRY {
            set(k, v.to_string());
        }
        if !TIME_RETENTION_KEYS
            .iter()
            .any(|k| self.spec.effective(n.id, k).is_some())
        {
            set("log.retention.ms", "-1".into());
        }
        if n.role != Role::Controller {
            for (k, v) in &self.spec.broker_config {
                set(k, v.clone());
            }
        }
        for (k, v) in self.spec.node_config.get(&n.id).into_iter().flatten() {
            set(k, v.clone());
        }
        let mut text = format!(
            "# written by the segvault test harness, Kafka {}\n",
            self.dist.version
        );
        for (k, v) in &c {
            text.push_str(&format!("{k}={v}\n"));
        }
        fs::write(&n.config_file, text)?;
        // One logging config per node for both logging back ends: log4j 1 (Kafka 3.x,
        // reload4j) and log4j2 (Kafka 4.x). Both print to stdout, which goes to kafka.out.
        let home = n.config_file.parent().unwrap_or(&self.root);
        fs::write(
            home.join("log4j.properties"),
            "log4j.rootLogger=INFO, stdout\nlog4j.appender.stdout=org.apache.log4j.ConsoleAppender\n\
             log4j.appender.stdout.layout=org.apache.log4j.PatternLayout\n\
             log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n\n",
        )?;
        fs::write(
            home.join("log4j2.properties"),
            "status = warn\nappender.out.type = Console\nappender.out.name = OUT\n\
             appender.out.layout.type = PatternLayout\nappender.out.layout.pattern = [%d] %p %m (%c)%n\n\
             rootLogger.level = info\nrootLogger.appenderRef.out.ref = OUT\n",
        )?;
        Ok(())
    }

    fn format(&self, i: usize) -> Result<()> {
        if self.zookeeper.is_some() {
            return Ok(());
        }
        let n = &self.nodes[i];
        let mut cmd = self.dist.java("kafka.tools.StorageTool", 256);
        cmd.args(["format", "-t", &self.cluster_id, "-c"])
            .arg(&n.config_file);
        let out = cmd.output().context("running kafka.tools.StorageTool")?;
        if !out.status.success() {
            bail!(
                "formatting node {} failed:\n{}{}",
                n.id,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    fn spawn(&mut self, i: usize) -> Result<()> {
        let home = self.nodes[i]
            .config_file
            .parent()
            .unwrap_or(&self.root)
            .to_path_buf();
        let n = &mut self.nodes[i];
        let out = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&n.log_file)?;
        n.log_mark = out.metadata()?.len();
        let mut cmd = self.dist.java(
            "kafka.Kafka",
            if n.role == Role::Controller { 256 } else { 768 },
        );
        // The logging properties must come before the main class: rebuild the command.
        let mut args: Vec<std::ffi::OsString> = cmd.get_args().map(|a| a.to_os_string()).collect();
        let main_at = args
            .iter()
            .position(|a| a == "kafka.Kafka")
            .unwrap_or(args.len());
        args.insert(
            main_at,
            format!(
                "-Dlog4j.configuration=file:{}/log4j.properties",
                home.display()
            )
            .into(),
        );
        args.insert(
            main_at,
            format!(
                "-Dlog4j2.configurationFile={}/log4j2.properties",
                home.display()
            )
            .into(),
        );
        let program = cmd.get_program().to_os_string();
        cmd = std::process::Command::new(program);
        cmd.args(args).arg(&n.config_file);
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context("starting the broker JVM")?;
        n.child = Some(child);
        Ok(())
    }

    fn wait_started(&mut self, i: usize) -> Result<()> {
        let start = Instant::now();
        loop {
            let n = &mut self.nodes[i];
            let text = read_from(&n.log_file, n.log_mark);
            // KRaft: "Kafka Server started"; ZooKeeper mode: "[KafkaServer id=N] started".
            if text.contains("Kafka Server started")
                || text.contains("] started (kafka.server.KafkaServer)")
            {
                return Ok(());
            }
            if let Some(Ok(Some(status))) = n.child.as_mut().map(|c| c.try_wait()) {
                n.child = None;
                bail!(
                    "Kafka {} node {} exited with {status} while starting:\n{}",
                    self.dist.version,
                    n.id,
                    tail(&n.log_file, 60)
                );
            }
            if start.elapsed() > DEADLINE {
                bail!(
                    "Kafka {} node {} did not start within {:?}:\n{}",
                    self.dist.version,
                    n.id,
                    DEADLINE,
                    tail(&n.log_file, 60)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Keeps the working directory after the cluster is dropped (for debugging or for copying
    /// out log dirs) and returns its path.
    pub fn keep(&mut self) -> PathBuf {
        if let Some(d) = self.dir.take() {
            let _ = d.keep();
        }
        self.root.clone()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        if let Some(zk) = &mut self.zookeeper {
            zk.kill();
        }
        if std::env::var_os("SEGVAULT_KEEP_TEST_DIRS").is_some() {
            if let Some(d) = self.dir.take() {
                eprintln!("keeping {}", d.keep().display());
            }
        }
    }
}

/// A Kafka cluster id: 16 random bytes in unpadded base64url, as `kafka-storage random-uuid`
/// prints (never starting with '-', which Kafka avoids for command lines).
pub fn random_cluster_id() -> String {
    loop {
        let bytes: [u8; 16] = rand::random();
        let s = base64url(&bytes);
        if !s.starts_with('-') {
            return s;
        }
    }
}

fn base64url(b: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut s = String::new();
    for chunk in b.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &x)| n | (x as u32) << (16 - 8 * i));
        for k in 0..=chunk.len() {
            s.push(A[((n >> (18 - 6 * k)) & 63) as usize] as char);
        }
    }
    s
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn signal(pid: u32, sig: libc::c_int) -> Result<()> {
    let pid = libc::pid_t::try_from(pid)?;
    // SAFETY: kill(2) takes two integers and touches none of our memory; libc only marks it
    // unsafe because every foreign function is.
    let rc = unsafe { libc::kill(pid, sig) };
    if rc != 0 {
        bail!(
            "kill({pid}, {sig}) failed: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

fn wait_deadline(child: &mut Child, deadline: Duration) -> Result<std::process::ExitStatus> {
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait()? {
            return Ok(s);
        }
        if start.elapsed() > deadline {
            bail!("process {} still running after {:?}", child.id(), deadline);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn read_from(path: &Path, from: u64) -> String {
    let mut s = String::new();
    if let Ok(mut f) = fs::File::open(path) {
        if f.seek(SeekFrom::Start(from)).is_ok() {
            let mut b = Vec::new();
            let _ = f.read_to_end(&mut b);
            s = String::from_utf8_lossy(&b).into_owned();
        }
    }
    s
}

/// The last `lines` lines of a log file, for error messages.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = read_from(path, 0);
    let all: Vec<&str> = text.lines().collect();
    let from = all.len().saturating_sub(lines);
    format!(
        "--- last {} lines of {} ---\n{}",
        all.len() - from,
        path.display(),
        all[from..].join("\n")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_retention_is_off_unless_a_spec_turns_it_on() {
        let spec = ClusterSpec::combined("4.3.1");
        assert_eq!(spec.time_retention(1), None);
        let spec = spec.config("log.retention.ms", -1);
        assert_eq!(spec.time_retention(1), None);
        let spec = spec.config("log.retention.hours", 168);
        assert_eq!(spec.time_retention(1), Some(("log.retention.hours", "168")));
        let spec = ClusterSpec::cluster("4.3.1", 2, 1).node_config(2, "log.retention.minutes", 5);
        assert_eq!(spec.time_retention(1), None);
        assert_eq!(spec.time_retention(2), Some(("log.retention.minutes", "5")));
    }
}
