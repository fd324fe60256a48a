//! Small text files of a log directory: offset checkpoints, `leader-epoch-checkpoint`,
//! `partition.metadata`, `meta.properties`, `.kafka_cleanshutdown`; and Kafka's base64url
//! UUIDs. Readers mirror the broker's acceptance rules; writers produce exactly the bytes
//! the broker writes (restore code writes these files).

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine;

use super::error::{ErrorKind, FormatError, Result};

/// A Kafka UUID (topic id, directory id), shown as 22 characters of unpadded base64url.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Uuid(pub [u8; 16]);

impl Uuid {
    /// The all-zero UUID (Kafka's `ZERO_UUID`, never a valid topic id).
    pub const ZERO: Uuid = Uuid([0; 16]);
    /// `__cluster_metadata`'s fixed topic id (`AAAAAAAAAAAAAAAAAAAAAQ`).
    pub const METADATA_TOPIC_ID: Uuid = Uuid([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);

    /// Parses base64url, with or without padding (Java's URL decoder accepts both), which
    /// must decode to exactly 16 bytes.
    pub fn parse(s: &str) -> Result<Uuid> {
        let trimmed = s.trim_end_matches('=');
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(trimmed)
            .map_err(|e| {
                FormatError::new(ErrorKind::Syntax, 0, "a base64url UUID")
                    .found(format!("{s:?} ({e})"))
            })?;
        let arr: [u8; 16] = bytes.try_into().map_err(|b: Vec<u8>| {
            FormatError::new(ErrorKind::BadLength, 0, "a UUID of 16 bytes")
                .found(format!("{} bytes", b.len()))
        })?;
        Ok(Uuid(arr))
    }
    /// True for the zero UUID.
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 16]
    }
}

impl fmt::Display for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.0))
    }
}

fn syntax(line: usize, expected: impl Into<String>, found: &str) -> FormatError {
    // Position = line number (1-based) for text files: more useful than a byte count.
    FormatError::new(ErrorKind::Syntax, line as u64, expected)
        .found(format!("{found:?} (line {line})"))
}

fn as_text(data: &[u8]) -> Result<&str> {
    std::str::from_utf8(data)
        .map_err(|e| FormatError::new(ErrorKind::Syntax, e.valid_up_to() as u64, "UTF-8 text"))
}

/// Java's `BufferedReader.readLine` line splitting (\n, \r\n or \r).
fn java_lines(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        match rest.find(['\n', '\r']) {
            Some(i) => {
                out.push(&rest[..i]);
                let skip = if rest[i..].starts_with("\r\n") { 2 } else { 1 };
                rest = &rest[i + skip..];
            }
            None => {
                out.push(rest);
                rest = "";
            }
        }
    }
    out
}

/// Splits a checkpoint line like Java's `line.split("\\s+")` (a leading blank yields an
/// empty first field, which makes the line malformed).
fn fields(line: &str) -> Vec<&str> {
    let mut v: Vec<&str> = Vec::new();
    if line.starts_with(char::is_whitespace) {
        v.push("");
    }
    v.extend(line.split_whitespace());
    v
}

/// Reads the generic checkpoint layout: version line (must be `version`), count line, one
/// entry per line with `arity` whitespace-separated fields. Empty file = no entries.
fn read_checkpoint(data: &[u8], version: i32, arity: usize) -> Result<Vec<Vec<&str>>> {
    let text = as_text(data)?;
    let lines = java_lines(text);
    let Some(first) = lines.first() else {
        return Ok(Vec::new());
    };
    let v: i32 = first
        .parse()
        .map_err(|_| syntax(1, "a version number", first))?;
    if v != version {
        return Err(FormatError::new(
            ErrorKind::BadVersion,
            1,
            format!("checkpoint version {version}"),
        )
        .found(v));
    }
    let Some(count_line) = lines.get(1) else {
        return Ok(Vec::new());
    };
    let count: i64 = count_line
        .parse()
        .map_err(|_| syntax(2, "an entry count", count_line))?;
    let mut entries = Vec::new();
    for (i, line) in lines.iter().enumerate().skip(2) {
        let f = fields(line);
        if f.len() != arity {
            return Err(syntax(
                i + 1,
                format!("{arity} whitespace-separated fields"),
                line,
            ));
        }
        entries.push(f);
    }
    if count != entries.len() as i64 {
        return Err(
            FormatError::new(ErrorKind::BadLength, 2, format!("{count} entries"))
                .found(entries.len()),
        );
    }
    Ok(entries)
}

/// An entry of `recovery-point-offset-checkpoint`, `replication-offset-checkpoint`,
/// `log-start-offset-checkpoint` or `cleaner-offset-checkpoint`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OffsetCheckpointEntry<'a> {
    /// Topic name.
    pub topic: &'a str,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
}

fn num<T: std::str::FromStr>(s: &str, line: usize, what: &str) -> Result<T> {
    s.parse().map_err(|_| syntax(line, what.to_string(), s))
}

/// Parses an offset checkpoint file (version 0, `<topic> <partition> <offset>`).
pub fn parse_offset_checkpoint(data: &[u8]) -> Result<Vec<OffsetCheckpointEntry<'_>>> {
    read_checkpoint(data, 0, 3)?
        .into_iter()
        .enumerate()
        .map(|(i, f)| {
            Ok(OffsetCheckpointEntry {
                topic: f[0],
                partition: num(f[1], i + 3, "an int32 partition")?,
                offset: num(f[2], i + 3, "an int64 offset")?,
            })
        })
        .collect()
}

/// Writes an offset checkpoint exactly as Kafka does: `0\n<count>\n` then one
/// `<topic> <partition> <offset>\n` per entry.
pub fn write_offset_checkpoint(entries: &[OffsetCheckpointEntry<'_>]) -> String {
    let mut s = format!("0\n{}\n", entries.len());
    for e in entries {
        s.push_str(&format!("{} {} {}\n", e.topic, e.partition, e.offset));
    }
    s
}

/// A `leader-epoch-checkpoint` entry: the first offset written in `epoch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EpochEntry {
    /// Leader epoch.
    pub epoch: i32,
    /// First offset of that epoch.
    pub start_offset: i64,
}

/// Parses `leader-epoch-checkpoint` (version 0, `<epoch> <startOffset>`).
pub fn parse_leader_epoch_checkpoint(data: &[u8]) -> Result<Vec<EpochEntry>> {
    read_checkpoint(data, 0, 2)?
        .into_iter()
        .enumerate()
        .map(|(i, f)| {
            Ok(EpochEntry {
                epoch: num(f[0], i + 3, "an int32 epoch")?,
                start_offset: num(f[1], i + 3, "an int64 start offset")?,
            })
        })
        .collect()
}

/// Writes `leader-epoch-checkpoint` exactly as Kafka does.
pub fn write_leader_epoch_checkpoint(entries: &[EpochEntry]) -> String {
    let mut s = format!("0\n{}\n", entries.len());
    for e in entries {
        s.push_str(&format!("{} {}\n", e.epoch, e.start_offset));
    }
    s
}

/// Parses `partition.metadata`: `version: 0\ntopic_id: <uuid>`; the zero UUID is
/// rejected (as by `PartitionMetadataReadBuffer`). Returns the topic id.
pub fn parse_partition_metadata(data: &[u8]) -> Result<Uuid> {
    let text = as_text(data)?;
    let lines = java_lines(text);
    let field = |n: usize, name: &str| -> Result<&str> {
        let line = lines.get(n).copied().unwrap_or("");
        match line.split_once(':') {
            Some((k, v)) if k == name && v.starts_with(char::is_whitespace) => Ok(v.trim()),
            _ => Err(syntax(n + 1, format!("`{name}: <value>`"), line)),
        }
    };
    let version = field(0, "version")?;
    if version != "0" {
        return Err(
            FormatError::new(ErrorKind::BadVersion, 1, "partition.metadata version 0")
                .found(version),
        );
    }
    let id = Uuid::parse(field(1, "topic_id")?).map_err(|e| e.shifted(2))?;
    if id.is_zero() {
        return Err(FormatError::new(ErrorKind::BadValue, 2, "a non-zero topic id").found(id));
    }
    Ok(id)
}

/// Writes `partition.metadata` exactly as Kafka does (no trailing newline).
pub fn write_partition_metadata(topic_id: &Uuid) -> String {
    format!("version: 0\ntopic_id: {topic_id}")
}

/// Parses Java `.properties` text (what `Properties.load` accepts: `#`/`!` comments,
/// `key=value`, `key:value` or `key value`, backslash escapes and line continuations).
pub fn parse_java_properties(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let lines = java_lines(text);
    let mut i = 0;
    while i < lines.len() {
        let mut logical = String::new();
        let mut first = true;
        while let Some(line) = lines.get(i) {
            i += 1;
            let line = if first { *line } else { line.trim_start() };
            if first {
                let t = line.trim_start();
                if t.is_empty() || t.starts_with('#') || t.starts_with('!') {
                    break;
                }
            }
            first = false;
            let trailing = line.chars().rev().take_while(|&c| c == '\\').count();
            if !trailing.is_multiple_of(2) {
                logical.push_str(&line[..line.len() - 1]);
                continue;
            }
            logical.push_str(line);
            break;
        }
        let l = logical.trim_start();
        if l.is_empty() {
            continue;
        }
        // Find the key end: first unescaped '=', ':' or whitespace.
        let mut key_end = l.len();
        let mut esc = false;
        for (idx, c) in l.char_indices() {
            if esc {
                esc = false;
                continue;
            }
            if c == '\\' {
                esc = true;
            } else if c == '=' || c == ':' || c.is_whitespace() {
                key_end = idx;
                break;
            }
        }
        let key = &l[..key_end];
        let mut rest = l[key_end..].trim_start();
        if rest.starts_with('=') || rest.starts_with(':') {
            rest = rest[1..].trim_start();
        }
        out.insert(unescape(key), unescape(rest));
    }
    out
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\u{c}'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                    Some(ch) => out.push(ch),
                    None => out.push_str(&hex),
                }
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

/// `meta.properties` of a log directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaProperties {
    /// 0 (ZooKeeper) or 1 (KRaft); absent means 0.
    pub version: i32,
    /// v0 `broker.id` / v1 `node.id`.
    pub node_id: Option<i32>,
    /// `cluster.id`.
    pub cluster_id: Option<String>,
    /// `directory.id` (KIP-858).
    pub directory_id: Option<Uuid>,
    /// Every property as read.
    pub properties: BTreeMap<String, String>,
}

/// Parses `meta.properties` with the broker's rules: `version` 0 or 1 (default 0); v0 reads
/// an optional `broker.id`; v1 requires `node.id` and `cluster.id`; `directory.id`, if
/// present, must be a UUID.
pub fn parse_meta_properties(data: &[u8]) -> Result<MetaProperties> {
    let props = parse_java_properties(as_text(data)?);
    let get = |k: &str| props.get(k).map(|s| s.as_str());
    let version: i32 = match get("version") {
        None => 0,
        Some(v) => v
            .trim()
            .parse()
            .map_err(|_| syntax(0, "version 0 or 1", v))?,
    };
    let int = |k: &str| -> Result<Option<i32>> {
        get(k)
            .map(|v| {
                v.trim()
                    .parse::<i32>()
                    .map_err(|_| syntax(0, format!("an integer {k}"), v))
            })
            .transpose()
    };
    let node_id = match version {
        0 => int("broker.id")?,
        1 => Some(int("node.id")?.ok_or_else(|| {
            FormatError::new(
                ErrorKind::BadValue,
                0,
                "node.id in a version 1 meta.properties",
            )
        })?),
        v => {
            return Err(FormatError::new(
                ErrorKind::BadVersion,
                0,
                "meta.properties version 0 or 1",
            )
            .found(v))
        }
    };
    let cluster_id = get("cluster.id").map(str::to_string);
    if version == 1 && cluster_id.is_none() {
        return Err(FormatError::new(
            ErrorKind::BadValue,
            0,
            "cluster.id in a version 1 meta.properties",
        ));
    }
    let directory_id = get("directory.id").map(Uuid::parse).transpose()?;
    Ok(MetaProperties {
        version,
        node_id,
        cluster_id,
        directory_id,
        properties: props,
    })
}

/// `.kafka_cleanshutdown`: empty before 3.7, then `{"version":0,"brokerEpoch":N}`.
/// Returns the broker epoch when present.
pub fn parse_clean_shutdown(data: &[u8]) -> Result<Option<i64>> {
    if data.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Marker {
        version: i32,
        broker_epoch: i64,
    }
    let m: Marker = serde_json::from_slice(data).map_err(|e| {
        FormatError::new(ErrorKind::Syntax, e.column() as u64, "clean shutdown JSON").found(e)
    })?;
    if m.version != 0 {
        return Err(
            FormatError::new(ErrorKind::BadVersion, 0, "clean shutdown version 0").found(m.version),
        );
    }
    Ok(Some(m.broker_epoch))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_checkpoint_roundtrip_exact_bytes() {
        let entries = vec![
            OffsetCheckpointEntry {
                topic: "__consumer_offsets",
                partition: 13,
                offset: 0,
            },
            OffsetCheckpointEntry {
                topic: "my-topic",
                partition: 2,
                offset: 90867,
            },
        ];
        let s = write_offset_checkpoint(&entries);
        assert_eq!(s, "0\n2\n__consumer_offsets 13 0\nmy-topic 2 90867\n");
        assert_eq!(parse_offset_checkpoint(s.as_bytes()).unwrap(), entries);
        assert_eq!(write_offset_checkpoint(&[]), "0\n0\n");
        assert!(parse_offset_checkpoint(b"").unwrap().is_empty());
        // Count mismatch, bad version, malformed line.
        assert!(parse_offset_checkpoint(b"0\n3\nt 0 1\n").is_err());
        assert!(parse_offset_checkpoint(b"1\n0\n").is_err());
        assert!(parse_offset_checkpoint(b"0\n1\nt 0\n").is_err());
        assert!(parse_offset_checkpoint(b"0\n1\n t 0 1\n").is_err());
    }

    #[test]
    fn leader_epoch_roundtrip() {
        let e = vec![
            EpochEntry {
                epoch: 0,
                start_offset: 0,
            },
            EpochEntry {
                epoch: 38,
                start_offset: 4,
            },
        ];
        let s = write_leader_epoch_checkpoint(&e);
        assert_eq!(s, "0\n2\n0 0\n38 4\n");
        assert_eq!(parse_leader_epoch_checkpoint(s.as_bytes()).unwrap(), e);
    }

    #[test]
    fn partition_metadata_exact_bytes() {
        let id = Uuid::parse("vH1Xu-ntQPu9P3I3F8wp8Q").unwrap();
        let s = write_partition_metadata(&id);
        assert_eq!(s, "version: 0\ntopic_id: vH1Xu-ntQPu9P3I3F8wp8Q");
        assert_eq!(parse_partition_metadata(s.as_bytes()).unwrap(), id);
        assert_eq!(
            parse_partition_metadata(b"version: 0\ntopic_id: AAAAAAAAAAAAAAAAAAAAAQ").unwrap(),
            Uuid::METADATA_TOPIC_ID
        );
        assert!(parse_partition_metadata(b"version: 0\ntopic_id: AAAAAAAAAAAAAAAAAAAAAA").is_err());
        assert!(parse_partition_metadata(b"version: 1\ntopic_id: vH1Xu-ntQPu9P3I3F8wp8Q").is_err());
        assert!(parse_partition_metadata(b"version: 0\n").is_err());
        assert!(Uuid::parse("short").is_err());
    }

    #[test]
    fn meta_properties_v0_v1() {
        let v0 = parse_meta_properties(b"#\n#Sat Jun 03 20:13:09 CST 2023\ncluster.id=d0053poFTbGwSWThjV1DEg\nversion=0\nbroker.id=0\n").unwrap();
        assert_eq!((v0.version, v0.node_id), (0, Some(0)));
        assert_eq!(v0.cluster_id.as_deref(), Some("d0053poFTbGwSWThjV1DEg"));
        let v1 = parse_meta_properties(b"node.id=1\ndirectory.id=ROP8qUaSlk7r55i85yz4Cg\nversion=1\ncluster.id=MkU3OEVBNTcwNTJENDM2Qk\n").unwrap();
        assert_eq!((v1.version, v1.node_id), (1, Some(1)));
        assert!(v1.directory_id.is_some());
        assert!(parse_meta_properties(b"version=1\ncluster.id=x\n").is_err());
        assert!(parse_meta_properties(b"version=2\n").is_err());
        let p = parse_java_properties("a = b\\\n   c\n! comment\nx:y\nk\\=ey=v\\u0041\n");
        assert_eq!(p.get("a").map(String::as_str), Some("bc"));
        assert_eq!(p.get("x").map(String::as_str), Some("y"));
        assert_eq!(p.get("k=ey").map(String::as_str), Some("vA"));
    }
}
