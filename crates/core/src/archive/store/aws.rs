//! The AWS shared config files for `s3://` stores, through aws-config.
//!
//! object_store reads the AWS environment variables, web identity, ECS and IMDS, but not the
//! shared config files (`~/.aws/credentials`, `~/.aws/config`, `AWS_PROFILE`,
//! `AWS_SHARED_CREDENTIALS_FILE`, `AWS_CONFIG_FILE`). This module adds them, each setting
//! resolved the way the AWS SDKs do, environment first:
//!
//! - **Credentials.** `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` in the environment win and
//!   are used exactly as before (object_store's static credentials). Without them, when the
//!   selected profile exists in the files, aws-config's default credentials chain is plugged
//!   in: the profile (static keys, `credential_process`, `role_arn` with `source_profile` or
//!   `credential_source`, SSO, `web_identity_token_file`), then web identity, ECS and IMDS.
//!   When no profile is in play, object_store's own chain is left as it was.
//! - **Region.** `AWS_REGION` / `AWS_DEFAULT_REGION`, else the profile's `region`.
//! - **Endpoint.** `AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL`, else the profile's
//!   `endpoint_url` for s3 (its `services` section first, then the profile itself), unless
//!   `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS` or the profile's `ignore_configured_endpoint_urls`
//!   is true. An `http://` endpoint from a profile allows plain http (the profile has no other
//!   way to say so); from the environment it still needs `AWS_ALLOW_HTTP=true`.
//!
//! The files are read once when the store is opened; credentials are fetched on the first
//! request and cached until five minutes before they expire.

use crate::archive::error::error_chain;
use aws_config::default_provider::credentials::DefaultCredentialsChain;
use aws_config::profile::ProfileSet;
use aws_config::Region;
use aws_credential_types::provider::ProvideCredentials;
use aws_runtime::env_config::file::EnvConfigFiles;
use aws_runtime::env_config::EnvConfigValue;
use aws_types::os_shim_internal::{Env, Fs};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey, AwsCredential};
use object_store::CredentialProvider;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Credentials are refreshed this long before they expire.
const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(5 * 60);

/// Why the AWS profile could not be applied.
pub(super) enum ProfileError {
    /// The shared config or credentials file could not be read or parsed.
    Load(aws_config::profile::ProfileFileLoadError),
    /// `AWS_PROFILE` names a profile neither file defines (and the environment has no keys).
    Undefined(String),
}

/// Applies the selected AWS profile to a builder already configured from the environment.
/// Errors name the profile and the files: an unreadable or malformed file, or a profile
/// selected by `AWS_PROFILE` that neither file defines.
pub(super) fn apply_profile(builder: AmazonS3Builder) -> Result<AmazonS3Builder, ProfileError> {
    let env = Env::real();
    let env_keys = builder
        .get_config_value(&AmazonS3ConfigKey::AccessKeyId)
        .is_some()
        || builder
            .get_config_value(&AmazonS3ConfigKey::SecretAccessKey)
            .is_some();
    let profiles = run_blocking(aws_config::profile::load(
        &Fs::real(),
        &env,
        &EnvConfigFiles::default(),
        None,
    ))
    .map_err(ProfileError::Load)?;
    let name = profiles.selected_profile().to_string();
    let Some(profile) = profiles.get_profile(&name) else {
        if env.get("AWS_PROFILE").is_ok() {
            let message = format!(
                "AWS profile {name:?} (from AWS_PROFILE) is not defined in {} nor in {}",
                describe(&file_path(
                    &env,
                    "AWS_SHARED_CREDENTIALS_FILE",
                    "credentials"
                )),
                describe(&file_path(&env, "AWS_CONFIG_FILE", "config")),
            );
            if !env_keys {
                return Err(ProfileError::Undefined(message));
            }
            // The environment's keys are used as before; the profile would only have added
            // a region or an endpoint.
            tracing::warn!("{message}; using AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY");
        }
        return Ok(builder);
    };

    let mut builder = builder;
    if builder
        .get_config_value(&AmazonS3ConfigKey::Region)
        .is_none()
    {
        if let Some(region) = profile.get("region") {
            builder = builder.with_region(region);
        }
    }
    if builder
        .get_config_value(&AmazonS3ConfigKey::Endpoint)
        .is_none()
        && builder
            .get_config_value(&AmazonS3ConfigKey::S3Endpoint)
            .is_none()
    {
        if let Some(endpoint) = profile_endpoint(&env, &profiles) {
            // The builder always has a value for allow_http (false by default): whether the
            // environment set one is the variable's presence.
            if endpoint.starts_with("http://") && env.get("AWS_ALLOW_HTTP").is_err() {
                builder = builder.with_allow_http(true);
            }
            builder = builder.with_endpoint(endpoint);
        }
    }
    if env_keys {
        return Ok(builder);
    }
    // aws-config's chain wants a region for STS (assume-role, web identity); giving it one
    // also keeps it from asking IMDS for one here, at startup.
    let region = builder
        .get_config_value(&AmazonS3ConfigKey::Region)
        .unwrap_or_else(|| "us-east-1".to_string());
    let chain = run_blocking(
        DefaultCredentialsChain::builder()
            .profile_name(&name)
            .region(Region::new(region))
            .build(),
    );
    Ok(builder.with_credentials(Arc::new(AwsConfigCredentials {
        profile: name,
        chain,
        cached: Default::default(),
    })))
}

/// The profile's s3 endpoint: `services` section first, then `endpoint_url` itself.
fn profile_endpoint(env: &Env, profiles: &ProfileSet) -> Option<String> {
    let ignore = EnvConfigValue::new()
        .env("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS")
        .profile("ignore_configured_endpoint_urls")
        .load(env, Some(profiles))
        .is_some_and(|(v, _)| v.eq_ignore_ascii_case("true"));
    if ignore {
        return None;
    }
    // No environment variable here: object_store has already read AWS_ENDPOINT_URL(_S3).
    EnvConfigValue::new()
        .profile("endpoint_url")
        .service_id("s3")
        .load(env, Some(profiles))
        .map(|(v, _)| v.into_owned())
}

/// Where aws-config looks for a file: the variable's value, else `~/.aws/<name>`.
fn file_path(env: &Env, var: &str, name: &str) -> PathBuf {
    match env.get(var) {
        Ok(p) => PathBuf::from(p),
        Err(_) => match env.get("HOME") {
            Ok(home) => PathBuf::from(home).join(".aws").join(name),
            Err(_) => PathBuf::from("~/.aws").join(name),
        },
    }
}

fn describe(path: &std::path::Path) -> String {
    if path.exists() {
        path.display().to_string()
    } else {
        format!("{} (which does not exist)", path.display())
    }
}

/// Runs an aws-config future to completion from synchronous code, whether or not the caller
/// is inside a tokio runtime (the agent is; `archive --once` opens its store before starting
/// one): on a scoped thread with a runtime of its own.
fn run_blocking<F>(f: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a current-thread tokio runtime")
                .block_on(f)
        })
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// aws-config's credentials chain as an object_store credential provider, with a cache:
/// object_store asks for a credential on every request.
#[derive(Debug)]
struct AwsConfigCredentials {
    profile: String,
    chain: DefaultCredentialsChain,
    cached: tokio::sync::Mutex<Option<Cached>>,
}

#[derive(Debug)]
struct Cached {
    credential: Arc<AwsCredential>,
    expiry: Option<SystemTime>,
}

#[async_trait::async_trait]
impl CredentialProvider for AwsConfigCredentials {
    type Credential = AwsCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<AwsCredential>> {
        let mut cached = self.cached.lock().await;
        let now = SystemTime::now();
        if let Some(c) = cached.as_ref() {
            if c.expiry.is_none_or(|e| now + REFRESH_BEFORE_EXPIRY < e) {
                return Ok(c.credential.clone());
            }
        }
        match self.chain.provide_credentials().await {
            Ok(creds) => {
                let credential = Arc::new(AwsCredential {
                    key_id: creds.access_key_id().to_string(),
                    secret_key: creds.secret_access_key().to_string(),
                    token: creds.session_token().map(str::to_string),
                });
                *cached = Some(Cached {
                    credential: credential.clone(),
                    expiry: creds.expiry(),
                });
                Ok(credential)
            }
            Err(e) => {
                let message = format!(
                    "no AWS credentials for profile {:?}: {}",
                    self.profile,
                    error_chain(&e)
                );
                // Credentials that are about to expire still beat none.
                if let Some(c) = cached
                    .as_ref()
                    .filter(|c| c.expiry.is_some_and(|e| now < e))
                {
                    tracing::warn!("{message}; using the current ones until they expire");
                    return Ok(c.credential.clone());
                }
                Err(object_store::Error::Generic {
                    store: "S3",
                    source: message.into(),
                })
            }
        }
    }
}
