//! The steps of a job made of jobs, for `reelay job get PARENT`: its step jobs as they are
//! (`ListJobs{parent_id}`, in the order they were made: split, pieces, join), as a table.

use reelay_proto::v1;

use crate::Ctx;
use crate::format::{self, Table};

/// The largest page the server gives.
const PAGE: i32 = 1000;

/// Every step job of `parent`, in order.
pub(super) async fn list(ctx: &Ctx, parent: &str) -> anyhow::Result<Vec<v1::Job>> {
    let mut client = ctx.conn.jobs();
    let mut jobs = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_jobs(v1::ListJobsRequest {
                page_size: PAGE,
                page_token,
                parent_id: parent.to_owned(),
                ..Default::default()
            })
            .await?
            .into_inner();
        let empty = page.jobs.is_empty();
        jobs.extend(page.jobs);
        page_token = page.next_page_token;
        if page_token.is_empty() || empty {
            return Ok(jobs);
        }
    }
}

/// `STEP PIECE STATE NODE PROGRESS JOB NOTE`, a row per step; pieces counted from 1 as the
/// parent's messages count them (`piece 2 of 3`).
pub(super) fn table(steps: &[v1::Job]) -> String {
    let count = steps.iter().filter(|job| job.step == "map").count();
    let mut table = Table::new(&["STEP", "PIECE", "STATE", "NODE", "PROGRESS", "JOB", "NOTE"]);
    for job in steps {
        let piece = if job.step == "map" {
            format!("{}/{count}", job.piece + 1)
        } else {
            "-".to_owned()
        };
        table.row(vec![
            job.step.clone(),
            piece,
            format::job_state(job.state),
            format::node_cell(job),
            format!("{}%", job.progress),
            job.id.clone(),
            format::truncate(&note(job), 80),
        ]);
    }
    table.render()
}

/// What is worth a word next to a step: why it failed, why it waits; nothing when it is fine.
fn note(job: &v1::Job) -> String {
    if !job.error.is_empty() {
        return job.error.clone();
    }
    if job.state == v1::JobState::Queued as i32 {
        return job.pending_reason.clone();
    }
    String::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(id: &str, step: &str, piece: u32, state: v1::JobState, node: &str) -> v1::Job {
        v1::Job {
            id: id.into(),
            parent_id: "p".into(),
            step: step.into(),
            piece,
            state: state as i32,
            progress: if state == v1::JobState::Succeeded {
                100
            } else {
                0
            },
            node_id: node.into(),
            node_reachable: true,
            ..Default::default()
        }
    }

    #[test]
    fn the_steps_table_names_each_step_its_node_and_its_job() {
        let mut failed = step("m1", "map", 1, v1::JobState::Failed, "w1");
        failed.error = "exit code 7".into();
        failed.progress = 45;
        let mut waiting = step("m2", "map", 2, v1::JobState::Queued, "");
        waiting.pending_reason = "no node has a free slot".into();
        let steps = [
            step("s", "split", 0, v1::JobState::Succeeded, "w0"),
            step("m0", "map", 0, v1::JobState::Succeeded, "w0"),
            failed,
            waiting,
        ];
        assert_eq!(
            table(&steps),
            "\
STEP   PIECE  STATE      NODE  PROGRESS  JOB  NOTE
split  -      SUCCEEDED  w0    100%      s
map    1/3    SUCCEEDED  w0    100%      m0
map    2/3    FAILED     w1    45%       m1   exit code 7
map    3/3    QUEUED     -     0%        m2   no node has a free slot
"
        );
    }
}
