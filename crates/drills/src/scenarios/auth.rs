//! auth: written by the scenarios' helper (placeholder on the skeleton branch only).

use super::{Drill, Finding};

pub(super) async fn run(_drill: &Drill) -> Vec<Finding> {
    Vec::new()
}
