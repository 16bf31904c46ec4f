//! manifests/kubernetes/ is checked three ways: every resource against the Kubernetes JSON schemas
//! (strict: unknown fields are errors) for the oldest and newest Kubernetes we support, with
//! `kubernetes-validate` from PyPI (scripts/test installs it into .venv-k8s); broken copies are
//! rejected, so the check has teeth; and the resources agree with each other and with grantry (the
//! ConfigMap's config, catalog and people file load in grantry itself, every secret it needs is
//! wired, the shutdown bound fits in the grace period).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const VERSIONS: [&str; 2] = ["1.30.0", "1.37.0"];

fn dir() -> PathBuf {
    common::manifest_dir().join("manifests/kubernetes")
}

fn venv_bin(name: &str) -> PathBuf {
    let p = common::manifest_dir().join(".venv-k8s/bin").join(name);
    assert!(
        p.exists(),
        "{} is missing: run scripts/test, which installs kubernetes-validate into .venv-k8s",
        p.display()
    );
    p
}

/// Validates one file; Ok(output) only when every document in it was checked against a schema
/// and passed (an unknown kind or apiVersion is only a warning to the tool: a failure here).
fn validate(path: &Path, version: &str) -> Result<String, String> {
    let out = Command::new(venv_bin("kubernetes-validate"))
        .args(["--strict", "-k", version])
        .arg(path)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let clean = out.status.success()
        && text.contains("passed for resource")
        && text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .all(|l| l.starts_with("INFO") && l.contains("passed for resource"));
    if clean {
        Ok(text)
    } else {
        Err(text)
    }
}

/// The YAML documents of a file, as JSON (PyYAML from the same venv reads them).
fn load_yaml(path: &Path) -> Vec<Value> {
    let out = Command::new(venv_bin("python"))
        .args([
            "-c",
            "import sys, json, yaml; print(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d is not None]))",
        ])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn one(file: &str) -> Value {
    let mut docs = load_yaml(&dir().join(file));
    assert_eq!(docs.len(), 1, "{file}: one resource");
    docs.remove(0)
}

fn kustomization_resources() -> Vec<String> {
    one("kustomization.yaml")["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn every_manifest_matches_the_kubernetes_schemas() {
    let mut files = kustomization_resources();
    files.push("secret.example.yaml".into());
    for f in &files {
        let path = dir().join(f);
        assert!(path.exists(), "kustomization lists {f}, which is missing");
        for v in VERSIONS {
            if let Err(out) = validate(&path, v) {
                panic!("{f} against Kubernetes {v}:\n{out}");
            }
        }
    }
    // Nothing in the folder escapes the kustomization (or this check).
    for entry in std::fs::read_dir(dir()).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().to_string();
        if name.ends_with(".yaml") && name != "kustomization.yaml" {
            assert!(
                files.contains(&name),
                "{name} is neither listed nor checked"
            );
        }
    }
}

#[test]
fn the_schema_check_rejects_broken_manifests() {
    let deployment = std::fs::read_to_string(dir().join("deployment.yaml")).unwrap();
    let pdb = std::fs::read_to_string(dir().join("pdb.yaml")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let cases = [
        (
            "misspelt field",
            deployment.replacen("  replicas: 2", "  replica: 2", 1),
            "'replica' was unexpected",
        ),
        (
            "wrong type",
            deployment.replacen("containerPort: 3000", "containerPort: \"3000\"", 1),
            "is not of type 'integer'",
        ),
        (
            "missing required field",
            deployment.replacen(
                "      containers:\n        - name: grantry\n",
                "      containers:\n        - \n",
                1,
            ),
            "'name' is a required property",
        ),
        (
            "unknown kind",
            deployment.replacen("kind: Deployment", "kind: Deployemnt", 1),
            "Couldn't find schema",
        ),
        (
            "removed apiVersion",
            pdb.replacen("policy/v1", "policy/v1beta1", 1),
            "Couldn't find schema",
        ),
    ];
    for (what, text, expected) in cases {
        let path = tmp.path().join("broken.yaml");
        std::fs::write(&path, &text).unwrap();
        match validate(&path, "1.30.0") {
            Ok(out) => panic!("{what}: accepted\n{out}"),
            Err(out) => assert!(out.contains(expected), "{what}: {out}"),
        }
    }
}

#[test]
fn the_manifests_agree_with_each_other_and_with_grantry() {
    let deploy = one("deployment.yaml");
    let service = one("service.yaml");
    let pdb = one("pdb.yaml");
    let hpa = one("hpa.yaml");
    let configmap = one("configmap.yaml");
    let secret = one("secret.example.yaml");

    // Several replicas, one set of labels.
    let spec = &deploy["spec"];
    assert!(spec["replicas"].as_i64().unwrap() >= 2);
    let selector = &spec["selector"]["matchLabels"];
    for (k, v) in selector.as_object().unwrap() {
        assert_eq!(&spec["template"]["metadata"]["labels"][k], v);
    }
    assert_eq!(&service["spec"]["selector"], selector);
    assert_eq!(&pdb["spec"]["selector"]["matchLabels"], selector);
    assert_eq!(
        hpa["spec"]["scaleTargetRef"]["name"],
        deploy["metadata"]["name"]
    );
    assert!(hpa["spec"]["minReplicas"].as_i64().unwrap() >= 2);
    assert!(pdb["spec"]["minAvailable"].as_i64().unwrap() >= 1);

    // The container: probes on our endpoints, hardened, with resource requests.
    let pod = &spec["template"]["spec"];
    let c = &pod["containers"][0];
    assert_eq!(c["ports"][0]["name"], "http");
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "http");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert!(c["resources"]["requests"]["cpu"].is_string());
    assert!(c["resources"]["requests"]["memory"].is_string());

    // Environment: every secret reference exists in the example Secret; grantry's are all wired.
    let mut env = Vec::new();
    for e in c["env"].as_array().unwrap() {
        let name = e["name"].as_str().unwrap().to_string();
        let value = if let Some(r) = e["valueFrom"]["secretKeyRef"].as_object() {
            assert_eq!(r["name"], secret["metadata"]["name"], "{name}");
            let key = r["key"].as_str().unwrap();
            secret["stringData"][key]
                .as_str()
                .unwrap_or_else(|| panic!("{name}: key {key} is not in the Secret"))
                .to_string()
        } else {
            e["value"].as_str().unwrap().to_string()
        };
        env.push((name, value));
    }
    let has = |n: &str| env.iter().any(|(k, _)| k == n);
    for needed in [
        "SLACK_SIGNING_SECRET",
        "SLACK_BOT_TOKEN",
        "GRANTRY__DATABASE__URL",
    ] {
        assert!(has(needed), "{needed} is not set");
    }

    // The ConfigMap is the one mounted at the config's folder, and grantry loads what it holds.
    assert_eq!(
        pod["volumes"][0]["configMap"]["name"],
        configmap["metadata"]["name"]
    );
    let config_path = env
        .iter()
        .find(|(k, _)| k == "GRANTRY_CONFIG")
        .map(|(_, v)| PathBuf::from(v))
        .expect("GRANTRY_CONFIG set");
    assert_eq!(
        c["volumeMounts"][0]["mountPath"].as_str().unwrap(),
        config_path.parent().unwrap().to_str().unwrap()
    );
    let data = &configmap["data"];
    let overrides: Vec<(String, String)> = env
        .iter()
        .filter(|(k, _)| k.starts_with(grantry::config::ENV_PREFIX))
        .cloned()
        .collect();
    let config = grantry::config::Config::from_toml(
        data[config_path.file_name().unwrap().to_str().unwrap()]
            .as_str()
            .unwrap(),
        &config_path,
        &overrides,
    )
    .unwrap();
    assert!(
        config.database.url.starts_with("postgres://"),
        "replicas need PostgreSQL"
    );
    assert_eq!(
        config.server.listen,
        format!("0.0.0.0:{}", c["ports"][0]["containerPort"])
    );
    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    assert!(
        config.server.shutdown_drain_secs < config.server.shutdown_timeout_secs
            && config.server.shutdown_timeout_secs + 5 <= grace,
        "the shutdown bound must end well inside the grace period"
    );
    for conn in config.connectors.values() {
        if let Some(var) = conn.settings.get("token_env").and_then(|v| v.as_str()) {
            assert!(has(var), "connector token {var} is not set");
        }
    }
    let connectors: Vec<String> = config.connectors.keys().cloned().collect();
    let catalog = data[config.catalog.path.to_str().unwrap()]
        .as_str()
        .unwrap();
    grantry::domain::Catalog::parse(catalog, Some(&connectors)).unwrap();
    let people_name = config.directory.people_file.clone().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let people = tmp.path().join(&people_name);
    std::fs::write(
        &people,
        data[people_name.to_str().unwrap()].as_str().unwrap(),
    )
    .unwrap();
    grantry::directory::Directory::load(&people).unwrap();
}
