//! Which broadcast groups a sweep removes (contract §6: groups of instances that died are
//! removed once their heartbeat has expired). Every instance sweeps; the shell and the
//! simulation's Redis both ask this, so the product's own rule is the one simulated.

/// An instance's broadcast group: `{prefix}-{instance}`.
pub fn group_name(prefix: &str, instance: &str) -> String {
    format!("{prefix}-{instance}")
}

/// A broadcast group a sweep asks about, and the instance whose heartbeat decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweepCandidate<'g> {
    pub group: &'g str,
    pub instance: &'g str,
}

/// The groups on the stream a sweep by `own_instance` asks about: every broadcast group of
/// `prefix` but its own. Other groups (the durable one, anyone else's) are not the sweep's
/// to judge.
pub fn sweep_candidates<'g>(
    groups: &'g [String],
    prefix: &str,
    own_instance: &str,
) -> Vec<SweepCandidate<'g>> {
    groups
        .iter()
        .filter_map(|group| {
            let instance = group.strip_prefix(prefix)?.strip_prefix('-')?;
            (!instance.is_empty() && instance != own_instance).then_some(SweepCandidate {
                group: group.as_str(),
                instance,
            })
        })
        .collect()
}

/// Of `candidates`, the groups to destroy: those whose instance's heartbeat is gone
/// (`heartbeat_alive[i]` answers for `candidates[i]`).
pub fn dead_groups<'g>(
    candidates: &[SweepCandidate<'g>],
    heartbeat_alive: &[bool],
) -> Vec<&'g str> {
    candidates
        .iter()
        .zip(heartbeat_alive)
        .filter(|(_, alive)| !**alive)
        .map(|(c, _)| c.group)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_other_instances_broadcast_groups_are_candidates() {
        let groups: Vec<String> = [
            "durable-write",
            "live-broadcast-a",
            "live-broadcast-b",
            "live-broadcast-",
            "live-broadcastx-c",
            "other-d",
        ]
        .map(String::from)
        .to_vec();
        let c = sweep_candidates(&groups, "live-broadcast", "a");
        assert_eq!(
            c,
            vec![SweepCandidate {
                group: "live-broadcast-b",
                instance: "b"
            }]
        );
        assert_eq!(group_name("live-broadcast", "b"), "live-broadcast-b");
    }

    #[test]
    fn a_group_is_dead_when_its_heartbeat_is_gone() {
        let groups: Vec<String> = ["p-b", "p-c", "p-d"].map(String::from).to_vec();
        let c = sweep_candidates(&groups, "p", "a");
        assert_eq!(dead_groups(&c, &[true, false, true]), vec!["p-c"]);
        assert!(dead_groups(&c, &[true, true, true]).is_empty());
    }
}
