//! The scheduler: which queued job runs on which node, and why a job waits.
//!
//! The queue is ordered by priority (high first), then age (job ids are UUIDv7, so they sort by
//! creation time). A job pinned to a node waits for that node. Any other job goes to a READY
//! node whose labels match and which has a free slot, the one with the most free slots first.
//! DRAINING and OFFLINE nodes get no new jobs. A node never gets more jobs than it has slots.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap};
use std::fmt;

use crate::job::JobId;
use crate::node::{Node, NodeState};

/// What the scheduler needs to know of a queued job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedJob {
    pub id: JobId,
    pub priority: i32,
    pub pinned: Option<String>,
    pub labels: BTreeMap<String, String>,
}

type QueueKey = (Reverse<i32>, JobId);

/// Queued jobs in the order they get slots.
#[derive(Debug, Default)]
pub struct Queue {
    order: BTreeMap<QueueKey, QueuedJob>,
    priority_of: HashMap<JobId, i32>,
}

impl Queue {
    pub fn insert(&mut self, job: QueuedJob) {
        self.remove(job.id);
        self.priority_of.insert(job.id, job.priority);
        self.order.insert((Reverse(job.priority), job.id), job);
    }

    pub fn remove(&mut self, id: JobId) -> Option<QueuedJob> {
        let priority = self.priority_of.remove(&id)?;
        self.order.remove(&(Reverse(priority), id))
    }

    pub fn contains(&self, id: JobId) -> bool {
        self.priority_of.contains_key(&id)
    }

    pub fn get(&self, id: JobId) -> Option<&QueuedJob> {
        let priority = self.priority_of.get(&id)?;
        self.order.get(&(Reverse(*priority), id))
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Place in the queue, from 1 (costs the number of jobs ahead).
    pub fn position(&self, id: JobId) -> Option<usize> {
        let priority = self.priority_of.get(&id)?;
        Some(self.order.range(..(Reverse(*priority), id)).count() + 1)
    }

    pub fn iter(&self) -> impl Iterator<Item = &QueuedJob> {
        self.order.values()
    }
}

/// A node as the scheduler sees it.
#[derive(Debug, Clone)]
pub struct NodeSlots {
    pub id: String,
    pub state: NodeState,
    pub labels: BTreeMap<String, String>,
    pub slots: u32,
    /// Jobs holding a slot on it.
    pub used: u32,
    /// `None` when it can take jobs; else why not (executor engine down, worker said it is full).
    pub blocked: Option<String>,
}

impl NodeSlots {
    pub fn from_node(node: &Node, used: u32, blocked: Option<String>) -> Self {
        NodeSlots {
            id: node.id.clone(),
            state: node.state,
            labels: node.labels.clone(),
            slots: node.slots,
            used,
            blocked,
        }
    }

    pub fn free(&self) -> u32 {
        self.slots.saturating_sub(self.used)
    }

    fn matches(&self, selector: &BTreeMap<String, String>) -> bool {
        selector
            .iter()
            .all(|(key, value)| self.labels.get(key) == Some(value))
    }
}

/// Why a queued job is not running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pending {
    NoNodes,
    PinnedUnknown(String),
    PinnedOffline(String),
    PinnedDraining(String),
    PinnedBlocked(String, String),
    PinnedBusy(String),
    NoMatchingLabels(BTreeMap<String, String>),
    /// Every matching node is offline, draining or blocked: why, per node.
    AllMatchingUnavailable(Vec<String>),
    NoFreeSlot,
}

impl fmt::Display for Pending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pending::NoNodes => write!(f, "no node is registered"),
            Pending::PinnedUnknown(node) => {
                write!(f, "pinned to node {node}, which is not registered")
            }
            Pending::PinnedOffline(node) => write!(f, "pinned to node {node}, which is offline"),
            Pending::PinnedDraining(node) => write!(f, "pinned to node {node}, which is draining"),
            Pending::PinnedBlocked(node, why) => {
                write!(f, "pinned to node {node}, which cannot start jobs: {why}")
            }
            Pending::PinnedBusy(node) => write!(f, "pinned to node {node}, which has no free slot"),
            Pending::NoMatchingLabels(labels) => {
                let wanted: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                write!(f, "no node has the labels {}", wanted.join(","))
            }
            Pending::AllMatchingUnavailable(why) => {
                write!(f, "no matching node can take jobs: {}", why.join("; "))
            }
            Pending::NoFreeSlot => write!(f, "no node with a free slot"),
        }
    }
}

/// Picks the node for `job` among `nodes` (index into `nodes`), or says why it must wait.
pub fn place(job: &QueuedJob, nodes: &[NodeSlots]) -> Result<usize, Pending> {
    if let Some(pinned) = &job.pinned {
        let Some(index) = nodes.iter().position(|node| &node.id == pinned) else {
            return Err(Pending::PinnedUnknown(pinned.clone()));
        };
        let node = &nodes[index];
        return match node.state {
            NodeState::Offline => Err(Pending::PinnedOffline(pinned.clone())),
            NodeState::Draining => Err(Pending::PinnedDraining(pinned.clone())),
            NodeState::Ready if !node.matches(&job.labels) => {
                Err(Pending::NoMatchingLabels(job.labels.clone()))
            }
            NodeState::Ready => match &node.blocked {
                Some(why) => Err(Pending::PinnedBlocked(pinned.clone(), why.clone())),
                None if node.free() == 0 => Err(Pending::PinnedBusy(pinned.clone())),
                None => Ok(index),
            },
        };
    }
    if nodes.is_empty() {
        return Err(Pending::NoNodes);
    }
    let mut any_matching = false;
    let mut any_available = false;
    let mut unavailable = Vec::new();
    let mut best: Option<usize> = None;
    for (index, node) in nodes.iter().enumerate() {
        if !node.matches(&job.labels) {
            continue;
        }
        any_matching = true;
        match (&node.state, &node.blocked) {
            (NodeState::Offline, _) => unavailable.push(format!("{} is offline", node.id)),
            (NodeState::Draining, _) => unavailable.push(format!("{} is draining", node.id)),
            (NodeState::Ready, Some(why)) => {
                unavailable.push(format!("{} cannot start jobs ({why})", node.id))
            }
            (NodeState::Ready, None) => {}
        }
        if node.state != NodeState::Ready || node.blocked.is_some() {
            continue;
        }
        any_available = true;
        if node.free() == 0 {
            continue;
        }
        let better = match best {
            None => true,
            Some(current) => {
                let current = &nodes[current];
                (node.free(), Reverse(&node.id)) > (current.free(), Reverse(&current.id))
            }
        };
        if better {
            best = Some(index);
        }
    }
    match best {
        Some(index) => Ok(index),
        None if !any_matching => Err(Pending::NoMatchingLabels(job.labels.clone())),
        None if !any_available => Err(Pending::AllMatchingUnavailable(unavailable)),
        None => Err(Pending::NoFreeSlot),
    }
}

/// Free slots on nodes that take jobs.
pub fn free_slots(nodes: &[NodeSlots]) -> u32 {
    nodes
        .iter()
        .filter(|n| n.state == NodeState::Ready && n.blocked.is_none())
        .map(NodeSlots::free)
        .sum()
}

/// Assigns queued jobs (in queue order) to free slots; stops reading the queue once no slot is
/// left. Updates `nodes[..].used` as it goes.
pub fn plan(
    queue: impl IntoIterator<Item = QueuedJob>,
    nodes: &mut [NodeSlots],
) -> Vec<(JobId, String)> {
    let mut assignments = Vec::new();
    let mut free = free_slots(nodes);
    for job in queue {
        if free == 0 {
            break;
        }
        if let Ok(index) = place(&job, nodes) {
            nodes[index].used += 1;
            free -= 1;
            assignments.push((job.id, nodes[index].id.clone()));
        }
    }
    assignments
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    fn node(id: &str, slots: u32, used: u32) -> NodeSlots {
        NodeSlots {
            id: id.into(),
            state: NodeState::Ready,
            labels: BTreeMap::new(),
            slots,
            used,
            blocked: None,
        }
    }

    fn job(n: u64, priority: i32) -> QueuedJob {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + n);
        QueuedJob {
            id: JobId::new(at),
            priority,
            pinned: None,
            labels: BTreeMap::new(),
        }
    }

    #[test]
    fn high_priority_first_then_oldest() {
        let mut queue = Queue::default();
        let (old_low, new_low, new_high) = (job(1, 0), job(2, 0), job(3, 5));
        for j in [&new_low, &new_high, &old_low] {
            queue.insert(j.clone());
        }
        let order: Vec<JobId> = queue.iter().map(|j| j.id).collect();
        assert_eq!(order, [new_high.id, old_low.id, new_low.id]);
        assert_eq!(queue.position(old_low.id), Some(2));
        let mut nodes = vec![node("a", 2, 0)];
        let plan = plan(queue.iter().cloned(), &mut nodes);
        assert_eq!(plan, [(new_high.id, "a".into()), (old_low.id, "a".into())]);
        assert_eq!(nodes[0].used, 2);
    }

    #[test]
    fn never_more_jobs_than_slots() {
        let mut queue = Queue::default();
        for n in 0..10 {
            queue.insert(job(n, 0));
        }
        let mut nodes = vec![node("a", 2, 1), node("b", 3, 0)];
        let plan = plan(queue.iter().cloned(), &mut nodes);
        assert_eq!(plan.len(), 4);
        assert!(nodes.iter().all(|n| n.used <= n.slots));
        // Most free slots first: b (3 free) takes the first job.
        assert_eq!(plan[0].1, "b");
    }

    #[test]
    fn pinned_jobs_wait_for_their_node() {
        let mut j = job(1, 0);
        j.pinned = Some("b".into());
        let mut nodes = vec![node("a", 4, 0), node("b", 1, 1)];
        assert_eq!(place(&j, &nodes), Err(Pending::PinnedBusy("b".into())));
        nodes[1].used = 0;
        assert_eq!(place(&j, &nodes), Ok(1));
        nodes[1].state = NodeState::Draining;
        assert_eq!(place(&j, &nodes), Err(Pending::PinnedDraining("b".into())));
        nodes[1].state = NodeState::Offline;
        assert_eq!(place(&j, &nodes), Err(Pending::PinnedOffline("b".into())));
        j.pinned = Some("zz".into());
        assert_eq!(place(&j, &nodes), Err(Pending::PinnedUnknown("zz".into())));
    }

    #[test]
    fn labels_select_nodes() {
        let mut j = job(1, 0);
        j.labels.insert("gpu".into(), "yes".into());
        let mut nodes = vec![node("a", 4, 0), node("b", 1, 0)];
        assert_eq!(
            place(&j, &nodes),
            Err(Pending::NoMatchingLabels(j.labels.clone()))
        );
        nodes[1].labels.insert("gpu".into(), "yes".into());
        assert_eq!(place(&j, &nodes), Ok(1));
        nodes[1].used = 1;
        assert_eq!(place(&j, &nodes), Err(Pending::NoFreeSlot));
        assert!(
            Pending::NoMatchingLabels(j.labels.clone())
                .to_string()
                .contains("gpu=yes")
        );
    }

    #[test]
    fn draining_offline_and_blocked_nodes_get_nothing() {
        let j = job(1, 0);
        let mut nodes = vec![node("a", 1, 0), node("b", 1, 0), node("c", 1, 0)];
        nodes[0].state = NodeState::Draining;
        nodes[1].state = NodeState::Offline;
        nodes[2].blocked = Some("docker engine down".into());
        let why = Pending::AllMatchingUnavailable(vec![
            "a is draining".into(),
            "b is offline".into(),
            "c cannot start jobs (docker engine down)".into(),
        ]);
        assert_eq!(place(&j, &nodes), Err(why.clone()));
        assert_eq!(
            why.to_string(),
            "no matching node can take jobs: a is draining; b is offline; c cannot start jobs (docker engine down)"
        );
        assert_eq!(place(&j, &[]), Err(Pending::NoNodes));
        let mut queue = Queue::default();
        queue.insert(j);
        assert!(plan(queue.iter().cloned(), &mut nodes).is_empty());
    }

    #[test]
    fn queue_reinsert_and_remove() {
        let mut queue = Queue::default();
        let mut j = job(1, 0);
        queue.insert(j.clone());
        j.priority = 9;
        queue.insert(j.clone());
        assert_eq!(queue.len(), 1);
        assert_eq!(queue.get(j.id).unwrap().priority, 9);
        assert!(queue.remove(j.id).is_some());
        assert!(queue.is_empty() && !queue.contains(j.id));
    }
}
