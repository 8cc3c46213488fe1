//! Compose projects: a `compose` service stands for the containers Docker Compose made
//! for a project, found by their labels, and is turned into one `docker` service per
//! container before the plan is made.
//!
//! Labels read: `com.docker.compose.project`, `.service`, `.container-number` and
//! `.depends_on`. Compose v2 writes depends_on as `svc:condition:restart,svc2:...`;
//! plain names (`svc,svc2`) are read too. A container of service `web` in the config
//! service `shop` becomes `shop.web` (`shop.web.2` for a second replica); it depends on
//! the containers of the services its label names, and on whatever `shop` depends on;
//! whatever depends on `shop` depends on all of them.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use drd_core::config::{Config, DriverKind, ServiceConfig};
use drd_core::docker::{self, Client, Connect};

const PROJECT: &str = "com.docker.compose.project";
const SERVICE: &str = "com.docker.compose.service";
const NUMBER: &str = "com.docker.compose.container-number";
const DEPENDS_ON: &str = "com.docker.compose.depends_on";

/// How long discovery may wait for the engine, to connect and then to list.
const DISCOVER_TIMEOUT: Duration = Duration::from_secs(10);

/// One container found for a compose service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Its name (without the leading `/`).
    pub container: String,
    /// Its compose service.
    pub service: String,
    /// Its replica number.
    pub number: u32,
    /// The compose services it depends on.
    pub depends_on: Vec<String>,
}

/// The service names in a `com.docker.compose.depends_on` label.
pub fn parse_depends_on(label: &str) -> Vec<String> {
    label
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|entry| entry.split(':').next().unwrap_or(entry).to_owned())
        .collect()
}

/// `config` with every compose service replaced by its containers. A project whose
/// containers cannot be listed stays as it is (its driver then reports why); the
/// reasons are returned for the log.
pub async fn expand(config: &Config) -> (Config, Vec<String>) {
    let compose: Vec<(String, ServiceConfig)> = config
        .services
        .iter()
        .filter(|(_, s)| s.driver == DriverKind::Compose)
        .map(|(n, s)| (n.clone(), s.clone()))
        .collect();
    if compose.is_empty() {
        return (config.clone(), Vec::new());
    }
    let mut problems = Vec::new();
    let mut out = config.clone();
    let how = Connect {
        answer_within: DISCOVER_TIMEOUT,
        request_timeout: DISCOVER_TIMEOUT,
        ..Connect::default()
    };
    // One connection for every project; a failed one is each project's problem.
    let client = Client::connect(&how).await;
    for (name, service) in compose {
        let project = service.project.clone().unwrap_or_default();
        let found = match &client {
            Ok(client) => discover(client, &project).await.map_err(|e| e.to_string()),
            Err(err) => Err(err.to_string()),
        };
        let found = match found {
            Ok(found) => found,
            Err(err) => {
                problems.push(format!("compose service {name}: {err}"));
                continue;
            }
        };
        let found: Vec<Found> = match &service.service {
            Some(only) => found.into_iter().filter(|f| &f.service == only).collect(),
            None => found,
        };
        if found.is_empty() {
            problems.push(format!(
                "compose service {name}: no container carries {PROJECT}={project}{}",
                service
                    .service
                    .as_ref()
                    .map(|s| format!(" and {SERVICE}={s}"))
                    .unwrap_or_default()
            ));
            continue;
        }
        let derived = derive(&name, &service, &found);
        let names: Vec<String> = derived.keys().cloned().collect();
        out.services.remove(&name);
        for other in out.services.values_mut() {
            if other.depends_on.iter().any(|d| d == &name) {
                other.depends_on.retain(|d| d != &name);
                other.depends_on.extend(names.iter().cloned());
            }
        }
        out.services.extend(derived);
    }
    (out, problems)
}

/// The docker services for `found`, named `NAME.SERVICE[.N]`.
fn derive(name: &str, service: &ServiceConfig, found: &[Found]) -> BTreeMap<String, ServiceConfig> {
    let mut per_service: HashMap<&str, Vec<&Found>> = HashMap::new();
    for f in found {
        per_service.entry(&f.service).or_default().push(f);
    }
    let id = |f: &Found| {
        if per_service[f.service.as_str()].len() > 1 {
            format!("{name}.{}.{}", f.service, f.number)
        } else {
            format!("{name}.{}", f.service)
        }
    };
    let mut out = BTreeMap::new();
    for f in found {
        let mut depends_on = service.depends_on.clone();
        for dep in &f.depends_on {
            if let Some(containers) = per_service.get(dep.as_str()) {
                depends_on.extend(containers.iter().map(|c| id(c)));
            }
        }
        let mut config = service.clone();
        config.driver = DriverKind::Docker;
        config.container = Some(f.container.clone());
        config.project = None;
        config.service = None;
        config.depends_on = depends_on;
        out.insert(id(f), config);
    }
    out
}

/// The containers (running or not) of compose project `project`.
async fn discover(client: &Client, project: &str) -> Result<Vec<Found>, docker::Error> {
    let list = client
        .with_labels(&[format!("{PROJECT}={project}")])
        .await?;
    let mut found: Vec<Found> = list
        .into_iter()
        .filter_map(|c| {
            let labels = c.labels.unwrap_or_default();
            let container = c.names?.first()?.trim_start_matches('/').to_owned();
            Some(Found {
                container,
                service: labels.get(SERVICE)?.clone(),
                number: labels.get(NUMBER).and_then(|n| n.parse().ok()).unwrap_or(1),
                depends_on: labels
                    .get(DEPENDS_ON)
                    .map(|l| parse_depends_on(l))
                    .unwrap_or_default(),
            })
        })
        .collect();
    found.sort_by(|a, b| (&a.service, a.number).cmp(&(&b.service, b.number)));
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depends_on_labels_in_both_formats() {
        assert_eq!(
            parse_depends_on("db:service_healthy:false,cache:service_started:true"),
            ["db", "cache"]
        );
        assert_eq!(parse_depends_on("db, cache"), ["db", "cache"]);
        assert!(parse_depends_on("").is_empty());
    }

    #[test]
    fn containers_become_services_with_their_dependencies() {
        let service: ServiceConfig =
            toml::from_str("driver = \"compose\"\nproject = \"shop\"\ndepends_on = [\"disk\"]\n")
                .unwrap();
        let found = |container: &str, service: &str, number: u32, deps: &[&str]| Found {
            container: container.to_owned(),
            service: service.to_owned(),
            number,
            depends_on: deps.iter().map(|d| (*d).to_owned()).collect(),
        };
        let derived = derive(
            "shop",
            &service,
            &[
                found("shop-db-1", "db", 1, &[]),
                found("shop-web-1", "web", 1, &["db"]),
                found("shop-web-2", "web", 2, &["db"]),
            ],
        );
        let names: Vec<&String> = derived.keys().collect();
        assert_eq!(names, ["shop.db", "shop.web.1", "shop.web.2"]);
        assert_eq!(derived["shop.web.2"].depends_on, ["disk", "shop.db"]);
        assert_eq!(
            derived["shop.web.2"].container.as_deref(),
            Some("shop-web-2")
        );
        assert_eq!(derived["shop.db"].driver, DriverKind::Docker);
    }
}
