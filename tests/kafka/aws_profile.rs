//! `s3://` stores configured from the AWS shared config files, against a real S3 server
//! (versitygw): the real `segvault archive --once` binary with no AWS keys in its environment,
//! a HOME of its own, and credentials, region and endpoint from a profile selected by
//! `AWS_PROFILE`, `AWS_SHARED_CREDENTIALS_FILE` and `AWS_CONFIG_FILE`. Keys in the environment
//! still win over a profile; a profile that does not exist is a startup error (exit 2).

use crate::common::paths::fixture;
use crate::common::run::{json_lines, of_type, output, segvault, stderr};
use crate::common::store::list_files;
use segvault_harness::fixtures::copy_dir;
use segvault_harness::s3::{ACCESS_KEY, REGION, SECRET_KEY};
use segvault_harness::S3Server;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

struct Setup {
    _tmp: tempfile::TempDir,
    home: PathBuf,
    credentials: PathBuf,
    config: PathBuf,
    log_dir: PathBuf,
}

/// A HOME with no `.aws`, the two files (written elsewhere) and a copy of a 4.3.1 log dir.
fn setup(credentials: &str, config: &str) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    fs::create_dir_all(&home).unwrap();
    let credentials_path = tmp.path().join("aws-credentials");
    let config_path = tmp.path().join("aws-config");
    fs::write(&credentials_path, credentials).unwrap();
    fs::write(&config_path, config).unwrap();
    let log_dir = tmp.path().join("logs");
    copy_dir(&fixture("4.3.1"), &log_dir, &[]).unwrap();
    Setup {
        home,
        credentials: credentials_path,
        config: config_path,
        log_dir,
        _tmp: tmp,
    }
}

/// Runs `segvault archive --once` with only PATH, HOME, the profile selection and `extra_env`
/// in its environment.
fn archive(s: &Setup, store: &str, profile: &str, extra_env: &[(&str, String)]) -> Output {
    let mut cmd = segvault();
    cmd.args(["archive", "--once", "--format", "json", "--store", store])
        .arg("--log-dir")
        .arg(&s.log_dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &s.home)
        .env("AWS_PROFILE", profile)
        .env("AWS_SHARED_CREDENTIALS_FILE", &s.credentials)
        .env("AWS_CONFIG_FILE", &s.config)
        // Never wait on an instance metadata endpoint if the chain ever got that far.
        .env("AWS_EC2_METADATA_DISABLED", "true");
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    output(&mut cmd)
}

fn uploaded_segments(out: &Output) -> u64 {
    let lines = json_lines(&out.stdout);
    let total = of_type(&lines, "total")
        .pop()
        .unwrap_or_else(|| panic!("no total line: {lines:?}\n{}", stderr(out)));
    total["uploaded_segments"].as_u64().unwrap()
}

/// Files under `dir` whose parent directory is `chain`: one per archived range.
fn manifests_under(dir: &Path) -> usize {
    list_files(dir, "")
        .iter()
        .filter(|k| Path::new(k).parent().and_then(Path::file_name) == Some("chain".as_ref()))
        .count()
}

/// Archives with `profile` into `s3://bucket/<prefix>` and checks what landed in the
/// server's directory (versitygw's posix backend keeps `<root>/<bucket>/<key>` as files).
fn assert_archives(server: &S3Server, s: &Setup, prefix: &str, profile: &str) {
    let out = archive(s, &format!("s3://bucket/{prefix}"), profile, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let uploaded = uploaded_segments(&out);
    assert!(uploaded > 0, "nothing archived: {}", stderr(&out));
    let root = server.root.join("bucket").join(prefix);
    assert_eq!(
        manifests_under(&root),
        uploaded as usize,
        "{}",
        root.display()
    );
    assert!(root.join("segvault/v1/clusters").is_dir());
}

#[test]
fn credentials_region_and_endpoint_come_from_the_selected_profile() {
    let _machine = crate::common::machine::shared();
    let server = S3Server::start(&["bucket"]).unwrap();
    let endpoint = &server.endpoint;
    // Static keys in the credentials file; keys from a credential_process in the config
    // file (aws-config runs it; object_store alone knows neither).
    let credentials = format!(
        "[default]\naws_access_key_id = wrong\naws_secret_access_key = wrong\n\n\
         [archiver]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n"
    );
    let process = format!(
        "printf '{{\"Version\": 1, \"AccessKeyId\": \"{ACCESS_KEY}\", \"SecretAccessKey\": \"{SECRET_KEY}\"}}'"
    );
    let config = format!(
        "[profile archiver]\nregion = {REGION}\nendpoint_url = {endpoint}\n\n\
         [profile via-process]\nregion = {REGION}\ncredential_process = {process}\n\
         services = local\n\n\
         [services local]\ns3 =\n  endpoint_url = {endpoint}\n\n\
         [profile elsewhere]\nregion = eu-west-1\nendpoint_url = {endpoint}\n"
    );
    let s = setup(&credentials, &config);
    assert_archives(&server, &s, "static", "archiver");
    assert_archives(&server, &s, "process", "via-process");

    // The region is the profile's: signed for eu-west-1, the server (us-east-1) refuses.
    let s = setup(&credentials.replace("[archiver]", "[elsewhere]"), &config);
    let out = archive(&s, "s3://bucket/elsewhere", "elsewhere", &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("eu-west-1"), "{err}");
    assert_eq!(manifests_under(&server.root.join("bucket/elsewhere")), 0);
}

#[test]
fn keys_in_the_environment_win_over_the_profile() {
    let _machine = crate::common::machine::shared();
    let server = S3Server::start(&["bucket"]).unwrap();
    let s = setup(
        "[archiver]\naws_access_key_id = wrong\naws_secret_access_key = wrong\n",
        &format!("[profile archiver]\nregion = {REGION}\n"),
    );
    // The variables the server hands out: keys, region, AWS_ENDPOINT_URL, AWS_ALLOW_HTTP.
    let env: Vec<(&str, String)> = server.env();
    let out = archive(&s, "s3://bucket/env", "archiver", &env);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(uploaded_segments(&out) > 0);
    assert!(manifests_under(&server.root.join("bucket/env")) > 0);

    // Without them, the profile's wrong keys are used, and refused.
    let no_keys: Vec<(&str, String)> = env
        .into_iter()
        .filter(|(k, _)| !k.starts_with("AWS_ACCESS") && !k.starts_with("AWS_SECRET"))
        .collect();
    let out = archive(&s, "s3://bucket/profile", "archiver", &no_keys);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("access key"), "{err}");
}

#[test]
fn a_profile_that_does_not_exist_is_a_startup_error() {
    let _machine = crate::common::machine::shared();
    let s = setup(
        "[archiver]\naws_access_key_id = a\naws_secret_access_key = b\n",
        "[profile archiver]\nregion = us-east-1\n",
    );
    let out = archive(&s, "s3://bucket/prefix", "nosuchprofile", &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("\"nosuchprofile\""), "{err}");
    assert!(err.contains("AWS_PROFILE"), "{err}");
    assert!(err.contains(&s.credentials.display().to_string()), "{err}");
    assert!(err.contains(&s.config.display().to_string()), "{err}");
    assert!(out.stdout.is_empty(), "{err}");
}
