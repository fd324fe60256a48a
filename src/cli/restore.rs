//! `segvault ls` and `segvault restore`: what the archive holds, and log dirs rebuilt from it.

use super::{runtime, Format, EXIT_ERROR, EXIT_OK, EXIT_PROBLEM};
use object_store::ObjectStoreExt;
use segvault_core::archive;
use segvault_core::restore::catalog::{
    self, Catalog, ClusterCatalog, Filter, Keep, PartitionCatalog,
};
use segvault_core::restore::plan::{self, Cut, Mode, Plan, Planner, Selection};
use segvault_core::restore::retention;
use segvault_core::restore::write::{self, WriteOptions};
use segvault_core::restore::RestoreError;
use std::ops::ControlFlow;
use std::path::PathBuf;

pub const LS_HELP: &str = "\
Show what an archive holds, read from the store alone: clusters, brokers with their archived
files, topics with their ids, partitions with their offset ranges, time ranges, sizes, gaps,
divergences and corrupt segments.

Only what is selected is read: with --topic (repeatable) and --partition, the store is
listed and read under the selected topics alone, and each partition is printed as soon as it
is read.

Examples:
  segvault ls file:///backup/kafka
  segvault ls s3://bucket/kafka --topic '^orders$' --partition 3
  segvault ls s3://bucket/kafka --format json | jq 'select(.type == \"partition\")'

Exit codes: 0 the archive is consistent, 1 a partition's chain is broken or a manifest does
not match its key, 2 usage or store error.";

pub const RESTORE_HELP: &str = "\
Rebuild a broker log dir from the archive, so a broker started on it serves the same records
at the same offsets.

Modes:
  bare-metal   recover a lost broker: the same cluster, node id (--node), directory id and
               topic ids. Writes meta.properties, every partition the node held (its
               archived replication-offset-checkpoint names them) with partition.metadata,
               leader-epoch-checkpoint and the producer snapshot, and the offset checkpoints.
  new-cluster  restore into a brand-new cluster whose topics were created there first (same
               names, at least as many partitions): stop its broker, then restore into its
               log dir. Each partition keeps the new topic id (read from the target's
               partition.metadata, or --topic-id), leader epochs are reset to 0 (batches and
               leader-epoch-checkpoint) so the new leader's epochs stay consistent, and
               producer state starts empty (the new cluster hands out producer ids from 0).

Point in time: --until-offset N keeps the batches whose offsets are all below N;
--until-time T (ms since the epoch, or RFC 3339) keeps, in every partition, the batches whose
records are all older than T, stopping at the first batch that is not: one instant across all
partitions, __consumer_offsets included. The last segment is trimmed and its indexes rebuilt.

Safety: every object's SHA-256 and every batch CRC is verified after download and before
anything is placed; each partition is built in <to>/.segvault-restore/ and renamed into place;
the restore refuses a log dir whose .lock a running broker holds, and partitions that hold
data unless --force; an interrupted restore resumes when run again. Every target is checked
(lock, meta.properties, checkpoints, each partition's topic id and data) before anything is
written. --dry-run prints the plan (partitions, ranges, objects, bytes, gaps, epoch changes),
runs the same checks and writes nothing.

Transactions open at the restored end never reach read_committed consumers: bare-metal keeps
them open (producer state restored; abort them with kafka-transactions.sh); new-cluster ends
such a partition where no transaction was open, and says where.

Retention: each topic's retention.ms/retention.bytes from the archived KRaft snapshot; the
segments the broker would delete at start are reported (also with --dry-run), with the
kafka-configs.sh command that keeps them.

Examples:
  segvault restore file:///backup/kafka --to /var/lib/kafka/data --mode bare-metal --node 2
  segvault restore s3://bucket/kafka --to /data --mode new-cluster --topic '^orders$' --dry-run
  segvault restore s3://bucket/kafka --to /data --until-time 2026-11-20T08:00:00Z

Exit codes: 0 restored (or planned), 1 the archive's data failed verification (nothing of that
partition was placed), 2 usage, I/O or store error, or a refusal (lock held, data present).";

/// `segvault ls`: its flags (the field docs are the help text).
#[derive(Debug, clap::Args)]
pub struct LsArgs {
    /// The archive: file:///path, s3://bucket/prefix, gs://bucket/prefix, az://container/prefix.
    #[arg(value_name = "STORE", env = "SEGVAULT_STORE")]
    pub store: String,
    #[command(flatten)]
    pub select: SelectArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// `--topic` and `--partition`: which partitions `ls` shows and `restore` restores (the same
/// flags, help and meaning for both). Only the selected topics are listed and read.
#[derive(Debug, Clone, clap::Args)]
pub struct SelectArgs {
    /// Only topics matching this regular expression (repeatable: a topic matching any).
    #[arg(long, value_name = "REGEX")]
    pub topic: Vec<String>,
    /// Only this partition number.
    #[arg(long, value_name = "N")]
    pub partition: Option<i32>,
}

impl SelectArgs {
    /// The selection, or why a `--topic` is not a regular expression.
    pub fn filter(&self) -> Result<Filter, String> {
        let topics = self
            .topic
            .iter()
            .map(|t| regex::Regex::new(t).map_err(|e| format!("--topic: {e}")))
            .collect::<Result<_, _>>()?;
        Ok(Filter {
            topics,
            partition: self.partition,
        })
    }
}

/// `--mode`: the restore modes as the command line names them (the library's [`Mode`] knows
/// nothing of clap). The doc comments are the help text of each value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ModeArg {
    /// Rebuild a lost broker's log dir: the same cluster, node id and topic ids.
    BareMetal,
    /// Into a brand-new cluster whose topics exist already: keep its topic ids, reset epochs.
    NewCluster,
}

impl From<ModeArg> for Mode {
    fn from(m: ModeArg) -> Mode {
        match m {
            ModeArg::BareMetal => Mode::BareMetal,
            ModeArg::NewCluster => Mode::NewCluster,
        }
    }
}

/// `segvault restore`: its flags (the field docs are the help text).
#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// The archive: file:///path, s3://bucket/prefix, gs://bucket/prefix, az://container/prefix.
    #[arg(value_name = "STORE", env = "SEGVAULT_STORE")]
    pub store: String,
    /// The broker log dir to write (a `log.dirs` entry; created if missing).
    #[arg(long, value_name = "LOGDIR")]
    pub to: PathBuf,
    /// bare-metal: the same broker rejoins its cluster; new-cluster: into topics created anew.
    #[arg(long, value_enum, default_value_t = ModeArg::BareMetal)]
    pub mode: ModeArg,
    /// The archived cluster id (needed when the archive holds several).
    #[arg(long, value_name = "ID")]
    pub cluster: Option<String>,
    /// Bare-metal: the node id to rebuild (needed when the archive holds several).
    #[arg(long, value_name = "N")]
    pub node: Option<i32>,
    #[command(flatten)]
    pub select: SelectArgs,
    /// Keep only batches whose offsets are all below N.
    #[arg(long, value_name = "N", conflicts_with = "until_time")]
    pub until_offset: Option<i64>,
    /// Keep only batches whose records are all older than T (ms since the epoch or RFC 3339).
    #[arg(long, value_name = "T")]
    pub until_time: Option<String>,
    /// New-cluster: the topic id to write (default: the target's partition.metadata).
    #[arg(long, value_name = "UUID")]
    pub topic_id: Option<String>,
    /// Print the plan; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Replace partitions that already hold data, and a differing meta.properties.
    #[arg(long)]
    pub force: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

fn fmt_ts(ms: Option<i64>) -> String {
    ms.and_then(chrono::DateTime::from_timestamp_millis)
        .map_or("-".into(), |t| {
            t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
        })
}

pub fn ls(o: LsArgs) -> i32 {
    let filter = match o.select.filter() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("segvault ls: {e}");
            return EXIT_ERROR;
        }
    };
    let store = match archive::open(&o.store) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("segvault ls: {e}");
            return EXIT_ERROR;
        }
    };
    let Some(rt) = runtime("ls") else {
        return EXIT_ERROR;
    };
    rt.block_on(ls_streamed(&store, &filter, &o))
}

/// `ls`: each cluster's line and its brokers, then its selected partitions, each printed as
/// soon as it is read (at most [`catalog::PARTITION_WINDOW`] held at once).
async fn ls_streamed(store: &archive::Store, filter: &Filter, o: &LsArgs) -> i32 {
    let cat = match catalog::clusters(store).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("segvault ls: {e}");
            return EXIT_ERROR;
        }
    };
    let mut problems = 0;
    for (cid, c) in &cat.clusters {
        let topics = c.topics.iter().map(String::as_str);
        let keys = match catalog::partitions(
            store,
            cid,
            topics.filter(|t| filter.topic(t)),
            filter.partition,
        )
        .await
        {
            Ok(k) => k,
            Err(e) => {
                eprintln!("segvault ls: {e}");
                return EXIT_ERROR;
            }
        };
        print_cluster(cid, c, keys.len(), o.format);
        let printed = catalog::for_each_partition(store, keys, Keep::Spans, |p| {
            problems += p.problems.len() + p.corrupt.len();
            print_partition(cid, &p, o.format);
            ControlFlow::Continue(())
        });
        if let Err(e) = printed.await {
            eprintln!("segvault ls: {e} (what is printed above is incomplete)");
            return EXIT_ERROR;
        }
    }
    if cat.clusters.is_empty() {
        eprintln!(
            "segvault ls: {}: no archive here",
            segvault_core::archive::store::redact(&o.store)
        );
    }
    if problems > 0 {
        EXIT_PROBLEM
    } else {
        EXIT_OK
    }
}

/// A cluster's line (with its count of `partitions` listed) and its brokers'.
fn print_cluster(cid: &str, c: &ClusterCatalog, partitions: usize, format: Format) {
    match format {
        Format::Json => println!(
            "{}",
            serde_json::json!({"type": "cluster", "cluster_id": cid,
                "brokers": c.brokers.len(), "partitions": partitions})
        ),
        Format::Text => println!("cluster {cid}"),
    }
    for (node, b) in &c.brokers {
        match format {
            Format::Json => println!(
                "{}",
                serde_json::json!({"type": "broker", "cluster_id": cid, "node_id": node,
                    "log_dirs": b.log_dirs, "metadata_snapshots": b.metadata_snapshots})
            ),
            Format::Text => println!(
                "  broker {node}: log dirs {}; {} metadata snapshots",
                b.log_dirs
                    .iter()
                    .map(|(d, f)| format!("{d} ({} files)", f.len()))
                    .collect::<Vec<_>>()
                    .join(", "),
                b.metadata_snapshots.len()
            ),
        }
    }
}

/// One partition of `ls`: a JSON line, or its text line and those of its gaps and evidence.
fn print_partition(cid: &str, p: &PartitionCatalog, format: Format) {
    let (tmin, tmax) = p.time_range();
    match format {
        Format::Json => println!(
            "{}",
            serde_json::json!({"type": "partition", "cluster_id": cid, "topic": p.topic,
                "topic_id": p.topic_id, "partition": p.partition,
                "start_offset": p.start_offset(), "end_offset": p.end_offset(),
                "ranges": p.spans.len(), "min_timestamp": tmin, "max_timestamp": tmax,
                "log_bytes": p.log_bytes(), "stored_bytes": p.stored_bytes(),
                "gaps": p.gaps(), "divergences": p.divergences, "corrupt": p.corrupt,
                "problems": p.problems})
        ),
        Format::Text => {
            println!(
                "  {}-{} (topic id {}): offsets [{}, {}) in {} ranges, {} bytes ({} stored), time {} .. {}",
                p.topic,
                p.partition,
                p.topic_id,
                p.start_offset().map_or("-".into(), |o| o.to_string()),
                p.end_offset().map_or("-".into(), |o| o.to_string()),
                p.spans.len(),
                p.log_bytes(),
                p.stored_bytes(),
                fmt_ts(tmin),
                fmt_ts(tmax)
            );
            for (s, n) in p.gaps() {
                println!(
                    "    GAP [{s}, {n}): no replica had these offsets when they were archived"
                );
            }
            for d in &p.divergences {
                println!("    DIVERGENCE evidence {d}");
            }
            for d in &p.corrupt {
                println!("    CORRUPT segment evidence {d}");
            }
            for d in &p.problems {
                println!("    PROBLEM {d}");
            }
        }
    }
}

/// A progress bar on stderr when it is a terminal.
fn progress_bar(total: u64) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let pb = indicatif::ProgressBar::with_draw_target(
        Some(total),
        indicatif::ProgressDrawTarget::stderr(),
    );
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{spinner} restoring [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    ) {
        pb.set_style(style.progress_chars("=> "));
    }
    Some(pb)
}

fn parse_time(s: &str) -> Result<i64, String> {
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|e| format!("--until-time {s:?}: expected ms since the epoch or RFC 3339 ({e})"))
}

pub fn restore(o: RestoreArgs) -> i32 {
    let fail = |m: String| {
        eprintln!("segvault restore: {m}");
        EXIT_ERROR
    };
    let cut = match (o.until_offset, &o.until_time) {
        (Some(n), None) => Some(Cut::Offset(n)),
        (None, Some(t)) => match parse_time(t) {
            Ok(ms) => Some(Cut::Time(ms)),
            Err(e) => return fail(e),
        },
        (None, None) => None,
        (Some(_), Some(_)) => {
            return fail("--until-offset and --until-time exclude each other".into())
        }
    };
    let filter = match o.select.filter() {
        Ok(f) => f,
        Err(e) => return fail(e),
    };
    let topic_id = match o
        .topic_id
        .as_deref()
        .map(segvault_format::text::Uuid::parse)
        .transpose()
    {
        Ok(u) => u,
        Err(e) => return fail(format!("--topic-id: {e}")),
    };
    let store = match archive::open(&o.store) {
        Ok(s) => s,
        Err(e) => return fail(e.to_string()),
    };
    let sel = Selection {
        cluster_id: o.cluster.clone(),
        node_id: o.node,
        filter,
        cut,
        mode: o.mode.into(),
    };
    let rt = match runtime("restore") {
        Some(rt) => rt,
        None => return EXIT_ERROR,
    };
    let plan = match rt.block_on(plan_restore(&store, &sel)) {
        Ok(p) => p,
        Err((code, e)) => {
            eprintln!("segvault restore: {e}");
            return code;
        }
    };
    if plan.partitions.is_empty() {
        return fail(format!(
            "nothing to restore: no archived partition of cluster {} matches the selection",
            plan.cluster_id
        ));
    }
    if topic_id.is_some()
        && plan
            .partitions
            .iter()
            .any(|p| p.topic != plan.partitions[0].topic)
    {
        return fail("--topic-id applies to one topic; select it with --topic".into());
    }
    let opts = WriteOptions {
        force: o.force,
        topic_id,
    };
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    print_retention(
        rt.block_on(retention::check(&store, &plan, now_ms)),
        plan.mode,
        o.format,
    );
    if o.dry_run {
        // The checks the restore makes before it writes, so that a plan that passes here
        // is not refused by the real run.
        let checked = rt.block_on(write::check(&store, &plan, &o.to, &opts));
        print_plan(&plan, &o.to, o.format);
        return match checked {
            Ok(()) => EXIT_OK,
            Err(e) => {
                eprintln!("segvault restore: --dry-run: {e}");
                if e.is_integrity() {
                    EXIT_PROBLEM
                } else {
                    EXIT_ERROR
                }
            }
        };
    }
    let bar = progress_bar(plan.fetch_bytes);
    let progress = |n: u64| {
        if let Some(b) = &bar {
            b.inc(n)
        }
    };
    let report = match rt.block_on(write::restore(&store, &plan, &o.to, &opts, &progress)) {
        Ok(r) => r,
        Err(e) => {
            if let Some(b) = &bar {
                b.abandon();
            }
            eprintln!("segvault restore: {e}");
            return if e.is_integrity() {
                EXIT_PROBLEM
            } else {
                EXIT_ERROR
            };
        }
    };
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    print_report(&report, &o.to, o.format);
    EXIT_OK
}

/// The plan, reading only what it restores: the clusters' broker files and topic names, in
/// bare-metal mode the node's replication checkpoint, then the partitions selected (and held
/// by the node), each planned as it is read. The error carries its exit code.
async fn plan_restore(store: &archive::Store, sel: &Selection) -> Result<Plan, (i32, String)> {
    let cat = catalog::clusters(store)
        .await
        .map_err(|e| (EXIT_ERROR, e.to_string()))?;
    // Bare-metal: the partitions the node held, from its archived replication checkpoint.
    let hosted = match sel.mode {
        Mode::NewCluster => None,
        Mode::BareMetal => hosted_partitions(store, &cat, sel).await?,
    };
    let hosted_fn = hosted
        .as_ref()
        .map(|h| move |t: &str, p: i32| h.contains(&(t.to_string(), p)));
    let hosted_fn = hosted_fn.as_ref().map(|f| f as &plan::Hosted);
    let plan_err = |e: RestoreError| match e {
        RestoreError::Damaged(_) => (EXIT_PROBLEM, e.to_string()),
        e => (EXIT_ERROR, e.to_string()),
    };
    let mut planner = Planner::new(&cat, sel).map_err(plan_err)?;
    let cid = planner.cluster_id().to_string();
    let topics = cat.clusters[&cid].topics.iter().filter(|t| {
        sel.filter.topic(t)
            && hosted.as_ref().is_none_or(|h| {
                let t = t.to_string();
                h.range((t.clone(), i32::MIN)..=(t, i32::MAX))
                    .next()
                    .is_some()
            })
    });
    let keys = catalog::partitions(
        store,
        &cid,
        topics.map(String::as_str),
        sel.filter.partition,
    )
    .await
    .map_err(|e| (EXIT_ERROR, e.to_string()))?
    .into_iter()
    .filter(|k| planner.wants(&k.topic, k.partition, hosted_fn))
    .collect();
    let add = |p| match planner.add(p, hosted_fn) {
        Ok(()) => ControlFlow::Continue(()),
        Err(e) => ControlFlow::Break(e),
    };
    catalog::for_each_partition(store, keys, Keep::Manifests, add)
        .await
        .map_err(plan_err)?;
    planner.finish().map_err(plan_err)
}

/// The partitions the node being restored held, from its archived
/// `replication-offset-checkpoint`. `None` when the selection names no single node (nothing
/// to narrow). A checkpoint that cannot be read fails the restore: it must never widen to
/// every partition of the cluster. The error carries its exit code.
async fn hosted_partitions(
    store: &archive::Store,
    cat: &Catalog,
    sel: &Selection,
) -> Result<Option<std::collections::BTreeSet<(String, i32)>>, (i32, String)> {
    // Which node and log dir are meant: from the broker files alone (a damaged partition the
    // node never held must not stop its restore).
    let (cluster_id, Some(node), Some(dir)) =
        plan::target_node(cat, sel).map_err(|e| (EXIT_ERROR, e.to_string()))?
    else {
        return Ok(None);
    };
    let key = archive::layout::broker_file(cluster_id, node, &dir, "replication-offset-checkpoint");
    let unknown = |why: String| {
        (
            EXIT_ERROR,
            format!(
                "{key}: {why}: which partitions node {node} held is unknown, so nothing was restored (select partitions with --topic/--partition and --mode new-cluster to restore without it)"
            ),
        )
    };
    let got = match store.inner.get(&key).await {
        Ok(g) => g,
        Err(object_store::Error::NotFound { .. }) => {
            return Err(unknown(
                "the node's replication-offset-checkpoint is not in the archive".into(),
            ))
        }
        Err(e) => return Err(unknown(format!("reading it failed: {e}"))),
    };
    let bytes = got
        .bytes()
        .await
        .map_err(|e| unknown(format!("reading it failed: {e}")))?;
    let entries = segvault_format::text::parse_offset_checkpoint(&bytes)
        .map_err(|e| unknown(format!("expected an offset checkpoint: {e}")))?;
    Ok(Some(
        entries
            .iter()
            .map(|e| (e.topic.to_string(), e.partition))
            .collect(),
    ))
}

/// What the broker would delete of the restored data at start (its topics' retention), as
/// warnings: on stderr as text, as `retention_warning` lines on stdout as JSON. A snapshot
/// that cannot be read is said, not hidden: then nothing was judged.
fn print_retention(r: Result<retention::Retention, RestoreError>, mode: Mode, format: Format) {
    let r = match r {
        Ok(r) => r,
        Err(e) => {
            match format {
                Format::Json => println!(
                    "{}",
                    serde_json::json!({"type": "retention_unchecked", "error": e.to_string()})
                ),
                Format::Text => eprintln!(
                    "WARNING retention not checked (the broker may delete restored data at start): {e}"
                ),
            }
            return;
        }
    };
    if r.snapshot.is_none() {
        let why = "no archived KRaft snapshot to read the topics' retention from (ZooKeeper mode, or none archived yet): what the broker may delete at start was not judged";
        match format {
            Format::Json => println!(
                "{}",
                serde_json::json!({"type": "retention_unchecked", "error": why})
            ),
            Format::Text => eprintln!("NOTE {why}"),
        }
        return;
    }
    let when = match mode {
        Mode::BareMetal => "before this broker starts (against the rest of its cluster; a single-node cluster checks retention 30 s after it starts, then every log.retention.check.interval.ms)",
        Mode::NewCluster => "against the new cluster before its broker starts on the restored dir (the retention above is the archived cluster's; check the new cluster's own with kafka-configs.sh --describe)",
    };
    for d in &r.deletions {
        match format {
            Format::Json => println!(
                "{}",
                serde_json::json!({"type": "retention_warning", "deletion": d})
            ),
            Format::Text => {
                let limits: Vec<String> = [
                    ("retention.ms", d.retention_ms),
                    ("retention.bytes", d.retention_bytes),
                ]
                .into_iter()
                .filter(|(k, _)| d.by.iter().any(|b| b == k))
                .filter_map(|(k, l)| l.map(|l| format!("{k}={} ({})", l.value, l.from)))
                .collect();
                eprintln!(
                    "WARNING {}-{}: the broker deletes {} of its {} restored segments ({} bytes, offsets [{}, {})) at its first retention check: {}{}",
                    d.topic,
                    d.partition,
                    d.segments,
                    d.of_segments,
                    d.bytes,
                    d.start_offset,
                    d.new_start_offset,
                    limits.join(", "),
                    d.newest_deleted_ms
                        .map_or(String::new(), |t| format!("; the newest record deleted is from {}", fmt_ts(Some(t))))
                );
            }
        }
    }
    for (topic, cmd) in &r.commands {
        match format {
            Format::Json => println!(
                "{}",
                serde_json::json!({"type": "retention_command", "topic": topic, "command": cmd, "when": when})
            ),
            Format::Text => {
                eprintln!("  to keep topic {topic}'s restored data, run {when}:\n    {cmd}")
            }
        }
    }
}

/// What a restore did, as text or JSON lines.
fn print_report(report: &write::Report, to: &std::path::Path, format: Format) {
    match format {
        Format::Json => {
            for p in &report.partitions {
                println!("{}", serde_json::json!({"type": "partition", "report": p}));
            }
            println!(
                "{}",
                serde_json::json!({"type": "total", "partitions": report.partitions.len(),
                    "fetched_bytes": report.fetched_bytes, "to": to.to_string_lossy(),
                    "wrote_meta_properties": report.wrote_meta_properties,
                    "clean_shutdown": report.clean_shutdown})
            );
        }
        Format::Text => {
            for p in &report.partitions {
                println!(
                    "restored {}-{} offsets [{}, {}) {} segments, {} bytes{}{}{}",
                    p.topic,
                    p.partition,
                    p.log_start_offset,
                    p.log_end_offset,
                    p.segments,
                    p.log_bytes,
                    p.cut_at.map_or(String::new(), |c| format!(", cut at {c}")),
                    if p.rebuilt_indexes > 0 {
                        format!(", {} indexes rebuilt", p.rebuilt_indexes)
                    } else {
                        String::new()
                    },
                    if p.resumed { " (already in place)" } else { "" }
                );
                if let Some(c) = &p.open_transactions_cut {
                    println!(
                        "  NOTE {}-{}: ends at offset {} instead of {}: {} transactions were open at the archived end ({}); the archive does not hold their outcome, and a new cluster has no producer state to keep their records from read_committed consumers, so the log ends where no transaction was open",
                        p.topic,
                        p.partition,
                        c.at,
                        c.archived_end,
                        c.transactions.len(),
                        c.transactions
                            .iter()
                            .map(|(pid, first)| format!("producer {pid} from offset {first}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                }
                if let Some(&(_, first)) = p.open_transactions.iter().min_by_key(|t| t.1) {
                    println!(
                        "  WARNING {}-{}: {} transactions are open at the restored end (their outcome was not archived); read_committed consumers stop at offset {first} until they are aborted: kafka-transactions.sh --bootstrap-server ... abort --topic {} --partition {} --start-offset {first}",
                        p.topic,
                        p.partition,
                        p.open_transactions.len(),
                        p.topic,
                        p.partition
                    );
                }
            }
            println!(
                "{} partitions restored into {} ({} bytes fetched)",
                report.partitions.len(),
                to.display(),
                report.fetched_bytes
            );
            match report.clean_shutdown {
                "written" => println!(
                    "wrote .kafka_cleanshutdown: every partition here was verified, so the broker starts without recovering segments"
                ),
                "absent" => println!(
                    "no .kafka_cleanshutdown written: {} holds partitions this restore did not place; the broker recovers from their recovery points at start-up",
                    to.display()
                ),
                _ => {}
            }
        }
    }
}

fn print_plan(plan: &Plan, to: &std::path::Path, format: Format) {
    match format {
        Format::Json => {
            for p in &plan.partitions {
                println!(
                    "{}",
                    serde_json::json!({"type": "partition_plan", "topic": p.topic,
                        "partition": p.partition, "archived_topic_id": p.archived_topic_id,
                        "ranges": p.ranges.iter().map(|m| (m.start_offset, m.next_offset)).collect::<Vec<_>>(),
                        "trim_last": p.trim_last, "gaps": p.gaps, "epochs": p.epochs,
                        "divergences": p.divergences, "fetch_bytes": p.fetch_bytes})
                );
            }
            println!(
                "{}",
                serde_json::json!({"type": "plan", "cluster_id": plan.cluster_id, "mode": plan.mode,
                    "node_id": plan.node_id, "log_dir_id": plan.log_dir_id, "cut": plan.cut,
                    "partitions": plan.partitions.len(), "objects": plan.objects,
                    "fetch_bytes": plan.fetch_bytes, "to": to.to_string_lossy(), "dry_run": true})
            );
        }
        Format::Text => {
            println!(
                "plan: {:?} restore of cluster {}{} into {} (dry run: nothing written)",
                plan.mode,
                plan.cluster_id,
                plan.node_id
                    .map_or(String::new(), |n| format!(", node {n}")),
                to.display()
            );
            for p in &plan.partitions {
                let (s, e) = (
                    p.ranges.first().map_or(0, |m| m.start_offset),
                    p.ranges.last().map_or(0, |m| m.next_offset),
                );
                println!(
                    "  {}-{}: offsets [{s}, {e}) in {} ranges, {} bytes to fetch{}",
                    p.topic,
                    p.partition,
                    p.ranges.len(),
                    p.fetch_bytes,
                    if p.trim_last {
                        ", last segment trimmed at the cut"
                    } else {
                        ""
                    }
                );
                for (a, b) in &p.gaps {
                    println!("    GAP [{a}, {b}): not in the archive; the restored log skips these offsets");
                }
                if p.epochs.len() > 1 {
                    println!(
                        "    leader epochs change at {}",
                        p.epochs
                            .iter()
                            .skip(1)
                            .map(|(e, o)| format!("{o} (epoch {e})"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                }
                if p.divergences > 0 {
                    println!(
                        "    {} divergence records: the archive keeps the first copy",
                        p.divergences
                    );
                }
            }
            println!(
                "{} partitions, {} objects, {} bytes to fetch",
                plan.partitions.len(),
                plan.objects,
                plan.fetch_bytes
            );
        }
    }
}
