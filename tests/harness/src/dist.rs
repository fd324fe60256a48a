//! Kafka distributions: the broker and client jars of one Apache Kafka version, fetched from
//! Maven Central with Maven itself and cached under `target/`, plus the test-bed driver
//! compiled against that version's client.
//!
//! Why Maven and not a tarball: Maven Central is the registry this project can rely on, and
//! `dependency:copy-dependencies` resolves exactly the runtime classpath of `kafka_2.13`.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

/// The pinned Kafka versions every live-broker test runs against: the newest 3.9.x and the
/// newest 4.x whose artifacts Maven Central serves in full (4.4.0: its `kafka-tools` and
/// `kafka-tools-api` jars are served since 2026-11-25).
pub const KAFKA_VERSIONS: [&str; 2] = ["3.9.2", "4.4.0"];

/// The versions whose brokers wrote `fixtures/kafka-<v>/`. A fixture is served, dumped and
/// compared by a broker and tools of the version that wrote it, so these stay as they are
/// when `KAFKA_VERSIONS` moves on (regenerate with `harness fixtures --version V`).
pub const FIXTURE_VERSIONS: [&str; 2] = ["3.9.2", "4.3.1"];

/// Extra runtime artifacts a version needs beyond `kafka_2.13` and `kafka-tools`: Kafka 4's
/// POM declares log4j2 but no SLF4J binding, so without this the broker logs nothing.
fn extra_artifacts(version: &str) -> &'static [(&'static str, &'static str, &'static str)] {
    if version.starts_with("3.") {
        &[]
    } else {
        &[("org.apache.logging.log4j", "log4j-slf4j-impl", "2.25.4")]
    }
}

/// The test bed's cache: `<workspace>/target/harness-cache`, or `SEGVAULT_HARNESS_CACHE`.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("SEGVAULT_HARNESS_CACHE") {
        return PathBuf::from(d);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("harness-cache")
}

/// One Kafka version, ready to run: its jars and the compiled driver.
#[derive(Debug, Clone)]
pub struct KafkaDist {
    pub version: String,
    /// Directory holding every runtime jar.
    pub libs: PathBuf,
    /// Directory holding `Driver.class`.
    pub driver: PathBuf,
}

impl KafkaDist {
    /// Returns the distribution for `version`, downloading and compiling on first use. Safe to
    /// call from many test threads: one download per version per process, and a completed
    /// download is marked with a stamp file so an interrupted one is redone.
    pub fn get(version: &str) -> Result<KafkaDist> {
        static LOCK: OnceLock<Mutex<()>> = OnceLock::new();
        let _guard = LOCK
            .get_or_init(|| Mutex::new(()))
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let root = cache_dir().join(format!("kafka-{version}"));
        let libs = root.join("libs");
        let stamp = root.join("libs.complete");
        if !stamp.exists() {
            fetch_jars(version, &root, &libs)
                .with_context(|| format!("fetching Apache Kafka {version} from Maven Central"))?;
            std::fs::write(&stamp, b"")?;
        }
        let driver = root.join("driver");
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("java/Driver.java");
        let class = driver.join("Driver.class");
        let stale = match (std::fs::metadata(&class), std::fs::metadata(&source)) {
            (Ok(c), Ok(s)) => c.modified()? < s.modified()?,
            _ => true,
        };
        if stale {
            std::fs::create_dir_all(&driver)?;
            let out = Command::new("javac")
                .args(["-nowarn", "-d"])
                .arg(&driver)
                .arg("-cp")
                .arg(classpath(&libs))
                .arg(&source)
                .output()
                .context("running javac (Java 17 is a prerequisite)")?;
            if !out.status.success() {
                bail!(
                    "javac failed on {}:\n{}",
                    source.display(),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        Ok(KafkaDist {
            version: version.to_string(),
            libs,
            driver,
        })
    }

    /// `libs/*`, the broker's classpath.
    pub fn classpath(&self) -> String {
        classpath(&self.libs)
    }

    /// A `java` command with the broker classpath and `main_class`, quiet JVM defaults and
    /// the marker property that lets `.ci/run` find stray JVMs.
    pub fn java(&self, main_class: &str, heap_mb: u32) -> Command {
        self.java_with(main_class, heap_mb, &[])
    }

    /// [`KafkaDist::java`] with more JVM options (`-Dkey=value`), placed before the main class.
    pub fn java_with(&self, main_class: &str, heap_mb: u32, jvm_args: &[String]) -> Command {
        let mut c = Command::new("java");
        c.args(jvm_args)
            .arg(format!("-Xmx{heap_mb}m"))
            .arg("-XX:+UseSerialGC")
            .arg("-XX:TieredStopAtLevel=1")
            .arg("-Djava.awt.headless=true")
            .arg("-Dsegvault.harness=1")
            .arg("-cp")
            .arg(format!("{}:{}", self.driver.display(), self.classpath()))
            .arg(main_class);
        c
    }
}

/// Installs a Go command (`go install <package>@<version>`) once into
/// `target/harness-cache/bin/<cached>` and returns its path; `built` is the name `go install`
/// gives the binary (the package's last path element).
pub fn go_install(package: &str, version: &str, built: &str, cached: &str) -> Result<PathBuf> {
    let bin_dir = cache_dir().join("bin");
    let bin = bin_dir.join(cached);
    if bin.exists() {
        return Ok(bin);
    }
    let gobin = cache_dir().join(format!("gobin-{cached}"));
    std::fs::create_dir_all(&gobin)?;
    let out = Command::new("go")
        .args(["install", &format!("{package}@{version}")])
        .env("GOBIN", &gobin)
        .env("CGO_ENABLED", "0")
        .output()
        .context("running `go install` (Go is a prerequisite)")?;
    if !out.status.success() {
        bail!(
            "go install {package}@{version} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    std::fs::create_dir_all(&bin_dir)?;
    std::fs::rename(gobin.join(built), &bin)?;
    Ok(bin)
}

/// Waits until `port` on loopback accepts connections, failing if `child` exits first (with
/// the end of its log) or the deadline passes.
pub fn wait_listening(
    what: &str,
    child: &mut std::process::Child,
    port: u16,
    log: &Path,
) -> Result<()> {
    let start = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(status) = child.try_wait()? {
            bail!(
                "{what} exited with {status}:\n{}",
                crate::cluster::tail(log, 30)
            );
        }
        if start.elapsed() > crate::cluster::DEADLINE {
            bail!(
                "{what} did not listen on {port} within {:?}",
                crate::cluster::DEADLINE
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Ok(())
}

fn classpath(libs: &Path) -> String {
    format!("{}/*", libs.display())
}

fn fetch_jars(version: &str, root: &Path, libs: &Path) -> Result<()> {
    std::fs::create_dir_all(root)?;
    if libs.exists() {
        std::fs::remove_dir_all(libs)?;
    }
    let mut deps = String::new();
    let mut add = |g: &str, a: &str, v: &str| {
        deps.push_str(&format!(
            "    <dependency><groupId>{g}</groupId><artifactId>{a}</artifactId><version>{v}</version></dependency>\n"
        ))
    };
    add("org.apache.kafka", "kafka_2.13", version);
    add("org.apache.kafka", "kafka-tools", version);
    for (g, a, v) in extra_artifacts(version) {
        add(g, a, v);
    }
    let pom = format!(
        r#"<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>segvault.harness</groupId><artifactId>kafka-dist</artifactId><version>{version}</version>
  <packaging>pom</packaging>
  <dependencies>
{deps}  </dependencies>
</project>
"#
    );
    std::fs::write(root.join("pom.xml"), pom)?;
    let out = Command::new("mvn")
        .args([
            "-q",
            "-B",
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
        ])
        .arg(format!("-DoutputDirectory={}", libs.display()))
        .current_dir(root)
        .output()
        .context("running mvn (Maven is a prerequisite)")?;
    if !out.status.success() {
        bail!(
            "mvn dependency:copy-dependencies failed for Kafka {version}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let n = std::fs::read_dir(libs)?.count();
    if n < 20 {
        bail!(
            "Maven resolved only {n} jars for Kafka {version} into {}",
            libs.display()
        );
    }
    Ok(())
}
