//! Blob Storage for the tools: opening a container from `--account` (Azure CLI login or managed
//! identity) or `AZURE_STORAGE_CONNECTION_STRING` (Azurite's `UseDevelopmentStorage=true`
//! included), and the path layout Azure Monitor uses when a diagnostic setting archives to a
//! storage account:
//!
//! `insights-logs-<category>/resourceId=/SUBSCRIPTIONS/<S>/RESOURCEGROUPS/<RG>/PROVIDERS/
//! MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/<NAME>/y=<YYYY>/m=<MM>/d=<DD>/h=<HH>/m=00/PT1H.json`
//!
//! (Azure Monitor docs, "Send to Azure Storage": one append blob an hour, one record a line.)
//! The client is `object_store`'s Azure backend; docs/tools.md says why.

use std::sync::Arc;

use anyhow::{bail, Context as _};
use object_store::azure::MicrosoftAzureBuilder;
use object_store::ObjectStore;
use secrecy::{ExposeSecret as _, SecretString};
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

/// Where the tools find a storage account.
#[derive(Debug, clap::Args)]
pub struct StorageArgs {
    /// The storage account name; signs in with the Azure CLI login (`az login`), or with the
    /// managed identity on an Azure host (App Service and Functions are recognised; elsewhere
    /// pass --managed-identity; AZURE_CLIENT_ID picks a user-assigned one).
    #[arg(long, conflicts_with = "connection_string")]
    pub account: Option<String>,
    /// With --account: sign in with the managed identity of the Azure VM or container this
    /// runs on, not the Azure CLI login.
    #[arg(long, requires = "account")]
    pub managed_identity: bool,
    /// A storage connection string; `UseDevelopmentStorage=true` is Azurite on 127.0.0.1.
    #[arg(long, env = "AZURE_STORAGE_CONNECTION_STRING", hide_env_values = true, value_parser = secret)]
    pub connection_string: Option<SecretString>,
}

fn secret(text: &str) -> Result<SecretString, String> {
    Ok(SecretString::from(text))
}

/// The parts of a connection string the blob client needs.
#[derive(Debug, Default, PartialEq, Eq)]
struct Parsed {
    emulator: bool,
    account: Option<String>,
    key: Option<String>,
    sas: Option<String>,
    endpoint: Option<String>,
}

/// Reads `Key=Value;…` (Azure Storage docs, "Configure a connection string"). Values may hold
/// `=` (keys are base64); names are case-insensitive.
fn parse_connection_string(text: &str) -> anyhow::Result<Parsed> {
    let mut p = Parsed::default();
    let mut protocol = "https".to_string();
    let mut suffix = "core.windows.net".to_string();
    for part in text.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        let Some((name, value)) = part.split_once('=') else {
            bail!("the storage connection string has a part without '=' (expected Name=Value;…)");
        };
        match name.to_ascii_lowercase().as_str() {
            "usedevelopmentstorage" => p.emulator = value.eq_ignore_ascii_case("true"),
            "accountname" => p.account = Some(value.to_string()),
            "accountkey" => p.key = Some(value.to_string()),
            "sharedaccesssignature" => p.sas = Some(value.trim_start_matches('?').to_string()),
            "blobendpoint" => p.endpoint = Some(value.trim_end_matches('/').to_string()),
            "defaultendpointsprotocol" => protocol = value.to_ascii_lowercase(),
            "endpointsuffix" => suffix = value.to_string(),
            _ => {}
        }
    }
    if !p.emulator {
        let Some(account) = &p.account else {
            if p.endpoint.is_none() {
                bail!("the storage connection string names no AccountName or BlobEndpoint");
            }
            return Ok(p);
        };
        if p.endpoint.is_none() {
            p.endpoint = Some(format!("{protocol}://{account}.blob.{suffix}"));
        }
    }
    Ok(p)
}

/// Opens `container` of the account `args` names.
///
/// # Errors
/// When neither `--account` nor a connection string is given, or the connection string is
/// unusable. Messages never hold the key or signature.
pub fn open(args: &StorageArgs, container: &str) -> anyhow::Result<Arc<dyn ObjectStore>> {
    let mut builder = MicrosoftAzureBuilder::new().with_container_name(container);
    if let Some(account) = &args.account {
        builder = builder.with_account(account);
        let identity = args.managed_identity
            || std::env::var_os("IDENTITY_ENDPOINT").is_some()
            || std::env::var_os("MSI_ENDPOINT").is_some();
        if !identity && on_path("az") {
            builder = builder.with_use_azure_cli(true);
        } else if let Ok(id) = std::env::var("AZURE_CLIENT_ID") {
            builder = builder.with_client_id(id);
        } else if !identity {
            // Without this, the client would ask the instance metadata endpoint, which only
            // Azure hosts have: on a laptop that is a wait and an unreadable token error.
            bail!(
                "no way to sign in to storage account {account}: the Azure CLI (az) is not on \
                 PATH. Run `az login` (install the Azure CLI first), or set \
                 AZURE_STORAGE_CONNECTION_STRING, or pass --managed-identity on an Azure VM or \
                 container with a managed identity"
            );
        }
    } else if let Some(text) = &args.connection_string {
        let p = parse_connection_string(text.expose_secret())?;
        if p.emulator {
            builder = builder.with_use_emulator(true);
        } else {
            if let Some(endpoint) = &p.endpoint {
                builder = builder
                    .with_allow_http(endpoint.starts_with("http://"))
                    .with_endpoint(endpoint.clone());
            }
            let account = p.account.clone().or_else(|| {
                // A SAS-only string: the account is the endpoint's first label.
                let host = p.endpoint.as_deref()?.split("://").nth(1)?;
                host.split('.').next().map(str::to_owned)
            });
            if let Some(account) = account {
                builder = builder.with_account(account);
            }
            if let Some(key) = p.key {
                builder = builder.with_access_key(key);
            } else if let Some(sas) = p.sas {
                let pairs = url::form_urlencoded::parse(sas.as_bytes())
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect::<Vec<_>>();
                builder = builder.with_sas_authorization(pairs);
            }
        }
    } else {
        bail!("say which storage account: --account NAME, or AZURE_STORAGE_CONNECTION_STRING (UseDevelopmentStorage=true for Azurite)");
    }
    let store = builder
        .build()
        .map_err(|e| anyhow::anyhow!("opening container {container}: {e}"))?;
    Ok(Arc::new(store))
}

/// A storage error in one line, for an operator: a missing container is named as such,
/// followed by `missing` (what to check); any other answer of the service is reduced to its
/// error code and the first line of its message, without the request dump `object_store`
/// repeats once per error layer. `action` says what failed (`listing container X`).
pub fn storage_error(action: &str, e: &object_store::Error, missing: &str) -> anyhow::Error {
    let full = e.to_string();
    let between = |open: &str, close: &str| {
        let start = full.find(open)? + open.len();
        let len = full[start..].find(close)?;
        Some(
            full[start..start + len]
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string(),
        )
    };
    match between("<Code>", "</Code>") {
        Some(code) if code == "ContainerNotFound" => {
            anyhow::anyhow!(
                "{action}: the container does not exist in this storage account; {missing}"
            )
        }
        Some(code) => {
            let message = between("<Message>", "</Message>").unwrap_or_default();
            let hint = if code == "AuthorizationPermissionMismatch" {
                " (signing in with --account needs the Storage Blob Data Reader role on the \
                 account, Storage Blob Data Contributor for resend --delete-delivered)"
            } else if code.starts_with("Authentication") || code.starts_with("Authorization") {
                " (check the account key or SAS of the connection string, or the sign-in)"
            } else {
                ""
            };
            anyhow::anyhow!("{action}: {code}: {message}{hint}")
        }
        None => anyhow::anyhow!("{action}: {full}"),
    }
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// One archive blob's place: its cluster and hour, read from the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivePath {
    /// `/SUBSCRIPTIONS/…/MANAGEDCLUSTERS/<NAME>`, as the path spells it (upper case).
    pub resource_id: String,
    /// The cluster name (the last segment of the resource id).
    pub cluster: String,
    /// The start of the hour the blob holds (UTC).
    pub hour: OffsetDateTime,
}

impl ArchivePath {
    /// Reads `resourceId=/…/y=YYYY/m=MM/d=DD/h=HH/m=00/PT1H.json`; `None` for other paths.
    pub fn parse(path: &str) -> Option<Self> {
        let rest = path.split_once("resourceId=")?.1;
        let (resource_id, date) = rest.split_once("/y=")?;
        let mut parts = date.split('/');
        let year: i32 = parts.next()?.parse().ok()?;
        let mut field =
            |prefix: &str| -> Option<u8> { parts.next()?.strip_prefix(prefix)?.parse().ok() };
        let (month, day, hour) = (field("m=")?, field("d=")?, field("h=")?);
        let date = Date::from_calendar_date(year, Month::try_from(month).ok()?, day).ok()?;
        let time = Time::from_hms(hour, 0, 0).ok()?;
        let cluster = resource_id.rsplit('/').next()?.to_string();
        Some(Self {
            resource_id: resource_id.to_string(),
            cluster,
            hour: PrimitiveDateTime::new(date, time).assume_utc(),
        })
    }

    /// The path Azure Monitor writes for `resource_id` and the hour holding `at`.
    pub fn blob_path(resource_id: &str, at: OffsetDateTime) -> String {
        format!(
            "resourceId={}/y={:04}/m={:02}/d={:02}/h={:02}/m=00/PT1H.json",
            resource_id.to_ascii_uppercase(),
            at.year(),
            u8::from(at.month()),
            at.day(),
            at.hour()
        )
    }

    /// Whether `--cluster` (a resource id, or a name) names this blob's cluster. Azure Monitor
    /// upper-cases the path, so the match ignores case.
    pub fn matches_cluster(&self, cluster: &str) -> bool {
        let want = cluster.trim_end_matches('/');
        if want.contains('/') {
            self.resource_id.eq_ignore_ascii_case(want)
        } else {
            self.cluster.eq_ignore_ascii_case(want)
        }
    }
}

/// The listing prefix for `--cluster`: the cluster's own folder when a resource id is given.
pub fn cluster_prefix(cluster: Option<&str>) -> Option<object_store::path::Path> {
    let id = cluster.filter(|c| c.contains('/'))?;
    let id = id.trim_end_matches('/').to_ascii_uppercase();
    Some(object_store::path::Path::from(format!("resourceId={id}")))
}

/// Checks a container name against Azure's rules before any request: 3-63 lower-case
/// letters, digits and single dashes.
///
/// # Errors
/// When it breaks them.
pub fn check_container(name: &str) -> anyhow::Result<()> {
    let ok = (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--");
    if ok {
        Ok(())
    } else {
        bail!("--container {name:?} is not a container name (3-63 lower-case letters, digits, single dashes)")
    }
}

/// Reads a whole blob.
///
/// # Errors
/// When the blob cannot be read.
pub async fn read_all(
    store: &dyn ObjectStore,
    path: &object_store::path::Path,
) -> anyhow::Result<bytes::Bytes> {
    let got = store
        .get(path)
        .await
        .with_context(|| format!("reading {path}"))?;
    got.bytes().await.with_context(|| format!("reading {path}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "/SUBSCRIPTIONS/0000/RESOURCEGROUPS/RG-AKS/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/PROD-WEU";

    #[test]
    fn archive_paths_round_trip() {
        let day = Date::from_calendar_date(2026, Month::November, 23).unwrap();
        let hour =
            |h, m| PrimitiveDateTime::new(day, Time::from_hms(h, m, 0).unwrap()).assume_utc();
        let at = hour(7, 41);
        let path = ArchivePath::blob_path(&ID.to_lowercase(), at);
        assert_eq!(
            path,
            format!("resourceId={ID}/y=2026/m=11/d=23/h=07/m=00/PT1H.json")
        );
        let parsed = ArchivePath::parse(&path).unwrap();
        assert_eq!(parsed.resource_id, ID);
        assert_eq!(parsed.hour, hour(7, 0));
        assert!(parsed.matches_cluster("prod-weu"));
        assert!(parsed.matches_cluster(&ID.to_lowercase()));
        assert!(!parsed.matches_cluster("prod"));
        assert!(ArchivePath::parse("resourceId=/X/y=2026/m=13/d=01/h=00/m=00/PT1H.json").is_none());
        assert!(ArchivePath::parse("other/file.json").is_none());
    }

    #[test]
    fn connection_strings() {
        assert!(
            parse_connection_string("UseDevelopmentStorage=true")
                .unwrap()
                .emulator
        );
        let p = parse_connection_string(
            "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=a2V5==;EndpointSuffix=core.windows.net",
        )
        .unwrap();
        assert_eq!(
            p.endpoint.as_deref(),
            Some("https://acct.blob.core.windows.net")
        );
        assert_eq!(p.key.as_deref(), Some("a2V5=="));
        let p = parse_connection_string(
            "AccountName=devstoreaccount1;AccountKey=k;BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1/;",
        )
        .unwrap();
        assert_eq!(
            p.endpoint.as_deref(),
            Some("http://127.0.0.1:10000/devstoreaccount1")
        );
        let e = parse_connection_string("AccountKey=secretvalue").unwrap_err();
        assert!(!e.to_string().contains("secretvalue"));
        assert!(parse_connection_string("garbage-secret")
            .is_err_and(|e| !e.to_string().contains("garbage")));
    }

    #[test]
    fn container_names() {
        assert!(check_container("insights-logs-kube-audit").is_ok());
        assert!(check_container("Insights").is_err());
        assert!(check_container("a--b").is_err());
    }
}
