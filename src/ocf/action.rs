//! The actions an OCF agent is asked to perform (argv[1]).

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Start,
    Stop,
    /// `status` is the LSB-era name of monitor; both behave the same.
    Monitor,
    Status,
    MetaData,
    ValidateAll,
    MigrateTo,
    MigrateFrom,
    /// OCF 1.1: make changed `reloadable` parameters take effect without a
    /// restart. Pacemaker runs it instead of stop and start when only such
    /// parameters changed.
    ReloadAgent,
}

impl Action {
    pub const ALL: [Action; 9] = [
        Action::Start,
        Action::Stop,
        Action::Monitor,
        Action::Status,
        Action::MetaData,
        Action::ValidateAll,
        Action::MigrateTo,
        Action::MigrateFrom,
        Action::ReloadAgent,
    ];

    pub fn parse(word: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == word)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Start => "start",
            Action::Stop => "stop",
            Action::Monitor => "monitor",
            Action::Status => "status",
            Action::MetaData => "meta-data",
            Action::ValidateAll => "validate-all",
            Action::MigrateTo => "migrate_to",
            Action::MigrateFrom => "migrate_from",
            Action::ReloadAgent => "reload-agent",
        }
    }

    /// Actions that touch the resource and so must not interleave with another
    /// action on the same resource.
    pub fn needs_lock(self) -> bool {
        !matches!(self, Action::MetaData | Action::ValidateAll)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_round_trips_through_its_name() {
        for action in Action::ALL {
            assert_eq!(Action::parse(action.as_str()), Some(action));
        }
        assert_eq!(Action::parse("reload"), None);
        assert_eq!(Action::parse("START"), None);
    }
}
