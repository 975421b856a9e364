//! The plan: one line per change, reported as it is decided, applied unless dry-running.

use std::fmt;

/// One change to one resource ("create bucket audit-archive", "set lifecycle of ...").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The change in words.
    pub description: String,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.description)
    }
}

/// What a run did (or, dry-running, would do).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Every change, in order.
    pub changes: Vec<Change>,
    /// Whether the changes were only reported.
    pub dry_run: bool,
    /// What is wrong but not this command's to change (e.g. a producer's topic that is not
    /// encrypted at rest).
    pub warnings: Vec<String>,
}

impl Report {
    /// The last line of the output: "no changes" when everything was as it should be.
    pub fn summary(&self) -> String {
        let count = self.changes.len();
        let noun = if count == 1 { "change" } else { "changes" };
        match (count, self.dry_run) {
            (0, _) => "no changes".to_owned(),
            (_, true) => format!("dry run: {count} {noun} planned, nothing was changed"),
            (_, false) => format!("{count} {noun} applied"),
        }
    }
}

/// Records the changes of a run and tells each step whether to apply them.
pub(crate) struct Plan<'a> {
    dry_run: bool,
    changes: Vec<Change>,
    warnings: Vec<String>,
    observer: &'a mut (dyn FnMut(&Change) + Send),
}

impl<'a> Plan<'a> {
    pub(crate) fn new(dry_run: bool, observer: &'a mut (dyn FnMut(&Change) + Send)) -> Self {
        Plan {
            dry_run,
            changes: Vec::new(),
            warnings: Vec::new(),
            observer,
        }
    }

    /// Records a change and reports it; returns whether to apply it (false when
    /// dry-running).
    pub(crate) fn change(&mut self, description: impl Into<String>) -> bool {
        let change = Change {
            description: description.into(),
        };
        if !self.dry_run {
            tracing::info!(change = %change.description, "applying");
        }
        (self.observer)(&change);
        self.changes.push(change);
        !self.dry_run
    }

    /// Records something wrong that is not this command's to change.
    pub(crate) fn warn(&mut self, warning: impl Into<String>) {
        let warning = warning.into();
        tracing::warn!(%warning, "provision");
        self.warnings.push(warning);
    }

    pub(crate) fn dry_run(&self) -> bool {
        self.dry_run
    }

    pub(crate) fn into_report(self) -> Report {
        Report {
            changes: self.changes,
            dry_run: self.dry_run,
            warnings: self.warnings,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dry_run_reports_and_applies_nothing() {
        let mut seen = Vec::new();
        let mut observer = |change: &Change| seen.push(change.to_string());
        let mut plan = Plan::new(true, &mut observer);
        assert!(!plan.change("create bucket b"));
        let report = plan.into_report();
        assert_eq!(seen, ["create bucket b"]);
        assert_eq!(
            report.summary(),
            "dry run: 1 change planned, nothing was changed"
        );
    }

    #[test]
    fn a_run_without_changes_says_so() {
        let mut observer = |_: &Change| {};
        let plan = Plan::new(false, &mut observer);
        assert_eq!(plan.into_report().summary(), "no changes");
        let report = Report {
            changes: vec![
                Change {
                    description: "a".into(),
                },
                Change {
                    description: "b".into(),
                },
            ],
            dry_run: false,
            warnings: Vec::new(),
        };
        assert_eq!(report.summary(), "2 changes applied");
    }
}
