//! Start-up with bad settings, as a user meets it: the real binary exits non-zero and says
//! which variable and why, with no backtrace.

use crate::helpers::*;

fn start(settings: &[(&str, &str)]) -> (bool, String) {
    let mut command = std::process::Command::new(BIN);
    for (key, _) in std::env::vars() {
        if key.starts_with("AUDIT_") || key.starts_with("FUNCTIONS_") {
            command.env_remove(key);
        }
    }
    command
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", free_port().to_string())
        .env("RUST_BACKTRACE", "1");
    for (key, value) in settings {
        command.env(key, value);
    }
    let out = command.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `AUDIT_WEBHOOK_CA_FILE` (the setting is `AUDIT_WEBHOOK_CA`) stops start-up with the name
/// and the closest setting; the error is a chain of causes, not a backtrace.
#[test]
fn misspelled_setting_stops_start_up_without_a_backtrace() {
    let (ok, stderr) = start(&[
        ("AUDIT_WEBHOOK_URL", "https://127.0.0.1:9/k8s_audit"),
        ("AUDIT_WEBHOOK_CA_FILE", "/path/ca.pem"),
    ]);
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains("AUDIT_WEBHOOK_CA_FILE")
            && stderr.contains("did you mean `AUDIT_WEBHOOK_CA`?"),
        "{stderr}"
    );
    assert!(stderr.contains("invalid configuration: "), "{stderr}");
    assert!(!stderr.to_lowercase().contains("backtrace"), "{stderr}");
}

/// An unresolved Key Vault reference stops start-up naming the variable, not the value.
#[test]
fn unresolved_key_vault_reference_stops_start_up() {
    let (ok, stderr) = start(&[(
        "AUDIT_WEBHOOK_URL",
        "@Microsoft.KeyVault(SecretUri=https://kv-secret-name.vault.azure.net/secrets/x/)",
    )]);
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains("AUDIT_WEBHOOK_URL") && stderr.contains("Key Vault"),
        "{stderr}"
    );
    assert!(!stderr.contains("kv-secret-name"), "{stderr}");
}
