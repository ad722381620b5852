//! `reelay node …`: list the worker nodes, show one, drain, undrain and remove them.

use std::process::ExitCode;
use std::time::SystemTime;

use clap::{Args, Subcommand};
use reelay_proto::v1;

use crate::format::{self, Table};
use crate::{Ctx, json, tty};

/// The subcommands of `reelay node`.
#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// List the nodes: state, address, slots in use, labels, executor, last contact.
    #[command(after_help = "Examples:\n  reelay node list\n  reelay node list -o json | jq -r .id")]
    List,
    /// Show one node.
    #[command(after_help = "Example:\n  reelay node get local")]
    Get(NodeId),
    /// Let a node finish its jobs and give it no new ones (for maintenance).
    #[command(after_help = "\
The node stays DRAINING, across restarts too, until `reelay node undrain`.

Example:
  reelay node drain gpu-1")]
    Drain(NodeId),
    /// Give a drained node new jobs again.
    #[command(after_help = "Example:\n  reelay node undrain gpu-1")]
    Undrain(NodeId),
    /// Forget a node. Its unfinished jobs fail ("node removed") and are retried elsewhere when
    /// they have attempts left. A node that is still running registers again.
    Remove(RemoveArgs),
}

/// A node id, as `reelay node list` shows it.
#[derive(Debug, Args)]
pub struct NodeId {
    /// The node's id.
    pub(crate) id: String,
}

/// Flags of `reelay node remove`.
#[derive(Debug, Args)]
#[command(after_help = "\
On a terminal you are asked to confirm; --yes skips the question.

Example:
  reelay node remove old-box --yes")]
pub struct RemoveArgs {
    /// The node's id.
    pub(crate) id: String,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub(crate) yes: bool,
}

pub(crate) async fn run(ctx: &Ctx, command: NodeCommand) -> anyhow::Result<ExitCode> {
    let mut client = ctx.conn.nodes();
    match command {
        NodeCommand::List => {
            let mut nodes = client
                .list_nodes(v1::ListNodesRequest {})
                .await?
                .into_inner()
                .nodes;
            nodes.sort_by(|a, b| a.id.cmp(&b.id));
            if ctx.json() {
                for node in &nodes {
                    json::print_line(&json::node(node))?;
                }
            } else if nodes.is_empty() {
                eprintln!(
                    "no nodes yet: start a worker with `reelay worker --coordinator URL`, or use \
                     `reelay dev`"
                );
            } else {
                crate::out::text(&node_table(&nodes, SystemTime::now()))?;
            }
        }
        NodeCommand::Get(args) => {
            let node = client
                .get_node(v1::GetNodeRequest { id: args.id })
                .await?
                .into_inner();
            show(ctx, &node, None)?;
        }
        NodeCommand::Drain(args) => {
            let node = client
                .drain_node(v1::DrainNodeRequest { id: args.id })
                .await?
                .into_inner();
            let note = match node.running {
                0 => "it runs no jobs and takes no new ones".to_owned(),
                n => format!("it finishes its {n} job(s) and takes no new ones"),
            };
            show(
                ctx,
                &node,
                Some(format!("node {} draining: {note}", node.id)),
            )?;
        }
        NodeCommand::Undrain(args) => {
            let node = client
                .undrain_node(v1::UndrainNodeRequest { id: args.id })
                .await?
                .into_inner();
            let line = format!(
                "node {} {}",
                node.id,
                format::node_state(node.state).to_lowercase()
            );
            show(ctx, &node, Some(line))?;
        }
        NodeCommand::Remove(args) => {
            if !args.yes && tty::can_ask() {
                let node = client
                    .get_node(v1::GetNodeRequest {
                        id: args.id.clone(),
                    })
                    .await?
                    .into_inner();
                let state = format::node_state(node.state);
                let question = match node.running {
                    0 => format!("remove node {} ({state}, no jobs running)?", node.id),
                    n => format!(
                        "remove node {} ({state})? Its {n} running job(s) will fail, and be \
                         retried elsewhere if they have attempts left",
                        node.id
                    ),
                };
                if !tty::confirm(&question)? {
                    eprintln!("not removed");
                    return Ok(ExitCode::FAILURE);
                }
            }
            client
                .remove_node(v1::RemoveNodeRequest {
                    id: args.id.clone(),
                })
                .await?;
            if ctx.json() {
                json::print_line(&serde_json::json!({ "id": args.id, "removed": true }))?;
            } else {
                crate::out::line(format_args!("node {} removed", args.id))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints a node: JSON, a one-line summary, or (`summary` = None) every field.
fn show(ctx: &Ctx, node: &v1::Node, summary: Option<String>) -> anyhow::Result<()> {
    if ctx.json() {
        json::print_line(&json::node(node))?;
    } else if let Some(summary) = summary {
        crate::out::line(summary)?;
    } else {
        crate::out::text(&describe_node(node, SystemTime::now()))?;
    }
    Ok(())
}

fn node_table(nodes: &[v1::Node], now: SystemTime) -> String {
    let mut table = Table::new(&[
        "ID",
        "STATE",
        "ADDRESS",
        "SLOTS",
        "LABELS",
        "EXECUTOR",
        "LAST SEEN",
        "VERSION",
        "CONDITION",
    ]);
    for node in nodes {
        table.row(vec![
            node.id.clone(),
            format::node_state(node.state),
            node.address.clone(),
            format!("{}/{}", node.running, node.slots),
            format::pairs(&node.labels),
            dash(&node.executor),
            last_seen(node, now),
            dash(&node.version),
            node.condition.clone(),
        ]);
    }
    table.render()
}

fn dash(text: &str) -> String {
    if text.is_empty() {
        "-".to_owned()
    } else {
        text.to_owned()
    }
}

fn last_seen(node: &v1::Node, now: SystemTime) -> String {
    match format::time(node.last_seen.as_ref()) {
        Some(time) => format!("{} ago", format::age(time, now)),
        None => "never".to_owned(),
    }
}

fn describe_node(node: &v1::Node, now: SystemTime) -> String {
    let mut lines = vec![
        ("id", node.id.clone()),
        ("state", format::node_state(node.state)),
        ("address", node.address.clone()),
        (
            "slots",
            format!("{} running of {}", node.running, node.slots),
        ),
        ("labels", format::pairs(&node.labels)),
        ("executor", dash(&node.executor)),
        ("version", dash(&node.version)),
        ("last seen", last_seen(node, now)),
    ];
    if node.drained {
        lines.push((
            "drained",
            "yes (reelay node undrain to give it jobs again)".to_owned(),
        ));
    }
    if !node.condition.is_empty() {
        lines.push(("condition", node.condition.clone()));
    }
    if let Some(time) = format::time(node.registered_at.as_ref()) {
        lines.push((
            "registered",
            humantime::format_rfc3339_seconds(time).to_string(),
        ));
    }
    let width = lines.iter().map(|(name, _)| name.len()).max().unwrap_or(0) + 1;
    lines
        .iter()
        .map(|(name, value)| format!("{:<width$} {value}\n", format!("{name}:")))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_table_shows_slots_in_use_and_last_contact() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let node = v1::Node {
            id: "local".into(),
            address: "http://127.0.0.1:7071".into(),
            labels: [("gpu".to_owned(), "no".to_owned())].into(),
            slots: 4,
            running: 1,
            state: v1::NodeState::Ready as i32,
            last_seen: Some(prost_types::Timestamp {
                seconds: 997,
                nanos: 0,
            }),
            version: "0.1.0".into(),
            executor: "process".into(),
            ..Default::default()
        };
        let text = node_table(&[node], now);
        let mut lines = text.lines();
        let header = lines.next().unwrap();
        assert!(header.starts_with("ID     STATE  ADDRESS"), "{text}");
        let row = lines.next().unwrap();
        assert!(row.contains("READY"), "{row}");
        assert!(row.contains(" 1/4 "), "{row}");
        assert!(row.contains("gpu=no"), "{row}");
        assert!(row.contains("3s ago"), "{row}");
    }
}
