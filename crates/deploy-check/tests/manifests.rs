//! The Kubernetes manifests (deploy/) against what the binaries read.
//!
//! The services ignore configuration keys they do not know (serde's default), so a
//! misspelt key in a ConfigMap would be silently dropped. These tests find every key the
//! binaries ignore by changing each value in turn and checking that the service's typed
//! settings change; likewise every `BANKTRANSFER__*` variable a Deployment sets. Then the
//! ports: the service, health and metrics ports in the TOML are the containers' ports, the
//! probes use the health port, the Services and NetworkPolicies name the same ports, the
//! mounts hold the files the `[tls]` and `[auth]` paths name, and the grace period outlasts
//! the services' shutdown grace.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use yaml_rust2::{Yaml, YamlLoader};

/// Keys the deploy configuration sets ahead of the code that reads them: none now (the
/// metrics' `metrics.listen_addr` was one until the services read it). A key added here
/// makes this test fail once the binaries read it, so the list cannot go stale.
const PENDING_KEYS: &[&str] = &[];

/// Stands for a secret's value in an environment variable (a database URL).
const SECRET_PROBE: &str = "postgres://probe@probe.invalid/probe";

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn yaml_docs(path: &Path) -> Vec<Yaml> {
    YamlLoader::load_from_str(&read(path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn find<'a>(docs: &'a [Yaml], kind: &str, name: &str) -> &'a Yaml {
    docs.iter()
        .find(|d| d["kind"].as_str() == Some(kind) && d["metadata"]["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn port_of(addr: &str) -> i64 {
    addr.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {addr:?}"))
}

/// What the manifests must agree with, read from a service's typed settings.
#[derive(Debug)]
struct Facts {
    listen_addr: String,
    health_listen_addr: String,
    shutdown_grace_ms: u64,
    tls_paths: [String; 3],
    /// The gateway's and the reconciler's participant URLs.
    peer_urls: Vec<String>,
    /// The gateway's token verification key.
    verify_key_path: Option<String>,
}

/// `BANKTRANSFER__*` variables: (name, value).
type Env = Vec<(String, String)>;

/// One service as deployed: its settings type behind `load`, its manifest names.
struct Service {
    name: &'static str,
    /// Loads and validates the settings from a file and an environment.
    load: fn(&Path, Env) -> Result<Facts, String>,
    /// Every TOML key in `text` that the settings ignore.
    unread: fn(&str) -> Vec<String>,
    /// Whether the settings read the environment variable `name` (set to `value`).
    reads_env: fn(&Path, &str, &str) -> bool,
}

fn load_settings<T: DeserializeOwned>(
    path: &Path,
    env: Vec<(String, String)>,
) -> Result<T, String> {
    service_kit::config::load_with_env(Some(path), env).map_err(|e| e.to_string())
}

fn reads_env<T: DeserializeOwned + PartialEq>(path: &Path, name: &str, value: &str) -> bool {
    let without: T = load_settings(path, Vec::new()).unwrap();
    match load_settings::<T>(path, vec![(name.to_owned(), value.to_owned())]) {
        Ok(with) => with != without,
        // A value the field refuses: the field exists.
        Err(_) => true,
    }
}

/// Each leaf of `table` changed in turn (its dotted path, the changed table).
fn mutations(table: &toml::Table) -> Vec<(String, toml::Table)> {
    let mut out = Vec::new();
    for (key, value) in table {
        let mut put = |path: String, changed: toml::Value| {
            let mut copy = table.clone();
            copy.insert(key.clone(), changed);
            out.push((path, copy));
        };
        match value {
            toml::Value::Table(inner) => {
                for (path, changed) in mutations(inner) {
                    put(format!("{key}.{path}"), toml::Value::Table(changed));
                }
            }
            toml::Value::Array(items)
                if items.iter().all(toml::Value::is_table) && !items.is_empty() =>
            {
                for (i, item) in items.iter().enumerate() {
                    for (path, changed) in mutations(item.as_table().unwrap()) {
                        let mut items = items.clone();
                        items[i] = toml::Value::Table(changed);
                        put(format!("{key}[{i}].{path}"), toml::Value::Array(items));
                    }
                }
            }
            leaf => put(key.clone(), changed_leaf(leaf)),
        }
    }
    out
}

fn changed_leaf(value: &toml::Value) -> toml::Value {
    match value {
        toml::Value::Integer(i) => toml::Value::Integer(i + 1),
        toml::Value::Boolean(b) => toml::Value::Boolean(!b),
        toml::Value::String(s) => toml::Value::String(format!("{s}-changed")),
        toml::Value::Float(f) => toml::Value::Float(f + 1.0),
        toml::Value::Array(items) => {
            let mut items = items.clone();
            if items.pop().is_none() {
                items.push(toml::Value::String("changed".into()));
            }
            toml::Value::Array(items)
        }
        other => panic!("no change defined for {other:?}"),
    }
}

fn unread_keys<T: DeserializeOwned + PartialEq + Debug>(text: &str) -> Vec<String> {
    let table: toml::Table = text.parse().unwrap();
    let base = T::deserialize(toml::Value::Table(table.clone())).unwrap();
    mutations(&table)
        .into_iter()
        .filter(|(_, changed)| {
            T::deserialize(toml::Value::Table(changed.clone())).is_ok_and(|s| s == base)
        })
        .map(|(path, _)| path)
        .collect()
}

fn tls_paths(tls: &service_kit::tls::TlsSection) -> [String; 3] {
    [
        tls.cert_path.clone(),
        tls.key_path.clone(),
        tls.ca_path.clone(),
    ]
}

fn services() -> [Service; 4] {
    [
        Service {
            name: "gateway-coordinator",
            load: |path, env| {
                let s: gateway_coordinator::Settings = load_settings(path, env)?;
                s.validate()?;
                Ok(Facts {
                    listen_addr: s.listen_addr.clone(),
                    health_listen_addr: s.common.server.health_listen_addr.clone(),
                    shutdown_grace_ms: s.common.server.shutdown_grace_ms,
                    tls_paths: tls_paths(&s.tls),
                    peer_urls: vec![
                        s.common.external_url.clone(),
                        s.common.balance_store_url.clone(),
                    ],
                    verify_key_path: Some(s.auth.verify_key_path.clone()),
                })
            },
            unread: unread_keys::<gateway_coordinator::Settings>,
            reads_env: reads_env::<gateway_coordinator::Settings>,
        },
        Service {
            name: "mock-external-institution",
            load: |path, env| {
                let s: mock_external_institution::Settings = load_settings(path, env)?;
                s.validate().map_err(|e| e.to_string())?;
                Ok(Facts {
                    listen_addr: s.listen_addr.clone(),
                    health_listen_addr: s.server.health_listen_addr.clone(),
                    shutdown_grace_ms: s.server.shutdown_grace_ms,
                    tls_paths: tls_paths(&s.tls),
                    peer_urls: Vec::new(),
                    verify_key_path: None,
                })
            },
            unread: unread_keys::<mock_external_institution::Settings>,
            reads_env: reads_env::<mock_external_institution::Settings>,
        },
        Service {
            name: "internal-balance-store",
            load: |path, env| {
                let s: internal_balance_store::Settings = load_settings(path, env)?;
                s.validate().map_err(|e| e.to_string())?;
                Ok(Facts {
                    listen_addr: s.common.listen_addr.clone(),
                    health_listen_addr: s.common.server.health_listen_addr.clone(),
                    shutdown_grace_ms: s.common.server.shutdown_grace_ms,
                    tls_paths: tls_paths(&s.common.tls),
                    peer_urls: Vec::new(),
                    verify_key_path: None,
                })
            },
            unread: unread_keys::<internal_balance_store::Settings>,
            reads_env: reads_env::<internal_balance_store::Settings>,
        },
        Service {
            name: "reconciler",
            load: |path, env| {
                let s: reconciler::Settings = load_settings(path, env)?;
                s.validate()?;
                Ok(Facts {
                    listen_addr: s.listen_addr.clone(),
                    health_listen_addr: s.common.server.health_listen_addr.clone(),
                    shutdown_grace_ms: s.common.server.shutdown_grace_ms,
                    tls_paths: tls_paths(&s.tls),
                    peer_urls: vec![
                        s.common.external_url.clone(),
                        s.common.balance_store_url.clone(),
                    ],
                    verify_key_path: None,
                })
            },
            unread: unread_keys::<reconciler::Settings>,
            reads_env: reads_env::<reconciler::Settings>,
        },
    ]
}

/// Every TOML file a ConfigMap is made from: the base's, and the overlays' replacements.
fn config_files(service: &str) -> Vec<PathBuf> {
    let mut files = vec![deploy_dir().join(format!("base/config/{service}.toml"))];
    for overlay in ["dev", "prod"] {
        let file = deploy_dir().join(format!("overlays/{overlay}/config/{service}.toml"));
        if file.exists() {
            files.push(file);
        }
    }
    files
}

fn deployment(service: &str) -> (Vec<Yaml>, usize) {
    let docs = yaml_docs(&deploy_dir().join(format!("base/{service}.yaml")));
    let index = docs
        .iter()
        .position(|d| d["kind"].as_str() == Some("Deployment"))
        .unwrap_or_else(|| panic!("no Deployment in base/{service}.yaml"));
    (docs, index)
}

fn container_port(container: &Yaml, name: &str) -> i64 {
    container["ports"]
        .as_vec()
        .unwrap()
        .iter()
        .find(|p| p["name"].as_str() == Some(name))
        .and_then(|p| p["containerPort"].as_i64())
        .unwrap_or_else(|| panic!("no container port {name}"))
}

fn mount_path(container: &Yaml, volume: &str) -> String {
    container["volumeMounts"]
        .as_vec()
        .unwrap()
        .iter()
        .find(|m| m["name"].as_str() == Some(volume))
        .and_then(|m| m["mountPath"].as_str())
        .unwrap_or_else(|| panic!("no mount of volume {volume}"))
        .to_owned()
}

/// The `BANKTRANSFER__*` variables a container sets, with a stand-in for secret values.
fn env_of(container: &Yaml) -> Vec<(String, String)> {
    container["env"]
        .as_vec()
        .map(|vars| {
            vars.iter()
                .map(|v| {
                    let name = v["name"].as_str().unwrap().to_owned();
                    let value = v["value"].as_str().unwrap_or(SECRET_PROBE).to_owned();
                    (name, value)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The variables the overlays' patches add to every Deployment.
fn overlay_env() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for overlay in ["dev", "prod"] {
        let kustomization =
            yaml_docs(&deploy_dir().join(format!("overlays/{overlay}/kustomization.yaml")));
        for patch in kustomization[0]["patches"].as_vec().into_iter().flatten() {
            let Some(text) = patch["patch"].as_str() else {
                continue;
            };
            for operations in YamlLoader::load_from_str(text).unwrap() {
                for op in operations.as_vec().into_iter().flatten() {
                    if op["path"].as_str().is_some_and(|p| p.ends_with("/env/-")) {
                        let value = &op["value"];
                        out.push((
                            value["name"].as_str().unwrap().to_owned(),
                            value["value"].as_str().unwrap_or(SECRET_PROBE).to_owned(),
                        ));
                    }
                }
            }
        }
    }
    out
}

#[test]
fn every_configuration_key_is_one_the_binary_reads() {
    for service in services() {
        for file in config_files(service.name) {
            let unread = (service.unread)(&read(&file));
            assert_eq!(
                unread,
                PENDING_KEYS,
                "{}: the keys {} ignores are not the pending ones (a misspelt key, or a \
                 pending key now implemented: drop it from PENDING_KEYS)",
                file.display(),
                service.name
            );
        }
    }
}

#[test]
fn the_key_check_finds_a_misspelt_key() {
    let text = "listen_addr = \"0.0.0.0:1\"\n[server]\nshutdown_grace_msx = 5\n";
    assert_eq!(
        unread_keys::<reconciler::Settings>(text),
        vec!["server.shutdown_grace_msx".to_owned()]
    );
}

#[test]
fn every_environment_variable_reaches_a_setting() {
    let extra = overlay_env();
    assert!(
        !extra.is_empty(),
        "the dev overlay sets reflection by environment"
    );
    for service in services() {
        let (docs, index) = deployment(service.name);
        let container = &docs[index]["spec"]["template"]["spec"]["containers"][0];
        let mut env = env_of(container);
        assert!(
            env.iter()
                .any(|(name, _)| name == "BANKTRANSFER__DATABASE_URL")
        );
        env.extend(extra.iter().cloned());
        for file in config_files(service.name) {
            for (name, value) in &env {
                assert!(name.starts_with(service_kit::config::ENV_PREFIX), "{name}");
                assert!(
                    (service.reads_env)(&file, name, value),
                    "{}: {name}={value} changes nothing in {}'s settings",
                    service.name,
                    file.display()
                );
            }
            // With the secrets' stand-ins, the configuration passes the service's checks.
            (service.load)(&file, env.clone())
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        }
    }
}

#[test]
fn ports_probes_mounts_and_grace_match_the_configuration() {
    let mut metrics_ports = BTreeSet::new();
    let mut grpc_ports = std::collections::BTreeMap::new();
    let mut peer_urls = BTreeSet::new();
    for service in services() {
        let name = service.name;
        let file = deploy_dir().join(format!("base/config/{name}.toml"));
        let facts = (service.load)(
            &file,
            vec![("BANKTRANSFER__DATABASE_URL".into(), SECRET_PROBE.into())],
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        let raw: toml::Table = read(&file).parse().unwrap();
        let metrics_addr = raw["metrics"]["listen_addr"].as_str().unwrap().to_owned();

        let (docs, index) = deployment(name);
        let pod = &docs[index]["spec"]["template"]["spec"];
        let container = &pod["containers"][0];
        let grpc = container_port(container, "grpc");
        let health = container_port(container, "health");
        let metrics = container_port(container, "metrics");
        assert_eq!(grpc, port_of(&facts.listen_addr), "{name}: grpc port");
        assert!(
            !facts.health_listen_addr.is_empty(),
            "{name}: no health listener"
        );
        assert_eq!(
            health,
            port_of(&facts.health_listen_addr),
            "{name}: health port"
        );
        assert_eq!(metrics, port_of(&metrics_addr), "{name}: metrics port");
        assert!(
            facts.listen_addr.starts_with("0.0.0.0:"),
            "{name}: listen on the pod's address"
        );
        for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
            assert_eq!(
                container[probe]["grpc"]["port"].as_i64(),
                Some(health),
                "{name}: {probe}"
            );
        }

        // The configuration file is where --config points.
        let config_dir = mount_path(container, "config");
        let args: Vec<&str> = container["args"]
            .as_vec()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(
            args,
            ["--config", &format!("{config_dir}/{name}.toml")],
            "{name}: args"
        );
        let config_volume = pod["volumes"]
            .as_vec()
            .unwrap()
            .iter()
            .find(|v| v["name"].as_str() == Some("config"))
            .unwrap();
        let config_map = config_volume["configMap"]["name"].as_str().unwrap();
        let kustomization = &yaml_docs(&deploy_dir().join("base/kustomization.yaml"))[0];
        let generated = kustomization["configMapGenerator"]
            .as_vec()
            .unwrap()
            .iter()
            .find(|g| g["name"].as_str() == Some(config_map))
            .unwrap_or_else(|| panic!("{name}: no configMapGenerator {config_map}"));
        assert_eq!(
            generated["files"][0].as_str(),
            Some(format!("config/{name}.toml").as_str())
        );

        // [tls] and [auth] name files inside the secrets' mounts.
        let tls_dir = mount_path(container, "tls");
        for path in &facts.tls_paths {
            assert!(
                path.starts_with(&format!("{tls_dir}/")),
                "{name}: {path} outside {tls_dir}"
            );
        }
        if let Some(key) = &facts.verify_key_path {
            let auth_dir = mount_path(container, "auth");
            assert!(
                key.starts_with(&format!("{auth_dir}/")),
                "{name}: {key} outside {auth_dir}"
            );
        }

        // SIGTERM comes after the preStop pause; the grace period covers both and the drain.
        let grace_s = pod["terminationGracePeriodSeconds"].as_i64().unwrap();
        let pre_stop_s = container["lifecycle"]["preStop"]["sleep"]["seconds"]
            .as_i64()
            .unwrap();
        assert!(
            (grace_s - pre_stop_s) * 1000 > facts.shutdown_grace_ms as i64,
            "{name}: terminationGracePeriodSeconds {grace_s} - preStop {pre_stop_s} s must exceed shutdown_grace_ms {}",
            facts.shutdown_grace_ms
        );

        // The Services.
        let svc = find(&docs, "Service", name);
        let svc_port = &svc["spec"]["ports"][0];
        assert_eq!(
            svc_port["port"].as_i64(),
            Some(grpc),
            "{name}: Service port"
        );
        assert_eq!(svc_port["targetPort"].as_str(), Some("grpc"));
        assert_eq!(svc_port["appProtocol"].as_str(), Some("grpc"));
        let metrics_svc = find(&docs, "Service", &format!("{name}-metrics"));
        assert_eq!(
            metrics_svc["spec"]["ports"][0]["port"].as_i64(),
            Some(metrics)
        );

        metrics_ports.insert(metrics);
        grpc_ports.insert(name, grpc);
        peer_urls.extend(facts.peer_urls);
    }

    // The coordinators reach the participants by their Services' names and ports (the
    // names their certificates carry).
    let participants: BTreeSet<String> = ["mock-external-institution", "internal-balance-store"]
        .iter()
        .map(|p| format!("https://{p}:{}", grpc_ports[p]))
        .collect();
    assert_eq!(peer_urls, participants);

    let policies = yaml_docs(&deploy_dir().join("base/networkpolicies.yaml"));
    let ports = |policy: &str, direction: &str| -> BTreeSet<i64> {
        find(&policies, "NetworkPolicy", policy)["spec"][direction]
            .as_vec()
            .unwrap()
            .iter()
            .flat_map(|rule| {
                rule["ports"]
                    .as_vec()
                    .unwrap()
                    .iter()
                    .map(|p| p["port"].as_i64().unwrap())
            })
            .collect()
    };
    let participant_ports: BTreeSet<i64> = [
        grpc_ports["mock-external-institution"],
        grpc_ports["internal-balance-store"],
    ]
    .into();
    assert_eq!(ports("participants-ingress", "ingress"), participant_ports);
    assert_eq!(ports("coordinators-egress", "egress"), participant_ports);
    assert_eq!(
        ports("gateway-coordinator-ingress", "ingress"),
        [grpc_ports["gateway-coordinator"]].into()
    );
    assert_eq!(ports("metrics-from-monitoring", "ingress"), metrics_ports);
}

/// The `NAME=value` literals of the `banktransfer-traces` ConfigMap in a kustomization.
fn traces_literals(kustomization: &Path) -> Vec<(String, String)> {
    let docs = yaml_docs(kustomization);
    docs[0]["configMapGenerator"]
        .as_vec()
        .into_iter()
        .flatten()
        .filter(|g| g["name"].as_str() == Some("banktransfer-traces"))
        .flat_map(|g| g["literals"].as_vec().cloned().unwrap_or_default())
        .map(|literal| {
            let text = literal.as_str().unwrap();
            let (name, value) = text.split_once('=').unwrap_or((text, ""));
            (name.to_owned(), value.to_owned())
        })
        .collect()
}

#[test]
fn every_service_reads_the_trace_settings_and_they_are_ones_the_sdk_knows() {
    for service in services() {
        let (docs, index) = deployment(service.name);
        let container = &docs[index]["spec"]["template"]["spec"]["containers"][0];
        let from: Vec<&str> = container["envFrom"]
            .as_vec()
            .into_iter()
            .flatten()
            .filter_map(|source| source["configMapRef"]["name"].as_str())
            .collect();
        assert_eq!(from, ["banktransfer-traces"], "{}", service.name);
    }
    let base = traces_literals(&deploy_dir().join("base/kustomization.yaml"));
    assert_eq!(
        base,
        [("OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(), String::new())],
        "traces are off in the base"
    );
    let prod = traces_literals(&deploy_dir().join("overlays/prod/kustomization.yaml"));
    for (name, value) in base.iter().chain(&prod) {
        assert!(
            service_kit::traces::VARIABLES.contains(&name.as_str()),
            "{name} is not a variable the traces read"
        );
        if name.ends_with("_ENDPOINT") && !value.is_empty() {
            assert!(
                value.starts_with("http://") || value.starts_with("https://"),
                "{value}"
            );
        }
    }
    let settings = service_kit::traces::TraceSettings::from_vars(|name| {
        prod.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone())
    });
    assert!(settings.is_some(), "prod exports traces: {prod:?}");
}

#[test]
fn dev_participant_configs_are_the_base_plus_demo_accounts() {
    for service in ["mock-external-institution", "internal-balance-store"] {
        let base: toml::Table = read(&deploy_dir().join(format!("base/config/{service}.toml")))
            .parse()
            .unwrap();
        let mut dev: toml::Table =
            read(&deploy_dir().join(format!("overlays/dev/config/{service}.toml")))
                .parse()
                .unwrap();
        let accounts = dev
            .remove("accounts")
            .expect("the dev overlay opens the demo accounts");
        assert_eq!(accounts.as_array().map(Vec::len), Some(2), "{service}");
        assert_eq!(dev, base, "{service}: the dev file drifted from the base");
    }
}
