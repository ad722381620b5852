//! The coordinator's live view of its nodes: state, which jobs hold their slots, and whether they
//! can take jobs. Written by the engine only; read by API handlers (ListNodes, pending reasons).

use std::collections::{BTreeMap, HashMap};
use std::time::SystemTime;

use reelay_core::scheduler::{NodeSlots, Pending, QueuedJob, place};
use reelay_core::{Job, JobId, JobState, Node, NodeState};

/// One node and what the engine tracks about it.
#[derive(Debug, Clone)]
pub struct NodeEntry {
    pub node: Node,
    /// Jobs holding one of its slots, with their attempt.
    pub holders: HashMap<JobId, u32>,
    /// Why its executor cannot start jobs (the Docker engine does not answer), as the node said.
    pub executor_condition: Option<String>,
    /// It refused a job for lack of slots; cleared by its next job event.
    pub full: bool,
    /// Bumped every time the node goes offline; a node-lost timer only fires for its generation.
    pub offline_generation: u64,
    /// The link to the node is up.
    pub connected: bool,
}

/// All nodes, by id.
#[derive(Debug, Default)]
pub struct Cluster {
    pub nodes: BTreeMap<String, NodeEntry>,
}

impl Cluster {
    /// Nodes as clients see them (`running` = slot holders).
    pub fn nodes(&self) -> Vec<Node> {
        self.nodes.values().map(NodeEntry::view).collect()
    }

    pub fn node(&self, id: &str) -> Option<Node> {
        self.nodes.get(id).map(NodeEntry::view)
    }

    /// The scheduler's view of every node.
    pub fn slots(&self) -> Vec<NodeSlots> {
        self.nodes
            .values()
            .map(|entry| {
                NodeSlots::from_node(&entry.node, entry.holders.len() as u32, entry.blocked())
            })
            .collect()
    }

    /// Why a queued job waits (empty when it does not, or would be placed at the next pass).
    pub fn pending_reason(&self, job: &Job) -> String {
        Self::pending_reason_in(job, &self.slots())
    }

    /// Why a queued job waits, given the nodes' [`Cluster::slots`] (taken once for many jobs).
    pub fn pending_reason_in(job: &Job, slots: &[NodeSlots]) -> String {
        if job.state != JobState::Queued {
            return String::new();
        }
        let queued = QueuedJob {
            id: job.id,
            priority: job.spec.priority,
            pinned: job.spec.node_id.clone(),
            labels: job.spec.labels.clone(),
        };
        match place(&queued, slots) {
            Ok(_) => "starting: a node with a free slot is available".to_owned(),
            Err(Pending::NoNodes) => Pending::NoNodes.to_string(),
            Err(pending) => pending.to_string(),
        }
    }

    /// Moves the slot of `job` from where `before` held it to where `after` holds it.
    pub fn track(&mut self, before: Option<&Job>, after: Option<&Job>) {
        let old = before.and_then(|job| job.slot_node().map(|node| (node.to_owned(), job.id)));
        let new = after.and_then(|job| {
            job.slot_node()
                .map(|node| (node.to_owned(), job.id, job.attempt))
        });
        if let Some((node, id)) = old
            && let Some(entry) = self.nodes.get_mut(&node)
        {
            entry.holders.remove(&id);
        }
        if let Some((node, id, attempt)) = new
            && let Some(entry) = self.nodes.get_mut(&node)
        {
            entry.holders.insert(id, attempt);
        }
    }
}

impl NodeEntry {
    pub fn new(node: Node) -> Self {
        NodeEntry {
            node,
            holders: HashMap::new(),
            executor_condition: None,
            full: false,
            offline_generation: 0,
            connected: false,
        }
    }

    /// Why it cannot take jobs now, if it cannot.
    pub fn blocked(&self) -> Option<String> {
        if let Some(condition) = &self.executor_condition {
            return Some(condition.clone());
        }
        self.full
            .then(|| "the worker said it has no free slot".to_owned())
    }

    pub fn view(&self) -> Node {
        let mut node = self.node.clone();
        node.running = self.holders.len() as u32;
        if let Some(blocked) = self.blocked()
            && node.condition.is_empty()
        {
            node.condition = blocked;
        }
        node
    }

    /// The state a connected node is in: draining when an operator drained it.
    pub fn online_state(&self) -> NodeState {
        if self.node.drained {
            NodeState::Draining
        } else {
            NodeState::Ready
        }
    }

    pub fn touch(&mut self, now: SystemTime) {
        self.node.last_seen = Some(now);
    }
}
