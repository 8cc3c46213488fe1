//! Holding: "safely" when a service does not stop. A service that is still up may
//! still write to what it depends on, so those stay running, all the way down; so do
//! a critical service whose preserve job failed and everything it needs. What is
//! held is reported as `held`, with why, and never signalled.

use std::collections::BTreeMap;

use super::Run;
use crate::plan::Plan;

/// The services a run keeps running, each with why.
#[derive(Debug, Default)]
pub(super) struct Holds(BTreeMap<String, String>);

impl Holds {
    /// Why `name` is kept running, if it is.
    pub(super) fn why(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// Keeps `name` and everything it depends on (in `plan`) running, saying why.
    pub(super) fn hold(&mut self, plan: &Plan, name: &str, why: &str) {
        let mut todo = vec![(name.to_owned(), why.to_owned())];
        while let Some((name, why)) = todo.pop() {
            let Some(step) = plan.steps.get(&name) else {
                continue;
            };
            if self.0.contains_key(&name) {
                continue;
            }
            self.0.insert(name.clone(), why);
            todo.extend(step.depends_on.iter().map(|d| (d.clone(), still_up(&name))));
        }
    }

    /// `name` could not be stopped: everything it depends on is kept running.
    pub(super) fn not_stopped(&mut self, plan: &Plan, name: &str) {
        let deps = plan.steps.get(name).map(|s| s.depends_on.clone());
        for dep in deps.unwrap_or_default() {
            self.hold(plan, &dep, &still_up(name));
        }
    }
}

fn still_up(dependant: &str) -> String {
    format!("kept running: {dependant}, which depends on it, is still up")
}

impl Run {
    /// `name` was not stopped: a problem, and what it depends on is held.
    pub(super) fn not_stopped(&mut self, name: &str, detail: &str) {
        self.problems
            .push(format!("{name} was not stopped: {detail}"));
        self.holds.not_stopped(&self.plan, name);
    }

    /// Keeps `name` and everything it depends on running, saying why.
    pub(super) fn hold(&mut self, name: &str, why: &str) {
        self.holds.hold(&self.plan, name, why);
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use drd_core::config::Config;

    /// lb -> api, web; api -> db, cache; web -> cache; db -> disk.
    fn plan() -> Plan {
        let mut text = String::new();
        for (name, deps) in [
            ("lb", "\"api\", \"web\""),
            ("api", "\"db\", \"cache\""),
            ("web", "\"cache\""),
            ("cache", ""),
            ("db", "\"disk\""),
            ("disk", ""),
        ] {
            text.push_str(&format!(
                "[services.{name}]\ndriver = \"process\"\npidfile = \"/run/{name}.pid\"\n\
                 depends_on = [{deps}]\n"
            ));
        }
        let config = Config::load_str(Path::new("/etc/drd/drd.toml"), &text)
            .unwrap()
            .config;
        Plan::build(&config, &[], false).unwrap()
    }

    fn held(holds: &Holds) -> Vec<&str> {
        holds.0.keys().map(String::as_str).collect()
    }

    #[test]
    fn a_service_that_did_not_stop_keeps_everything_below_it_up_and_nothing_above() {
        let plan = plan();
        let mut holds = Holds::default();
        holds.not_stopped(&plan, "api");
        assert_eq!(held(&holds), ["cache", "db", "disk"]);
        assert_eq!(
            holds.why("db"),
            Some("kept running: api, which depends on it, is still up")
        );
        assert_eq!(
            holds.why("disk"),
            Some("kept running: db, which depends on it, is still up")
        );
        // web and lb stop as planned, and api itself is reported NOT STOPPED.
        assert_eq!(holds.why("web"), None);
        assert_eq!(holds.why("api"), None);
    }

    #[test]
    fn a_held_critical_service_keeps_itself_and_its_dependencies_up() {
        let plan = plan();
        let mut holds = Holds::default();
        holds.hold(
            &plan,
            "db",
            "kept running: it is critical and its preserve job failed",
        );
        assert_eq!(held(&holds), ["db", "disk"]);
        assert_eq!(
            holds.why("db"),
            Some("kept running: it is critical and its preserve job failed")
        );
        // A later reason does not replace the first one.
        holds.not_stopped(&plan, "api");
        assert_eq!(
            holds.why("db"),
            Some("kept running: it is critical and its preserve job failed")
        );
        assert_eq!(held(&holds), ["cache", "db", "disk"]);
    }

    #[test]
    fn the_last_level_not_stopping_holds_nothing() {
        let plan = plan();
        let mut holds = Holds::default();
        holds.not_stopped(&plan, "disk");
        holds.not_stopped(&plan, "cache");
        assert!(held(&holds).is_empty());
    }
}
