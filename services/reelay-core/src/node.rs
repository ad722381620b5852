//! Worker nodes as the coordinator knows them.

use std::collections::BTreeMap;
use std::fmt;
use std::time::SystemTime;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeState {
    /// Answers and takes new jobs.
    Ready,
    /// Finishes its jobs, takes no new ones.
    Draining,
    /// Does not answer.
    Offline,
}

impl fmt::Display for NodeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NodeState::Ready => "ready",
            NodeState::Draining => "draining",
            NodeState::Offline => "offline",
        })
    }
}

/// A registered worker.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub id: String,
    /// URL of its WorkerService.
    pub address: String,
    pub labels: BTreeMap<String, String>,
    pub slots: u32,
    /// Jobs holding one of its slots (computed by the coordinator).
    pub running: u32,
    pub state: NodeState,
    pub last_seen: Option<SystemTime>,
    pub version: String,
    pub executor: String,
    /// Drained by an operator: stays draining when it comes back.
    pub drained: bool,
    /// Why it is in its state.
    pub condition: String,
    pub registered_at: Option<SystemTime>,
}

impl Node {
    /// Whether the node has every label of `selector`.
    pub fn matches(&self, selector: &BTreeMap<String, String>) -> bool {
        selector
            .iter()
            .all(|(key, value)| self.labels.get(key) == Some(value))
    }
}

/// Parses `k=v,k2=v2` (the `--labels` flag).
pub fn parse_labels(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut labels = BTreeMap::new();
    for pair in text
        .split(',')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
    {
        let Some((key, value)) = pair.split_once('=') else {
            return Err(format!("label {pair:?} is not key=value"));
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(format!("label {pair:?} has an empty key"));
        }
        labels.insert(key.to_owned(), value.trim().to_owned());
    }
    // The coordinator refuses a registration with more or longer labels: say so at start.
    crate::names::validate_labels(&labels, "labels").map_err(|err| err.to_string())?;
    Ok(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_parse_and_match() {
        let labels = parse_labels("gpu=yes, zone=a").unwrap();
        assert_eq!(labels.len(), 2);
        let node = Node {
            id: "n1".into(),
            address: String::new(),
            labels,
            slots: 1,
            running: 0,
            state: NodeState::Ready,
            last_seen: None,
            version: String::new(),
            executor: String::new(),
            drained: false,
            condition: String::new(),
            registered_at: None,
        };
        assert!(node.matches(&parse_labels("gpu=yes").unwrap()));
        assert!(node.matches(&BTreeMap::new()));
        assert!(!node.matches(&parse_labels("gpu=no").unwrap()));
        assert!(!node.matches(&parse_labels("disk=ssd").unwrap()));
        assert!(parse_labels("novalue").is_err());
        assert!(parse_labels("=x").is_err());
    }
}
