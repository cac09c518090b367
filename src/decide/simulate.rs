//! Running the decision core forward without doing anything: each action applied to the facts
//! as etcd would apply it, until the core decides to start, wait or refuse. This is what `plan`
//! and `--dry-run` show.

use super::{Action, DataDir, Decision, EtcdMember, Facts, Outcome, PeerAnswer, decide, peer_url};

/// Applies an action to the facts the way etcd would, to show what a run would do without doing
/// it (`plan`, `--dry-run`). Returns the actions in order and the final outcome.
pub fn simulate(f: &Facts<'_>) -> (Vec<(Action, String)>, Outcome) {
    let mut probes = f.probes.to_vec();
    let mut data = f.data;
    let mut removed = f.removed_this_run;
    let mut data_copied = f.data_copied;
    let mut steps = Vec::new();
    loop {
        let facts = Facts {
            probes: &probes,
            data,
            removed_this_run: removed,
            data_copied,
            ..f.clone()
        };
        let out = decide(&facts);
        let Decision::Act(action) = &out.decision else {
            return (steps, out);
        };
        if steps.len() >= 8 {
            return (steps, out);
        }
        for p in &mut probes {
            if let PeerAnswer::Answered(view) = &mut p.answer {
                match action {
                    Action::RemoveMember { id, .. } => view.members.retain(|m| m.id != *id),
                    Action::AddMember { peer_url, learner } => view.members.push(EtcdMember {
                        id: 0,
                        name: String::new(),
                        peer_urls: vec![peer_url.clone()],
                        client_urls: vec![],
                        is_learner: *learner,
                    }),
                    Action::MoveDataAside | Action::CopyDataAside => {}
                }
            }
        }
        match action {
            Action::MoveDataAside => data = DataDir::Empty,
            Action::CopyDataAside => data_copied = true,
            Action::RemoveMember { peer_urls, .. }
                if !peer_urls.contains(&peer_url(f, f.me.expect("acting implies me"))) =>
            {
                removed += 1
            }
            _ => {}
        }
        steps.push((action.clone(), out.reason));
    }
}
